//! One worker connection: a writer task and a reader task around a Unix
//! stream, and the table of requests waiting for an answer.
//!
//! The pool registers a request here and queues its frame; the writer task
//! batches whatever frames are queued into one write. The reader task decodes
//! frames, completes the waiting caller directly (no actor hop on the hot path)
//! and tells the pool the request is done so it can hand out the next one.
//! Connection-level frames (`Hello`, a start-up failure) and the end of the
//! stream go to the worker actor that owns the connection.
//!
//! The worker is not trusted: it may complete only requests of this
//! connection (the table keeps the ids of requests whose caller gave up until
//! their answer comes), say `Hello` once, and send only worker frames;
//! anything else closes the connection as a protocol violation. At most
//! `max_host_calls` of its host calls run at once (more are refused with
//! kind `BUSY`), and their answers wait in a bounded queue: while it is
//! full, the reader stops reading the worker, so a worker that floods the
//! host and never reads cannot grow the host's memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ractor::ActorRef;
use snakepit_proto::framing::{self, FrameError};
use snakepit_proto::v1::{self, Frame, frame::Kind};
use snakepit_proto::{Value, frames};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Error;
use crate::pool::{PoolMessage, WorkerKey};
use crate::worker::WorkerMessage;

/// One item of a streamed result.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position in the stream, from 0.
    pub seq: u64,
    /// The item.
    pub value: Value,
    /// Metadata the tool attached (`StreamChunk.metadata`).
    pub metadata: Vec<(String, Value)>,
}

/// Where the answer to a request goes.
pub(crate) enum Sink {
    Unary(oneshot::Sender<Result<Value, Error>>),
    Stream(mpsc::UnboundedSender<Result<Chunk, Error>>),
}

impl Sink {
    /// Whether the caller has gone away.
    pub fn is_closed(&self) -> bool {
        match self {
            Sink::Unary(tx) => tx.is_closed(),
            Sink::Stream(tx) => tx.is_closed(),
        }
    }

