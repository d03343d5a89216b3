//! A pool's workers from start to end: starting a slot's worker (and
//! restarting it after a backoff when it dies), recycling one by starting a
//! successor beside it and draining it once the successor is ready, and the
//! pool's shutdown. Functions of the pool actor's handlers (`pool.rs`), on
//! its state; the messages they react to come from workers (`WorkerReady`,
//! `WorkerGone`, `RecycleDue`), the pool's own timers and its caller
//! (`Shutdown`).

use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use rand::Rng;

use super::restarts::jitter;
use super::slots::{Member, MemberState, Role, WorkerId};
use super::{
    PoolMessage, PoolState, Request, WorkerGone, WorkerKey, WorkerLink, degraded_error,
    enqueue_retry, fail_waiting, pump, workers_up,
};
use crate::error::{Error, ExitStatus};
use crate::telemetry::{
    ExitCause, PoolDegraded, PoolRecovered, RecycleReason, RequestRetried, WorkerExited,
    WorkerReady, WorkerRecycled, WorkerRestarting, WorkerStartFailed,
};
use crate::worker::{Worker, WorkerArgs, WorkerMessage};

/// Extra time a draining worker's Python side gets over the host's drain
/// timeout, so that the host's kill (and its typed errors) comes first.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

pub(super) async fn start_member(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    slot: usize,
    role: Role,
) {
    let generation = state.slots[slot].generation + 1;
    let key = WorkerKey { slot, generation };
    let mut id = WorkerId {
        pool: state.config.name.clone(),
        slot,
        generation,
        agent: None,
    };
    let remote = match &state.agents {
        None => None,
        Some(agents) => {
            let placed = agents.place(&state.config.name, |agent| {
                id.agent = Some(agent.to_string());
                id.to_string()
            });
            match placed {
                Some((_, process)) => Some(process),
                None => {
                    // No agent has a seat: the slot waits for one.
                    state.slots[slot].awaiting_agent = role == Role::Current;
                    return;
                }
            }
        }
    };
    state.slots[slot].awaiting_agent = false;
    state.slots[slot].generation = generation;
    let id = id.to_string();
    let args = WorkerArgs {
        remote,
        host_calls: state.host_calls.clone(),
        key,
        id: id.clone(),
        config: state.config.clone(),
        python: state.python.clone(),
        run_id: state.run_id.clone(),
        pool: myself.clone(),
        telemetry: state.telemetry.clone(),
        arena: state.arena.clone(),
    };
    match Actor::spawn_linked(None, Worker, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            state.live.insert(actor.get_id());
            let member = Member::starting(key, id, actor);
            let s = &mut state.slots[slot];
            match role {
                Role::Successor => s.successor = Some(member),
                _ => s.current = Some(member),
            }
        }
        Err(err) => {
            let reason = match &err {
                ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                other => other.to_string(),
            };
            let error = Error::WorkerStartFailed {
                pool: state.config.name.clone(),
                reason,
                python: None,
            };
            WorkerStartFailed {
                pool: state.config.name.clone(),
                worker: id,
                reason: error.to_string(),
            }
            .emit(&state.telemetry);
            on_start_failed(state, &error);
            if role == Role::Current && state.accepting {
                schedule_restart(myself, state, slot);
            } else {
                note_failed_successor(state, slot);
            }
        }
    }
}

/// A remote worker's agent drains it: it leaves the slot (no new work) and
/// is told to finish what it runs within `grace`; the slot is filled on
/// another agent when one has a seat.
pub(super) async fn retire(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    grace: Duration,
) {
    if !drain_current(myself, state, key, grace, ExitCause::Drained) {
        return;
    }
    let slot = &mut state.slots[key.slot];
    if let Some(successor) = slot.successor.take() {
        slot.current = Some(successor);
    } else if state.accepting {
        start_member(myself, state, key.slot, Role::Current).await;
    }
    pump(myself, state);
}

/// Moves worker `key`, its slot's current one, to draining: it takes no
/// new requests and is told to finish what it runs within `grace` (at most
/// the drain timeout), then to exit with `cause`. Whether it was there.
fn drain_current(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    grace: Duration,
    cause: ExitCause,
) -> bool {
    let Some(slot) = state.slots.get_mut(key.slot) else {
        return false;
    };
    let Some(mut member) = slot.current.take_if(|m| m.key == key) else {
        return false;
    };
    if let MemberState::Ready(link) = std::mem::replace(&mut member.state, MemberState::Starting) {
        member.state = MemberState::Draining(link);
    }
    let drain = grace.min(state.config.drain_timeout());
    let _ = member.actor.cast(WorkerMessage::Stop {
        grace: drain,
        cause,
        reply: None,
    });
    myself.send_after(drain + DRAIN_SLACK, move || PoolMessage::DrainDeadline {
        key,
    });
    slot.draining.push(member);
    true
}

