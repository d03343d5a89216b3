//! The pool actor: one per configured pool. Owns the queue, routes requests to
//! the least-loaded ready worker, restarts workers that die, recycles workers
//! that are old, busy or big, and says when it is degraded.
//!
//! Messages come from callers (through [`PoolHandle`](crate::PoolHandle)),
//! from its workers (`WorkerReady`, `WorkerGone`, `RecycleDue`), from
//! connection reader tasks (`Done`) and from its own timers (`Restart`,
//! `SweepQueue`, `DrainDeadline`, `HealthCheck`).
//!
//! Routing (`routing.rs`): a request goes to the ready worker with the fewest
//! requests in flight, as long as that is below its capacity plus
//! `pipeline_depth`; otherwise it waits in a bounded FIFO queue (`queue.rs`;
//! full → `PoolSaturated`, waited past `queue_timeout` → `QueueTimeout`).
//! Pipelining a few requests beyond a worker's capacity keeps it from idling
//! between two of them. Session calls follow their binding (`bindings.rs`).
//!
//! Each slot (`slots.rs`) has a current worker and, while it is being
//! recycled, a successor that starts alongside it: the current one keeps
//! serving until the successor is ready, then drains (no new requests,
//! bounded by `drain_timeout`) while the successor takes over. Capacity never
//! dips. Starts, restarts (`restarts.rs`), recycling and shutdown live in
//! `lifecycle.rs`.
//!
//! A worker that dies takes its in-flight requests with it (`WorkerCrashed`),
//! except idempotent ones, which come back here and run again elsewhere.

mod autoscale;
mod batched;
mod batching;
mod bindings;
mod lifecycle;
mod messages;
mod queue;
mod restarts;
mod routing;
mod scaling;
mod slots;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bindings::Bindings;
pub use messages::{
    PoolMessage, PoolStatus, ReleaseSent, RequestBox, SessionRelease, WorkerGone, WorkerKey,
    WorkerLink, WorkerStatus,
};
pub(crate) use messages::{RefPin, Request, Retry};
use metrics::Gauge;
use queue::RequestQueue;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use restarts::Restarts;
use routing::{Place, View};
pub(crate) use slots::RefId;
use slots::{Role, Slot};
use snakepit_proto::frames;

use crate::config::PoolConfig;
use crate::error::Error;
use crate::remote::Agents;
use crate::telemetry::{
    QueueSaturated, QueueTimedOut, RequestCancelled, RequestStarted, Telemetry, metric,
};
use crate::wire::shm::PoolArena;
use crate::wire::{self, Pending};
/// The pool actor.
pub struct Pool;

/// The session variables each tool of a pool requires, from its workers'
/// `Hello`; shared with the pool's handles, read on every session call.
#[derive(Clone, Default)]
pub(crate) struct ToolIndex(Arc<std::sync::RwLock<Arc<RequiredVariables>>>);

/// Tool name → the session variables it requires.
type RequiredVariables = HashMap<String, Vec<String>>;

impl ToolIndex {
    /// The variables `tool` requires (empty for unknown tools).
    pub fn required_variables(&self, tool: &str) -> Vec<String> {
        let index = self.0.read().expect("tool index lock").clone();
        index.get(tool).cloned().unwrap_or_default()
    }

    fn update(&self, hello: &snakepit_proto::v1::Hello) {
        let index = hello
            .tools
            .iter()
            .filter(|t| !t.required_variables.is_empty())
            .map(|t| (t.name.clone(), t.required_variables.clone()))
            .collect();
        *self.0.write().expect("tool index lock") = Arc::new(index);
    }
}

/// What a pool is started with.
pub struct PoolArgs {
    pub(crate) host_calls: Arc<dyn wire::HostCalls>,
    pub(crate) tools: ToolIndex,
    pub(crate) config: Arc<PoolConfig>,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    pub(crate) telemetry: Telemetry,
    /// Where a remote pool's workers run; `None` for a local pool.
    pub(crate) agents: Option<Agents>,
    /// The pool's shared-memory arena (a local pool with it on).
    pub(crate) arena: Option<Arc<PoolArena>>,
}

