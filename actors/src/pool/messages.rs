//! Messages the pool actor receives. Callers never build these: they use
//! [`PoolHandle`](crate::PoolHandle).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::RpcReplyPort;
use snakepit_proto::v1;

use super::slots::WorkerId;
use crate::config::Affinity;
use crate::error::{Error, ExitStatus};
use crate::telemetry::{ExitCause, RecycleReason};
use crate::wire::{Connection, Sink};

/// Identifies one incarnation of a worker slot: the slot index, and which
/// restart of it. Messages about an older incarnation are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerKey {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
}

/// A ready worker, as the pool routes to it.
#[derive(Clone)]
pub struct WorkerLink {
    pub(crate) conn: Connection<Retry>,
    pub(crate) capacity: u32,
    pub(crate) startup: Duration,
    pub(crate) hello: Arc<v1::Hello>,
    pub(crate) pid: u32,
}

/// Why a worker left, as it tells its pool.
pub struct WorkerGone {
    pub(crate) pid: u32,
    pub(crate) status: ExitStatus,
    pub(crate) cause: ExitCause,
    pub(crate) failed_requests: usize,
    pub(crate) startup_error: Option<Error>,
    /// Idempotent requests that were running on it, to run again elsewhere.
    pub(crate) retry: Vec<Request>,
}

/// A call waiting for a worker.
pub(crate) struct Request {
    pub id: u64,
    pub tool: Arc<str>,
    pub execute: v1::Execute,
    pub sink: Sink,
    pub enqueued: Instant,
    /// Run it again on another worker if its worker dies (idempotent calls,
    /// first attempt only).
    pub retry: bool,
    /// The session it belongs to, if any.
    pub session: Option<Arc<str>>,
    /// How it picks its worker when it has a session.
    pub affinity: Affinity,
    /// For a call a host tool makes back into Python: the request whose tool
    /// is waiting; it runs on that request's worker.
    pub parent: Option<u64>,
    /// For a call carrying an object ref: the worker holding it, where the
    /// call must run whatever its affinity.
    pub pin: Option<Box<RefPin>>,
    /// The call's span (disabled when nothing records spans).
    pub span: tracing::Span,
    /// The bytes of the shared-memory regions `execute` names, held until
    /// the request is sent (the worker then holds references of its own).
    pub shared: Vec<bytes::Bytes>,
    /// For a batch (`execute.batch`): its callers, one per call in order;
    /// its `sink` is then the batch's own (`Sink::Batch`).
    pub batch: Option<Box<BatchCalls>>,
}

/// The callers of a batch, and where its answers arrive.
pub(crate) struct BatchCalls {
    pub members: Vec<BatchMember>,
    pub answers: tokio::sync::oneshot::Receiver<Result<crate::wire::BatchAnswers, Error>>,
}

/// One caller of a batch.
pub(crate) struct BatchMember {
    /// The caller's request id (what it cancels by).
    pub id: u64,
    pub sink: tokio::sync::oneshot::Sender<Result<snakepit_proto::Value, Error>>,
    pub session: Option<Arc<str>>,
    pub enqueued: Instant,
    /// For an idempotent call's first attempt: it, to run again if the
    /// batch's worker dies.
    pub retry: Option<Box<Retry>>,
}

/// The worker a call must run on because it carries a ref that worker holds.
#[derive(Debug, Clone)]
pub(crate) struct RefPin {
    /// The worker, as named in the ref id (`{worker}/{n}`).
    pub worker: WorkerId,
    /// One ref it carries (for errors).
    pub ref_id: String,
    /// That ref's session.
    pub session: String,
}

impl Request {
    /// Fails the request: its caller, or every caller of a batch.
    pub fn fail(self, err: Error) {
        match self.batch {
            Some(batch) => {
                for member in batch.members {
                    let _ = member.sink.send(Err(err.clone()));
                }
            }
            None => self.sink.fail(err),
        }
    }

    /// Whether no one waits for it any more.
    pub fn is_abandoned(&self) -> bool {
        match &self.batch {
            Some(batch) => batch.members.iter().all(|m| m.sink.is_closed()),
            None => self.sink.is_closed(),
        }
    }