/// Scales slot `slot` down: parks it (nothing starts there until the pool
/// scales up) and drains its worker, which has nothing in flight.
pub(super) fn park(myself: &ActorRef<PoolMessage>, state: &mut PoolState, slot: usize) {
    state.slots[slot].parked = true;
    if let Some(key) = state.slots[slot].current.as_ref().map(|m| m.key) {
        drain_current(
            myself,
            state,
            key,
            state.config.drain_timeout(),
            ExitCause::ScaledDown,
        );
    }
}

/// Scales slot `slot` up: starts a worker in it.
pub(super) async fn unpark(myself: &ActorRef<PoolMessage>, state: &mut PoolState, slot: usize) {
    let s = &mut state.slots[slot];
    s.parked = false;
    s.failures = 0;
    if s.current.is_none() && s.successor.is_none() {
        start_member(myself, state, slot, Role::Current).await;
    }
}

/// Starts a successor for the slot's current worker; the swap happens when
/// the successor is ready (`on_ready`).
pub(super) async fn recycle(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    reason: RecycleReason,
) {
    if !state.accepting {
        return;
    }
    let slot = &mut state.slots[key.slot];
    let Some(current) = slot.current.as_mut() else {
        return;
    };
    let due = current.key == key
        && current.recycle.is_none()
        && current.is_ready()
        && slot.successor.is_none()
        && slot.recycle_not_before.is_none_or(|t| Instant::now() >= t);
    if !due {
        return;
    }
    current.recycle = Some(reason);
    start_member(myself, state, key.slot, Role::Successor).await;
    let slot = &mut state.slots[key.slot];
    if slot.successor.is_none()
        && let Some(current) = slot.current.as_mut()
    {
        // A remote pool with no free seat for the successor: try again at
        // the worker's next tick.
        current.recycle = None;
    }
}

pub(super) fn on_ready(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    link: WorkerLink,
) {
    let Some(slot) = state.slots.get_mut(key.slot) else {
        return;
    };
    state.tools.update(&link.hello);
    let pid = link.pid;
    let startup = link.startup;
    let python_version = link.hello.python_version.clone();
    let capacity = link.capacity;
    let mut retired = None;
    match slot.role_of(key.generation) {
        Some(Role::Successor) => {
            let mut successor = slot.successor.take().expect("role says successor");
            successor.state = MemberState::Ready(link);
            if let Some(mut old) = slot.current.take() {
                let reason = old.recycle.unwrap_or(RecycleReason::Age);
                if let MemberState::Ready(l) =
                    std::mem::replace(&mut old.state, MemberState::Starting)
                {
                    old.state = MemberState::Draining(l);
                }
                retired = Some((old, reason));
            }
            slot.current = Some(successor);
        }
        Some(Role::Current) => {
            let current = slot.current.as_mut().expect("role says current");
            current.state = MemberState::Ready(link);
        }
        _ => return,
    }
    slot.failures = 0;
    slot.recycle_not_before = None;
    let worker = slot
        .current
        .as_ref()
        .map(|m| m.id.clone())
        .unwrap_or_default();
    if let Some((old, reason)) = retired {
        WorkerRecycled {
            pool: state.config.name.clone(),
            worker: old.id.clone(),
            pid: old.link().map_or(0, |l| l.pid),
            reason,
            in_flight: old.in_flight,
            completed: old.completed,
        }
        .emit(&state.telemetry);
        let drain = state.config.drain_timeout();
        let _ = old.actor.cast(WorkerMessage::Stop {
            grace: drain + DRAIN_SLACK,
            cause: ExitCause::Recycled,
            reply: None,
        });
        let old_key = old.key;
        myself.send_after(drain, move || PoolMessage::DrainDeadline { key: old_key });
        state.slots[key.slot].draining.push(old);
    }
    let workers_up = workers_up(state);
    WorkerReady {
        pool: state.config.name.clone(),
        worker,
        pid,
        startup,
        python_version,
        capacity,
        workers_up,
    }
    .emit(&state.telemetry);
    if !state.accepting {
        // Became ready during shutdown: stop it right away.
        maybe_stop_workers(state);
        return;
    }
    if state.booting && workers_up >= super::active_slots(state) {
        state.booting = false;
        for waiter in state.ready_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }
    check_recovery(myself, state);
    pump(myself, state);
}