/// The pool's state, built in `pre_start`.
pub struct PoolState {
    host_calls: Arc<dyn wire::HostCalls>,
    tools: ToolIndex,
    config: Arc<PoolConfig>,
    python: PathBuf,
    run_id: String,
    telemetry: Telemetry,
    slots: Vec<Slot>,
    queue: RequestQueue,
    assigned: HashMap<u64, WorkerKey>,
    /// Which worker each session lives on.
    bindings: Bindings,
    /// Calls host tools made back into Python, by the request they serve:
    /// cancelling the request cancels them.
    children: HashMap<u64, Vec<u64>>,
    /// Worker actors not yet terminated (they outlive `WorkerGone` while
    /// their process group is ended).
    live: HashSet<ActorId>,
    accepting: bool,
    /// Until every worker has been ready once.
    booting: bool,
    ready_waiters: Vec<RpcReplyPort<Result<(), Error>>>,
    start_error: Option<Error>,
    /// The last failed start's reason, for `PoolDegraded`.
    last_start_error: Option<String>,
    sweep_scheduled: bool,
    health_check_scheduled: bool,
    shutdown_replies: Vec<RpcReplyPort<()>>,
    queue_depth: Gauge,
    in_flight: Gauge,
    restarts: Restarts,
    agents: Option<Agents>,
    arena: Option<Arc<PoolArena>>,
    /// The batched tools, by name (from the workers' `Hello`).
    batching: HashMap<String, batching::BatchPolicy>,
    /// Calls to batched tools gathering into batches.
    batcher: batching::Batcher<Box<Request>>,
    /// An autoscaled pool's policy (`max_size` set).
    autoscaler: Option<autoscale::Autoscaler>,
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
        let policy = autoscale::ScalePolicy::of(&args.config);
        let initial = policy.map_or(args.config.size, |p| p.initial());
        let slots = (0..args.config.slots())
            .map(|slot| Slot {
                parked: slot >= initial,
                ..Slot::default()
            })
            .collect();
        Ok(PoolState {
            queue_depth: metrics::gauge!(metric::QUEUE_DEPTH, "pool" => name.clone()),
            in_flight: metrics::gauge!(metric::POOL_IN_FLIGHT, "pool" => name.clone()),
            restarts: Restarts::new(args.config.restart.clone()),
            // A remote pool has nothing to wait for at start: its workers
            // come as agents attach.
            booting: args.agents.is_none() && initial > 0,
            agents: args.agents,
            arena: args.arena,
            tools: args.tools,
            host_calls: args.host_calls,
            config: args.config,
            python: args.python,
            run_id: args.run_id,
            telemetry: args.telemetry,
            slots,
            queue: RequestQueue::default(),
            assigned: HashMap::new(),
            bindings: Bindings::default(),
            children: HashMap::new(),
            live: HashSet::new(),
            accepting: true,
            ready_waiters: Vec::new(),
            start_error: None,
            last_start_error: None,
            sweep_scheduled: false,
            health_check_scheduled: false,
            shutdown_replies: Vec::new(),
            batching: HashMap::new(),
            batcher: batching::Batcher::default(),
            autoscaler: policy.map(autoscale::Autoscaler::new),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PoolMessage>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        crate::telemetry::register_pool_metrics(&state.config.name, state.slots.len());
        metrics::gauge!(metric::POOL_TARGET_SIZE, "pool" => state.config.name.clone())
            .set(active_slots(state) as f64);
        if state.autoscaler.is_some() {
            myself.send_after(AUTOSCALE_TICK, || PoolMessage::Autoscale);
        }
        if let Some(agents) = &state.agents {
            let me = myself.clone();
            agents.watch(&state.config.name, move || {
                let _ = me.cast(PoolMessage::AgentsChanged);
            });
        }
        // Spawning is quick (fork + exec); the slow part, Python importing the
        // adapter, then runs in all workers at once.
        for slot in 0..state.slots.len() {
            if !state.slots[slot].parked {
                lifecycle::start_member(&myself, state, slot, Role::Current).await;
            }
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
            PoolMessage::Submit(RequestBox(request)) => {
                submit(&myself, state, request);
                // A pool scaled to no worker starts one for this call now.
                if state.autoscaler.is_some() && active_slots(state) == 0 {
                    autoscale(&myself, state).await;
                }
            }
            PoolMessage::Autoscale => {
                autoscale(&myself, state).await;
                if state.accepting {
                    myself.send_after(AUTOSCALE_TICK, || PoolMessage::Autoscale);
                }
            }
            PoolMessage::Done { key, id } => on_done(&myself, state, key, id).await,
            PoolMessage::Cancel { id } => cancel(state, id),
            PoolMessage::Credit { id, chunks } => {
                if let Some(link) = link_of(state, id) {
                    link.conn.send(frames::credit(id, chunks));
                }
            }
            PoolMessage::WorkerReady { key, link } => {
                crate::telemetry::register_tool_metrics(
                    &state.config.name,
                    link.hello.tools.iter().map(|t| t.name.as_str()),
                );
                let batching: HashMap<_, _> = link
                    .hello
                    .tools
                    .iter()
                    .filter_map(|t| Some((t.name.clone(), batching::BatchPolicy::of(t)?)))
                    .collect();
                let learned = batching.keys().any(|t| !state.batching.contains_key(t));
                state.batching = batching;
                lifecycle::on_ready(&myself, state, key, link);
                if learned {
                    batched::rebatch(&myself, state);
                }
            }
            PoolMessage::WorkerGone { key, gone } => lifecycle::on_gone(&myself, state, key, gone),
            PoolMessage::Restart { slot } => {
                let s = &state.slots[slot];
                if state.accepting && !s.parked && s.current.is_none() && s.successor.is_none() {
                    lifecycle::start_member(&myself, state, slot, Role::Current).await;
                }
            }
            PoolMessage::RecycleDue { key, reason } => {
                lifecycle::recycle(&myself, state, key, reason).await;
            }
            PoolMessage::Suspect { key, suspect } => {
                if let Some(member) = state.slots[key.slot].member_mut(key.generation) {
                    member.suspect = suspect;
                }
                if !suspect {
                    pump(&myself, state);
                }
            }
            PoolMessage::DrainDeadline { key } => {
                if let Some(member) = state.slots[key.slot].draining.iter().find(|m| m.key == key) {
                    let _ = member.actor.cast(crate::worker::WorkerMessage::Kill(
                        crate::telemetry::KillReason::DrainTimeout,
                    ));
                }
            }
            PoolMessage::ReleaseRef {
                session,
                ref_id,
                reply,
            } => {
                let _ = reply.send(bindings::release_ref(state, &session, &ref_id));
            }
            PoolMessage::ReleaseSession { session, reply } => {
                let _ = reply.send(bindings::release_session(state, &session));
            }
            PoolMessage::AgentsChanged => {
                for slot in 0..state.slots.len() {
                    let s = &state.slots[slot];
                    if state.accepting && s.awaiting_agent && s.current.is_none() {
                        lifecycle::start_member(&myself, state, slot, Role::Current).await;
                    }
                }
            }
            PoolMessage::Retire { key, grace } => {
                lifecycle::retire(&myself, state, key, grace).await
            }
            PoolMessage::HealthCheck => {
                state.health_check_scheduled = false;
                lifecycle::check_recovery(&myself, state);
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
                lifecycle::shutdown(&myself, state, deadline, reply);
            }
            PoolMessage::ShutdownDeadline => lifecycle::shutdown_deadline(state),
            PoolMessage::BatchDue { key, epoch } => batched::due(&myself, state, &key, epoch),
            PoolMessage::Requeue {
                request: RequestBox(request),
                failed_worker,
            } => {
                lifecycle::requeue(&myself, state, request, &failed_worker);
                pump(&myself, state);
            }
        }
        state.in_flight.set(state.assigned.len() as f64);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMessage>,
        event: SupervisionEvent,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, ..) => {
                state.live.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                state.live.remove(&cell.get_id());
                lifecycle::on_actor_failed(&myself, state, cell.get_id(), &err);
            }
            _ => {}
        }
        if !state.accepting {
            lifecycle::maybe_finish_shutdown(&myself, state);
        }
        Ok(())
    }
}

