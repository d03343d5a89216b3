//! One agent's link: admitted on its `Register`, then run until it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{Stream, StreamExt};
use metrics::{Counter, counter, gauge};
use snakepit_proto::v1::{self, agent_message::Kind, host_message};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::stream::FrameCounter;
use super::{Agent, AgentInfo, Agents, Detached, RemoteEvent, message};
use crate::error::ExitStatus;
use crate::telemetry::{AgentAttached, AgentDetached, metric};

/// The link's timing and window, from the host's `[remote]` section.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// How often each side sends a heartbeat.
    pub heartbeat: Duration,
    /// Silence after which a side ends the link.
    pub liveness_timeout: Duration,
    /// Bytes of one worker's data in flight each way.
    pub window_bytes: u64,
    /// Largest frame of the worker protocol.
    pub max_frame_bytes: u64,
    /// The host's run.
    pub run_id: String,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(1000),
            liveness_timeout: Duration::from_millis(3000),
            window_bytes: 8 << 20,
            max_frame_bytes: snakepit_proto::framing::DEFAULT_MAX_FRAME_BYTES as u64,
            run_id: String::new(),
        }
    }
}

/// Why an agent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// An admitted agent whose link has not run yet.
pub struct Admission {
    agents: Agents,
    id: String,
    hostname: String,
    epoch: u64,
    config: LinkConfig,
    kick: Arc<Notify>,
    outbound: Option<mpsc::UnboundedReceiver<v1::HostMessage>>,
    to_agent: mpsc::UnboundedSender<v1::HostMessage>,
}

fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(super) fn frames_counter(agent: &str) -> Counter {
    counter!(metric::AGENT_FRAMES_RELAYED_TOTAL, "agent" => agent.to_string(), "direction" => "to_agent")
}

impl Agents {
    /// Admits the agent that sent `register`, replacing an earlier link of
    /// the same id; its first message (`Registered`) is queued on the
    /// admission's outbound stream.
    pub fn admit(&self, register: v1::Register, config: LinkConfig) -> Result<Admission, Refused> {
        if !valid_agent_id(&register.agent_id) {
            return Err(Refused(format!(
                "agent id `{}` must be 1 to 64 of A-Z a-z 0-9 _ . -",
                register.agent_id
            )));
        }
        if register.protocol_version != snakepit_proto::PROTOCOL_VERSION {
            return Err(Refused(format!(
                "agent `{}` relays worker protocol {}, the host speaks {}",
                register.agent_id,
                register.protocol_version,
                snakepit_proto::PROTOCOL_VERSION
            )));
        }
        if register.pools.is_empty() {
            return Err(Refused(format!(
                "agent `{}` serves no pool",
                register.agent_id
            )));
        }
        for pool in &register.pools {
            if !self.shared.pools.contains(pool) {
                let mut remote: Vec<_> = self.pools().collect();
                remote.sort_unstable();
                return Err(Refused(format!(
                    "agent `{}` serves pool `{pool}`, which is not a remote pool of this host \
                     (remote pools: {})",
                    register.agent_id,
                    if remote.is_empty() {
                        "none".to_string()
                    } else {
                        remote.join(", ")
                    }
                )));
            }
        }
        let info = AgentInfo {
            id: register.agent_id,
            hostname: register.hostname,
            pools: register.pools,
            workers: register.workers,
            capacity: register.capacity.max(1),
            python_version: register.python_version,
            gpus: register.gpus,
            labels: register.labels.into_iter().collect(),
            reconnects: register.reconnects,
        };
        let (to_agent, outbound) = mpsc::unbounded_channel();
        let _ = to_agent.send(message::host(host_message::Kind::Registered(
            v1::Registered {
                run_id: config.run_id.clone(),
                heartbeat_ms: config.heartbeat.as_millis() as u64,
                liveness_timeout_ms: config.liveness_timeout.as_millis() as u64,
                window_bytes: config.window_bytes,
                max_frame_bytes: config.max_frame_bytes,
            },
        )));
        let kick = Arc::new(Notify::new());
        let epoch = {
            let mut registry = self.shared.registry.lock().expect("registry lock");
            registry.next_epoch += 1;
            let epoch = registry.next_epoch;
            let agent = Agent {
                epoch,
                info: info.clone(),
                to_agent: to_agent.clone(),
                free: info.workers as usize,
                draining: false,
                workers: HashMap::new(),
                kick: kick.clone(),
                window: config.window_bytes,
            };
            if let Some(old) = registry.agents.insert(info.id.clone(), agent) {
                // The same agent again: its old link is dead or dying, and
                // its workers went with it.
                old.kick.notify_one();
                let detail = format!(
                    "agent `{}` on {} attached again on a new link; this one's workers are gone",
                    old.info.id, old.info.hostname
                );
                for route in old.workers.into_values() {
                    let _ = route.events.send(RemoteEvent::Exited {
                        status: ExitStatus::Unknown,
                        detail: detail.clone(),
                        lost: true,
                    });
                }
            }
            epoch
        };
        if info.reconnects > 0 {
            counter!(metric::AGENT_RECONNECTS_TOTAL, "agent" => info.id.clone()).increment(1);
        }
        gauge!(metric::AGENT_WORKERS, "agent" => info.id.clone()).set(0.0);
        let admission = Admission {
            agents: self.clone(),
            id: info.id.clone(),
            hostname: info.hostname.clone(),
            epoch,
            config,
            kick,
            outbound: Some(outbound),
            to_agent,
        };
        AgentAttached {
            agent: info.clone(),
        }
        .emit(&self.shared.telemetry);
        self.notify(&info.pools);
        Ok(admission)
    }
}