pub(super) fn check_recovery(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    if !state.restarts.is_degraded() {
        return;
    }
    let full = workers_up(state) >= super::active_slots(state);
    if let Some(degraded_for) = state
        .restarts
        .try_recover(tokio::time::Instant::now(), full)
    {
        PoolRecovered {
            pool: state.config.name.clone(),
            degraded_for,
        }
        .emit(&state.telemetry);
        return;
    }
    if full
        && !state.health_check_scheduled
        && let Some(at) = state.restarts.next_expiry()
    {
        state.health_check_scheduled = true;
        let wait =
            at.saturating_duration_since(tokio::time::Instant::now()) + Duration::from_millis(1);
        myself.send_after(wait, || PoolMessage::HealthCheck);
    }
}

pub(super) fn on_gone(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    gone: WorkerGone,
) {
    let Some(slot) = state.slots.get_mut(key.slot) else {
        return;
    };
    let Some((member, role)) = slot.take(key.generation) else {
        return;
    };
    state.assigned.retain(|_, k| *k != key);
    let assigned = &state.assigned;
    state
        .children
        .retain(|parent, _| assigned.contains_key(parent));
    WorkerExited {
        pool: state.config.name.clone(),
        worker: member.id.clone(),
        pid: gone.pid,
        status: gone.status,
        cause: gone.cause,
        failed_requests: gone.failed_requests,
        workers_up: workers_up(state),
    }
    .emit(&state.telemetry);

    if let Some(err) = &gone.startup_error {
        WorkerStartFailed {
            pool: state.config.name.clone(),
            worker: member.id.clone(),
            reason: err.to_string(),
        }
        .emit(&state.telemetry);
        on_start_failed(state, err);
    }

    if gone.cause == ExitCause::AgentLost
        && let Some((_, agent)) = member.id.rsplit_once('@')
    {
        // Its agent's other workers are gone too, the pool just does not
        // know yet: no request (least of all a retry) may go to them.
        let on_agent = format!("@{agent}");
        for slot in &mut state.slots {
            let members = slot.current.iter_mut().chain(slot.successor.iter_mut());
            for m in members.filter(|m| m.id.ends_with(&on_agent)) {
                m.suspect = true;
            }
        }
    }
    for request in gone.retry {
        requeue(myself, state, Box::new(request), &member.id);
    }

    if !state.accepting {
        // Its requests are settled: the others may stop now.
        maybe_stop_workers(state);
        maybe_finish_shutdown(myself, state);
        return;
    }
    // A remote worker whose agent went away did nothing wrong: its slot
    // is filled again at once (on an agent with a seat, or when one comes),
    // with no backoff and no count against the restart policy.
    let not_its_fault = matches!(gone.cause, ExitCause::AgentLost | ExitCause::Drained);
    match role {
        Role::Current if state.slots[key.slot].successor.is_none() && not_its_fault => {
            state.slots[key.slot].awaiting_agent = true;
            let _ = myself.cast(PoolMessage::AgentsChanged);
        }
        Role::Current if state.slots[key.slot].successor.is_none() => {
            schedule_restart(myself, state, key.slot)
        }
        // Its successor is already on the way.
        Role::Current => {}
        Role::Successor => {
            note_failed_successor(state, key.slot);
            if state.slots[key.slot].current.is_none() {
                schedule_restart(myself, state, key.slot);
            }
        }
        Role::Draining => {}
    }
    if let Some(err) = degraded_error(state) {
        fail_waiting(state, &err);
    }
    pump(myself, state);
}

/// A successor failed to start: the current worker keeps serving, and the
/// recycling is tried again after the slot's backoff.
pub(super) fn note_failed_successor(state: &mut PoolState, slot: usize) {
    let backoff = state.restarts.backoff(state.slots[slot].failures);
    let s = &mut state.slots[slot];
    s.failures += 1;
    s.recycle_not_before = Some(Instant::now() + backoff);
    if let Some(current) = &mut s.current {
        current.recycle = None;
    }
}