    /// Completes the request with an error.
    pub fn fail(self, err: Error) {
        match self {
            Sink::Unary(tx) => {
                let _ = tx.send(Err(err));
            }
            Sink::Stream(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

/// What it takes to send a request again.
pub(crate) struct Retry {
    pub execute: v1::Execute,
    pub session: Option<Arc<str>>,
    pub affinity: crate::config::Affinity,
    pub parent: Option<u64>,
}

/// A request waiting for its answer.
pub(crate) struct Pending {
    pub tool: Arc<str>,
    pub sink: Sink,
    /// For an idempotent call's first attempt: the request, to run again
    /// elsewhere if this worker dies.
    pub retry: Option<Box<Retry>>,
    /// A stream chunk reached the caller (a stream that has started is never
    /// retried: the caller would see items twice).
    pub delivered: bool,
    /// Tell the pool it is done before telling the caller: for session
    /// calls, so that the caller's next call finds the worker free again
    /// (affinity would otherwise see it busy and move the session). Other
    /// calls wake their caller first, which is a little faster.
    pub done_first: bool,
}

/// Answers to host calls that may wait for the writer; past this the reader
/// stops reading the worker until the writer catches up.
const REPLY_QUEUE: usize = 256;

#[derive(Default)]
struct Table {
    closed: bool,
    pending: HashMap<u64, Pending>,
    /// Requests of this connection whose caller gave up (`forget`) and whose
    /// final frame has not come yet: their answer is still theirs to give.
    forgotten: HashSet<u64>,
}

/// Whose request a final frame answers.
enum Owner {
    /// A caller waits for it.
    Waiting(Pending),
    /// The caller gave up; only the pool still counts it.
    Forgotten,
}

impl Table {
    /// Takes request `id` out of the table if this connection owns it.
    fn take(&mut self, id: u64) -> Option<Owner> {
        match self.pending.remove(&id) {
            Some(p) => Some(Owner::Waiting(p)),
            None => self.forgotten.remove(&id).then_some(Owner::Forgotten),
        }
    }
}

/// Handle to a live connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    frames: mpsc::UnboundedSender<Frame>,
    table: Arc<Mutex<Table>>,
}

/// Why the connection ended.
#[derive(Debug, Clone)]
pub(crate) enum Closed {
    /// The worker closed its end.
    Eof,
    /// Reading failed.
    Io(String),
    /// The worker sent a frame we refuse (oversized, undecodable, unexpected).
    Protocol(String),
}

/// Who the reader reports to.
pub(crate) struct Listeners {
    pub bridge: Arc<crate::host_bridge::HostBridge>,
    pub worker: ActorRef<WorkerMessage>,
    pub pool: ActorRef<PoolMessage>,
    pub key: WorkerKey,
    pub pool_name: Arc<str>,
    pub worker_id: Arc<str>,
    pub telemetry: crate::telemetry::Telemetry,
}

impl Connection {
    pub fn start(
        stream: UnixStream,
        max_frame_bytes: usize,
        busy_poll: Duration,
        max_host_calls: usize,
        listeners: Listeners,
    ) -> Self {
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE);
        let table = Arc::new(Mutex::new(Table::default()));
        tokio::spawn(write_loop(write, rx, replies_rx, max_frame_bytes));
        let reader = Reader {
            table: table.clone(),
            listeners,
            host_calls: HostCalls {
                running: Arc::new(Semaphore::new(max_host_calls)),
                limit: max_host_calls,
                replies: replies_tx,
                frames: tx.clone(),
            },
            hello_seen: false,
        };
        tokio::spawn(read_loop(read, max_frame_bytes, busy_poll, reader));
        Self { frames: tx, table }
    }

    /// Records `pending` under `id`. Fails (handing it back) once the
    /// connection is closed, so nothing can be registered after the drain.
    pub fn register(&self, id: u64, pending: Pending) -> Result<(), Pending> {
        let mut table = self.table.lock().expect("pending table lock");
        if table.closed {
            return Err(pending);
        }
        table.pending.insert(id, pending);
        Ok(())
    }

    /// Queues a frame for the writer. Frames queued after the connection died
    /// are dropped; their requests are failed by the drain.
    pub fn send(&self, frame: Frame) {
        let _ = self.frames.send(frame);
    }

    /// Drops the waiting caller of `id` (it gave up); a late answer is
    /// still this connection's (the pool is told it is done), and goes
    /// nowhere else.
    pub fn forget(&self, id: u64) -> Option<Pending> {
        let mut table = self.table.lock().expect("pending table lock");
        let pending = table.pending.remove(&id)?;
        table.forgotten.insert(id);
        Some(pending)
    }

    /// Closes the table and returns every request still waiting.
    pub fn close(&self) -> Vec<(u64, Pending)> {
        let mut table = self.table.lock().expect("pending table lock");
        table.closed = true;
        table.forgotten.clear();
        table.pending.drain().collect()
    }
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Frame>,
    mut replies: mpsc::Receiver<Frame>,
    max_frame_bytes: usize,
) {
    const BATCH_BYTES: usize = 256 * 1024;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let frame = tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            Some(frame) = replies.recv() => frame,
        };
        encode_or_log(&frame, &mut buf, max_frame_bytes);
        while buf.len() < BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => encode_or_log(&frame, &mut buf, max_frame_bytes),
                Err(_) => match replies.try_recv() {
                    Ok(frame) => encode_or_log(&frame, &mut buf, max_frame_bytes),
                    Err(_) => break,
                },
            }
        }
        if let Err(err) = write.write_all(&buf).await {
            tracing::debug!(error = %err, "Worker connection write failed; the reader will see it close.");
            return;
        }
        buf.clear();
    }
    // Every sender is gone: the worker is being torn down. Closing our write
    // half tells the Python side to exit.
    let _ = write.shutdown().await;
}

fn encode_or_log(frame: &Frame, buf: &mut BytesMut, limit: usize) {
    match framing::encode(frame, buf, limit) {
        Ok(()) => {}
        // A host tool's answer is not checked before it is queued: too large
        // to send, it becomes an error its Python caller sees at once.
        Err(FrameError::TooLarge { size, limit })
            if matches!(frame.kind, Some(Kind::HostCallResult(_))) =>
        {
            let refused = host_call_too_large_frame(frame.id, size, limit);
            if let Err(err) = framing::encode(&refused, buf, limit) {
                tracing::error!(id = frame.id, error = %err, "Dropped a host call's answer that could not be encoded.");
            }
        }
        // Requests are size-checked before they are queued, so this only
        // fires for a bug; the request then times out instead of corrupting
        // the stream.
        Err(err) => {
            tracing::error!(id = frame.id, error = %err, "Dropped a frame that could not be encoded.");
        }
    }
}

