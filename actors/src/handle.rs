//! The caller's side of a pool: [`PoolHandle`] builds requests, sends them to
//! the pool actor, and waits for the answer. A caller that stops waiting (its
//! future dropped, or its timeout expired) cancels the request on the worker.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

use futures::Stream;
use prost::Message;
use ractor::ActorRef;
use snakepit_proto::{Value, v1};
use tokio::sync::{mpsc, oneshot};

use crate::ask::{Unanswered, ask};
use crate::config::{Affinity, PoolConfig};
use crate::error::Error;
use crate::pool::{PoolMessage, PoolStatus, RefId, RefPin, Request, RequestBox, ToolIndex};
use crate::telemetry::{RequestException, RequestStopped, Telemetry};
use crate::wire::shm::{ArenaUsage, PoolArena, SharedBufferMut};
use crate::wire::{Chunk, Sink};

use crate::wire::next_request_id;

/// Room in a frame for everything but the arguments.
const FRAME_OVERHEAD: usize = 64;

/// One call: a tool, its arguments, and how to run it.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// Tool name.
    pub tool: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Vec<(String, Value)>,
    /// Overrides the pool's call (or stream) timeout.
    pub timeout: Option<Duration>,
    /// The session the call belongs to.
    pub session_id: Option<String>,
    /// Request metadata (trace context and the like), visible to Python.
    pub metadata: Vec<(String, String)>,
    /// Safe to run twice: if the worker running it dies, the call is retried
    /// once on another worker instead of failing with `WorkerCrashed`.
    pub idempotent: bool,
    /// How a session call picks its worker; unset: the pool's default.
    pub affinity: Option<Affinity>,
    /// Set for a call a host tool makes back into Python: the request whose
    /// tool is waiting for that host tool. It goes to the same worker, which
    /// runs it while the caller waits, whatever its load.
    pub(crate) parent: Option<u64>,
}

impl Call {
    /// A call of `tool` with keyword arguments.
    pub fn new(tool: impl Into<String>) -> Self {
        Self {
            tool: tool.into(),
            ..Self::default()
        }
    }

    /// A call of `tool` from one argument value: a map of keyword arguments
    /// (string keys, such as `serde_json::json!({...})` converted), a list or
    /// tuple of positional ones, `Null` for none, anything else as the single
    /// positional argument.
    pub fn from_args(tool: &str, args: Value) -> Result<Self, Error> {
        let mut call = Call::new(tool);
        match args {
            Value::Null => {}
            Value::Map(entries) => {
                for (k, v) in entries {
                    match k {
                        Value::Str(k) => call.kwargs.push((k, v)),
                        other => {
                            return Err(Error::BadArguments {
                                tool: tool.to_string(),
                                parameter: None,
                                message: format!(
                                    "keyword argument names must be strings, got {}",
                                    other.type_name()
                                ),
                            });
                        }
                    }
                }
            }
            Value::List(items) | Value::Tuple(items) => call.args = items,
            other => call.args.push(other),
        }
        Ok(call)
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.kwargs.push((name.into(), value.into()));
        self
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how this session call picks its worker.
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = Some(affinity);
        self
    }

    /// Makes the call part of `session` (its id reaches Python as
    /// `session_context.session_id`, and affinity applies).
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session_id = Some(session.into());
        self
    }

    /// Adds request metadata, visible to Python as
    /// `session_context.request_metadata` — e.g. the W3C `traceparent` of the
    /// caller's span, which Python spans then carry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Sets the call's correlation id (request metadata
    /// [`CORRELATION_HEADER`](crate::telemetry::trace::CORRELATION_HEADER)):
    /// it reaches Python's telemetry and log records and the host's events
    /// for this call. Without one, the call gets a fresh id when submitted.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata
            .retain(|(k, _)| k != crate::telemetry::trace::CORRELATION_HEADER);
        self.metadata.push((
            crate::telemetry::trace::CORRELATION_HEADER.into(),
            id.into(),
        ));
        self
    }

    /// The call's correlation id, when it has one (a non-empty value).
    pub fn correlation(&self) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, v)| k == crate::telemetry::trace::CORRELATION_HEADER && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Marks the call safe to retry once on another worker if its worker dies.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
}