    /// Whether it may have to skip ahead of, or wait behind, the queue's
    /// order: strict-affinity session calls, nested calls, calls pinned to
    /// the worker holding their refs.
    pub fn is_special(&self) -> bool {
        self.parent.is_some()
            || self.pin.is_some()
            || (self.session.is_some() && self.affinity.is_strict())
    }
}

/// What asking a pool to release a session found: the workers told (and
/// their answers to come), and those that held the session but are gone.
/// Both empty: no worker of this pool ran the session.
#[derive(Default)]
pub struct SessionRelease {
    /// Workers told to drop the session.
    pub sent: Vec<ReleaseSent>,
    /// Workers that held the session and are gone (or going).
    pub gone: Vec<String>,
}

/// One worker told to drop a session.
pub struct ReleaseSent {
    /// The worker.
    pub worker: String,
    /// The id of the release exchange.
    pub id: u64,
    /// The worker's answer.
    pub answer: tokio::sync::oneshot::Receiver<Result<snakepit_proto::Value, Error>>,
}

/// A snapshot of a pool.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// The workers it aims for: its configured size (for a remote pool:
    /// the workers it expects; fewer than that are attached while
    /// `workers_up` is lower), or an autoscaled pool's target now.
    pub size: usize,
    /// An autoscaled pool's `min_size` (`None`: a fixed size).
    pub min_size: Option<usize>,
    /// An autoscaled pool's `max_size` (`None`: a fixed size).
    pub max_size: Option<usize>,
    /// Its workers run on node agents.
    pub remote: bool,
    /// Workers ready.
    pub workers_up: usize,
    /// Requests on workers right now.
    pub in_flight: usize,
    /// Requests waiting for a worker.
    pub queued: usize,
    /// Restarted more often than its policy allows (see `RestartPolicy`),
    /// or a remote pool that no node agent serves now.
    pub degraded: bool,
    /// Each worker.
    pub workers: Vec<WorkerStatus>,
    /// Tools the adapter exposes (from the first ready worker's `Hello`).
    pub tools: Vec<v1::ToolSpec>,
}

/// One worker in a [`PoolStatus`].
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    /// Worker id.
    pub id: String,
    /// The node agent running it (remote pools).
    pub agent: Option<String>,
    /// OS process id, when it runs.
    pub pid: Option<u32>,
    /// Whether it takes requests.
    pub ready: bool,
    /// Being recycled: finishing its in-flight requests, taking no new ones.
    pub draining: bool,
    /// Missed a heartbeat and has not answered since; gets no new requests.
    pub suspect: bool,
    /// Requests it is running.
    pub in_flight: u32,
    /// Requests it finished.
    pub completed: u64,
    /// Python version reported in `Hello`.
    pub python_version: Option<String>,
    /// Whether its Python runs with the GIL.
    pub gil_enabled: Option<bool>,
    /// Requests it runs at once.
    pub capacity: u32,
}