fn submit(myself: &ActorRef<PoolMessage>, state: &mut PoolState, request: Box<Request>) {
    if !state.accepting {
        request.fail(Error::ShuttingDown);
        return;
    }
    if let Some(err) = degraded_error(state) {
        request.fail(err);
        return;
    }
    if state.queue.len() + state.batcher.len() >= state.config.queue_capacity {
        QueueSaturated {
            pool: state.config.name.clone(),
            capacity: state.config.queue_capacity,
        }
        .emit(&state.telemetry);
        request.fail(Error::PoolSaturated {
            pool: state.config.name.clone(),
            capacity: state.config.queue_capacity,
        });
        return;
    }
    match batched::policy_for(state, &request) {
        Some(policy) => batched::gather(myself, state, request, policy),
        None => {
            state.queue.push_back(request);
            pump(myself, state);
        }
    }
}

/// A remote pool with no worker up or on its way, and no agent with a
/// seat for one: no agent serves it.
fn unserved(state: &PoolState) -> bool {
    state.agents.as_ref().is_some_and(|agents| {
        workers_up(state) == 0
            && !state.slots.iter().any(|s| s.current.is_some())
            && agents.free_seats(&state.config.name) == 0
    })
}

/// `PoolDegraded` when the pool is degraded and no worker is up — or, for
/// a remote pool, when no worker is up or on its way (no agent serves it).
fn degraded_error(state: &mut PoolState) -> Option<Error> {
    if unserved(state) {
        return Some(Error::PoolDegraded {
            pool: state.config.name.clone(),
            restarts: state.restarts.recent(tokio::time::Instant::now()),
            window: state.restarts.window(),
            last_error: Some(format!(
                "no node agent serves this remote pool now (0 of {} workers attached)",
                state.slots.len()
            )),
        });
    }
    if !state.restarts.is_degraded() || workers_up(state) > 0 {
        return None;
    }
    Some(Error::PoolDegraded {
        pool: state.config.name.clone(),
        restarts: state.restarts.recent(tokio::time::Instant::now()),
        window: state.restarts.window(),
        last_error: state.last_start_error.clone(),
    })
}

