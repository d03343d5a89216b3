//! The typed events of the node agents' links (`crate::remote`).

use metrics::gauge;
use tracing::{info, warn};

use super::{Event, Telemetry, metric};
use crate::remote::{AgentInfo, Detached};

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
