//! The pool actor: one per configured pool. Owns the queue, routes requests to
//! the least-loaded ready worker, restarts workers that die, recycles workers
//! that are old, busy or big, and says when it is degraded.
//!
//! Messages come from callers (through [`PoolHandle`](crate::PoolHandle)),
//! from its workers (`WorkerReady`, `WorkerGone`, `RecycleDue`), from
//! connection reader tasks (`Done`) and from its own timers (`Restart`,
//! `SweepQueue`, `DrainDeadline`, `HealthCheck`).
//!
//! Routing: a request goes to the ready worker with the fewest requests in
//! flight, as long as that is below its capacity plus `pipeline_depth`;
//! otherwise it waits in a bounded FIFO queue (full → `PoolSaturated`, waited
//! past `queue_timeout` → `QueueTimeout`). Pipelining a few requests beyond a
//! worker's capacity keeps it from idling between two of them.
//!
//! Each slot has a current worker and, while it is being recycled, a
//! successor that starts alongside it: the current one keeps serving until the
//! successor is ready, then drains (no new requests, bounded by
//! `drain_timeout`) while the successor takes over. Capacity never dips.
//!
//! A worker that dies takes its in-flight requests with it (`WorkerCrashed`),
//! except idempotent ones, which come back here and run again elsewhere.

mod messages;
mod queue;
mod restarts;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use messages::{
    PoolMessage, PoolStatus, ReleaseSent, RequestBox, SessionRelease, WorkerGone, WorkerKey,
    WorkerLink, WorkerStatus,
};
pub(crate) use messages::{RefPin, Request};
use metrics::Gauge;
use queue::RequestQueue;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rand::Rng;
use restarts::{Restarts, jitter};
use snakepit_proto::Value;
use snakepit_proto::v1::frame::Kind;

use crate::config::{Affinity, PoolConfig};
use crate::connection::{self, Pending};
use crate::error::{Error, ExitStatus};
use crate::telemetry::{
    ExitCause, PoolDegraded, PoolRecovered, QueueSaturated, QueueTimedOut, RecycleReason,
    RequestCancelled, RequestRetried, RequestStarted, Telemetry, WorkerExited, WorkerReady,
    WorkerRecycled, WorkerRestarting, WorkerStartFailed, metric,
};
use crate::worker::{Worker, WorkerArgs, WorkerMessage};

/// Extra time a draining worker's Python side gets over the host's drain
/// timeout, so that the host's kill (and its typed errors) comes first.
const DRAIN_SLACK: Duration = Duration::from_secs(1);

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
    pub(crate) bridge: Arc<crate::host_bridge::HostBridge>,
    pub(crate) tools: ToolIndex,
    pub(crate) config: Arc<PoolConfig>,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    pub(crate) telemetry: Telemetry,
}

enum MemberState {
    /// Process spawned, no `Hello` yet.
    Starting,
    /// Takes requests.
    Ready(WorkerLink),
    /// Recycled: finishing its in-flight requests, taking no new ones.
    Draining(WorkerLink),
}

/// One worker process of a slot, from spawn until its `WorkerGone`.
struct Member {
    key: WorkerKey,
    id: String,
    actor: ActorRef<WorkerMessage>,
    state: MemberState,
    in_flight: u32,
    completed: u64,
    /// Its connection refused a request: it is dying, route nothing more.
    closed: bool,
    /// It missed a heartbeat and has not answered since: route nothing more
    /// until it does (it is stopped, or stuck holding the GIL).
    suspect: bool,
    /// Why a successor was started for it.
    recycle: Option<RecycleReason>,
}

impl Member {
    fn link(&self) -> Option<&WorkerLink> {
        match &self.state {
            MemberState::Ready(link) | MemberState::Draining(link) => Some(link),
            MemberState::Starting => None,
        }
    }

