//! One worker connection: a writer task and a reader task around any byte
//! stream (a Unix socketpair today; any `AsyncRead`/`AsyncWrite` pair, such
//! as a relayed gRPC stream, carries the same frames).
//!
//! The owner registers a request here and queues its frame; the writer task
//! batches whatever frames are queued into one write. The reader task decodes
//! frames, completes the waiting caller directly (no actor hop on the hot path)
//! and reports the request done through [`ConnectionEvents::done`] so the pool
//! can hand out the next one. Connection-level frames (`Hello`, `Pong`, a
//! start-up failure) and the end of the stream go to the same
//! [`ConnectionEvents`]; host calls go to the [`HostCalls`] it was given.
//!
//! The worker is not trusted: it may complete only requests of this
//! connection (the table keeps the ids of requests whose caller gave up until
//! their answer comes), say `Hello` once, and send only worker frames;
//! anything else closes the connection as a protocol violation. At most
//! `max_host_calls` of its host calls run at once (more are refused with
//! kind `BUSY`), and their answers wait in a bounded queue: while it is
//! full, the reader stops reading the worker, so a worker that floods the
//! host and never reads cannot grow the host's memory.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use snakepit_proto::framing::{self, FrameError};
use snakepit_proto::v1::{self, Frame, frame::Kind};
use snakepit_proto::{Value, frames};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::pending::{BatchAnswers, Chunk, Owner, Pending, Sink, Table};
use super::shm::ConnShm;
use crate::error::Error;
use crate::telemetry::{HostCallRejected, PythonEvent, Telemetry};

/// What a connection tells the actors that own it. Called from the reader
/// task: each must return at once (send a message, never wait).
pub(crate) trait ConnectionEvents: Send + Sync + 'static {
    /// Request `id` of this connection got its final frame: the worker is
    /// free of it (whether or not a caller still waited).
    fn done(&self, id: u64);
    /// The worker's first frame.
    fn hello(&self, hello: v1::Hello);
    /// The worker could not load its adapter (an `Error` for request 0).
    fn startup_failed(&self, error: v1::Error);
    /// The worker answered heartbeat `seq`.
    fn pong(&self, seq: u64);
    /// The connection ended; every frame before it was handed over.
    fn closed(&self, why: Closed);
}

/// Where a connection's host calls go (the host, which the wire does not
/// know). Called from the reader task: it must return at once and run the
/// call elsewhere, answering through `reply`.
pub(crate) trait HostCalls: Send + Sync + 'static {
    /// Starts `call` from a worker of pool `pool`. `push` is the
    /// connection's own queue, for frames the call leaves behind (a watch's
    /// updates).
    fn start(
        &self,
        pool: &Arc<str>,
        call: v1::HostCall,
        reply: HostCallReply,
        push: mpsc::UnboundedSender<Frame>,
    );
}

/// The way back for one host call: its answer goes to the connection's
/// bounded reply queue, and one of the worker's `max_host_calls` permits is
/// held until it is queued.
pub(crate) struct HostCallReply {
    id: u64,
    permit: OwnedSemaphorePermit,
    replies: mpsc::Sender<Frame>,
    shm: Option<Arc<ConnShm>>,
}

impl HostCallReply {
    /// Queues the answer (waiting for room); a worker that is gone no longer
    /// waits for it. Large arrays and bytes go through shared memory, when
    /// the worker has it; a full arena makes the answer that error.
    pub async fn send(self, mut result: v1::HostCallResult) {
        if let (Some(shm), Some(v1::host_call_result::Outcome::Value(value))) =
            (&self.shm, result.outcome.as_mut())
            && let Err(err) = shm.export_leased(value)
        {
            result.outcome = Some(v1::host_call_result::Outcome::Error(shared_memory_error(
                &err,
            )));
        }
        let _ = self
            .replies
            .send(frames::host_call_result(self.id, result))
            .await;
        drop(self.permit);
    }
}