/// A handle to one pool; cheap to clone.
#[derive(Clone)]
pub struct PoolHandle {
    actor: ActorRef<PoolMessage>,
    config: Arc<PoolConfig>,
    telemetry: Telemetry,
    tools: ToolIndex,
    arena: Option<Arc<PoolArena>>,
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle")
            .field("pool", &self.config.name)
            .finish()
    }
}

impl PoolHandle {
    pub(crate) fn new(
        actor: ActorRef<PoolMessage>,
        config: Arc<PoolConfig>,
        telemetry: Telemetry,
        tools: ToolIndex,
        arena: Option<Arc<PoolArena>>,
    ) -> Self {
        Self {
            actor,
            config,
            telemetry,
            tools,
            arena,
        }
    }

    /// A writable buffer of `len` bytes in the pool's shared-memory arena:
    /// fill it, [`freeze`](SharedBufferMut::freeze) it, and use the bytes
    /// as an [`NdArray`](snakepit_proto::NdArray)'s data (or as bytes): they
    /// then reach any worker of the pool without a copy. `None` when the
    /// pool has no shared memory (a remote pool, or `max_shared_bytes = 0`);
    /// [`Error::SharedMemoryExhausted`] when the arena is full.
    pub fn shared_buffer(&self, len: usize) -> Option<Result<SharedBufferMut, Error>> {
        self.arena.as_ref().map(|arena| arena.buffer(len))
    }

    /// How much of the pool's shared-memory arena is in use (`None`: the
    /// pool has none).
    pub fn shared_usage(&self) -> Option<ArenaUsage> {
        self.arena.as_ref().map(|arena| arena.usage())
    }

    pub(crate) fn actor(&self) -> &ActorRef<PoolMessage> {
        &self.actor
    }

    /// The session variables `tool` requires (its `required_variables`), as
    /// the pool's workers declared them.
    pub fn required_variables(&self, tool: &str) -> Vec<String> {
        self.tools.required_variables(tool)
    }

    /// Forgets `session` in this pool and has the worker holding it drop what
    /// it keeps for it (the adapter's `on_session_release` hook runs), within
    /// `timeout`. `Ok` also when no worker of this pool ran the session.
    pub async fn release_session(&self, session: &str, timeout: Duration) -> Result<(), String> {
        let session = session.to_string();
        let asked = ask(
            &self.actor,
            |reply| PoolMessage::ReleaseSession { session, reply },
            Some(timeout),
        )
        .await;
        let release = match asked {
            Ok(release) => release,
            Err(Unanswered::TimedOut(_)) => {
                return Err(format!(
                    "pool `{}` did not answer within {timeout:?}",
                    self.name()
                ));
            }
            Err(Unanswered::Gone) => return Err(format!("pool `{}` is shut down", self.name())),
        };
        let mut problems: Vec<String> = release
            .gone
            .into_iter()
            .map(|worker| format!("worker {worker}, which held the session, is gone"))
            .collect();
        let answers = release.sent.into_iter().map(|sent| async move {
            match tokio::time::timeout(timeout, sent.answer).await {
                Ok(Ok(Ok(_))) => None,
                Ok(Ok(Err(err))) => Some(format!("worker {}: {err}", sent.worker)),
                Ok(Err(_)) => Some(format!("worker {} ended before it answered", sent.worker)),
                Err(_) => {
                    let _ = self.actor.cast(PoolMessage::Cancel { id: sent.id });
                    Some(format!(
                        "worker {} did not answer within {timeout:?}",
                        sent.worker
                    ))
                }
            }
        });
        problems.extend(
            futures::future::join_all(answers)
                .await
                .into_iter()
                .flatten(),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Runs `call` and returns its result.
    pub async fn execute(&self, call: Call) -> Result<Value, Error> {
        let (call, correlation) = with_correlation_id(call);
        let span = call_span(self.name(), &call, false, &correlation);
        let call = with_trace_context(call, &span);
        let result = self
            .execute_traced(call, correlation)
            .instrument(span.clone())
            .await;
        span.record("outcome", outcome_label(&result));
        result
    }

    async fn execute_traced(&self, call: Call, correlation: Arc<str>) -> Result<Value, Error> {
        let started = Instant::now();
        let tool = call.tool.clone();
        let timeout = call.timeout.unwrap_or_else(|| self.config.call_timeout());
        let (tx, rx) = oneshot::channel();
        let result = match self.submit(call, false, timeout, Sink::Unary(tx)) {
            Err(err) => Err(err),
            Ok(id) => {
                let mut guard = CancelOnDrop {
                    actor: &self.actor,
                    id,
                    armed: true,
                };
                let outcome = match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(result)) => {
                        guard.armed = false;
                        result
                    }
                    // The pool dropped the request without answering; it only
                    // does so when it is gone.
                    Ok(Err(_)) => {
                        guard.armed = false;
                        Err(Error::ShuttingDown)
                    }
                    Err(_) => Err(Error::Timeout {
                        tool: tool.clone(),
                        after: timeout,
                    }),
                };
                drop(guard);
                outcome
            }
        };
        self.record(&tool, &result, started, false, &correlation);
        result
    }

