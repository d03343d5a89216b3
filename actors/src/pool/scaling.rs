//! An autoscaled pool acting on its policy (`autoscale.rs`): what it
//! reports of its load at each tick, and starting or parking workers as
//! the policy decides.

use std::time::Instant;

use ractor::ActorRef;

use super::autoscale::{Decision, Load, Reason};
use super::{PoolMessage, PoolState, active_slots, lifecycle, pump};
use crate::telemetry::PoolScaled;

/// Looks at the pool's load and scales it if its policy says so.
pub(super) async fn autoscale(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    if !state.accepting || state.autoscaler.is_none() {
        return;
    }
    let load = load(state);
    let scaler = state.autoscaler.as_mut().expect("autoscaled");
    let decision = scaler.decide(tokio::time::Instant::now(), &load);
    let from = load.target;
    match decision {
        Decision::Hold => {}
        Decision::Up { to, reason } => {
            let parked: Vec<usize> = (0..state.slots.len())
                .filter(|&s| state.slots[s].parked)
                .take(to.saturating_sub(from))
                .collect();
            for slot in parked {
                lifecycle::unpark(myself, state, slot).await;
            }
            scaled(state, from, reason);
        }
        Decision::Down { workers, .. } => {
            for slot in workers {
                lifecycle::park(myself, state, slot);
            }
            scaled(state, from, Reason::Idle);
            pump(myself, state);
        }
    }
}

fn scaled(state: &PoolState, from: usize, reason: Reason) {
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