/// The wire form of an `Error::SharedMemoryExhausted` for Python.
fn shared_memory_error(err: &Error) -> v1::Error {
    let mut details = std::collections::HashMap::new();
    if let Error::SharedMemoryExhausted {
        requested,
        capacity,
        in_use,
    } = err
    {
        for (k, v) in [
            ("requested", requested),
            ("capacity", capacity),
            ("in_use", in_use),
        ] {
            details.insert(k.to_string(), v.to_string());
        }
    }
    v1::Error {
        kind: v1::ErrorKind::SharedMemoryExhausted as i32,
        python_type: "SharedMemoryExhausted".into(),
        message: err.to_string(),
        details,
        ..Default::default()
    }
}

/// A connection's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest frame read or written.
    pub max_frame_bytes: usize,
    /// How long the reader polls without sleeping while a lone unary
    /// request waits (zero: never).
    pub busy_poll: Duration,
    /// Host calls of this worker that may run at once.
    pub max_host_calls: usize,
}

/// Who the reader reports to, and the names it reports under.
pub(crate) struct Listeners<E> {
    pub events: E,
    pub host_calls: Arc<dyn HostCalls>,
    pub pool_name: Arc<str>,
    pub worker_id: Arc<str>,
    pub telemetry: Telemetry,
}

/// Answers to host calls that may wait for the writer; past this the reader
/// stops reading the worker until the writer catches up.
const REPLY_QUEUE: usize = 256;

/// Handle to a live connection; cheap to clone. `P` is what a request's
/// owner keeps with it to send it again.
pub(crate) struct Connection<P> {
    frames: mpsc::UnboundedSender<Frame>,
    table: Arc<Mutex<Table<P>>>,
    shm: Option<Arc<ConnShm>>,
}

impl<P> Clone for Connection<P> {
    fn clone(&self) -> Self {
        Self {
            frames: self.frames.clone(),
            table: self.table.clone(),
            shm: self.shm.clone(),
        }
    }
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

impl<P: Send + 'static> Connection<P> {
    /// Starts the reader task on `read` and the writer task on `write`,
    /// reporting to `listeners`. `shared` is the worker's shared memory (a
    /// local worker's, when the pool has it) and the references its
    /// dropped bytes give back.
    pub fn start<R, W, E>(
        read: R,
        write: W,
        limits: Limits,
        listeners: Listeners<E>,
        shared: Option<(Arc<ConnShm>, mpsc::UnboundedReceiver<u64>)>,
    ) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        E: ConnectionEvents,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE);
        let table = Arc::new(Mutex::new(Table::default()));
        let (shm, releases) = shared.unzip();
        tokio::spawn(write_loop(
            write,
            Queues {
                frames: rx,
                replies: replies_rx,
                releases,
            },
            limits.max_frame_bytes,
        ));
        let reader = Reader {
            shm: shm.clone(),
            table: table.clone(),
            listeners,
            host_calls: HostCallBound {
                running: Arc::new(Semaphore::new(limits.max_host_calls)),
                limit: limits.max_host_calls,
                replies: replies_tx,
                frames: tx.clone(),
            },
            hello_seen: false,
        };
        tokio::spawn(read_loop(
            read,
            limits.max_frame_bytes,
            limits.busy_poll,
            reader,
        ));
        Self {
            frames: tx,
            table,
            shm,
        }
    }

    /// Records `pending` under `id`. Fails (handing it back) once the
    /// connection is closed, so nothing can be registered after the drain.
    pub fn register(&self, id: u64, pending: Pending<P>) -> Result<(), Pending<P>> {
        let mut table = self.table.lock().expect("pending table lock");
        if table.closed {
            return Err(pending);
        }
        table.pending.insert(id, pending);
        Ok(())
    }

    /// Queues a frame for the writer. Frames queued after the connection died
    /// are dropped; their requests are failed by the drain. The regions of
    /// shared memory a request names become the worker's references now,
    /// while the request still holds them.
    pub fn send(&self, mut frame: Frame) {
        if let Some(shm) = &self.shm {
            shm.count_out(&mut frame);
        }
        let _ = self.frames.send(frame);
    }

    /// Drops the waiting caller of `id` (it gave up); a late answer is
    /// still this connection's (the pool is told it is done), and goes
    /// nowhere else.
    pub fn forget(&self, id: u64) -> Option<Pending<P>> {
        let mut table = self.table.lock().expect("pending table lock");
        let pending = table.pending.remove(&id)?;
        table.forgotten.insert(id);
        Some(pending)
    }

    /// Closes the table and returns every request still waiting.
    pub fn close(&self) -> Vec<(u64, Pending<P>)> {
        let mut table = self.table.lock().expect("pending table lock");
        table.closed = true;
        table.forgotten.clear();
        table.pending.drain().collect()
    }
}