    /// Runs a streaming `call`; the stream yields the tool's chunks as they come.
    pub async fn execute_stream(&self, call: Call) -> Result<ExecStream, Error> {
        let (call, correlation) = with_correlation_id(call);
        let span = call_span(self.name(), &call, true, &correlation);
        let call = with_trace_context(call, &span);
        let started = Instant::now();
        let tool = call.tool.clone();
        let timeout = call.timeout.unwrap_or_else(|| self.config.stream_timeout());
        let (tx, rx) = mpsc::unbounded_channel();
        let submitted = span.in_scope(|| self.submit(call, true, timeout, Sink::Stream(tx)));
        match submitted {
            Ok(id) => Ok(ExecStream {
                pool: self.clone(),
                id,
                tool,
                rx,
                started,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                timeout,
                consumed_since_credit: 0,
                window: self.config.stream_window,
                finished: false,
                span,
                chunks: 0,
                correlation,
            }),
            Err(err) => {
                span.record("outcome", err.outcome());
                self.record(
                    &tool,
                    &Err::<(), _>(err.clone()),
                    started,
                    true,
                    &correlation,
                );
                Err(err)
            }
        }
    }

    /// Tells the worker holding `ref_id` (of `session`) to drop it. `Ok` when
    /// that worker is gone too (the ref went with it) and when it no longer
    /// had the ref.
    pub async fn release_ref(
        &self,
        session: &str,
        ref_id: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let (session, ref_id) = (session.to_string(), ref_id.to_string());
        let asked = ask(
            &self.actor,
            |reply| PoolMessage::ReleaseRef {
                session,
                ref_id,
                reply,
            },
            Some(timeout),
        )
        .await;
        let answer = match asked {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(()),
            Err(Unanswered::TimedOut(_)) => {
                return Err(Error::Timeout {
                    tool: "<release ref>".into(),
                    after: timeout,
                });
            }
            Err(Unanswered::Gone) => return Err(Error::ShuttingDown),
        };
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result.map(|_| ()),
            // The worker ended before it answered: the ref is gone with it.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(Error::Timeout {
                tool: "<release ref>".into(),
                after: timeout,
            }),
        }
    }

    /// Waits until every worker has started (or one failed to).
    pub async fn wait_ready(&self) -> Result<(), Error> {
        ask(&self.actor, PoolMessage::WaitReady, None).await?
    }

    /// A snapshot of the pool's workers, queue and tools.
    pub async fn status(&self) -> Result<PoolStatus, Error> {
        Ok(ask(&self.actor, PoolMessage::Status, None).await?)
    }

    fn submit(
        &self,
        call: Call,
        stream: bool,
        timeout: Duration,
        sink: Sink,
    ) -> Result<u64, Error> {
        let session: Option<Arc<str>> = call
            .session_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Arc::from);
        let pin = pin_for_refs(&call)?;
        check_nesting(&call)?;
        let mut execute = v1::Execute {
            tool: call.tool.clone(),
            session_id: call.session_id.unwrap_or_default(),
            args: call.args.into_iter().map(Into::into).collect(),
            kwargs: call
                .kwargs
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            timeout_ms: timeout.as_millis() as u64,
            stream,
            stream_window: if stream { self.config.stream_window } else { 0 },
            metadata: call.metadata.into_iter().collect(),
            batch: Vec::new(),
        };
        // Large arrays and bytes go in the pool's shared memory; what is
        // left must fit in a frame.
        let mut shared = Vec::new();
        if let Some(arena) = &self.arena {
            for value in execute.args.iter_mut().chain(execute.kwargs.values_mut()) {
                arena.export(value, &mut shared)?;
            }
        }
        let size = execute.encoded_len() + FRAME_OVERHEAD;
        if size > self.config.max_frame_bytes {
            return Err(Error::PayloadTooLarge {
                size,
                limit: self.config.max_frame_bytes,
            });
        }
        let id = next_request_id();
        let request = Request {
            id,
            tool: Arc::from(call.tool),
            execute,
            sink,
            enqueued: Instant::now(),
            // A call carrying refs can only run where they live.
            retry: call.idempotent && pin.is_none(),
            session,
            affinity: call.affinity.unwrap_or(self.config.affinity),
            parent: call.parent,
            pin,
            span: tracing::Span::current(),
            shared,
            batch: None,
        };
        self.actor
            .cast(PoolMessage::Submit(RequestBox(Box::new(request))))
            .map_err(|_| Error::ShuttingDown)?;
        Ok(id)
    }

    fn record<T>(
        &self,
        tool: &str,
        result: &Result<T, Error>,
        started: Instant,
        stream: bool,
        correlation: &Arc<str>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => err.outcome(),
        };
        if let Err(err) = result
            && let Some(exc) = err.python_exception()
        {
            RequestException {
                pool: self.config.name.clone(),
                tool: tool.to_string(),
                python_type: exc.python_type.clone(),
                message: exc.message.clone(),
                correlation_id: correlation.clone(),
            }
            .emit(&self.telemetry);
        }
        // Unknown tool names come from callers; keep the label set bounded.
        let tool = if matches!(result, Err(Error::UnknownTool { .. })) {
            "<unknown>".to_string()
        } else {
            tool.to_string()
        };
        RequestStopped {
            pool: self.config.name.clone(),
            tool,
            outcome,
            duration: started.elapsed(),
            stream,
            correlation_id: correlation.clone(),
        }
        .emit(&self.telemetry);
    }
}