impl Admission {
    /// The agent's id.
    pub fn agent(&self) -> &str {
        &self.id
    }

    /// What goes to the agent, `Registered` first. Taken once.
    pub fn outbound(&mut self) -> mpsc::UnboundedReceiver<v1::HostMessage> {
        self.outbound
            .take()
            .expect("the outbound stream is taken once")
    }

    /// Runs the link on the agent's messages until it ends (the agent
    /// closed it, it failed, went silent past the liveness timeout, or
    /// `stop` resolved); then ends the agent's workers.
    pub async fn run<S, E>(self, mut inbound: S, stop: impl Future<Output = ()>) -> Detached
    where
        S: Stream<Item = Result<v1::AgentMessage, E>> + Unpin,
        E: std::fmt::Display,
    {
        let liveness = self.config.liveness_timeout;
        let mut tick = tokio::time::interval(self.config.heartbeat.min(liveness / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Fires at the liveness deadline of the last message (moved on
        // when messages came meanwhile): a silence is found on time, and a
        // message costs no timer.
        let silence = tokio::time::sleep_until(last_heard + liveness);
        tokio::pin!(silence);
        let mut seq = 0u64;
        let mut counters = Counters::new(&self.id);
        tokio::pin!(stop);
        let (cause, detail) = loop {
            tokio::select! {
                message = inbound.next() => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        if let Err(violation) = self.on_message(message, &mut counters) {
                            break ("protocol_violation", violation);
                        }
                    }
                    Some(Err(err)) => break ("stream_error", format!("its stream failed: {err}")),
                    None => break ("closed", "closed its stream".to_string()),
                },
                () = &mut silence => {
                    let silent = last_heard.elapsed();
                    if silent >= liveness {
                        break ("timeout", format!(
                            "sent nothing for {} ms (liveness timeout {} ms): partitioned or hung",
                            silent.as_millis(), liveness.as_millis()
                        ));
                    }
                    silence.as_mut().reset(last_heard + liveness);
                }
                _ = tick.tick() => {
                    seq += 1;
                    let beat = host_message::Kind::Heartbeat(v1::Heartbeat { seq, rss_bytes: HashMap::new() });
                    let _ = self.to_agent.send(message::host(beat));
                }
                _ = self.kick.notified() => break ("replaced", "attached again on a new link".to_string()),
                _ = &mut stop => break ("host_shutdown", "was detached: the host is shutting down".to_string()),
            }
        };
        self.detach(cause, detail)
    }

    fn on_message(&self, message: v1::AgentMessage, counters: &mut Counters) -> Result<(), String> {
        let Some(kind) = message.kind else {
            return Err("an empty message".into());
        };
        let agents = &self.agents;
        let mut registry = agents.shared.registry.lock().expect("registry lock");
        let Some(agent) = registry
            .agents
            .get_mut(&self.id)
            .filter(|a| a.epoch == self.epoch)
        else {
            return Ok(());
        };
        match kind {
            Kind::Register(_) => return Err("a second Register".into()),
            Kind::Started(started) => {
                if let Some(route) = agent.workers.get(&started.worker) {
                    let _ = route.events.send(RemoteEvent::Started { pid: started.pid });
                }
            }
            Kind::Data(data) => {
                let Some(route) = agent.workers.get(&data.worker) else {
                    // A worker that just ended: its last bytes have no reader.
                    return Ok(());
                };
                let len = data.data.len() as u64;
                let unread = route.unread.fetch_add(len, Ordering::Relaxed) + len;
                if unread > agent.window + self.config.max_frame_bytes {
                    return Err(format!(
                        "worker {} sent {unread} bytes beyond its window of {}",
                        data.worker, agent.window
                    ));
                }
                counters.relayed(&data.worker, &data.data);
                let _ = route.data.send(data.data);
            }
            Kind::Exited(exited) => {
                let Some(route) = agent.workers.remove(&exited.worker) else {
                    return Ok(());
                };
                counters.forget(&exited.worker);
                agent.free += 1;
                gauge!(metric::AGENT_WORKERS, "agent" => self.id.clone())
                    .set(agent.workers.len() as f64);
                let status = match exited.signal {
                    s if s > 0 => ExitStatus::Signal(s),
                    _ => ExitStatus::Code(exited.code),
                };
                let _ = route.events.send(RemoteEvent::Exited {
                    status,
                    detail: exited.detail,
                    lost: false,
                });
                let pools = agent.info.pools.clone();
                drop(registry);
                agents.notify(&pools);
            }
            Kind::Credit(credit) => {
                if let Some(route) = agent.workers.get(&credit.worker) {
                    let room = agent.window as usize
                        - route.window.available_permits().min(agent.window as usize);
                    route.window.add_permits((credit.bytes as usize).min(room));
                }
            }
            Kind::Heartbeat(beat) => {
                for (worker, rss) in beat.rss_bytes {
                    if let Some(route) = agent.workers.get(&worker) {
                        route.rss.store(rss, Ordering::Relaxed);
                    }
                }
            }
            Kind::Draining(draining) => {
                agent.draining = true;
                let grace = Duration::from_millis(draining.grace_ms);
                for route in agent.workers.values() {
                    let _ = route.events.send(RemoteEvent::Draining { grace });
                }
            }
        }
        Ok(())
    }

    /// Removes the agent (unless a newer link replaced it) and ends its
    /// workers with an exit that names it and the cause.
    fn detach(self, cause: &'static str, detail: String) -> Detached {
        let mut lost = Vec::new();
        let mut pools = Vec::new();
        {
            let mut registry = self.agents.shared.registry.lock().expect("registry lock");
            if registry
                .agents
                .get(&self.id)
                .is_some_and(|a| a.epoch == self.epoch)
            {
                let agent = registry.agents.remove(&self.id).expect("checked above");
                pools = agent.info.pools.clone();
                lost.extend(agent.workers.into_values());
            }
        }
        let what = format!("agent `{}` on {} {detail}", self.id, self.hostname);
        for route in &lost {
            let _ = route.events.send(RemoteEvent::Exited {
                status: ExitStatus::Unknown,
                detail: what.clone(),
                lost: true,
            });
        }
        drop(lost);
        gauge!(metric::AGENT_WORKERS, "agent" => self.id.clone()).set(0.0);
        counter!(metric::AGENT_DISCONNECTS_TOTAL, "agent" => self.id.clone(), "cause" => cause)
            .increment(1);
        let detached = Detached {
            agent: self.id.clone(),
            cause,
            detail: what,
        };
        AgentDetached {
            detached: detached.clone(),
        }
        .emit(&self.agents.shared.telemetry);
        if !pools.is_empty() {
            self.agents.notify(&pools);
        }
        detached
    }
}

/// Frames relayed from the agent, counted per worker stream.
struct Counters {
    frames: Counter,
    streams: HashMap<String, FrameCounter>,
}

impl Counters {
    fn new(agent: &str) -> Self {
        Self {
            frames: counter!(metric::AGENT_FRAMES_RELAYED_TOTAL, "agent" => agent.to_string(), "direction" => "from_agent"),
            streams: HashMap::new(),
        }
    }

    fn relayed(&mut self, worker: &str, data: &[u8]) {
        let stream = match self.streams.get_mut(worker) {
            Some(s) => s,
            None => self.streams.entry(worker.to_string()).or_default(),
        };
        self.frames.increment(stream.feed(data));
    }

    fn forget(&mut self, worker: &str) {
        self.streams.remove(worker);
    }
}
