//! The host: what Python may call (host tools, callbacks, the session's
//! variables), the contexts host tools get, and the calls themselves.
//!
//! ```text
//! host.rs              Host: the registries, the late-bound sessions and pools
//! ├── tools.rs         the host tool registry and invocation (a leaf)
//! ├── calls.rs         HostCall frames → supervised tasks → HostCallResult
//! ├── variables_ops.rs snakepit.variables.* as a table of operations
//! └── context.rs       HostCallContext: session, pool, calls back into Python
//! ```
//!
//! The runtime builds the [`Host`] before anything else and hands it (as
//! [`Host::calls`]) to every pool, whose workers' connections pass their
//! host calls on; once the session registry and the pools have started, the
//! runtime binds them here. `host/` is the only holder of these late-bound
//! handles. Every call runs in its own task, bounded by its timeout, so the
//! connection's reader never waits (the connection bounds how many run at
//! once: `max_host_calls`); a host tool may call back into Python through its
//! [`HostCallContext`], and that call goes to the same worker, which runs it
//! while the Python caller waits (see `Call::parent`). A panicking host tool
//! becomes a Python exception, not a dead registry.

mod calls;
mod context;
pub mod tools;
mod variables_ops;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::ActorRef;
use snakepit_proto::Value;
use snakepit_proto::v1::Frame;
use tokio::sync::mpsc;

pub use context::HostCallContext;
use variables_ops::PREFIX as VARIABLES_PREFIX;

use crate::config::SessionsConfig;
use crate::handle::PoolHandle;
use crate::sessions::{OwnerMessage, Session, SessionHost, SessionsMessage};
use crate::wire::HostCalls;
use tools::HostToolRegistry;

/// Prefix of the host calls Python makes to run a callback (a Rust closure
/// handed to Python by `Ffi::callback`).
pub(crate) const CALLBACK_PREFIX: &str = "snakepit.callback.";

/// What the runtime's host calls share: the host tools, the sessions, the
/// pools, and the calls running now.
pub(crate) struct Host {
    pub registry: HostToolRegistry<HostCallContext>,
    /// Rust closures handed to Python as callables (`Ffi::callback`), by
    /// session; Python calls them as host tool `snakepit.callback.{id}`.
    pub callbacks: HostToolRegistry<HostCallContext>,
    sessions: OnceLock<ActorRef<SessionsMessage>>,
    pools: OnceLock<Arc<BTreeMap<String, PoolHandle>>>,
    pub config: SessionsConfig,
    tasks: calls::Tasks,
}

impl Host {
    pub fn new(config: SessionsConfig) -> Self {
        Self {
            registry: HostToolRegistry::new(),
            callbacks: HostToolRegistry::new(),
            sessions: OnceLock::new(),
            pools: OnceLock::new(),
            config,
            tasks: calls::Tasks::new(),
        }
    }

    pub fn set_sessions(&self, sessions: ActorRef<SessionsMessage>) {
        let _ = self.sessions.set(sessions);
    }

    pub fn sessions(&self) -> Option<ActorRef<SessionsMessage>> {
        self.sessions.get().cloned()
    }

    pub fn set_pools(&self, pools: Arc<BTreeMap<String, PoolHandle>>) {
        let _ = self.pools.set(pools);
    }

    pub fn pools(&self) -> Arc<BTreeMap<String, PoolHandle>> {
        self.pools.get().cloned().unwrap_or_default()
    }

    pub fn pool(&self, name: &str) -> Option<PoolHandle> {
        self.pools.get()?.get(name).cloned()
    }

    async fn owner(&self, session: &str) -> Option<ActorRef<OwnerMessage>> {
        let sessions = self.sessions.get()?;
        let id = session.to_string();
        crate::ask::ask(
            sessions,
            |reply| SessionsMessage::Lookup { id, reply },
            None,
        )
        .await
        .ok()
        .flatten()
    }

    /// A handle on the live session `id` that does not end it when dropped.
    pub async fn session(self: &Arc<Self>, id: &str, default_pool: &str) -> Option<Session> {
        let owner = self.owner(id).await?;
        Some(Session::new(
            id.to_string(),
            owner,
            self.pools(),
            default_pool.to_string(),
            self.clone(),
            false,
        ))
    }

    /// Runs `snakepit.variables.<op>` for `session` within `timeout`; `push`
    /// is the calling worker's connection, for a watch's updates.
    async fn variables(
        &self,
        session: &str,
        op: &str,
        args: tools::HostArgs,
        timeout: Duration,
        push: &mpsc::UnboundedSender<Frame>,
    ) -> Result<Value, tools::HostToolError> {
        let Some(owner) = self.owner(session).await else {
            return Err(tools::HostToolError::UnknownTool {
                name: format!("session `{session}`"),
                available: Vec::new(),
            });
        };
        let on = variables_ops::Op {
            owner,
            session,
            timeout,
            push,
        };
        variables_ops::run(op, on, args).await
    }

    /// Where workers' connections hand their host calls.
    pub fn calls(self: &Arc<Self>) -> Arc<dyn HostCalls> {
        Arc::new(calls::Calls(self.clone()))
    }

    /// Ends the host calls still running (at shutdown, once the pools have
    /// stopped); later ones are not started.
    pub fn shutdown(&self) {
        self.tasks.shutdown();
    }
}

impl SessionHost for Host {
    fn drop_session(&self, session: &str) {
        self.registry.drop_session(session);
        self.callbacks.drop_session(session);
    }

    fn pool(&self, name: &str) -> Option<PoolHandle> {
        Host::pool(self, name)
    }
}
