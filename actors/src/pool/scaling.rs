//! What an autoscaled pool reports of its load to its policy
//! (`autoscale.rs`) at each tick, and the event of a decision. The pool
//! acts on the decision (`pool.rs`, through `lifecycle.rs`).

use std::time::Instant;

use super::autoscale::{Decision, Load, Reason};
use super::{PoolState, active_slots};
use crate::telemetry::PoolScaled;

/// What the pool's policy decides now, with the target it decided from;
/// `None` for a pool that does not autoscale (or is shutting down).
pub(super) fn decide(state: &mut PoolState) -> Option<(usize, Decision<usize>)> {
    if !state.accepting {
        return None;
    }
    let load = load(state);
    let scaler = state.autoscaler.as_mut()?;
    Some((
        load.target,
        scaler.decide(tokio::time::Instant::now(), &load),
    ))
}

/// Reports a decision taken: from `from` workers to the target now.
pub(super) fn scaled(state: &PoolState, from: usize, reason: Reason) {
    PoolScaled {
        pool: state.config.name.clone(),
        from,
        to: active_slots(state),
        reason: reason.as_str(),
    }
    .emit(&state.telemetry);
}

/// The pool's load as the policy reads it; workers are named by slot.
fn load(state: &PoolState) -> Load<usize> {
    let now = Instant::now();
    let strict = state.config.affinity.is_strict();
    let mut load = Load {
        target: 0,
        starting: 0,
        busy: 0,
        // In units of work for a worker: a queued batch is one, and so is
        // each batch still gathering.
        queued: state.queue.len() + state.batcher.batches(),
        oldest_wait: state.queue.oldest().map(|t| now.duration_since(t)),
        capacity: 1,
        failing: state.restarts.is_degraded(),
        idle: Vec::new(),
    };
    for (slot, s) in state.slots.iter().enumerate() {
        if s.parked {
            continue;
        }
        load.target += 1;
        load.failing |= s.failures > 0;
        let Some(m) = s.current.as_ref().filter(|m| m.is_ready() && !m.closed) else {
            load.starting += 1;
            continue;
        };
        if let Some(link) = m.link() {
            load.capacity = link.capacity as usize;
        }
        if m.in_flight > 0 {
            load.busy += 1;
        } else if s.successor.is_none()
            && m.recycle.is_none()
            && !(strict && state.bindings.on(m.key) > 0)
        {
            // Neither busy nor holding a strict session: it may go.
            load.idle.push((slot, now.duration_since(m.last_active)));
        }
    }
    load
}
