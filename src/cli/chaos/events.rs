//! The telemetry the run watches: worker exits and readies, agents
//! attaching and detaching, every event by name, and the timeline the
//! report shows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use snakepit::Event;
use tokio::sync::{broadcast, oneshot};

/// Timeline entries kept from telemetry, at most.
const TIMELINE_MAX: usize = 5000;

/// A worker exit, as the pool reported it.
#[derive(Debug, Clone)]
pub(super) struct Exit {
    pub(super) pid: u32,
    /// Its worker id (`...@agent` for a remote worker).
    pub(super) worker: String,
    pub(super) at: Instant,
    pub(super) workers_up: usize,
    pub(super) cause: &'static str,
}

/// A worker ready, as the pool reported it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ready {
    pub(super) at: Instant,
    pub(super) startup: Duration,
    pub(super) workers_up: usize,
}

/// What the telemetry said, with the instant each event arrived.
#[derive(Debug, Default)]
pub(super) struct EventLog {
    pub(super) counts: BTreeMap<&'static str, u64>,
    /// Events missed because the watcher fell behind.
    pub(super) lagged: u64,
    pub(super) exits: Vec<Exit>,
    pub(super) readies: Vec<Ready>,
    /// Agents attached: when, which, and how many times it attached before.
    pub(super) attached: Vec<(Instant, String, u32)>,
    /// Agents detached: when, which, and the cause.
    pub(super) detached: Vec<(Instant, String, &'static str)>,
    /// Events other than request starts and stops, with their fields.
    pub(super) timeline: Vec<(Instant, &'static str, String)>,
}

/// Records events until told to stop (then drains what is left). Runs on its
/// own thread so that a busy runtime does not make it fall behind.
pub(super) fn watch_events(
    mut rx: broadcast::Receiver<Event>,
    mut stop: oneshot::Receiver<()>,
) -> EventLog {
    let mut log = EventLog::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("event watcher runtime");
    rt.block_on(async {
        loop {
            tokio::select! {
                biased;
                ev = rx.recv() => match ev {
                    Ok(ev) => log.add(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => log.lagged += n,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = &mut stop => {
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => log.add(ev),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => log.lagged += n,
                            Err(_) => break,
                        }
                    }
                    break;
                }
            }
        }
    });
    log
}

impl EventLog {
    fn add(&mut self, ev: Event) {
        let at = Instant::now();
        *self.counts.entry(ev.name()).or_default() += 1;
        if !matches!(ev, Event::RequestStarted(_) | Event::RequestStopped(_))
            && self.timeline.len() < TIMELINE_MAX
        {
            self.timeline.push((at, ev.name(), format!("{ev:?}")));
        }
        match ev {
            Event::WorkerExited(e) => self.exits.push(Exit {
                pid: e.pid,
                worker: e.worker,
                at,
                workers_up: e.workers_up,
                cause: e.cause.as_str(),
            }),
            Event::WorkerReady(e) => self.readies.push(Ready {
                at,
                startup: e.startup,
                workers_up: e.workers_up,
            }),
            Event::AgentAttached(e) => self.attached.push((at, e.agent.id, e.agent.reconnects)),
            Event::AgentDetached(e) => self.detached.push((at, e.detached.agent, e.detached.cause)),
            _ => {}
        }
    }

    pub(super) fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}