/// Hands queued requests to workers while any has room.
///
/// Plain requests leave the queue in order, each to the least-loaded worker.
/// Session requests follow their session's binding as their affinity says,
/// and nested calls (from host tools) go to their parent's worker: those may
/// skip ahead of requests that wait, or wait while later ones go.
fn pump(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let mut i = 0;
    while i < state.queue.len() {
        if state.queue.get(i).is_abandoned() {
            state.queue.remove(i);
            continue;
        }
        match view(state).place(&state.queue.get(i).route()) {
            Place::Worker(key) => {
                let request = state.queue.remove(i);
                if let Err(request) = dispatch(myself, state, key, request) {
                    // Its worker is dying: try again, the dying one excluded.
                    state.queue.insert(i, request);
                }
            }
            Place::Fail(err) => state.queue.remove(i).fail(err),
            // With no strict or nested request queued, nothing behind a
            // waiting request can go either.
            Place::Wait if !state.queue.has_special() => break,
            Place::Wait => i += 1,
        }
    }
    state.queue_depth.set(state.queue.len() as f64);
    if !state.queue.is_empty() && !state.sweep_scheduled {
        schedule_sweep(myself, state);
    }
}

/// The pool as routing sees it.
fn view(state: &PoolState) -> View<'_> {
    View {
        pool: &state.config.name,
        slots: &state.slots,
        assigned: &state.assigned,
        bindings: &state.bindings,
        depth: state.config.pipeline_depth,
    }
}

/// Sends `request` to worker `key`; hands it back if the worker's connection
/// is closed (the worker is dying, and is marked so).
fn dispatch(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: WorkerKey,
    request: Box<Request>,
) -> Result<(), Box<Request>> {
    let member = state.slots[key.slot]
        .member_mut(key.generation)
        .expect("placed on a live member");
    let conn = member
        .link()
        .expect("placed on a connected member")
        .conn
        .clone();
    let again = request.retry.then(|| Box::new(Retry::of(&request)));
    let Request {
        id,
        tool,
        execute,
        sink,
        enqueued,
        retry,
        session,
        affinity,
        parent,
        pin,
        span,
        shared,
        batch,
    } = *request;
    let pending = Pending {
        tool: tool.clone(),
        sink,
        retry: again,
        delivered: false,
        done_first: session.is_some() || batch.is_some(),
        span: span.clone(),
    };
    match conn.register(id, pending) {
        Ok(()) => {
            conn.send(frames::execute(id, execute));
            drop(shared);
            member.in_flight += 1;
            member.last_active = Instant::now();
            let worker = member.id.clone();
            if crate::telemetry::trace::recording() {
                let end = std::time::SystemTime::now();
                crate::telemetry::trace::record_phase(
                    &span,
                    crate::telemetry::trace::Phase {
                        name: "snakepit.queue",
                        start: end - enqueued.elapsed(),
                        end,
                        attributes: &[("worker", &worker)],
                    },
                );
            }
            state.assigned.insert(id, key);
            if let Some(scaler) = &mut state.autoscaler {
                scaler.record_wait(tokio::time::Instant::now(), enqueued.elapsed());
            }
            if let Some(parent) = parent {
                state.children.entry(parent).or_default().push(id);
            }
            if let Some(session) = session
                && parent.is_none()
            {
                // The session now lives here (for `hint`, this moves it).
                state.bindings.bind(session, key, &worker);
            }
            match batch {
                Some(batch) => {
                    for member in &batch.members {
                        if let Some(session) = &member.session {
                            state.bindings.bind(session.clone(), key, &worker);
                        }
                        RequestStarted {
                            pool: state.config.name.clone(),
                            worker: worker.clone(),
                            request_id: member.id,
                            queued: member.enqueued.elapsed(),
                        }
                        .emit(&state.telemetry);
                    }
                    batched::split(myself.clone(), tool, worker, *batch);
                }
                None => RequestStarted {
                    pool: state.config.name.clone(),
                    worker,
                    request_id: id,
                    queued: enqueued.elapsed(),
                }
                .emit(&state.telemetry),
            }
            Ok(())
        }
        Err(pending) => {
            member.closed = true;
            Err(Box::new(Request {
                id,
                tool: pending.tool,
                execute,
                sink: pending.sink,
                enqueued,
                retry,
                session,
                affinity,
                parent,
                pin,
                span,
                shared,
                batch,
            }))
        }
    }
}

