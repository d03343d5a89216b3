//! Ending processes by identity: whether a recorded host is dead, and
//! signalling every process of ours that carries a run's (and a worker's)
//! marker, rescanning for ones forked meanwhile.

use std::time::{Duration, Instant};

use super::procfs::{self, Identity, ProcId, Signalled, is_no_such_process};
use super::record::EntryRecord;
use crate::process::{RUN_ID_ENV, WORKER_ID_ENV};
use crate::telemetry::{StrayProcessesEnded, Telemetry};

/// How long a sweep waits for the processes it killed to go.
pub(super) const REAP_WAIT: Duration = Duration::from_secs(2);
/// How often it looks while waiting.
const REAP_POLL: Duration = Duration::from_millis(10);
/// How many times a sweep rescans for processes forked while it was
/// signalling.
const REAP_ROUNDS: usize = 4;

/// Every live (non-zombie) process owned by our uid, other than the current
/// one, whose environment carries exactly `SNAKEPIT_RUN_ID=<run_id>`, sorted
/// by pid.
///
/// A process whose environment cannot be read (another user's) is not
/// listed. Always empty on systems without `/proc`.
pub fn processes_with_run_id(run_id: &str) -> Vec<u32> {
    if run_id.is_empty() || run_id.contains('\0') {
        return Vec::new();
    }
    procfs::scan(&[marker(RUN_ID_ENV, run_id)], std::process::id())
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// [`end_processes`] off the async runtime, reporting what it ended as a
/// [`StrayProcessesEnded`] event: how a worker's exit (`worker_id` set) and
/// a runtime's shutdown (`None`) end what left their process groups.
pub(crate) async fn end_strays(
    run_id: String,
    worker_id: Option<String>,
    grace: Duration,
    telemetry: &Telemetry,
) {
    let (run_id, worker, pids) = tokio::task::spawn_blocking(move || {
        let pids = end_processes(&run_id, worker_id.as_deref(), grace);
        (run_id, worker_id, pids)
    })
    .await
    .unwrap_or_default();
    if !pids.is_empty() {
        StrayProcessesEnded {
            run_id,
            worker,
            pids,
        }
        .emit(telemetry);
    }
}

/// Ends every process owned by our uid (the current one aside) that carries
/// `SNAKEPIT_RUN_ID=<run_id>` and, when given, `SNAKEPIT_WORKER_ID=<worker_id>`:
/// SIGTERM (to the process group too when it leads one of its own), up to
/// `grace` for them to go, then SIGKILL for whoever is left, and up to 2 s
/// more. Returns the pids it signalled, sorted.
///
/// This is how the children a worker started outside its process group are
/// ended once it has exited (run and worker id), and how a runtime's shutdown
/// makes sure nothing of its run is left (run id alone). Blocking.
pub fn end_processes(run_id: &str, worker_id: Option<&str>, grace: Duration) -> Vec<u32> {
    if run_id.is_empty() || run_id.contains('\0') || worker_id.is_some_and(|w| w.contains('\0')) {
        return Vec::new();
    }
    let mut markers = vec![marker(RUN_ID_ENV, run_id)];
    if let Some(worker_id) = worker_id {
        markers.push(marker(WORKER_ID_ENV, worker_id));
    }
    let termed = signal_marked(&markers, libc::SIGTERM, Instant::now() + grace);
    // A marked process only comes from a marked parent: when the first pass
    // found none, there is nothing for a second read of /proc to find.
    if termed.signalled.is_empty() && termed.refused.is_empty() {
        return Vec::new();
    }
    let killed = signal_marked(&markers, libc::SIGKILL, Instant::now() + REAP_WAIT);
    let mut pids: Vec<u32> = termed
        .signalled
        .iter()
        .chain(&killed.signalled)
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostState {
    Alive,
    Dead,
    /// Cannot be told from here; treated like alive.
    Unknown,
}

pub(super) fn host_state(record: &EntryRecord, me: Option<&Identity>) -> HostState {
    if let Some(me) = me {
        if record.host_pid == me.pid && record.host_start == me.start {
            return HostState::Alive;
        }
        if let (Some(theirs), Some(ours)) = (&record.boot_id, &me.boot_id)
            && theirs != ours
        {
            return HostState::Dead;
        }
        if let (Some(theirs), Some(ours)) = (&record.pid_ns, &me.pid_ns)
            && theirs != ours
        {
            return HostState::Unknown;
        }
    }
    match procfs::stat(record.host_pid) {
        Ok(stat) if stat.is_gone() || stat.start != record.host_start => HostState::Dead,
        Ok(_) => HostState::Alive,
        Err(e) if is_no_such_process(&e) => HostState::Dead,
        Err(_) => HostState::Unknown,
    }
}

/// Kills every process of a dead run. Returns the pids it signalled and
/// those still there at the end, both sorted.
pub(super) fn reap_run(run_id: &str) -> (Vec<u32>, Vec<u32>) {
    let outcome = signal_marked(
        &[marker(RUN_ID_ENV, run_id)],
        libc::SIGKILL,
        Instant::now() + REAP_WAIT,
    );
    let mut survivors: Vec<u32> = outcome
        .signalled
        .iter()
        .filter(|p| procfs::is_alive(**p))
        .map(|p| p.pid)
        .chain(outcome.refused)
        .collect();
    survivors.sort_unstable();
    survivors.dedup();
    let mut pids: Vec<u32> = outcome.signalled.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    (pids, survivors)
}

/// What one signalling pass did.
struct Signalling {
    signalled: Vec<ProcId>,
    refused: Vec<u32>,
}

/// Sends `signal` to every process of ours (the current one aside) that
/// carries all of `markers`, rescanning for ones forked meanwhile, and waits
/// until those signalled are gone or `deadline` passes.
fn signal_marked(markers: &[Vec<u8>], signal: libc::c_int, deadline: Instant) -> Signalling {
    let own_pid = std::process::id();
    let mut tried: Vec<ProcId> = Vec::new();
    let mut outcome = Signalling {
        signalled: Vec::new(),
        refused: Vec::new(),
    };
    for _ in 0..REAP_ROUNDS {
        let found: Vec<ProcId> = procfs::scan(markers, own_pid)
            .into_iter()
            .filter(|p| !tried.contains(p))
            .collect();
        if found.is_empty() {
            break;
        }
        for p in found {
            tried.push(p);
            match procfs::signal_verified(p, markers, signal) {
                Signalled::Sent => outcome.signalled.push(p),
                Signalled::Gone => {}
                Signalled::Refused => outcome.refused.push(p.pid),
            }
        }
        wait_gone(&outcome.signalled, deadline);
        if Instant::now() >= deadline {
            break;
        }
    }
    outcome
}

/// Waits until every process in `procs` is gone, or the deadline passes.
fn wait_gone(procs: &[ProcId], deadline: Instant) {
    loop {
        if !procs.iter().any(|p| procfs::is_alive(*p)) {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep(REAP_POLL.min(deadline - now));
    }
}

/// The exact environment entry `key=value`.
fn marker(key: &str, value: &str) -> Vec<u8> {
    format!("{key}={value}").into_bytes()
}
