//! [`HostCallContext`]: what a host tool gets besides its arguments — the
//! calling session, the calling worker's pool, and a way to call back into
//! Python on that worker while the Python caller waits.
//!
//! Built by the host's call dispatch (`calls.rs`) for each host call; used by
//! host tools and by the FFI (`FfiTarget::nested`).

use std::time::Duration;

use snakepit_proto::Value;

use crate::error::Error;
use crate::handle::{Call, ExecStream, PoolHandle};
use crate::sessions::Session;

/// What a host tool gets besides its arguments: the calling session and a
/// way to call back into Python.
#[derive(Clone)]
pub struct HostCallContext {
    pub(super) session: Option<Session>,
    pub(super) pool: PoolHandle,
    pub(super) parent: u64,
    /// When the Python caller stops waiting for this host call.
    pub(super) deadline: tokio::time::Instant,
    /// The correlation id of the Python code that called, when it had one.
    pub(super) correlation: Option<String>,
}

impl std::fmt::Debug for HostCallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCallContext")
            .field(
                "session",
                &self.session.as_ref().map(|s| s.id().to_string()),
            )
            .field("pool", &self.pool.name())
            .field("correlation_id", &self.correlation)
            .finish()
    }
}

impl HostCallContext {
    /// The session the calling Python tool runs in, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The pool of the calling worker.
    pub fn pool(&self) -> &PoolHandle {
        &self.pool
    }

    /// The correlation id of the Python code that called (its request's, or
    /// one it set), when it had one; calls back into Python carry it.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation.as_deref()
    }

    /// Calls `tool` back in Python, in the caller's session, on the caller's
    /// worker (which runs it while the caller waits); `args` as in
    /// [`Call::from_args`].
    pub async fn execute(&self, tool: &str, args: impl Into<Value>) -> Result<Value, Error> {
        self.run(Call::from_args(tool, args.into())?).await
    }

    /// Runs `call` back in Python, as [`execute`](Self::execute) does. Unless
    /// the call sets its own timeout, it gets what is left of the Python
    /// caller's wait.
    pub async fn run(&self, call: Call) -> Result<Value, Error> {
        self.pool.execute(self.nested(call)).await
    }

    /// Runs a streaming `call` back in Python, as [`run`](Self::run) does.
    pub async fn run_stream(&self, call: Call) -> Result<ExecStream, Error> {
        self.pool.execute_stream(self.nested(call)).await
    }

    /// `call` as a nested call of the waiting Python caller: its session, its
    /// worker, and what is left of its wait unless the call sets a timeout.
    fn nested(&self, mut call: Call) -> Call {
        if call.timeout.is_none() {
            let left = self
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            call.timeout = Some(left.max(Duration::from_millis(1)));
        }
        if let Some(session) = &self.session {
            call.session_id = Some(session.id().to_string());
        }
        if self.parent != 0 {
            call.parent = Some(self.parent);
        }
        if let Some(id) = &self.correlation
            && call.correlation().is_none()
        {
            call = call.correlation_id(id.clone());
        }
        call
    }
}