    fn routable_limit(&self, pipeline_depth: u32) -> Option<u32> {
        match &self.state {
            MemberState::Ready(link) if !self.closed && !self.suspect => {
                Some(link.capacity + pipeline_depth)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Current,
    Successor,
    Draining,
}

struct Slot {
    /// The last generation started in this slot.
    generation: u64,
    current: Option<Member>,
    successor: Option<Member>,
    draining: Vec<Member>,
    /// Failed starts since this slot last had a ready worker.
    failures: u32,
    /// No recycling start before this (after a successor failed to start).
    recycle_not_before: Option<Instant>,
}

impl Slot {
    fn role_of(&self, generation: u64) -> Option<Role> {
        if self
            .current
            .as_ref()
            .is_some_and(|m| m.key.generation == generation)
        {
            Some(Role::Current)
        } else if self
            .successor
            .as_ref()
            .is_some_and(|m| m.key.generation == generation)
        {
            Some(Role::Successor)
        } else if self.draining.iter().any(|m| m.key.generation == generation) {
            Some(Role::Draining)
        } else {
            None
        }
    }

    fn member(&self, generation: u64) -> Option<&Member> {
        self.members().find(|m| m.key.generation == generation)
    }

    fn member_mut(&mut self, generation: u64) -> Option<&mut Member> {
        let matches = |m: &&mut Member| m.key.generation == generation;
        self.current
            .as_mut()
            .filter(matches)
            .or_else(|| self.successor.as_mut().filter(matches))
            .or_else(|| {
                self.draining
                    .iter_mut()
                    .find(|m| m.key.generation == generation)
            })
    }

    fn take(&mut self, generation: u64) -> Option<(Member, Role)> {
        match self.role_of(generation)? {
            Role::Current => self.current.take().map(|m| (m, Role::Current)),
            Role::Successor => self.successor.take().map(|m| (m, Role::Successor)),
            Role::Draining => {
                let pos = self
                    .draining
                    .iter()
                    .position(|m| m.key.generation == generation)?;
                Some((self.draining.remove(pos), Role::Draining))
            }
        }
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.current
            .iter()
            .chain(self.successor.iter())
            .chain(self.draining.iter())
    }

    fn is_ready(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|m| matches!(m.state, MemberState::Ready(_)) && !m.closed)
    }
}

/// Where a session's calls go.
struct Binding {
    key: WorkerKey,
    /// The worker's id, for errors once it is gone.
    worker: String,
    /// Workers the session ran on before `hint` moved it: they may hold some
    /// of its state too, and are told at its release.
    earlier: Vec<(WorkerKey, String)>,
}

/// The pool's state, built in `pre_start`.
pub struct PoolState {
    bridge: Arc<crate::host_bridge::HostBridge>,
    tools: ToolIndex,
    config: Arc<PoolConfig>,
    python: PathBuf,
    run_id: String,
    telemetry: Telemetry,
    slots: Vec<Slot>,
    queue: RequestQueue,
    assigned: HashMap<u64, WorkerKey>,
    /// Which worker each session lives on.
    bindings: HashMap<Arc<str>, Binding>,
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
    restarts: Restarts,
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
            .map(|_| Slot {
                generation: 0,
                current: None,
                successor: None,
                draining: Vec::new(),
                failures: 0,
                recycle_not_before: None,
            })
            .collect();
        Ok(PoolState {
            queue_depth: metrics::gauge!(metric::QUEUE_DEPTH, "pool" => name.clone()),
            restarts: Restarts::new(args.config.restart.clone()),
            tools: args.tools,
            bridge: args.bridge,
            config: args.config,
            python: args.python,
            run_id: args.run_id,
            telemetry: args.telemetry,
            slots,
            queue: RequestQueue::default(),
            assigned: HashMap::new(),
            bindings: HashMap::new(),
            children: HashMap::new(),
            live: HashSet::new(),
            accepting: true,
            booting: true,
            ready_waiters: Vec::new(),
            start_error: None,
            last_start_error: None,
            sweep_scheduled: false,
            health_check_scheduled: false,
            shutdown_replies: Vec::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<PoolMessage>,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        let name = state.config.name.clone();
        metrics::gauge!(metric::WORKERS_UP, "pool" => name.clone()).set(0.0);
        metrics::gauge!(metric::POOL_DEGRADED, "pool" => name).set(0.0);
        // Spawning is quick (fork + exec); the slow part, Python importing the
        // adapter, then runs in all workers at once.
        for slot in 0..state.slots.len() {
            start_member(&myself, state, slot, Role::Current).await;
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
            PoolMessage::Done { key, id } => on_done(&myself, state, key, id).await,
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
            PoolMessage::WorkerGone { key, gone } => on_gone(&myself, state, key, gone),
            PoolMessage::Restart { slot } => {
                let s = &state.slots[slot];
                if state.accepting && s.current.is_none() && s.successor.is_none() {
                    start_member(&myself, state, slot, Role::Current).await;
                }
            }
            PoolMessage::RecycleDue { key, reason } => {
                recycle(&myself, state, key, reason).await;
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
                    let _ = member.actor.cast(WorkerMessage::Kill(
                        crate::telemetry::KillReason::DrainTimeout,
                    ));
                }
            }
            PoolMessage::ReleaseRef {
                session,
                ref_id,
                reply,
            } => {
                let _ = reply.send(release_ref(state, &session, &ref_id));
            }
            PoolMessage::ReleaseSession { session, reply } => {
                let _ = reply.send(release_session(state, &session));
            }
            PoolMessage::HealthCheck => {
                state.health_check_scheduled = false;
                check_recovery(&myself, state);
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
                    for request in state.queue.take_all() {
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
                for slot in &mut state.slots {
                    if let Some(m) = &mut slot.current {
                        m.in_flight = 0;
                    }
                    slot.draining.iter_mut().for_each(|m| m.in_flight = 0);
                }
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
        match event {
            SupervisionEvent::ActorTerminated(cell, ..) => {
                state.live.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                // Workers report their end with `WorkerGone` before stopping.
                // A worker actor that failed instead (a bug) is treated like a
                // crash of its process.
                state.live.remove(&cell.get_id());
                let found = state.slots.iter().enumerate().find_map(|(slot, s)| {
                    s.members()
                        .find(|m| m.actor.get_id() == cell.get_id())
                        .map(|m| WorkerKey {
                            slot,
                            generation: m.key.generation,
                        })
                });
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
                    on_gone(&myself, state, key, gone);
                }
            }
            _ => {}
        }
        if !state.accepting {
            maybe_finish_shutdown(&myself, state);
        }
        Ok(())
    }
}

async fn start_member(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    slot: usize,
    role: Role,
) {
    let generation = state.slots[slot].generation + 1;
    state.slots[slot].generation = generation;
    let key = WorkerKey { slot, generation };
    let id = format!("{}-{slot}.{generation}", state.config.name);
    let args = WorkerArgs {
        bridge: state.bridge.clone(),
        key,
        id: id.clone(),
        config: state.config.clone(),
        python: state.python.clone(),
        run_id: state.run_id.clone(),
        pool: myself.clone(),
        telemetry: state.telemetry.clone(),
    };
    match Actor::spawn_linked(None, Worker, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            state.live.insert(actor.get_id());
            let member = Member {
                key,
                id,
                actor,
                state: MemberState::Starting,
                in_flight: 0,
                completed: 0,
                closed: false,
                suspect: false,
                recycle: None,
            };
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

fn submit(myself: &ActorRef<PoolMessage>, state: &mut PoolState, request: Box<Request>) {
    if !state.accepting {
        request.sink.fail(Error::ShuttingDown);
        return;
    }
    if let Some(err) = degraded_error(state) {
        request.sink.fail(err);
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

/// `PoolDegraded` when the pool is degraded and no worker is up.
fn degraded_error(state: &mut PoolState) -> Option<Error> {
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
    let depth = state.config.pipeline_depth;
    let mut i = 0;
    while i < state.queue.len() {
        if state.queue.get(i).sink.is_closed() {
            state.queue.remove(i);
            continue;
        }
        match place(state, state.queue.get(i), depth) {
            Place::Worker(key) => {
                let request = state.queue.remove(i);
                if let Err(request) = dispatch(state, key, request) {
                    // Its worker is dying: try again, the dying one excluded.
                    state.queue.insert(i, request);
                }
            }
            Place::Fail(err) => state.queue.remove(i).sink.fail(err),
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

enum Place {
    Worker(WorkerKey),
    Wait,
    Fail(Error),
}

/// Where `request` may run now.
fn place(state: &PoolState, request: &Request, depth: u32) -> Place {
    let any = || match least_loaded(state, depth) {
        Some(slot) => Place::Worker(state.slots[slot].current.as_ref().expect("ready").key),
        None => Place::Wait,
    };
    if let Some(pin) = &request.pin {
        return place_pinned(state, request, pin, depth);
    }
    if let Some(parent) = request.parent
        && let Some(key) = state.assigned.get(&parent)
        && let Some(member) = state.slots[key.slot].member(key.generation)
        && member.link().is_some()
        && !member.closed
    {
        return Place::Worker(*key);
    }
    let Some(session) = &request.session else {
        return any();
    };
    let Some(binding) = state.bindings.get(session) else {
        return any();
    };
    let member = state.slots[binding.key.slot]
        .current
        .as_ref()
        .filter(|m| m.key == binding.key && !m.closed);
    let Some(member) = member.filter(|m| matches!(m.state, MemberState::Ready(_))) else {
        // Dead, recycled or dying: its in-memory state is gone.
        if request.affinity.is_strict() {
            return Place::Fail(Error::SessionWorkerUnavailable {
                pool: state.config.name.clone(),
                worker: binding.worker.clone(),
                session: session.to_string(),
            });
        }
        return any();
    };
    let capacity = member.link().map_or(1, |l| l.capacity);
    let free = member.in_flight < capacity && !member.suspect;
    match request.affinity {
        Affinity::Hint if free => Place::Worker(member.key),
        Affinity::Hint => any(),
        Affinity::StrictQueue => match member.routable_limit(depth) {
            Some(limit) if member.in_flight < limit => Place::Worker(member.key),
            _ => Place::Wait,
        },
        Affinity::StrictFailFast if free => Place::Worker(member.key),
        Affinity::StrictFailFast => Place::Fail(Error::WorkerBusy {
            pool: state.config.name.clone(),
            worker: member.id.clone(),
            session: session.to_string(),
        }),
    }
}

/// Where a call carrying a ref may run: only on the worker holding it.
fn place_pinned(state: &PoolState, request: &Request, pin: &RefPin, depth: u32) -> Place {
    let gone = |why: String| {
        Place::Fail(Error::RefNotFound {
            ref_id: pin.ref_id.clone(),
            session: pin.session.clone(),
            reason: why,
        })
    };
    let Some(member) = member_by_id(state, &pin.worker) else {
        return gone(format!(
            "worker {} that held it is gone (it died or was recycled), and its objects with it",
            pin.worker
        ));
    };
    // Its connection closed: it died, and the pool has not heard yet.
    if member.closed {
        return gone(format!(
            "worker {} that held it is gone (its connection closed), and its objects with it",
            pin.worker
        ));
    }
    if matches!(member.state, MemberState::Draining(_)) {
        return gone(format!(
            "worker {} that holds it is shutting down, and its objects with it",
            pin.worker
        ));
    }
    // A nested call on its parent's worker runs while the parent waits.
    if let Some(parent) = request.parent
        && state.assigned.get(&parent) == Some(&member.key)
    {
        return Place::Worker(member.key);
    }
    match member.routable_limit(depth) {
        Some(limit) if member.in_flight < limit => Place::Worker(member.key),
        _ => Place::Wait,
    }
}

/// The live member whose worker id is `id` (`{pool}-{slot}.{generation}`).
fn member_by_id<'a>(state: &'a PoolState, id: &str) -> Option<&'a Member> {
    let rest = id
        .strip_prefix(state.config.name.as_str())?
        .strip_prefix('-')?;
    let (slot, generation) = rest.split_once('.')?;
    let slot: usize = slot.parse().ok()?;
    let generation: u64 = generation.parse().ok()?;
    state.slots.get(slot)?.member(generation)
}

/// Tells the worker holding `ref_id` to drop it; `None` when that worker is
/// gone (the ref went with it).
fn release_ref(
    state: &mut PoolState,
    session: &str,
    ref_id: &str,
) -> Option<tokio::sync::oneshot::Receiver<Result<Value, Error>>> {
    let (worker, _) = ref_id.rsplit_once('/')?;
    let link = member_by_id(state, worker)
        .filter(|m| !m.closed)
        .and_then(|m| m.link().cloned())?;
    let kind = Kind::ReleaseRef(snakepit_proto::v1::ReleaseRef {
        session_id: session.to_string(),
        ref_id: ref_id.to_string(),
    });
    send_release(&link, "<release ref>", kind).map(|(_, rx)| rx)
}

/// Sends a release frame (`kind`) to a worker as an exchange of its own;
/// its id and the answer to come, or `None` when the connection is closed.
fn send_release(
    link: &WorkerLink,
    what: &str,
    kind: Kind,
) -> Option<(u64, tokio::sync::oneshot::Receiver<Result<Value, Error>>)> {
    let id = crate::handle::next_request_id();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = Pending {
        tool: Arc::from(what),
        sink: connection::Sink::Unary(tx),
        retry: None,
        delivered: false,
        done_first: true,
    };
    link.conn.register(id, pending).ok()?;
    link.conn.send(connection::frame(id, kind));
    Some((id, rx))
}

/// Sends `request` to worker `key`; hands it back if the worker's connection
/// is closed (the worker is dying, and is marked so).
fn dispatch(
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
    } = *request;
    let pending = Pending {
        tool,
        sink,
        retry: retry.then(|| {
            Box::new(connection::Retry {
                execute: execute.clone(),
                session: session.clone(),
                affinity,
                parent,
            })
        }),
        delivered: false,
        done_first: session.is_some(),
    };
    match conn.register(id, pending) {
        Ok(()) => {
            conn.send(connection::frame(id, Kind::Execute(execute)));
            member.in_flight += 1;
            let worker = member.id.clone();
            state.assigned.insert(id, key);
            if let Some(parent) = parent {
                state.children.entry(parent).or_default().push(id);
            }
            if let Some(session) = session
                && parent.is_none()
            {
                // The session now lives here (for `hint`, this moves it).
                match state.bindings.get_mut(&session) {
                    Some(b) if b.key != key => {
                        let old = (b.key, std::mem::replace(&mut b.worker, worker.clone()));
                        b.earlier.retain(|(k, _)| *k != key);
                        if !b.earlier.iter().any(|(k, _)| *k == old.0) {
                            b.earlier.push(old);
                        }
                        b.key = key;
                    }
                    Some(_) => {}
                    None => {
                        state.bindings.insert(
                            session,
                            Binding {
                                key,
                                worker: worker.clone(),
                                earlier: Vec::new(),
                            },
                        );
                    }
                }
            }
            RequestStarted {
                pool: state.config.name.clone(),
                worker,
                request_id: id,
                queued: enqueued.elapsed(),
            }
            .emit(&state.telemetry);
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
            }))
        }
    }
}

/// Forgets `session` and asks every worker that ran it to drop its state.
fn release_session(state: &mut PoolState, session: &str) -> SessionRelease {
    let mut release = SessionRelease::default();
    let Some(binding) = state.bindings.remove(session) else {
        return release;
    };
    let holders = std::iter::once((binding.key, binding.worker)).chain(binding.earlier);
    for (key, worker) in holders {
        let link = state.slots[key.slot]
            .member(key.generation)
            .filter(|m| !m.closed)
            .and_then(|m| m.link().cloned());
        let Some(link) = link else {
            release.gone.push(worker);
            continue;
        };
        let kind = Kind::ReleaseSession(snakepit_proto::v1::ReleaseSession {
            session_id: session.to_string(),
        });
        let Some((id, rx)) = send_release(&link, "<release session>", kind) else {
            release.gone.push(worker);
            continue;
        };
        release.sent.push(ReleaseSent {
            worker,
            id,
            answer: rx,
        });
    }
    release
}

fn least_loaded(state: &PoolState, depth: u32) -> Option<usize> {
    // Ties go to the lowest slot: a worker that just answered is the one most
    // likely still awake (polling), so back-to-back calls stay fast, while
    // concurrent calls still spread because loads differ.
    let mut best: Option<(usize, u32)> = None;
    for (slot, s) in state.slots.iter().enumerate() {
        if let Some(m) = &s.current
            && let Some(limit) = m.routable_limit(depth)
            && m.in_flight < limit
            && best.is_none_or(|(_, load)| m.in_flight < load)
        {
            best = Some((slot, m.in_flight));
        }
    }
    best.map(|(slot, _)| slot)
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
        if request.sink.is_closed() {
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
        request.sink.fail(Error::QueueTimeout {
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
    if let Some(pos) = state.queue.position(id) {
        let request = state.queue.remove(pos);
        RequestCancelled {
            pool: state.config.name.clone(),
            tool: request.tool.to_string(),
            stage: "queued",
        }
        .emit(&state.telemetry);
        request.sink.fail(Error::Cancelled);
        state.queue_depth.set(state.queue.len() as f64);
        return;
    }
    if let Some(link) = link_of(state, id) {
        // Keep the worker counted busy until it answers: it still is.
        if let Some(pending) = link.conn.forget(id) {
            link.conn
                .send(connection::cancel_frame(id, "caller gave up"));
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
        let due = state
            .config
            .max_requests
            .is_some_and(|max| member.completed >= max);
        if due && state.slots[key.slot].role_of(key.generation) == Some(Role::Current) {
            recycle(myself, state, key, RecycleReason::Requests).await;
        }
    }
    pump(myself, state);
    maybe_stop_workers(state);
}

/// Starts a successor for the slot's current worker; the swap happens when
/// the successor is ready (`on_ready`).
async fn recycle(
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
        && matches!(current.state, MemberState::Ready(_))
        && slot.successor.is_none()
        && slot.recycle_not_before.is_none_or(|t| Instant::now() >= t);
    if !due {
        return;
    }
    current.recycle = Some(reason);
    start_member(myself, state, key.slot, Role::Successor).await;
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
    if state.booting && workers_up == state.slots.len() {
        state.booting = false;
        for waiter in state.ready_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }
    check_recovery(myself, state);
    pump(myself, state);
}

fn check_recovery(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    if !state.restarts.is_degraded() {
        return;
    }
    let full = workers_up(state) == state.slots.len();
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

fn on_gone(
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

    for request in gone.retry {
        requeue(state, Box::new(request), &member.id);
    }

    if !state.accepting {
        // Its requests are settled: the others may stop now.
        maybe_stop_workers(state);
        maybe_finish_shutdown(myself, state);
        return;
    }
    match role {
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
        for request in state.queue.take_all() {
            request.sink.fail(err.clone());
        }
        state.queue_depth.set(0.0);
    }
    pump(myself, state);
}

/// A successor failed to start: the current worker keeps serving, and the
/// recycling is tried again after the slot's backoff.
fn note_failed_successor(state: &mut PoolState, slot: usize) {
    let backoff = state.restarts.backoff(state.slots[slot].failures);
    let s = &mut state.slots[slot];
    s.failures += 1;
    s.recycle_not_before = Some(Instant::now() + backoff);
    if let Some(current) = &mut s.current {
        current.recycle = None;
    }
}

fn on_start_failed(state: &mut PoolState, err: &Error) {
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
fn requeue(state: &mut PoolState, mut request: Box<Request>, failed_worker: &str) {
    if request.sink.is_closed() {
        return;
    }
    if !state.accepting {
        request.sink.fail(Error::ShuttingDown);
        return;
    }
    RequestRetried {
        pool: state.config.name.clone(),
        tool: request.tool.to_string(),
        failed_worker: failed_worker.to_string(),
    }
    .emit(&state.telemetry);
    request.retry = false;
    request.enqueued = Instant::now();
    state.queue.push_front(request);
}

fn schedule_restart(myself: &ActorRef<PoolMessage>, state: &mut PoolState, slot: usize) {
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
fn maybe_stop_workers(state: &mut PoolState) {
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

fn maybe_finish_shutdown(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let members = state.slots.iter().any(|s| s.members().next().is_some());
    if !state.accepting && !members && state.live.is_empty() {
        state.queue_depth.set(0.0);
        for reply in state.shutdown_replies.drain(..) {
            let _ = reply.send(());
        }
        myself.stop(None);
    }
}

fn status(state: &PoolState) -> PoolStatus {
    let mut workers = Vec::new();
    for slot in &state.slots {
        for member in slot.current.iter().chain(slot.draining.iter()) {
            let link = member.link();
            workers.push(WorkerStatus {
                id: member.id.clone(),
                pid: link.map(|l| l.pid),
                ready: matches!(member.state, MemberState::Ready(_)) && !member.closed,
                draining: matches!(member.state, MemberState::Draining(_)),
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
        size: state.slots.len(),
        workers_up: workers_up(state),
        in_flight: state.assigned.len(),
        queued: state.queue.len(),
        degraded: state.restarts.is_degraded(),
        workers,
        tools,
    }
}