pub(super) fn on_start_failed(state: &mut PoolState, err: &Error) {
    state.last_start_error = Some(err.to_string());
    if state.booting {
        // The first start of a pool failing is the caller's problem to see.
        state.start_error.get_or_insert_with(|| err.clone());
        for waiter in state.ready_waiters.drain(..) {
            let _ = waiter.send(Err(err.clone()));
        }
    }
}

/// An idempotent request whose worker died runs again, ahead of the queue.
pub(super) fn requeue(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    request: Box<Request>,
    failed_worker: &str,
) {
    if request.is_abandoned() {
        return;
    }
    if !state.accepting {
        request.fail(Error::ShuttingDown);
        return;
    }
    RequestRetried {
        pool: state.config.name.clone(),
        tool: request.tool.to_string(),
        failed_worker: failed_worker.to_string(),
    }
    .emit(&state.telemetry);
    // `Retry::into_request` made it its last attempt, enqueued now.
    enqueue_retry(myself, state, request);
}

pub(super) fn schedule_restart(myself: &ActorRef<PoolMessage>, state: &mut PoolState, slot: usize) {
    let now = tokio::time::Instant::now();
    if state.restarts.record(now) {
        PoolDegraded {
            pool: state.config.name.clone(),
            recent_restarts: state.restarts.recent(now),
            window: state.restarts.window(),
            last_error: state.last_start_error.clone(),
        }
        .emit(&state.telemetry);
    }
    let failures = state.slots[slot].failures;
    let backoff = jitter(state.restarts.backoff(failures), rand::rng().random())
        .min(state.restarts.backoff_cap());
    state.slots[slot].failures += 1;
    WorkerRestarting {
        pool: state.config.name.clone(),
        worker: format!("{}-{slot}", state.config.name),
        backoff,
        recent_restarts: state.restarts.recent(now),
    }
    .emit(&state.telemetry);
    myself.send_after(backoff, move || PoolMessage::Restart { slot });
}

/// During shutdown, once nothing is in flight, asks every worker to stop.
pub(super) fn maybe_stop_workers(state: &mut PoolState) {
    if state.accepting || !state.assigned.is_empty() {
        return;
    }
    let grace = state.config.shutdown_grace();
    for slot in &state.slots {
        for member in slot.members() {
            let _ = member.actor.cast(WorkerMessage::Stop {
                grace,
                cause: ExitCause::Shutdown,
                reply: None,
            });
        }
    }
}

pub(super) fn maybe_finish_shutdown(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let members = state.slots.iter().any(|s| s.members().next().is_some());
    if !state.accepting && !members && state.live.is_empty() {
        state.queue_depth.set(0.0);
        for reply in state.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
        myself.stop(None);
    }
}

/// Stops taking calls (queued ones fail with `ShuttingDown`), gives in-flight
/// ones until `deadline`, then stops the workers; `reply` is answered once
/// every worker is gone.
pub(super) fn shutdown(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    deadline: Instant,
    reply: RpcReplyPort<()>,
) {
    state.shutdown_replies.push(reply);
    if state.accepting {
        state.accepting = false;
        fail_waiting(state, &Error::ShuttingDown);
        let wait = deadline.saturating_duration_since(Instant::now());
        myself.send_after(wait, || PoolMessage::ShutdownDeadline);
    }
    maybe_stop_workers(state);
    maybe_finish_shutdown(myself, state);
}

/// The shutdown deadline passed: requests still in flight no longer hold
/// the workers back.
pub(super) fn shutdown_deadline(state: &mut PoolState) {
    state.assigned.clear();
    for slot in &mut state.slots {
        if let Some(m) = &mut slot.current {
            m.in_flight = 0;
        }
        slot.draining.iter_mut().for_each(|m| m.in_flight = 0);
    }
    maybe_stop_workers(state);
}

/// A worker actor failed instead of reporting its end with `WorkerGone` (a
/// bug): treated like a crash of its process.
pub(super) fn on_actor_failed(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    actor: ActorId,
    err: &ActorProcessingErr,
) {
    let found = state
        .slots
        .iter()
        .flat_map(|s| s.members())
        .find(|m| m.actor.get_id() == actor)
        .map(|m| m.key);
    if let Some(key) = found {
        tracing::error!(pool = %state.config.name, error = %err, "Worker actor failed.");
        let gone = WorkerGone {
            pid: 0,
            status: ExitStatus::Unknown,
            cause: ExitCause::Crashed,
            failed_requests: 0,
            startup_error: None,
            retry: Vec::new(),
        };
        on_gone(myself, state, key, gone);
    }
}
