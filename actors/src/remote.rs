//! Remote workers: the host's end of the node agents' links
//! (`proto/snakepit/v1/agent.proto`).
//!
//! An agent attaches with `Register` and [`Agents::attach`] runs its link
//! until it ends. Pools declared `remote = true` place their workers on
//! attached agents ([`Agents::place`]): the agent starts the process, and the
//! worker actor gets a [`RemoteProcess`] — a byte stream that its ordinary
//! connection reads and writes (the frames go to the agent as `WorkerData`
//! tagged with the worker's id), the process's events (started, exited,
//! draining), and a way to stop it.
//!
//! When the link ends — the agent closed it, the stream failed, or nothing
//! arrived within the liveness timeout (a partition) — every worker of the
//! agent ends with an exit that names the agent and the cause; the worker
//! actors fail or retry their requests as for a local crash.
//!
//! The registry knows pools only by name: it calls the watchers a pool
//! registered ([`Agents::watch`]) when seats appear, and nothing else.

mod link;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use snakepit_proto::v1;
use tokio::sync::{Notify, Semaphore, mpsc};

pub use crate::telemetry::{AgentInfo, Detached};
pub use link::{Admission, LinkConfig, Refused};
pub(crate) use stream::{RemoteRead, RemoteWrite};

use crate::error::ExitStatus;
use crate::telemetry::Telemetry;

/// What a remote worker's actor hears of its process.
#[derive(Debug)]
pub(crate) enum RemoteEvent {
    /// The agent started the process.
    Started { pid: u32 },
    /// The agent is draining: give the worker no new work.
    Draining { grace: Duration },
    /// The process ended, or the link to its agent did (`lost`).
    Exited {
        status: ExitStatus,
        detail: String,
        lost: bool,
    },
}

/// An agent in [`Agents::list`]: who it is and what it runs now.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    /// As it introduced itself.
    pub info: AgentInfo,
    /// Its workers now.
    pub workers: usize,
    /// Whether it is draining.
    pub draining: bool,
}

/// The host's registry of attached agents. Cheap to clone.
#[derive(Clone)]
pub struct Agents {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    /// The host's remote pools, by name.
    pools: HashSet<String>,
    telemetry: Telemetry,
}

type Watcher = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Registry {
    agents: HashMap<String, Agent>,
    watchers: HashMap<String, Vec<Watcher>>,
    next_epoch: u64,
}

/// One attached agent.
struct Agent {
    /// Which link of this agent id it is (a reconnect replaces the entry).
    epoch: u64,
    info: AgentInfo,
    to_agent: mpsc::UnboundedSender<v1::HostMessage>,
    /// Seats not taken by a worker.
    free: usize,
    draining: bool,
    workers: HashMap<String, Route>,
    /// Ends the link (another link of the same id arrived).
    kick: Arc<Notify>,
    window: u64,
}

/// Where one remote worker's traffic goes on the host.
struct Route {
    /// Agent → host bytes, read by the worker's connection.
    data: mpsc::UnboundedSender<Bytes>,
    /// Bytes handed to `data` and not yet read back (credited).
    unread: Arc<AtomicU64>,
    /// Host → agent window.
    window: Arc<Semaphore>,
    events: mpsc::UnboundedSender<RemoteEvent>,
    rss: Arc<AtomicU64>,
}

/// A worker process on an agent, as its worker actor holds it.
pub(crate) struct RemoteProcess {
    pub read: RemoteRead,
    pub write: RemoteWrite,
    pub events: mpsc::UnboundedReceiver<RemoteEvent>,
    pub control: RemoteControl,
}

/// Stops a remote worker's process, and reads what its agent reports of it.
pub(crate) struct RemoteControl {
    agents: Agents,
    agent: String,
    epoch: u64,
    worker: String,
    rss: Arc<AtomicU64>,
}

impl RemoteControl {
    /// Asks its agent to end the process: at once (`kill`), or after
    /// `grace` when it has not ended by itself by then.
    pub fn stop(&self, kill: bool, grace: Duration) {
        let registry = self.agents.shared.registry.lock().expect("registry lock");
        if let Some(agent) = registry.agents.get(&self.agent)
            && agent.epoch == self.epoch
        {
            let _ = agent
                .to_agent
                .send(message::stop(&self.worker, kill, grace));
        }
    }