/// Refuses, before anything is sent, an argument nested deeper than the wire
/// carries: the worker's decoder could not read the frame, so the request
/// could only fail there (and, before workers answered undecodable frames
/// per request, it took the worker down with it).
fn check_nesting(call: &Call) -> Result<(), Error> {
    let too_deep = |parameter: String, err: snakepit_proto::TooDeep| Error::BadArguments {
        tool: call.tool.clone(),
        message: format!("{parameter} is {err}"),
        parameter: Some(parameter),
    };
    for (i, value) in call.args.iter().enumerate() {
        if let Some(err) = value.wire_depth_error() {
            return Err(too_deep(format!("args[{i}]"), err));
        }
    }
    for (name, value) in &call.kwargs {
        if let Some(err) = value.wire_depth_error() {
            return Err(too_deep(name.clone(), err));
        }
    }
    Ok(())
}

/// The worker a call must run on: the one holding the refs it carries. All
/// its refs must live on one worker and belong to the call's session.
fn pin_for_refs(call: &Call) -> Result<Option<Box<RefPin>>, Error> {
    let mut pin: Option<Box<RefPin>> = None;
    let call_session = call.session_id.as_deref().unwrap_or_default();
    let mut visit = |id: &str, session: &str| -> Result<(), Error> {
        if session != call_session {
            return Err(Error::SessionMismatch {
                ref_id: id.to_string(),
                ref_session: session.to_string(),
                call_session: call_session.to_string(),
            });
        }
        let Ok(RefId { worker, .. }) = id.parse() else {
            return Err(Error::RefNotFound {
                ref_id: id.to_string(),
                session: session.to_string(),
                reason: "not a ref id this runtime made (`worker/n`)".into(),
            });
        };
        match &pin {
            None => {
                pin = Some(Box::new(RefPin {
                    worker,
                    ref_id: id.to_string(),
                    session: session.to_string(),
                }));
            }
            Some(p) if p.worker == worker => {}
            Some(p) => {
                return Err(Error::BadArguments {
                    tool: call.tool.clone(),
                    parameter: None,
                    message: format!(
                        "refs `{}` and `{id}` live on different workers ({} and {worker}); \
                         one call can only use objects of one worker",
                        p.ref_id, p.worker
                    ),
                });
            }
        }
        Ok(())
    };
    for value in call.args.iter().chain(call.kwargs.iter().map(|(_, v)| v)) {
        visit_refs(value, &mut visit)?;
    }
    Ok(pin)
}

