//! The pool actor: one per configured pool. Owns the queue, routes requests to
//! the least-loaded ready worker, and restarts workers that die.
//!
//! Messages come from callers (through [`PoolHandle`](crate::PoolHandle)),
//! from its workers (`WorkerReady`, `WorkerGone`), from connection reader tasks
//! (`Done`) and from its own timers (`Restart`, `SweepQueue`).
//!
//! Routing: a request goes to the ready worker with the fewest requests in
//! flight, as long as that is below its capacity plus `pipeline_depth`;
//! otherwise it waits in a bounded FIFO queue (full → `PoolSaturated`, waited
//! past `queue_timeout` → `QueueTimeout`). Pipelining a few requests beyond a
//! worker's capacity keeps it from idling between two of them.

mod messages;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use messages::Request;
pub use messages::{
    PoolMessage, PoolStatus, RequestBox, WorkerGone, WorkerKey, WorkerLink, WorkerStatus,
};
use metrics::Gauge;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rand::Rng;
use snakepit_proto::v1::frame::Kind;

use crate::config::PoolConfig;
use crate::connection::{self, Pending};
use crate::error::{Error, ExitStatus};
use crate::telemetry::{
    ExitCause, QueueSaturated, QueueTimedOut, RequestStarted, Telemetry, WorkerExited, WorkerReady,
    WorkerRestarting, WorkerStartFailed, metric,
};
use crate::worker::{Worker, WorkerArgs, WorkerMessage};

/// The pool actor.
pub struct Pool;

/// What a pool is started with.
pub struct PoolArgs {
    pub(crate) config: Arc<PoolConfig>,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    pub(crate) telemetry: Telemetry,
}

enum SlotState {
    /// Process spawned, no `Hello` yet.
    Starting,
    Ready(WorkerLink),
    /// Gone; a restart is scheduled (or we are shutting down).
    Down,
}

struct Slot {
    generation: u64,
    id: String,
    state: SlotState,
    actor: Option<ActorRef<WorkerMessage>>,
    in_flight: u32,
    completed: u64,
    /// Failures since this slot was last ready, for the backoff.
    failures: u32,
}

impl Slot {
    fn limit(&self, pipeline_depth: u32) -> Option<u32> {
        match &self.state {
            SlotState::Ready(link) => Some(link.capacity + pipeline_depth),
            _ => None,
        }
    }
}

/// The pool's state, built in `pre_start`.
pub struct PoolState {
    config: Arc<PoolConfig>,
    python: PathBuf,
    run_id: String,
    telemetry: Telemetry,
    slots: Vec<Slot>,
    queue: VecDeque<Box<Request>>,
    assigned: HashMap<u64, usize>,
    accepting: bool,
    /// Until every worker has been ready once.
    booting: bool,
    ready_waiters: Vec<RpcReplyPort<Result<(), Error>>>,
    start_error: Option<Error>,
    sweep_scheduled: bool,
    shutdown_replies: Vec<RpcReplyPort<()>>,
    queue_depth: Gauge,
    restarts: VecDeque<Instant>,
}