/// What the pool actor is told.
pub enum PoolMessage {
    /// A new call.
    Submit(RequestBox),
    /// A worker answered request `id` (or it ended).
    Done {
        /// Which worker.
        key: WorkerKey,
        /// Which request.
        id: u64,
    },
    /// The caller of `id` gave up.
    Cancel {
        /// Which request.
        id: u64,
    },
    /// The consumer of stream `id` took `chunks` more items.
    Credit {
        /// Which request.
        id: u64,
        /// How many.
        chunks: u32,
    },
    /// A worker said `Hello`.
    WorkerReady {
        /// Which worker.
        key: WorkerKey,
        /// How to reach it.
        link: WorkerLink,
    },
    /// A worker's process ended.
    WorkerGone {
        /// Which worker.
        key: WorkerKey,
        /// Why.
        gone: WorkerGone,
    },
    /// Start slot `slot` again (after a backoff).
    Restart {
        /// Which slot.
        slot: usize,
    },
    /// A worker is due for recycling (its age or memory; the pool counts
    /// requests itself).
    RecycleDue {
        /// Which worker.
        key: WorkerKey,
        /// Why.
        reason: RecycleReason,
    },
    /// A worker missed a heartbeat (`suspect`), or answered again after
    /// missing some. A suspect worker gets no new requests.
    Suspect {
        /// Which worker.
        key: WorkerKey,
        /// Whether it is suspect now.
        suspect: bool,
    },
    /// A recycled worker's drain timeout passed.
    DrainDeadline {
        /// Which worker.
        key: WorkerKey,
    },
    /// Look again whether a degraded pool has recovered.
    HealthCheck,
    /// Seats on node agents may have appeared (remote pools).
    AgentsChanged,
    /// A remote worker's agent is draining: the worker gets no new work,
    /// finishes what it runs within `grace`, and its slot is filled
    /// elsewhere.
    Retire {
        /// Which worker.
        key: WorkerKey,
        /// How long its requests may still take.
        grace: std::time::Duration,
    },
    /// Tell the worker holding ref `ref_id` to drop it.
    ReleaseRef {
        /// The ref's session.
        session: String,
        /// The ref.
        ref_id: String,
        /// The worker's answer to come, or `None` when the worker is gone
        /// (and the ref with it).
        reply: RpcReplyPort<
            Option<tokio::sync::oneshot::Receiver<Result<snakepit_proto::Value, Error>>>,
        >,
    },
    /// Forget `session` and tell its worker to drop what it holds for it.
    ReleaseSession {
        /// The session.
        session: String,
        /// What happened.
        reply: RpcReplyPort<SessionRelease>,
    },
    /// Expire requests that waited past the queue timeout.
    SweepQueue,
    /// Answered once every worker is ready, or with the first start failure.
    WaitReady(RpcReplyPort<Result<(), Error>>),
    /// A snapshot.
    Status(RpcReplyPort<PoolStatus>),
    /// Stop taking calls, let in-flight ones finish until `deadline`, stop the
    /// workers, and answer once every process is reaped.
    Shutdown {
        /// Latest time for in-flight requests.
        deadline: Instant,
        /// Answered when everything is gone.
        reply: RpcReplyPort<()>,
    },
    /// The shutdown deadline passed.
    ShutdownDeadline,
    /// The batching window of batch `epoch` under `key` closed.
    BatchDue {
        /// Which calls.
        key: super::batching::BatchKey,
        /// Which batch of them.
        epoch: u64,
    },
    /// An autoscaled pool's periodic look at its load.
    Autoscale,
    /// An idempotent call of a batch whose worker died: run it again.
    Requeue {
        /// The call, as its last attempt.
        request: RequestBox,
        /// The worker that died.
        failed_worker: String,
    },
}

/// A boxed request, so that the message enum stays small.
pub struct RequestBox(pub(crate) Box<Request>);

/// What it takes to send a request again: what an idempotent request's
/// first attempt leaves with its connection (which carries it unread). A
/// [`Request`] becomes one in [`Retry::of`] and is made again from it in
/// [`Retry::into_request`], so the two shapes of a request convert in one
/// place.
pub(crate) struct Retry {
    pub execute: v1::Execute,
    pub session: Option<Arc<str>>,
    pub affinity: Affinity,
    pub parent: Option<u64>,
    pub span: tracing::Span,
    pub shared: Vec<bytes::Bytes>,
}

impl Retry {
    /// What `request` needs kept to run again elsewhere.
    pub fn of(request: &Request) -> Self {
        Self {
            execute: request.execute.clone(),
            session: request.session.clone(),
            affinity: request.affinity,
            parent: request.parent,
            span: request.span.clone(),
            shared: request.shared.clone(),
        }
    }

    /// The request `id` again, to run on another worker: its second and
    /// last attempt, answered through `sink`.
    pub fn into_request(self, id: u64, tool: Arc<str>, sink: Sink) -> Request {
        Request {
            id,
            tool,
            execute: self.execute,
            sink,
            enqueued: Instant::now(),
            retry: false,
            session: self.session,
            affinity: self.affinity,
            parent: self.parent,
            // A call carrying a ref is never retried (see `submit`).
            pin: None,
            span: self.span,
            shared: self.shared,
            batch: None,
        }
    }
}