    /// Resident memory the agent last reported, in bytes.
    pub fn resident_bytes(&self) -> Option<u64> {
        match self.rss.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

impl Agents {
    /// A registry for the host's remote pools.
    pub fn new(pools: impl IntoIterator<Item = String>, telemetry: Telemetry) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry::default()),
                pools: pools.into_iter().collect(),
                telemetry,
            }),
        }
    }

    /// The host's remote pools.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.shared.pools.iter().map(String::as_str)
    }

    /// The agents attached now, by id.
    pub fn list(&self) -> Vec<AgentStatus> {
        let registry = self.shared.registry.lock().expect("registry lock");
        let mut list: Vec<_> = registry
            .agents
            .values()
            .map(|a| AgentStatus {
                info: a.info.clone(),
                workers: a.workers.len(),
                draining: a.draining,
            })
            .collect();
        list.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        list
    }

    /// Seats free for `pool` now, on agents that are not draining.
    pub(crate) fn free_seats(&self, pool: &str) -> usize {
        let registry = self.shared.registry.lock().expect("registry lock");
        registry
            .agents
            .values()
            .filter(|a| !a.draining && a.info.pools.iter().any(|p| p == pool))
            .map(|a| a.free)
            .sum()
    }

    /// Calls `watcher` whenever seats for `pool` may have appeared (an
    /// agent attached, or a worker of one ended).
    pub(crate) fn watch(&self, pool: &str, watcher: impl Fn() + Send + Sync + 'static) {
        let mut registry = self.shared.registry.lock().expect("registry lock");
        registry
            .watchers
            .entry(pool.to_string())
            .or_default()
            .push(Arc::new(watcher));
    }

    /// Starts a worker of `pool` on the attached agent with the most free
    /// seats; `name` makes the worker's id from the agent's. `None` when no
    /// agent has a seat for it.
    pub(crate) fn place(
        &self,
        pool: &str,
        name: impl FnOnce(&str) -> String,
    ) -> Option<(String, RemoteProcess)> {
        let mut registry = self.shared.registry.lock().expect("registry lock");
        // Spread the pool: the agent running fewest of its workers, then the
        // one with most free seats.
        let prefix = format!("{pool}-");
        let of_pool = |a: &Agent| a.workers.keys().filter(|w| w.starts_with(&prefix)).count();
        let agent = registry
            .agents
            .values_mut()
            .filter(|a| !a.draining && a.free > 0 && a.info.pools.iter().any(|p| p == pool))
            .min_by(|a, b| {
                of_pool(a)
                    .cmp(&of_pool(b))
                    .then_with(|| b.free.cmp(&a.free))
                    .then_with(|| a.info.id.cmp(&b.info.id))
            })?;
        let worker = name(&agent.info.id);
        if agent.workers.contains_key(&worker) {
            tracing::error!(%worker, "A remote worker id was placed twice.");
            return None;
        }
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let window = Arc::new(Semaphore::new(agent.window as usize));
        let unread = Arc::new(AtomicU64::new(0));
        let rss = Arc::new(AtomicU64::new(0));
        let worker_tag: Arc<str> = Arc::from(worker.as_str());
        let frames = link::frames_counter(&agent.info.id);
        if agent.to_agent.send(message::spawn(&worker, pool)).is_err() {
            return None;
        }
        agent.free -= 1;
        agent.workers.insert(
            worker.clone(),
            Route {
                data: data_tx,
                unread: unread.clone(),
                window: window.clone(),
                events: events_tx,
                rss: rss.clone(),
            },
        );
        metrics::gauge!(crate::telemetry::metric::AGENT_WORKERS, "agent" => agent.info.id.clone())
            .set(agent.workers.len() as f64);
        let process = RemoteProcess {
            read: RemoteRead::new(
                data_rx,
                unread,
                worker_tag.clone(),
                agent.to_agent.clone(),
                agent.window,
            ),
            write: RemoteWrite::new(
                worker_tag,
                agent.to_agent.clone(),
                window,
                agent.window,
                frames,
            ),
            events: events_rx,
            control: RemoteControl {
                agents: self.clone(),
                agent: agent.info.id.clone(),
                epoch: agent.epoch,
                worker: worker.clone(),
                rss,
            },
        };
        Some((worker, process))
    }

    fn notify(&self, pools: &[String]) {
        let watchers: Vec<Watcher> = {
            let registry = self.shared.registry.lock().expect("registry lock");
            pools
                .iter()
                .filter_map(|p| registry.watchers.get(p))
                .flatten()
                .cloned()
                .collect()
        };
        for watcher in watchers {
            watcher();
        }
    }
}

/// Builds the host's messages.
mod message {
    use std::time::Duration;

    use snakepit_proto::v1::{self, host_message::Kind};

    pub fn spawn(worker: &str, pool: &str) -> v1::HostMessage {
        host(Kind::Spawn(v1::SpawnWorker {
            worker: worker.to_string(),
            pool: pool.to_string(),
        }))
    }

    pub fn stop(worker: &str, kill: bool, grace: Duration) -> v1::HostMessage {
        host(Kind::Stop(v1::StopWorker {
            worker: worker.to_string(),
            kill,
            grace_ms: grace.as_millis() as u64,
        }))
    }

    pub fn host(kind: Kind) -> v1::HostMessage {
        v1::HostMessage { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests;
