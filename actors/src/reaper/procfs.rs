//! Reading `/proc` and sending signals: who the current process is, a
//! process's `stat`, the scan for processes carrying markers, and the
//! verified signal through a pidfd. Without `/proc` (not Linux) nothing is
//! found and nothing judged.

use std::io;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod other;

#[cfg(target_os = "linux")]
pub(super) use linux::{is_alive, own_identity, scan, signal_verified, stat};
#[cfg(not(target_os = "linux"))]
pub(super) use other::{is_alive, own_identity, scan, signal_verified, stat};

/// Who the current process is, as entries record it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub pid: u32,
    pub start: u64,
    pub boot_id: Option<String>,
    pub pid_ns: Option<String>,
}

/// One process, identified across pid reuse by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcId {
    pub pid: u32,
    pub start: u64,
}

/// The fields of `/proc/<pid>/stat` the reaper needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: u8,
    /// Process group id (field 5).
    pub pgrp: i32,
    pub start: u64,
}

impl Stat {
    /// Parses a `stat` line. The command name (field 2) is in parentheses
    /// and may itself hold spaces and parentheses, so fields are counted from
    /// the last `)`.
    pub(crate) fn parse(raw: &[u8]) -> Option<Stat> {
        let close = raw.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
        let mut fields = rest.split_ascii_whitespace();
        // Field 3 is the state, 5 the process group; field 22 is the start
        // time, 16 fields after the group.
        let state = *fields.next()?.as_bytes().first()?;
        let pgrp = fields.nth(1)?.parse().ok()?;
        let start = fields.nth(16)?.parse().ok()?;
        Some(Stat { state, pgrp, start })
    }

    /// Zombie, or dead and about to vanish: gone, for the reaper's purposes.
    pub(crate) fn is_gone(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// What became of one signal.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signalled {
    /// The signal was delivered.
    Sent,
    /// The process had gone, or the pid now belongs to another process.
    Gone,
    /// The kernel refused (permissions), or the process is not ours.
    Refused,
}

/// `NotFound`, or `ESRCH` (a `/proc/<pid>` file whose process went while it
/// was being read).
pub(super) fn is_no_such_process(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}