fn schedule_sweep(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let Some(oldest) = state.queue.oldest() else {
        return;
    };
    let wait = (oldest + state.config.queue_timeout()).saturating_duration_since(Instant::now())
        + Duration::from_millis(1);
    state.sweep_scheduled = true;
    myself.send_after(wait, || PoolMessage::SweepQueue);
}

fn sweep(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let timeout = state.config.queue_timeout();
    let now = Instant::now();
    let mut kept = RequestQueue::default();
    for request in state.queue.take_all() {
        let waited = now.duration_since(request.enqueued);
        if request.is_abandoned() {
            continue;
        }
        if waited < timeout {
            kept.push_back(request);
            continue;
        }
        QueueTimedOut {
            pool: state.config.name.clone(),
            waited,
        }
        .emit(&state.telemetry);
        request.fail(Error::QueueTimeout {
            pool: state.config.name.clone(),
            waited,
        });
    }
    state.queue = kept;
    state.queue_depth.set(state.queue.len() as f64);
    if !state.queue.is_empty() {
        schedule_sweep(myself, state);
    }
}

/// Cancels request `id`, and the calls host tools made back into Python on
/// its behalf (their callers get `Cancelled`).
fn cancel(state: &mut PoolState, id: u64) {
    cancel_one(state, id);
    if let Some(children) = state.children.remove(&id) {
        for child in children {
            cancel(state, child);
        }
    }
}

fn cancel_one(state: &mut PoolState, id: u64) {
    if batched::cancel(state, id) {
        return;
    }
    if let Some(pos) = state.queue.position(id) {
        let request = state.queue.remove(pos);
        RequestCancelled {
            pool: state.config.name.clone(),
            tool: request.tool.to_string(),
            stage: "queued",
        }
        .emit(&state.telemetry);
        request.fail(Error::Cancelled);
        state.queue_depth.set(state.queue.len() as f64);
        return;
    }
    if let Some(link) = link_of(state, id) {
        // Keep the worker counted busy until it answers: it still is.
        if let Some(pending) = link.conn.forget(id) {
            link.conn.send(frames::cancel(id, "caller gave up"));
            RequestCancelled {
                pool: state.config.name.clone(),
                tool: pending.tool.to_string(),
                stage: "running",
            }
            .emit(&state.telemetry);
            // A caller that gave up is gone; a nested call's caller (a host
            // tool) still listens.
            pending.sink.fail(Error::Cancelled);
        }
    }
}

fn link_of(state: &mut PoolState, id: u64) -> Option<&WorkerLink> {
    let key = *state.assigned.get(&id)?;
    state.slots[key.slot]
        .member_mut(key.generation)
        .and_then(|m| m.link())
}

/// Looks at the pool's load and scales it if its policy says so: starts
/// workers in parked slots, or parks the slots of idle workers.
async fn autoscale(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let Some((from, decision)) = scaling::decide(state) else {
        return;
    };
    match decision {
        autoscale::Decision::Hold => {}
        autoscale::Decision::Up { to, reason } => {
            let parked: Vec<usize> = (0..state.slots.len())
                .filter(|&s| state.slots[s].parked)
                .take(to.saturating_sub(from))
                .collect();
            for slot in parked {
                lifecycle::unpark(myself, state, slot).await;
            }
            scaling::scaled(state, from, reason);
        }
        autoscale::Decision::Down { workers, .. } => {
            for slot in workers {
                lifecycle::park(myself, state, slot);
            }
            scaling::scaled(state, from, autoscale::Reason::Idle);
            pump(myself, state);
        }
    }
}