/// Where a worker's host calls go, and how many may run.
struct HostCalls {
    running: Arc<Semaphore>,
    limit: usize,
    /// Their answers, bounded (see [`REPLY_QUEUE`]).
    replies: mpsc::Sender<Frame>,
    /// The connection's own queue, for what the host pushes later (watches).
    frames: mpsc::UnboundedSender<Frame>,
}

/// What the reader task keeps.
struct Reader {
    table: Arc<Mutex<Table>>,
    listeners: Listeners,
    host_calls: HostCalls,
    hello_seen: bool,
}

async fn read_loop(
    mut read: OwnedReadHalf,
    max_frame_bytes: usize,
    busy_poll: Duration,
    mut reader: Reader,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let table = reader.table.clone();
    let closed = loop {
        match framing::decode(&mut buf, max_frame_bytes) {
            Ok(Some(frame)) => match dispatch(frame, &mut reader) {
                Ok(None) => continue,
                // Waits while the answers queue is full: the worker is
                // not read meanwhile.
                Ok(Some(reply)) => {
                    let _ = reader.host_calls.replies.send(reply).await;
                    continue;
                }
                Err(reason) => break Closed::Protocol(reason),
            },
            Ok(None) => {}
            Err(err @ (FrameError::TooLarge { .. } | FrameError::Malformed { .. })) => {
                break Closed::Protocol(err.to_string());
            }
        }
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(64 * 1024);
        }
        // Poll only for a lone outstanding unary request: that is when a
        // sleeping thread's wake-up would dominate the call. With several in
        // flight, answers arrive in batches anyway, and a stream's chunks keep
        // coming: the CPU is better left to Python.
        let awaiting = !busy_poll.is_zero() && {
            let table = table.lock().expect("pending table lock");
            table.pending.len() == 1
                && table
                    .pending
                    .values()
                    .all(|p| matches!(p.sink, Sink::Unary(_)))
        };
        let polled = if awaiting {
            poll_briefly(&read, &mut buf, busy_poll).await
        } else {
            None
        };
        let read = match polled {
            Some(result) => result,
            None => read.read_buf(&mut buf).await,
        };
        match read {
            Ok(0) => break Closed::Eof,
            Ok(_) => {}
            Err(err) => break Closed::Io(err.to_string()),
        }
    };
    let _ = reader
        .listeners
        .worker
        .cast(WorkerMessage::ConnectionClosed(closed));
}

