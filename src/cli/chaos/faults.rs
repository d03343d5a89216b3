//! The faults: the SIGKILL loop, the one SIGSTOP, and waiting for the pool
//! to be at full strength again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use snakepit::PoolHandle;
use snakepit_actors::processes_with_run_id;
use tokio::sync::watch;

use super::remote::marked_processes;

/// How long to wait, after the kills stop, for the pool to be at full strength
/// again before shutting down (so that the last kill's recovery is measured).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which processes are the run's: a local pool's carry the run id, a
/// remote pool's (agents and their workers) the remote run's marker.
#[derive(Debug, Clone)]
pub(super) enum Owned {
    Run(String),
    Marked(String),
}

impl Owned {
    /// The run's live processes.
    pub(super) fn pids(&self) -> Vec<u32> {
        match self {
            Owned::Run(run_id) => processes_with_run_id(run_id),
            Owned::Marked(marker) => marked_processes(marker),
        }
    }
}

/// A SIGKILL sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kill {
    pub(super) pid: u32,
    pub(super) at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct KillLog {
    pub(super) kills: Vec<Kill>,
    /// Ticks when no worker was ready to be killed.
    pub(super) skipped: u64,
    /// Signals that could not be sent (the process was already gone).
    pub(super) failed: u64,
}

/// Every `interval`, SIGKILLs a random ready worker (never the frozen one).
pub(super) async fn kill_loop(
    pool: PoolHandle,
    owned: Owned,
    interval: Duration,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
    frozen: Arc<Mutex<Option<u32>>>,
) -> KillLog {
    let mut log = KillLog::default();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let frozen = *frozen.lock().expect("frozen lock");
        let Some(pid) = pick_ready(&pool, &owned, frozen, &mut rng).await else {
            log.skipped += 1;
            continue;
        };
        if *stop.borrow() {
            break;
        }
        let at = Instant::now();
        match signal(pid, libc::SIGKILL) {
            Ok(()) => log.kills.push(Kill { pid, at }),
            Err(_) => log.failed += 1,
        }
    }
    log
}

/// The SIGSTOP sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frozen {
    pub(super) pid: u32,
    pub(super) at: Instant,
}

/// Once, `after` into the run, SIGSTOPs a random ready worker.
pub(super) async fn stop_one(
    pool: PoolHandle,
    owned: Owned,
    after: Duration,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
    frozen: Arc<Mutex<Option<u32>>>,
) -> Option<Frozen> {
    tokio::select! {
        _ = tokio::time::sleep(after) => {}
        _ = stop.wait_for(|stopped| *stopped) => return None,
    }
    let pid = pick_ready(&pool, &owned, None, &mut rng).await?;
    // Spare it from the kills before it freezes, so that only the pool's own
    // detection can end it.
    *frozen.lock().expect("frozen lock") = Some(pid);
    let at = Instant::now();
    signal(pid, libc::SIGSTOP).ok()?;
    Some(Frozen { pid, at })
}

/// A random ready worker's pid, checked to still be one of this run's
/// processes (so that a recycled pid is never signalled).
async fn pick_ready(
    pool: &PoolHandle,
    owned: &Owned,
    except: Option<u32>,
    rng: &mut StdRng,
) -> Option<u32> {
    let status = pool.status().await.ok()?;
    let pids: Vec<u32> = status
        .workers
        .iter()
        .filter(|w| w.ready)
        .filter_map(|w| w.pid)
        .filter(|pid| Some(*pid) != except)
        .collect();
    if pids.is_empty() {
        return None;
    }
    let pid = pids[rng.random_range(0..pids.len())];
    // Never signal a pid that was reused by a process not of this run.
    owned.pids().contains(&pid).then_some(pid)
}

pub(super) fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits (bounded) until every worker is ready again; whether it happened.
pub(super) async fn settle(pool: &PoolHandle) -> bool {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match pool.status().await {
            Ok(st) if st.workers_up == st.size => return true,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => return false,
        }
    }
}
