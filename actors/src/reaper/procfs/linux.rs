//! `/proc` and pidfds on Linux.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::super::trust::effective_uid;
use super::{Identity, ProcId, Signalled, Stat, is_no_such_process};

/// A pid the reaper may ever signal: never 0 or negative (which `kill`
/// reads as "a whole group" or "everyone"), never init.
fn is_signallable(pid: u32) -> bool {
    pid > 1 && i32::try_from(pid).is_ok()
}

/// Whether `/proc/<pid>` (whose owner is the process's effective uid)
/// belongs to our own effective uid. Checked before every signal.
fn is_ours(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == effective_uid())
}

pub(in crate::reaper) fn own_identity() -> io::Result<Identity> {
    let raw = fs::read("/proc/self/stat")?;
    let stat = Stat::parse(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparseable /proc/self/stat"))?;
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.contains('\n'));
    let pid_ns = fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| link.into_os_string().into_string().ok())
        .filter(|s| !s.is_empty() && !s.contains('\n'));
    Ok(Identity {
        pid: std::process::id(),
        start: stat.start,
        boot_id,
        pid_ns,
    })
}

pub(in crate::reaper) fn stat(pid: u32) -> io::Result<Stat> {
    let raw = fs::read(format!("/proc/{pid}/stat"))?;
    Stat::parse(&raw).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparseable stat"))
}

/// Still the same process (same start time), and not a zombie. A `stat`
/// that cannot be read for another reason than the process being gone
/// counts as alive.
pub(in crate::reaper) fn is_alive(p: ProcId) -> bool {
    match stat(p.pid) {
        Ok(stat) => !stat.is_gone() && stat.start == p.start,
        Err(e) => !is_no_such_process(&e),
    }
}

/// Whether `/proc/<pid>/environ` holds each of `markers` as an exact
/// entry. An environment that cannot be read does not.
fn environ_has(pid: u32, markers: &[Vec<u8>]) -> bool {
    fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        markers
            .iter()
            .all(|marker| env.split(|&b| b == 0).any(|entry| entry == marker))
    })
}

/// Every live process id in `/proc`.
fn pids() -> Vec<u32> {
    let Ok(listing) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|name| name.parse::<u32>().ok())
        })
        .filter(|&pid| is_signallable(pid))
        .collect()
}

/// Every live process of ours but `skip` whose environment holds all of
/// `markers`.
pub(in crate::reaper) fn scan(markers: &[Vec<u8>], skip: u32) -> Vec<ProcId> {
    let mut found = Vec::new();
    for pid in pids() {
        if pid == skip || !is_ours(pid) || !environ_has(pid, markers) {
            continue;
        }
        match stat(pid) {
            Ok(stat) if !stat.is_gone() => found.push(ProcId {
                pid,
                start: stat.start,
            }),
            _ => {}
        }
    }
    found.sort_unstable();
    found
}

/// Whether every live member of process group `pgid` is ours.
fn group_is_ours(pgid: i32) -> bool {
    pids().into_iter().all(|pid| match stat(pid) {
        Ok(stat) if stat.pgrp == pgid && !stat.is_gone() => is_ours(pid),
        _ => true,
    })
}

/// Sends `signal` to `p`, and to its process group when it leads one,
/// after checking again that it is the same process, is ours and still
/// carries `markers`. The group is signalled only when every member is
/// ours.
///
/// The pidfd is opened before the check, so if the pid is reused after
/// it, the signal goes to the (dead) process that was checked rather than
/// to the newcomer. Kernels without pidfds fall back to `kill`, leaving a
/// window of a few microseconds.
pub(in crate::reaper) fn signal_verified(
    p: ProcId,
    markers: &[Vec<u8>],
    signal: libc::c_int,
) -> Signalled {
    if p.pid == std::process::id() || !is_signallable(p.pid) {
        return Signalled::Gone;
    }
    let pid = p.pid as libc::pid_t;
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Signalled::Gone,
        Err(_) => None,
    };
    match stat(p.pid) {
        Ok(stat) if !stat.is_gone() && stat.start == p.start => {}
        _ => return Signalled::Gone,
    }
    if !is_ours(p.pid) {
        return Signalled::Refused;
    }
    if !environ_has(p.pid, markers) {
        return Signalled::Gone;
    }
    // SAFETY: getpgid, getpgrp, killpg and kill have no memory-safety
    // preconditions.
    let (pgid, own_group) = unsafe { (libc::getpgid(pid), libc::getpgrp()) };
    // Its group goes first, while the leader still holds the group id. A
    // group that holds the current process, or a process of another
    // user, is never signalled as a whole.
    let group_signalled = pgid == pid
        && pgid != own_group
        && group_is_ours(pgid)
        && unsafe { libc::killpg(pgid, signal) } == 0;
    let direct = match &pidfd {
        Some(fd) => pidfd_send_signal(fd, signal),
        None => {
            if unsafe { libc::kill(pid, signal) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    };
    match direct {
        Ok(()) => Signalled::Sent,
        Err(_) if group_signalled => Signalled::Sent,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Signalled::Gone,
        Err(_) => Signalled::Refused,
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new fd
    // that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(fd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
