//! The typed events of the node agents' links (`crate::remote`), and what
//! they carry.

use std::collections::BTreeMap;

use metrics::gauge;
use tracing::{info, warn};

use super::{Event, Telemetry, metric};

/// A node agent attached to the host.
#[derive(Debug, Clone)]
pub struct AgentAttached {
    /// Who it is and what it serves.
    pub agent: AgentInfo,
}

impl AgentAttached {
    pub(crate) fn emit(self, t: &Telemetry) {
        let a = &self.agent;
        info!(agent = %a.id, hostname = %a.hostname, pools = ?a.pools, workers = a.workers,
            capacity = a.capacity, python = %a.python_version, gpus = a.gpus, labels = ?a.labels,
            reconnects = a.reconnects, "A node agent attached.");
        gauge!(metric::AGENTS_ATTACHED).increment(1.0);
        t.publish(|| Event::AgentAttached(self));
    }
}

/// A node agent's link ended; its workers ended with it.
#[derive(Debug, Clone)]
pub struct AgentDetached {
    /// Which agent, why, and what happened.
    pub detached: Detached,
}

impl AgentDetached {
    pub(crate) fn emit(self, t: &Telemetry) {
        let d = &self.detached;
        if matches!(d.cause, "closed" | "host_shutdown") {
            info!(agent = %d.agent, cause = d.cause, "{}.", d.detail);
        } else {
            warn!(agent = %d.agent, cause = d.cause, "{}.", d.detail);
        }
        gauge!(metric::AGENTS_ATTACHED).decrement(1.0);
        t.publish(|| Event::AgentDetached(self));
    }
}

/// An attached agent, as it introduced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Its id, unique among the host's agents.
    pub id: String,
    /// The machine (or pod) it runs on.
    pub hostname: String,
    /// The pools it serves.
    pub pools: Vec<String>,
    /// Workers it runs at most.
    pub workers: u32,
    /// Requests one of its workers runs at once.
    pub capacity: u32,
    /// Its workers' Python.
    pub python_version: String,
    /// GPUs it sees.
    pub gpus: u32,
    /// Labels given on its command line.
    pub labels: BTreeMap<String, String>,
    /// Times it attached before.
    pub reconnects: u32,
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The agent.
    pub agent: String,
    /// Bounded label: `closed`, `stream_error`, `timeout`, `replaced`,
    /// `protocol_violation`, `host_shutdown`.
    pub cause: &'static str,
    /// What happened, for people.
    pub detail: String,
}