impl Actor for Pool {
    type Msg = PoolMessage;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PoolMessage>,
        args: PoolArgs,
    ) -> Result<PoolState, ActorProcessingErr> {
        let name = args.config.name.clone();
        let slots = (0..args.config.size)
            .map(|slot| Slot {
                generation: 0,
                id: format!("{name}-{slot}"),
                state: SlotState::Down,
                actor: None,
                in_flight: 0,
                completed: 0,
                failures: 0,
            })
            .collect();
        Ok(PoolState {
            queue_depth: metrics::gauge!(metric::QUEUE_DEPTH, "pool" => name.clone()),
            config: args.config,
            python: args.python,
            run_id: args.run_id,
            telemetry: args.telemetry,
            slots,
            queue: VecDeque::new(),
            assigned: HashMap::new(),
            accepting: true,
            booting: true,
            ready_waiters: Vec::new(),
            start_error: None,
            sweep_scheduled: false,
            shutdown_replies: Vec::new(),
            restarts: VecDeque::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PoolMessage>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!(metric::WORKERS_UP, "pool" => state.config.name.clone()).set(0.0);
        // Spawning is quick (fork + exec); the slow part, Python importing the
        // adapter, then runs in all workers at once.
        for slot in 0..state.slots.len() {
            start_worker(&myself, state, slot).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMessage>,
        message: PoolMessage,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PoolMessage::Submit(RequestBox(request)) => submit(&myself, state, request),
            PoolMessage::Done { key, id } => {
                if let Some(slot) = state.slots.get_mut(key.slot)
                    && slot.generation == key.generation
                    && state.assigned.remove(&id).is_some()
                {
                    slot.in_flight = slot.in_flight.saturating_sub(1);
                    slot.completed += 1;
                }
                pump(&myself, state);
                maybe_stop_workers(state);
            }
            PoolMessage::Cancel { id } => cancel(state, id),
            PoolMessage::Credit { id, chunks } => {
                if let Some(link) = link_of(state, id) {
                    link.conn.send(connection::frame(
                        id,
                        Kind::Credit(snakepit_proto::v1::Credit { chunks }),
                    ));
                }
            }
            PoolMessage::WorkerReady { key, link } => on_ready(&myself, state, key, link),
            PoolMessage::WorkerGone { key, gone } => on_gone(&myself, state, key, gone).await,
            PoolMessage::Restart { slot } => {
                if state.accepting && matches!(state.slots[slot].state, SlotState::Down) {
                    start_worker(&myself, state, slot).await;
                }
            }
            PoolMessage::SweepQueue => {
                state.sweep_scheduled = false;
                sweep(&myself, state);
            }
            PoolMessage::WaitReady(reply) => {
                if let Some(err) = &state.start_error {
                    let _ = reply.send(Err(err.clone()));
                } else if !state.booting {
                    let _ = reply.send(Ok(()));
                } else {
                    state.ready_waiters.push(reply);
                }
            }
            PoolMessage::Status(reply) => {
                let _ = reply.send(status(state));
            }
            PoolMessage::Shutdown { deadline, reply } => {
                state.shutdown_replies.push(reply);
                if state.accepting {
                    state.accepting = false;
                    for request in state.queue.drain(..) {
                        request.sink.fail(Error::ShuttingDown);
                    }
                    state.queue_depth.set(0.0);
                    let wait = deadline.saturating_duration_since(Instant::now());
                    myself.send_after(wait, || PoolMessage::ShutdownDeadline);
                }
                maybe_stop_workers(state);
                maybe_finish_shutdown(&myself, state);
            }
            PoolMessage::ShutdownDeadline => {
                state.assigned.clear();
                state.slots.iter_mut().for_each(|s| s.in_flight = 0);
                maybe_stop_workers(state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMessage>,
        event: SupervisionEvent,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        // Workers report their end with `WorkerGone` before stopping. A worker
        // actor that failed instead (a bug) is treated like a crash.
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let found = state
                .slots
                .iter()
                .position(|s| s.actor.as_ref().map(|a| a.get_id()) == Some(cell.get_id()));
            if let Some(slot) = found {
                tracing::error!(pool = %state.config.name, error = %err, "Worker actor failed.");
                let key = WorkerKey {
                    slot,
                    generation: state.slots[slot].generation,
                };
                let gone = WorkerGone {
                    pid: 0,
                    status: ExitStatus::Unknown,
                    cause: ExitCause::Crashed,
                    failed_requests: 0,
                    startup_error: None,
                };
                on_gone(&myself, state, key, gone).await;
            }
        }
        Ok(())
    }
}

async fn start_worker(myself: &ActorRef<PoolMessage>, state: &mut PoolState, slot: usize) {
    let generation = state.slots[slot].generation + 1;
    let key = WorkerKey { slot, generation };
    let id = format!("{}-{slot}.{generation}", state.config.name);
    {
        let s = &mut state.slots[slot];
        s.generation = generation;
        s.id = id.clone();
        s.state = SlotState::Starting;
        s.in_flight = 0;
    }
    let args = WorkerArgs {
        key,
        id: id.clone(),
        config: state.config.clone(),
        python: state.python.clone(),
        run_id: state.run_id.clone(),
        pool: myself.clone(),
        telemetry: state.telemetry.clone(),
    };
    match Actor::spawn_linked(None, Worker, args, myself.get_cell()).await {
        Ok((actor, _)) => state.slots[slot].actor = Some(actor),
        Err(err) => {
            let gone = WorkerGone {
                pid: 0,
                status: ExitStatus::Unknown,
                cause: ExitCause::StartupFailed,
                failed_requests: 0,
                startup_error: Some(Error::WorkerStartFailed {
                    pool: state.config.name.clone(),
                    reason: spawn_error_text(&err),
                    python: None,
                }),
            };
            // Handled like any other failed start, through our own mailbox.
            let _ = myself.cast(PoolMessage::WorkerGone { key, gone });
        }
    }
}

fn spawn_error_text(err: &ractor::SpawnErr) -> String {
    match err {
        ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn submit(myself: &ActorRef<PoolMessage>, state: &mut PoolState, request: Box<Request>) {
    if !state.accepting {
        request.sink.fail(Error::ShuttingDown);
        return;
    }
    if state.queue.len() >= state.config.queue_capacity {
        QueueSaturated {
            pool: state.config.name.clone(),
            capacity: state.config.queue_capacity,
        }
        .emit(&state.telemetry);
        request.sink.fail(Error::PoolSaturated {
            pool: state.config.name.clone(),
            capacity: state.config.queue_capacity,
        });
        return;
    }
    state.queue.push_back(request);
    pump(myself, state);
}

/// Hands queued requests to workers while any has room.
fn pump(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let depth = state.config.pipeline_depth;
    while !state.queue.is_empty() {
        let Some(slot) = least_loaded(state, depth) else {
            break;
        };
        let request = state.queue.pop_front().expect("queue is not empty");
        if request.sink.is_closed() {
            continue;
        }
        let SlotState::Ready(link) = &state.slots[slot].state else {
            unreachable!("least_loaded returns ready slots")
        };
        let conn = link.conn.clone();
        let id = request.id;
        let Request {
            tool,
            execute,
            sink,
            enqueued,
            ..
        } = *request;
        match conn.register(id, Pending { tool, sink }) {
            Ok(()) => {
                conn.send(connection::frame(id, Kind::Execute(execute)));
                let s = &mut state.slots[slot];
                s.in_flight += 1;
                state.assigned.insert(id, slot);
                RequestStarted {
                    pool: state.config.name.clone(),
                    worker: s.id.clone(),
                    request_id: id,
                    queued: enqueued.elapsed(),
                }
                .emit(&state.telemetry);
            }
            Err(pending) => {
                // The worker died under us; its WorkerGone is on the way.
                state.slots[slot].state = SlotState::Starting;
                state.queue.push_front(Box::new(Request {
                    id,
                    tool: pending.tool,
                    execute,
                    sink: pending.sink,
                    enqueued,
                }));
            }
        }
    }
    state.queue_depth.set(state.queue.len() as f64);
    if !state.queue.is_empty() && !state.sweep_scheduled {
        schedule_sweep(myself, state);
    }
}

fn least_loaded(state: &PoolState, depth: u32) -> Option<usize> {
    // Ties go to the lowest slot: a worker that just answered is the one most
    // likely still awake (polling), so back-to-back calls stay fast, while
    // concurrent calls still spread because loads differ.
    let mut best: Option<(usize, u32)> = None;
    for (slot, s) in state.slots.iter().enumerate() {
        if let Some(limit) = s.limit(depth)
            && s.in_flight < limit
            && best.is_none_or(|(_, load)| s.in_flight < load)
        {
            best = Some((slot, s.in_flight));
        }
    }
    best.map(|(slot, _)| slot)
}

fn schedule_sweep(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let Some(front) = state.queue.front() else {
        return;
    };
    let wait = (front.enqueued + state.config.queue_timeout())
        .saturating_duration_since(Instant::now())
        + Duration::from_millis(1);
    state.sweep_scheduled = true;
    myself.send_after(wait, || PoolMessage::SweepQueue);
}

fn sweep(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let timeout = state.config.queue_timeout();
    let now = Instant::now();
    state.queue.retain(|r| !r.sink.is_closed());
    while let Some(front) = state.queue.front() {
        let waited = now.duration_since(front.enqueued);
        if waited < timeout {
            break;
        }
        let request = state.queue.pop_front().expect("front exists");
        QueueTimedOut {
            pool: state.config.name.clone(),
            waited,
        }
        .emit(&state.telemetry);
        request.sink.fail(Error::QueueTimeout {
            pool: state.config.name.clone(),
            waited,
        });
    }
    state.queue_depth.set(state.queue.len() as f64);
    if !state.queue.is_empty() {
        schedule_sweep(myself, state);
    }
}

fn cancel(state: &mut PoolState, id: u64) {
    if let Some(pos) = state.queue.iter().position(|r| r.id == id) {
        let request = state.queue.remove(pos).expect("position is valid");
        request.sink.fail(Error::Cancelled);
        state.queue_depth.set(state.queue.len() as f64);
        return;
    }
    if let Some(link) = link_of(state, id) {
        // Keep the slot counted busy until the worker answers: it still is.
        link.conn.forget(id);
        link.conn
            .send(connection::cancel_frame(id, "caller gave up"));
    }
}

fn link_of(state: &PoolState, id: u64) -> Option<&WorkerLink> {
    let slot = *state.assigned.get(&id)?;
    match &state.slots[slot].state {
        SlotState::Ready(link) => Some(link),
        _ => None,
    }
}

fn workers_up(state: &PoolState) -> usize {
    state
        .slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Ready(_)))
        .count()
}

fn on_ready(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    link: WorkerLink,
) {
    let Some(slot) = state.slots.get_mut(key.slot) else {
        return;
    };
    if slot.generation != key.generation {
        return;
    }
    let event = WorkerReady {
        pool: state.config.name.clone(),
        worker: slot.id.clone(),
        pid: link.pid,
        startup: link.startup,
        python_version: link.hello.python_version.clone(),
        capacity: link.capacity,
        workers_up: 0,
    };
    slot.state = SlotState::Ready(link);
    slot.failures = 0;
    if !state.accepting {
        // Became ready during shutdown: stop it right away.
        maybe_stop_workers(state);
    }
    let workers_up = workers_up(state);
    WorkerReady {
        workers_up,
        ..event
    }
    .emit(&state.telemetry);
    if state.booting && workers_up == state.slots.len() {
        state.booting = false;
        for waiter in state.ready_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }
    pump(myself, state);
}

async fn on_gone(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    gone: WorkerGone,
) {
    let Some(slot) = state.slots.get_mut(key.slot) else {
        return;
    };
    if slot.generation != key.generation || matches!(slot.state, SlotState::Down) {
        return;
    }
    slot.state = SlotState::Down;
    slot.actor = None;
    slot.in_flight = 0;
    let worker = slot.id.clone();
    state.assigned.retain(|_, s| *s != key.slot);
    WorkerExited {
        pool: state.config.name.clone(),
        worker: worker.clone(),
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
            worker: worker.clone(),
            reason: err.to_string(),
        }
        .emit(&state.telemetry);
        if state.booting {
            // The first start of a pool failing is the caller's problem to see.
            state.start_error.get_or_insert_with(|| err.clone());
            for waiter in state.ready_waiters.drain(..) {
                let _ = waiter.send(Err(err.clone()));
            }
        }
    }

    if !state.accepting {
        maybe_finish_shutdown(myself, state);
        return;
    }
    schedule_restart(myself, state, key.slot, worker);
}

fn schedule_restart(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    slot: usize,
    worker: String,
) {
    let policy = &state.config.restart;
    let now = Instant::now();
    let window = Duration::from_millis(policy.restart_window_ms);
    while state
        .restarts
        .front()
        .is_some_and(|t| now.duration_since(*t) > window)
    {
        state.restarts.pop_front();
    }
    state.restarts.push_back(now);
    let s = &mut state.slots[slot];
    let exp = s.failures.min(16);
    s.failures += 1;
    let base = policy
        .backoff_initial_ms
        .saturating_mul(1u64 << exp)
        .min(policy.backoff_max_ms);
    // ±20% jitter so that workers killed together do not restart in lockstep.
    let jitter = rand::rng().random_range(0.8..1.2);
    let backoff = Duration::from_millis((base as f64 * jitter) as u64);
    WorkerRestarting {
        pool: state.config.name.clone(),
        worker,
        backoff,
        recent_restarts: state.restarts.len() as u32,
    }
    .emit(&state.telemetry);
    myself.send_after(backoff, move || PoolMessage::Restart { slot });
}

/// During shutdown, once nothing is in flight, asks every worker to stop.
fn maybe_stop_workers(state: &mut PoolState) {
    if state.accepting || !state.assigned.is_empty() {
        return;
    }
    let grace = state.config.shutdown_grace();
    for slot in &mut state.slots {
        if let Some(actor) = &slot.actor {
            let _ = actor.cast(WorkerMessage::Stop { grace, reply: None });
        }
    }
}

fn maybe_finish_shutdown(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let alive = state.slots.iter().any(|s| s.actor.is_some());
    if !state.accepting && !alive {
        state.queue_depth.set(0.0);
        for reply in state.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
        myself.stop(None);
    }
}

fn status(state: &PoolState) -> PoolStatus {
    let workers = state
        .slots
        .iter()
        .map(|s| {
            let link = match &s.state {
                SlotState::Ready(link) => Some(link),
                _ => None,
            };
            WorkerStatus {
                id: s.id.clone(),
                pid: link.map(|l| l.pid),
                ready: link.is_some(),
                in_flight: s.in_flight,
                completed: s.completed,
                python_version: link.map(|l| l.hello.python_version.clone()),
                gil_enabled: link.map(|l| l.hello.gil_enabled),
                capacity: link.map_or(0, |l| l.capacity),
            }
        })
        .collect();
    let tools = state
        .slots
        .iter()
        .find_map(|s| match &s.state {
            SlotState::Ready(link) => Some(link.hello.tools.clone()),
            _ => None,
        })
        .unwrap_or_default();
    PoolStatus {
        name: state.config.name.clone(),
        size: state.slots.len(),
        workers_up: workers_up(state),
        in_flight: state.assigned.len(),
        queued: state.queue.len(),
        workers,
        tools,
    }
}