/// What the writer sends: the connection's frames, host-call answers, and
/// references to the worker's shared memory the host no longer holds.
struct Queues {
    frames: mpsc::UnboundedReceiver<Frame>,
    replies: mpsc::Receiver<Frame>,
    releases: Option<mpsc::UnboundedReceiver<u64>>,
}

async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, queues: Queues, max_frame_bytes: usize) {
    const BATCH_BYTES: usize = 256 * 1024;
    let Queues {
        mut frames,
        mut replies,
        mut releases,
    } = queues;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let put = |frame: Frame, buf: &mut BytesMut| encode_or_log(&frame, buf, max_frame_bytes);
    loop {
        let released = async {
            match releases.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        let frame = tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            Some(frame) = replies.recv() => frame,
            Some(offset) = released => {
                let mut offsets = vec![offset];
                if let Some(r) = releases.as_mut() {
                    while let Ok(offset) = r.try_recv() {
                        offsets.push(offset);
                    }
                }
                frames::release_shared(offsets)
            }
        };
        put(frame, &mut buf);
        while buf.len() < BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => put(frame, &mut buf),
                Err(_) => match replies.try_recv() {
                    Ok(frame) => put(frame, &mut buf),
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

/// How many of a worker's host calls may run, and where their answers go.
struct HostCallBound {
    running: Arc<Semaphore>,
    limit: usize,
    /// Their answers, bounded (see [`REPLY_QUEUE`]).
    replies: mpsc::Sender<Frame>,
    /// The connection's own queue, for what the host pushes later (watches).
    frames: mpsc::UnboundedSender<Frame>,
}

/// What the reader task keeps.
struct Reader<P, E> {
    shm: Option<Arc<ConnShm>>,
    table: Arc<Mutex<Table<P>>>,
    listeners: Listeners<E>,
    host_calls: HostCallBound,
    hello_seen: bool,
}

async fn read_loop<R: AsyncRead + Unpin, P, E: ConnectionEvents>(
    mut read: R,
    max_frame_bytes: usize,
    busy_poll: Duration,
    mut reader: Reader<P, E>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let closed = loop {
        match framing::decode(&mut buf, max_frame_bytes) {
            Ok(Some(mut frame)) => {
                match resolve(&mut frame, &reader.shm).and_then(|()| dispatch(frame, &mut reader)) {
                    Ok(None) => continue,
                    // Waits while the answers queue is full: the worker is
                    // not read meanwhile.
                    Ok(Some(reply)) => {
                        let _ = reader.host_calls.replies.send(reply).await;
                        continue;
                    }
                    Err(reason) => break Closed::Protocol(reason),
                }
            }
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
        let awaiting = !busy_poll.is_zero()
            && reader
                .table
                .lock()
                .expect("pending table lock")
                .awaits_lone_unary();
        let polled = if awaiting {
            poll_briefly(&mut read, &mut buf, busy_poll).await
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
    if let Some(shm) = &reader.shm {
        shm.close();
    }
    reader.listeners.events.closed(closed);
}

/// Replaces the shared-memory regions `frame` names with their bytes.
fn resolve(frame: &mut Frame, shm: &Option<Arc<ConnShm>>) -> Result<(), String> {
    match shm {
        Some(shm) => shm.resolve_in(frame),
        // Without shared memory no frame may name a region.
        None => snakepit_proto::frames::visit_values(frame, &mut |v: &mut v1::Value| match v
            .kind
            .as_ref()
        {
            Some(v1::value::Kind::SharedBytes(_)) => {
                Err("a shared region without shared memory".to_string())
            }
            Some(v1::value::Kind::Ndarray(nd)) if nd.shared.is_some() => {
                Err("a shared region without shared memory".to_string())
            }
            _ => Ok(()),
        }),
    }
}

/// Polls the socket without sleeping for up to `budget` while answers are
/// due, yielding to other tasks between tries. `None`: nothing came, sleep.
async fn poll_briefly<R: AsyncRead + Unpin>(
    read: &mut R,
    buf: &mut BytesMut,
    budget: Duration,
) -> Option<std::io::Result<usize>> {
    let until = Instant::now() + budget;
    loop {
        if let Some(read) = try_read(read, buf).await {
            return Some(read);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

/// One read that does not wait: what is there now, or `None` (`WouldBlock`).
/// A read that returns `Pending` read nothing (`read_buf` is cancel safe).
async fn try_read<R: AsyncRead + Unpin>(
    read: &mut R,
    buf: &mut BytesMut,
) -> Option<std::io::Result<usize>> {
    std::future::poll_fn(|cx| {
        let attempt = std::pin::pin!(read.read_buf(buf));
        match attempt.poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Ready(None),
        }
    })
    .await
}

/// A batch's `Result.items` as its callers' answers; an item with no
/// outcome is the worker's fault, reported to that caller alone.
fn batch_answers(items: Vec<v1::BatchOutcome>, pool: &str, tool: &str) -> BatchAnswers {
    use v1::batch_outcome::Outcome;
    items
        .into_iter()
        .map(|item| match item.outcome {
            Some(Outcome::Value(v)) => Ok(Value::from(v)),
            Some(Outcome::Error(e)) => Err(Error::from_wire(e, pool, tool)),
            None => Err(Error::Protocol(format!(
                "the worker answered a call of batched tool `{tool}` with nothing"
            ))),
        })
        .collect()
}

/// Routes one frame from the worker. `Ok(Some(frame))` is an answer to queue
/// (waiting for room); an `Err` is a protocol violation.
fn dispatch<P, E: ConnectionEvents>(
    frame: Frame,
    r: &mut Reader<P, E>,
) -> Result<Option<Frame>, String> {
    let id = frame.id;
    let Some(kind) = frame.kind else {
        return Err(format!("frame {id} has no content"));
    };
    let table = &*r.table;
    let l = &r.listeners;
    match kind {
        Kind::Result(result) => {
            let entry = owned(table, id, "a result")?;
            let items = result.items;
            let value = result.value.map(Value::from).unwrap_or(Value::Null);
            let entry = match entry {
                Some(Owner::Waiting(p)) => Some(p),
                _ => None,
            };
            let done_first = entry.as_ref().is_none_or(|p| p.done_first);
            if done_first {
                l.events.done(id);
            }
            if let (Some(timing), Some(p)) = (result.timing, &entry) {
                record_worker_timing(&p.span, &timing, &l.worker_id);
            }
            if let Some(p) = entry {
                match p.sink {
                    Sink::Unary(tx) => {
                        let _ = tx.send(Ok(value));
                    }
                    Sink::Batch(tx) => {
                        let _ = tx.send(Ok(batch_answers(items, &l.pool_name, &p.tool)));
                    }
                    Sink::Stream(_) => {}
                }
            }
            if !done_first {
                l.events.done(id);
            }
        }
        Kind::Error(err) if id == 0 => {
            if r.hello_seen {
                return Err("an error for request 0 after Hello".into());
            }
            l.events.startup_failed(err);
        }
        Kind::Error(err) => {
            let entry = owned(table, id, "an error")?;
            l.events.done(id);
            if let Some(Owner::Waiting(p)) = entry {
                p.sink.fail(Error::from_wire(err, &l.pool_name, &p.tool));
            }
        }
        Kind::Chunk(chunk) if !chunk.run.is_empty() => {
            if chunk.is_final || chunk.value.is_some() {
                return Err(format!(
                    "a run of chunks for request {id} that is final or carries a value"
                ));
            }
            let mut t = table.lock().expect("pending table lock");
            let t = &mut *t;
            if let Some(p) = t.pending.get_mut(&id) {
                let Sink::Stream(tx) = &p.sink else {
                    return Err(format!("a chunk for request {id}, which is not a stream"));
                };
                p.delivered = true;
                for (seq, value) in (chunk.seq..).zip(chunk.run) {
                    let item = Chunk {
                        seq,
                        value: Value::from(value),
                        metadata: Vec::new(),
                    };
                    if tx.send(Ok(item)).is_err() {
                        break;
                    }
                }
            } else if !(t.closed || t.forgotten.contains(&id)) {
                return Err(not_ours("a chunk", id));
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
                if matches!(p.sink, Sink::Unary(_) | Sink::Batch(_)) {
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
                l.events.done(id);
                if let (Sink::Stream(tx), Some(item)) = (&p.sink, item) {
                    let _ = tx.send(Ok(item));
                }
            } else if t.closed || (!last && t.forgotten.contains(&id)) {
                // Nothing waits for it.
            } else if last && t.forgotten.remove(&id) {
                l.events.done(id);
            } else {
                return Err(not_ours("a chunk", id));
            }
        }
        Kind::Hello(hello) => {
            if std::mem::replace(&mut r.hello_seen, true) {
                return Err("a second Hello".into());
            }
            l.events.hello(hello);
        }
        Kind::Pong(_) => {
            l.events.pong(id);
        }
        Kind::ReleaseShared(release) => match &r.shm {
            Some(shm) => shm.release_in(&release.offsets)?,
            None => return Err("a shared-memory release without shared memory".into()),
        },
        Kind::HostCall(call) => {
            let calls = &r.host_calls;
            match calls.running.clone().try_acquire_owned() {
                Ok(permit) => {
                    let reply = HostCallReply {
                        id,
                        permit,
                        replies: calls.replies.clone(),
                        shm: r.shm.clone(),
                    };
                    let push = calls.frames.clone();
                    l.host_calls.start(&l.pool_name, call, reply, push);
                }
                Err(_) => {
                    HostCallRejected {
                        pool: l.pool_name.to_string(),
                        worker: l.worker_id.to_string(),
                        tool: call.tool.clone(),
                        limit: calls.limit,
                    }
                    .emit(&l.telemetry);
                    return Ok(Some(busy_reply(id, &call.tool, calls.limit)));
                }
            }
        }
        Kind::Telemetry(event) => {
            PythonEvent {
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
fn owned<P>(table: &Mutex<Table<P>>, id: u64, what: &str) -> Result<Option<Owner<P>>, String> {
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

/// The answer to host call `id` whose result was `size` bytes, over `limit`.
fn host_call_too_large_frame(id: u64, size: usize, limit: usize) -> Frame {
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

/// The answer to host call `id` (of `tool`) refused because `limit` host
/// calls of the worker already run: kind `BUSY`, nothing ran.
fn busy_reply(id: u64, tool: &str, limit: usize) -> Frame {
    let error = v1::Error {
        kind: v1::ErrorKind::Busy as i32,
        python_type: "HostCallRejected".into(),
        message: format!(
            "Host call to `{tool}` refused: {limit} host calls of this worker are already \
             running (max_host_calls); nothing ran, retrying later may work."
        ),
        details: [("tool".to_string(), tool.to_string())].into(),
        ..Default::default()
    };
    frames::host_call_error(id, error)
}

#[cfg(test)]
mod tests;

/// The worker's own timing of a request (decode, run, encode, back to back,
/// ending as its answer arrived) as spans under the call's span.
fn record_worker_timing(span: &tracing::Span, timing: &v1::WorkerTiming, worker: &str) {
    use crate::telemetry::trace::{Phase, record_phase};
    use std::time::{Duration, SystemTime};
    let encoded = SystemTime::now();
    let ran = encoded - Duration::from_nanos(timing.encode_nanos);
    let bound = ran - Duration::from_nanos(timing.run_nanos);
    let started = bound - Duration::from_nanos(timing.decode_nanos);
    let attributes: &[(&str, &str)] = &[("worker", worker)];
    for (name, start, end) in [
        ("snakepit.worker.decode", started, bound),
        ("snakepit.worker.run", bound, ran),
        ("snakepit.worker.encode", ran, encoded),
    ] {
        record_phase(
            span,
            Phase {
                name,
                start,
                end,
                attributes,
            },
        );
    }
}