/// Fails every call waiting for a worker, queued or gathering into a
/// batch, with `err`.
fn fail_waiting(state: &mut PoolState, err: &Error) {
    for request in state.queue.take_all() {
        request.fail(err.clone());
    }
    batched::flush(state, err);
    state.queue_depth.set(0.0);
}

/// An idempotent call whose worker died, back ahead of the queue — or, for
/// a batched tool, into the batching window.
fn enqueue_retry(myself: &ActorRef<PoolMessage>, state: &mut PoolState, request: Box<Request>) {
    match batched::policy_for(state, &request) {
        Some(policy) => batched::gather(myself, state, request, policy),
        None => state.queue.push_front(request),
    }
}

/// How often an autoscaled pool looks at its load.
const AUTOSCALE_TICK: Duration = Duration::from_millis(100);

/// The slots the pool aims to fill: all but those parked by autoscaling.
fn active_slots(state: &PoolState) -> usize {
    state.slots.iter().filter(|s| !s.parked).count()
}

fn workers_up(state: &PoolState) -> usize {
    state.slots.iter().filter(|s| s.is_ready()).count()
}

async fn on_done(myself: &ActorRef<PoolMessage>, state: &mut PoolState, key: WorkerKey, id: u64) {
    // Only the worker a request was routed to may end it.
    let routed_there = match state.assigned.get(&id) {
        Some(k) if *k != key => return,
        Some(_) => true,
        None => false,
    };
    state.children.remove(&id);
    if routed_there
        && state.assigned.remove(&id).is_some()
        && let Some(member) = state
            .slots
            .get_mut(key.slot)
            .and_then(|s| s.member_mut(key.generation))
    {
        member.in_flight = member.in_flight.saturating_sub(1);
        member.completed += 1;
        member.last_active = Instant::now();
        let due = state
            .config
            .max_requests
            .is_some_and(|max| member.completed >= max);
        if due && state.slots[key.slot].role_of(key.generation) == Some(Role::Current) {
            lifecycle::recycle(
                myself,
                state,
                key,
                crate::telemetry::RecycleReason::Requests,
            )
            .await;
        }
    }
    pump(myself, state);
    lifecycle::maybe_stop_workers(state);
}

fn status(state: &PoolState) -> PoolStatus {
    let mut workers = Vec::new();
    for slot in &state.slots {
        for member in slot.current.iter().chain(slot.draining.iter()) {
            let link = member.link();
            workers.push(WorkerStatus {
                id: member.id.clone(),
                agent: state
                    .agents
                    .as_ref()
                    .and_then(|_| member.id.rsplit_once('@'))
                    .map(|(_, agent)| agent.to_string()),
                pid: link.map(|l| l.pid),
                ready: member.is_ready() && !member.closed,
                draining: member.is_draining(),
                suspect: member.suspect,
                in_flight: member.in_flight,
                completed: member.completed,
                python_version: link.map(|l| l.hello.python_version.clone()),
                gil_enabled: link.map(|l| l.hello.gil_enabled),
                capacity: link.map_or(0, |l| l.capacity),
            });
        }
    }
    let tools = state
        .slots
        .iter()
        .flat_map(|s| s.members())
        .find_map(|m| m.link().map(|l| l.hello.tools.clone()))
        .unwrap_or_default();
    PoolStatus {
        name: state.config.name.clone(),
        size: active_slots(state),
        min_size: state.autoscaler.as_ref().map(|a| a.policy.min),
        max_size: state.autoscaler.as_ref().map(|a| a.policy.max),
        remote: state.agents.is_some(),
        workers_up: workers_up(state),
        in_flight: state.assigned.len(),
        // Calls, not requests: each call of a queued batch, and the calls
        // still gathering into one.
        queued: (0..state.queue.len())
            .map(|i| {
                state
                    .queue
                    .get(i)
                    .batch
                    .as_ref()
                    .map_or(1, |b| b.members.len())
            })
            .sum::<usize>()
            + state.batcher.len(),
        degraded: state.restarts.is_degraded() || unserved(state),
        workers,
        tools,
    }
}