fn visit_refs(
    value: &Value,
    visit: &mut impl FnMut(&str, &str) -> Result<(), Error>,
) -> Result<(), Error> {
    match value {
        Value::Ref(r) => visit(&r.id, &r.session_id),
        Value::StreamRef(r) => visit(&r.id, &r.session_id),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            items.iter().try_for_each(|v| visit_refs(v, visit))
        }
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            visit_refs(k, visit)?;
            visit_refs(v, visit)
        }),
        _ => Ok(()),
    }
}

struct CancelOnDrop<'a> {
    actor: &'a ActorRef<PoolMessage>,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.actor.cast(PoolMessage::Cancel { id: self.id });
        }
    }
}

/// The chunks of a streaming call, as they arrive.
///
/// The worker runs at most `stream_window` chunks ahead of this consumer: a
/// slow consumer slows the Python generator rather than filling memory.
/// Dropping the stream early cancels the generator.
pub struct ExecStream {
    pool: PoolHandle,
    id: u64,
    tool: String,
    rx: mpsc::UnboundedReceiver<Result<Chunk, Error>>,
    started: Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    consumed_since_credit: u32,
    window: u32,
    finished: bool,
    /// The call's span, open while the stream is; its chunks are counted.
    span: tracing::Span,
    chunks: u64,
    correlation: Arc<str>,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("tool", &self.tool)
            .field("id", &self.id)
            .field("correlation_id", &self.correlation)
            .finish()
    }
}

impl ExecStream {
    /// The call's correlation id (the caller's, or the one it was given).
    pub fn correlation_id(&self) -> &str {
        &self.correlation
    }

    fn finish(&mut self, result: &Result<(), Error>) {
        if !self.finished {
            self.finished = true;
            self.pool
                .record(&self.tool, result, self.started, true, &self.correlation);
            let outcome = match result {
                Ok(()) => "ok",
                Err(err) => err.outcome(),
            };
            self.span.record("outcome", outcome);
            self.span.record("chunks", self.chunks);
        }
    }
}

impl Stream for ExecStream {
    type Item = Result<Chunk, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.chunks += 1;
                this.consumed_since_credit += 1;
                if this.consumed_since_credit >= (this.window / 2).max(1) {
                    let _ = this.pool.actor.cast(PoolMessage::Credit {
                        id: this.id,
                        chunks: this.consumed_since_credit,
                    });
                    this.consumed_since_credit = 0;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.finish(&Err(err.clone()));
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.finish(&Ok(()));
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let err = Error::Timeout {
                        tool: this.tool.clone(),
                        after: this.timeout,
                    };
                    let _ = this.pool.actor.cast(PoolMessage::Cancel { id: this.id });
                    this.finish(&Err(err.clone()));
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.pool.actor.cast(PoolMessage::Cancel { id: self.id });
            self.finish(&Err(Error::Cancelled));
        }
    }
}

/// The span of one call: `snakepit.call`, with its pool, tool, whether a
/// session and a retry apply, and (recorded at its end) its outcome.
fn call_span(pool: &str, call: &Call, stream: bool, correlation: &str) -> tracing::Span {
    tracing::info_span!(
        target: "snakepit::call",
        "snakepit.call",
        otel.name = "snakepit.call",
        otel.kind = "client",
        pool = %pool,
        tool = %call.tool,
        correlation_id = %correlation,
        session = call.session_id.is_some(),
        idempotent = call.idempotent,
        stream,
        outcome = tracing::field::Empty,
        chunks = tracing::field::Empty,
    )
}

/// `call` with a correlation id (a fresh one unless the caller set one), and
/// that id.
fn with_correlation_id(mut call: Call) -> (Call, Arc<str>) {
    if let Some(id) = call.correlation() {
        let id = Arc::from(id);
        return (call, id);
    }
    let id = crate::telemetry::trace::new_correlation_id();
    let shared = Arc::from(id.as_str());
    call = call.correlation_id(id);
    (call, shared)
}

/// `call` with the span's W3C trace context in its metadata, unless the
/// caller set one: the worker's spans nest under the call.
fn with_trace_context(mut call: Call, span: &tracing::Span) -> Call {
    if call.metadata.iter().any(|(k, _)| k == "traceparent") {
        return call;
    }
    if let Some(tc) = span.in_scope(crate::telemetry::trace::current) {
        call.metadata.push(("traceparent".into(), tc.traceparent));
        if let Some(state) = tc.tracestate {
            call.metadata.push(("tracestate".into(), state));
        }
    }
    call
}

fn outcome_label(result: &Result<Value, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) => err.outcome(),
    }
}