/// Polls the socket without sleeping for up to `budget` while answers are
/// due, yielding to other tasks between tries. `None`: nothing came, sleep.
async fn poll_briefly(
    read: &OwnedReadHalf,
    buf: &mut BytesMut,
    budget: Duration,
) -> Option<std::io::Result<usize>> {
    let until = Instant::now() + budget;
    loop {
        match read.try_read_buf(buf) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return Some(other),
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

/// Routes one frame from the worker. `Ok(Some(frame))` is an answer to queue
/// (waiting for room); an `Err` is a protocol violation.
fn dispatch(frame: Frame, r: &mut Reader) -> Result<Option<Frame>, String> {
    let id = frame.id;
    let Some(kind) = frame.kind else {
        return Err(format!("frame {id} has no content"));
    };
    let table = &*r.table;
    let l = &r.listeners;
    match kind {
        Kind::Result(result) => {
            let entry = owned(table, id, "a result")?;
            let value = result.value.map(Value::from).unwrap_or(Value::Null);
            let entry = match entry {
                Some(Owner::Waiting(p)) => Some(p),
                _ => None,
            };
            let done_first = entry.as_ref().is_none_or(|p| p.done_first);
            if done_first {
                done(l, id);
            }
            if let Some(p) = entry
                && let Sink::Unary(tx) = p.sink
            {
                let _ = tx.send(Ok(value));
            }
            if !done_first {
                done(l, id);
            }
        }
        Kind::Error(err) if id == 0 => {
            if r.hello_seen {
                return Err("an error for request 0 after Hello".into());
            }
            let _ = l.worker.cast(WorkerMessage::StartupFailed(err));
        }
        Kind::Error(err) => {
            let entry = owned(table, id, "an error")?;
            done(l, id);
            if let Some(Owner::Waiting(p)) = entry {
                p.sink.fail(Error::from_wire(err, &l.pool_name, &p.tool));
            }
        }
        Kind::Chunk(chunk) => {
            let last = chunk.is_final;
            let item = chunk.value.map(|value| Chunk {
                seq: chunk.seq,
                value: Value::from(value),
                metadata: chunk
                    .metadata
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            });
            let mut t = table.lock().expect("pending table lock");
            let t = &mut *t;
            if let Some(p) = t.pending.get_mut(&id) {
                if matches!(p.sink, Sink::Unary(_)) {
                    return Err(format!("a chunk for request {id}, which is not a stream"));
                }
                if !last {
                    if let (Sink::Stream(tx), Some(item)) = (&p.sink, item) {
                        p.delivered = true;
                        let _ = tx.send(Ok(item));
                    }
                    return Ok(None);
                }
                let p = t.pending.remove(&id).expect("just seen");
                done(l, id);
                if let (Sink::Stream(tx), Some(item)) = (&p.sink, item) {
                    let _ = tx.send(Ok(item));
                }
            } else if t.closed || (!last && t.forgotten.contains(&id)) {
                // Nothing waits for it.
            } else if last && t.forgotten.remove(&id) {
                done(l, id);
            } else {
                return Err(not_ours("a chunk", id));
            }
        }
        Kind::Hello(hello) => {
            if std::mem::replace(&mut r.hello_seen, true) {
                return Err("a second Hello".into());
            }
            let _ = l.worker.cast(WorkerMessage::Hello(hello));
        }
        Kind::Pong(_) => {
            let _ = l.worker.cast(WorkerMessage::Pong(id));
        }
        Kind::HostCall(call) => {
            let calls = &r.host_calls;
            match calls.running.clone().try_acquire_owned() {
                Ok(permit) => l.bridge.handle(
                    calls.frames.clone(),
                    calls.replies.clone(),
                    permit,
                    l.pool_name.clone(),
                    id,
                    call,
                ),
                Err(_) => {
                    crate::telemetry::HostCallRejected {
                        pool: l.pool_name.to_string(),
                        worker: l.worker_id.to_string(),
                        tool: call.tool.clone(),
                        limit: calls.limit,
                    }
                    .emit(&l.telemetry);
                    return Ok(Some(crate::host_bridge::busy_reply(
                        id,
                        &call.tool,
                        calls.limit,
                    )));
                }
            }
        }
        Kind::Telemetry(event) => {
            crate::telemetry::PythonEvent {
                pool: l.pool_name.to_string(),
                worker: l.worker_id.to_string(),
                request_id: id,
                name: event.name,
                measurements: event.measurements.into_iter().collect(),
                metadata: event
                    .metadata
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
                duration: (event.duration_nanos > 0)
                    .then(|| Duration::from_nanos(event.duration_nanos)),
            }
            .emit(&l.telemetry);
        }
        Kind::Execute(_)
        | Kind::Cancel(_)
        | Kind::Credit(_)
        | Kind::ReleaseSession(_)
        | Kind::ReleaseRef(_)
        | Kind::Ping(_)
        | Kind::Shutdown(_)
        | Kind::HostCallResult(_)
        | Kind::VariableUpdate(_) => {
            return Err(format!("worker sent a host-only frame (id {id})"));
        }
    }
    Ok(None)
}

/// Takes request `id`, answered by a final frame (`what`), out of the table:
/// `Ok(None)` once the table is closed (the worker is gone; nothing waits),
/// an `Err` when this connection does not own `id`.
fn owned(table: &Mutex<Table>, id: u64, what: &str) -> Result<Option<Owner>, String> {
    let mut t = table.lock().expect("pending table lock");
    match t.take(id) {
        Some(owner) => Ok(Some(owner)),
        None if t.closed => Ok(None),
        None => Err(not_ours(what, id)),
    }
}

fn not_ours(what: &str, id: u64) -> String {
    format!("{what} for request {id}, which is not running on this worker")
}

fn done(l: &Listeners, id: u64) {
    let _ = l.pool.cast(PoolMessage::Done { key: l.key, id });
}

/// The answer to host call `id` whose result was `size` bytes, over `limit`.
pub(crate) fn host_call_too_large_frame(id: u64, size: usize, limit: usize) -> Frame {
    let error = v1::Error {
        kind: v1::ErrorKind::PayloadTooLarge as i32,
        python_type: "HostToolError".into(),
        message: format!(
            "the host tool's result of {size} bytes exceeds the frame limit of {limit} bytes"
        ),
        details: [("size", size), ("limit", limit)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    frames::host_call_error(id, error)
}
