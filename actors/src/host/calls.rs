//! Host calls: the `HostCall` frames a worker sends, answered with
//! `HostCallResult`.
//!
//! A worker's connection hands each host call to [`Calls`] (the
//! [`HostCalls`] the pools give their workers), which runs it as a task
//! supervised by the host: tracked until it ends, aborted when the runtime
//! shuts down, and answered even when it panics. A call names one of the
//! host's own tools (`snakepit.host_tools.list`, `snakepit.variables.*`), a
//! Rust callback handed to Python (`snakepit.callback.*`), or a host tool
//! registered by the embedding service, which gets a [`HostCallContext`].

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use snakepit_proto::Value;
use snakepit_proto::v1::{self, Frame};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::tools::{HostArgs, HostToolError, host_call_result, panic_message};
use super::{CALLBACK_PREFIX, Host, HostCallContext};
use crate::wire::{HostCallReply, HostCalls};

/// The host calls of every worker, handed to pools as their [`HostCalls`].
pub(crate) struct Calls(pub(super) Arc<Host>);

impl HostCalls for Calls {
    fn start(
        &self,
        pool: &Arc<str>,
        call: v1::HostCall,
        reply: HostCallReply,
        push: mpsc::UnboundedSender<Frame>,
    ) {
        let host = self.0.clone();
        let pool = pool.clone();
        // Python's call, as a span under the Python span that made it; the
        // calls the host tool makes back into Python are its children.
        let span = tracing::info_span!(
            target: "snakepit::host_call",
            "snakepit.host_call",
            otel.name = %format!("snakepit.host_call {}", call.tool),
            otel.kind = "server",
            pool = %pool,
            tool = %call.tool,
            correlation_id = %call.correlation_id,
        );
        if !call.traceparent.is_empty() {
            crate::telemetry::trace::set_remote_parent(&span, &call.traceparent);
        }
        let task = async move {
            let tool = call.tool.clone();
            let run = AssertUnwindSafe(run(&host, &pool, &push, call)).catch_unwind();
            let result = run.await.unwrap_or_else(|panic| {
                Err(HostToolError::failed(format!(
                    "the host panicked while answering `{tool}`: {}",
                    panic_message(panic)
                )))
            });
            reply.send(host_call_result(&tool, result)).await;
        };
        self.0
            .tasks
            .spawn(tracing::Instrument::instrument(task, span));
    }
}

/// The host calls running now: a task each, ended at shutdown.
pub(super) struct Tasks(Mutex<Option<JoinSet<()>>>);

impl Tasks {
    pub fn new() -> Self {
        Self(Mutex::new(Some(JoinSet::new())))
    }

    /// Runs `task`, unless the host has shut down (then its caller gets no
    /// answer: its worker is being stopped too).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock().expect("host call tasks lock");
        if let Some(set) = set.as_mut() {
            // Forget the calls that ended, so the set holds only live ones.
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    /// Aborts every running call; later ones are not started.
    pub fn shutdown(&self) {
        let set = self.0.lock().expect("host call tasks lock").take();
        if let Some(mut set) = set {
            set.abort_all();
        }
    }
}

/// Answers host call `call` from a worker of `pool`.
async fn run(
    host: &Arc<Host>,
    pool: &str,
    push: &mpsc::UnboundedSender<Frame>,
    call: v1::HostCall,
) -> Result<Value, HostToolError> {
    let session = (!call.session_id.is_empty()).then_some(call.session_id.as_str());
    let timeout = match call.timeout_ms {
        0 => host.config.host_call_timeout(),
        ms => Duration::from_millis(ms),
    };
    let args = HostArgs::from_wire(call.args, call.kwargs);
    if call.tool == "snakepit.host_tools.list" {
        return Ok(host.registry.exposed_specs(session));
    }
    if let Some(op) = call.tool.strip_prefix(super::VARIABLES_PREFIX) {
        let Some(session) = session else {
            return Err(HostToolError::BadArguments {
                parameter: None,
                message: "session variables need a session: call the tool from a session".into(),
            });
        };
        return host.variables(session, op, args, timeout, push).await;
    }
    let Some(pool_handle) = host.pool(pool) else {
        return Err(HostToolError::failed(format!("pool `{pool}` is gone")));
    };
    let session_handle = match session {
        Some(id) => host.session(id, pool).await,
        None => None,
    };
    let ctx = HostCallContext {
        session: session_handle,
        pool: pool_handle,
        parent: call.parent_request_id,
        deadline: tokio::time::Instant::now() + timeout,
        correlation: (!call.correlation_id.is_empty()).then(|| call.correlation_id.clone()),
    };
    if let Some(id) = call.tool.strip_prefix(CALLBACK_PREFIX) {
        return host
            .callbacks
            .invoke(session, id, ctx, args, false, timeout)
            .await;
    }
    host.registry
        .invoke(session, &call.tool, ctx, args, true, timeout)
        .await
}
