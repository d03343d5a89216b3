//! Sessions: one [`SessionOwner`](owner) actor per live session, under the
//! `Sessions` registry actor, and the [`Session`] handle callers hold.
//!
//! A session has an id (given or generated), creation and last-use times,
//! metadata and typed variables (`crate::variables`). Which worker holds its
//! in-memory Python state is the pools' business (they bind a session to the
//! worker that ran its first call, see `pool.rs`); the owner remembers which
//! pools it used so that a release reaches every worker concerned.
//!
//! Lifetimes:
//! - an explicit session (`RuntimeHandle::session(id)`) lives until
//!   `release()` or until it goes unused for the TTL;
//! - an auto session (`RuntimeHandle::new_session()`) also ends when its last
//!   handle is dropped.
//!
//! A release tells every worker that ran the session to drop what it holds
//! for it (the adapter's `on_session_release` hook), bounded by the cleanup
//! timeout. A failure is never swallowed: it is the event
//! `snakepit.session.cleanup.error` (session id, source, reason) and the
//! counter `snakepit_session_cleanup_errors_total`.

mod owner;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
pub(crate) use owner::{OwnerMessage, ReleaseSource, SessionHost, SessionOwner, WatchSink};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use snakepit_proto::Value;
use tokio::sync::mpsc;

use crate::config::SessionsConfig;
use crate::error::Error;
use crate::handle::{Call, ExecStream, PoolHandle};
use crate::host::{Host, HostCallContext};
use crate::host_tools::HostTool;
use crate::telemetry::Telemetry;
use crate::variables::{Constraints, UpdateSource, VarType, Variable, VariableUpdate};

/// The registry actor: which sessions are live, and the quota.
pub(crate) struct Sessions;

pub(crate) struct SessionsArgs {
    pub config: SessionsConfig,
    pub telemetry: Telemetry,
    pub bridge: Arc<Host>,
}

pub(crate) struct SessionsState {
    config: SessionsConfig,
    telemetry: Telemetry,
    bridge: Arc<Host>,
    by_id: HashMap<String, ActorRef<OwnerMessage>>,
    ids: HashMap<ActorId, String>,
    next: u64,
}

/// What the registry actor is told.
pub(crate) enum SessionsMessage {
    /// The session `id` (created if needed), or a new one with a generated id.
    Open {
        id: Option<String>,
        auto: bool,
        reply: RpcReplyPort<Result<(String, ActorRef<OwnerMessage>), Error>>,
    },
    /// The live session `id`, if any.
    Lookup {
        id: String,
        reply: RpcReplyPort<Option<ActorRef<OwnerMessage>>>,
    },
    /// How many sessions are live.
    Count(RpcReplyPort<usize>),
    /// Session `id` (owned by `actor`) is over; sent by its owner before it
    /// answers the release, so that the id is free when the caller hears back.
    Forget { id: String, actor: ActorId },
}

impl Actor for Sessions {
    type Msg = SessionsMessage;
    type State = SessionsState;
    type Arguments = SessionsArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionsMessage>,
        args: SessionsArgs,
    ) -> Result<SessionsState, ActorProcessingErr> {
        Ok(SessionsState {
            config: args.config,
            telemetry: args.telemetry,
            bridge: args.bridge,
            by_id: HashMap::new(),
            ids: HashMap::new(),
            next: 1,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionsMessage>,
        message: SessionsMessage,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionsMessage::Open { id, auto, reply } => {
                let result = open(&myself, state, id, auto).await;
                let _ = reply.send(result);
            }
            SessionsMessage::Lookup { id, reply } => {
                let _ = reply.send(state.by_id.get(&id).cloned());
            }
            SessionsMessage::Count(reply) => {
                let _ = reply.send(state.by_id.len());
            }
            SessionsMessage::Forget { id, actor } => {
                if state.by_id.get(&id).is_some_and(|a| a.get_id() == actor) {
                    state.by_id.remove(&id);
                    state.ids.remove(&actor);
                    crate::telemetry::metric_sessions_active(state.by_id.len());
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SessionsMessage>,
        event: SupervisionEvent,
        state: &mut SessionsState,
    ) -> Result<(), ActorProcessingErr> {
        let gone = match &event {
            SupervisionEvent::ActorTerminated(cell, ..) => Some(cell.get_id()),
            SupervisionEvent::ActorFailed(cell, err) => {
                tracing::error!(error = %err, "A session owner failed.");
                Some(cell.get_id())
            }
            _ => None,
        };
        if let Some(actor) = gone
            && let Some(id) = state.ids.remove(&actor)
        {
            state.by_id.remove(&id);
            crate::telemetry::metric_sessions_active(state.by_id.len());
        }
        Ok(())
    }
}

async fn open(
    myself: &ActorRef<SessionsMessage>,
    state: &mut SessionsState,
    id: Option<String>,
    auto: bool,
) -> Result<(String, ActorRef<OwnerMessage>), Error> {
    if let Some(id) = &id
        && let Some(owner) = state.by_id.get(id)
    {
        return Ok((id.clone(), owner.clone()));
    }
    if state.by_id.len() >= state.config.max_sessions {
        return Err(Error::SessionQuotaExceeded {
            max: state.config.max_sessions,
        });
    }
    let id = match id {
        Some(id) if id.is_empty() => {
            return Err(Error::Config("a session id must not be empty".into()));
        }
        Some(id) => id,
        None => loop {
            let candidate = format!("session-{}-{}", std::process::id(), state.next);
            state.next += 1;
            if !state.by_id.contains_key(&candidate) {
                break candidate;
            }
        },
    };
    let args = owner::OwnerArgs {
        registry: myself.clone(),
        id: id.clone(),
        auto,
        config: state.config.clone(),
        telemetry: state.telemetry.clone(),
        bridge: state.bridge.clone(),
    };
    let (actor, _) = Actor::spawn_linked(None, SessionOwner, args, myself.get_cell())
        .await
        .map_err(|e| Error::Config(format!("could not start session `{id}`: {e}")))?;
    state.ids.insert(actor.get_id(), id.clone());
    state.by_id.insert(id.clone(), actor.clone());
    crate::telemetry::metric_sessions_active(state.by_id.len());
    Ok((id, actor))
}

/// A session: calls that share a worker's in-memory state, typed variables,
/// and host tools of its own. Cheap to clone.
///
/// Handles from [`RuntimeHandle::new_session`](crate::RuntimeHandle::new_session)
/// release the session when the last of them is dropped; handles from
/// [`RuntimeHandle::session`](crate::RuntimeHandle::session) do not (the
/// session lives until [`release`](Self::release) or its TTL).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    owner: ActorRef<OwnerMessage>,
    pools: Arc<BTreeMap<String, PoolHandle>>,
    default_pool: String,
    bridge: Arc<Host>,
    release_on_drop: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.release_on_drop {
            let _ = self.owner.cast(OwnerMessage::Release {
                source: ReleaseSource::Dropped,
                reply: None,
            });
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .finish()
    }
}

/// A snapshot of a session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Its id.
    pub id: String,
    /// When it was opened.
    pub created: SystemTime,
    /// When it was last used.
    pub last_used: SystemTime,
    /// Whether dropping its last handle releases it.
    pub auto: bool,
    /// Pools it ran calls on.
    pub pools: Vec<String>,
    /// What the application attached to it.
    pub metadata: Vec<(String, String)>,
    /// Its variables.
    pub variables: usize,
}

impl Session {
    pub(crate) fn new(
        id: String,
        owner: ActorRef<OwnerMessage>,
        pools: Arc<BTreeMap<String, PoolHandle>>,
        default_pool: String,
        bridge: Arc<Host>,
        release_on_drop: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                owner,
                pools,
                default_pool,
                bridge,
                release_on_drop,
            }),
        }
    }

    /// Whether the session is still live (not released, not expired).
    pub fn is_live(&self) -> bool {
        matches!(
            self.inner.owner.get_status(),
            ractor::ActorStatus::Running
                | ractor::ActorStatus::Starting
                | ractor::ActorStatus::Upgrading
        )
    }

    /// [`release`](Self::release), under the universal FFI's name: every
    /// worker that ran the session drops its refs.
    pub async fn release_session(&self) -> Result<(), Error> {
        self.release().await
    }

    /// The session id (what Python sees as `session_context.session_id`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The host bridge (host tools, callbacks) the session belongs to.
    pub(crate) fn bridge(&self) -> Arc<Host> {
        self.inner.bridge.clone()
    }

    /// A pool by name, the session's default pool when `None`.
    pub(crate) fn pool_handle(&self, name: Option<&str>) -> Result<&PoolHandle, Error> {
        let name = name.unwrap_or(&self.inner.default_pool);
        self.inner
            .pools
            .get(name)
            .ok_or_else(|| Error::UnknownPool(name.to_string()))
    }

    /// Readies `call` for `pool`: the session id, the required-variables
    /// check, and the owner's last-use time.
    async fn prepare(&self, pool: &PoolHandle, mut call: Call) -> Result<Call, Error> {
        call.session_id = Some(self.inner.id.clone());
        let required = pool.required_variables(&call.tool);
        if !required.is_empty() {
            let missing = self
                .ask(|reply| OwnerMessage::Missing {
                    names: required,
                    reply,
                })
                .await?;
            if !missing.is_empty() {
                return Err(Error::MissingVariables {
                    tool: call.tool,
                    missing,
                });
            }
        }
        self.inner
            .owner
            .cast(OwnerMessage::Touch {
                pool: Some(pool.name().to_string()),
            })
            .map_err(|_| Error::SessionNotFound(self.inner.id.clone()))?;
        Ok(call)
    }

    /// Runs `tool` on the default pool in this session; `args` as in
    /// [`Call::from_args`].
    pub async fn execute(&self, tool: &str, args: impl Into<Value>) -> Result<Value, Error> {
        self.run(Call::from_args(tool, args.into())?).await
    }

    /// Runs a streaming `tool` on the default pool in this session.
    pub async fn execute_stream(
        &self,
        tool: &str,
        args: impl Into<Value>,
    ) -> Result<ExecStream, Error> {
        self.run_stream(Call::from_args(tool, args.into())?).await
    }

    /// Runs `call` on the default pool in this session.
    pub async fn run(&self, call: Call) -> Result<Value, Error> {
        self.run_on(None, call).await
    }

    /// Runs `call` on pool `pool` (the default pool when `None`).
    pub async fn run_on(&self, pool: Option<&str>, call: Call) -> Result<Value, Error> {
        let pool = self.pool_handle(pool)?;
        let call = self.prepare(pool, call).await?;
        pool.execute(call).await
    }

    /// Runs a streaming `call` on the default pool in this session.
    pub async fn run_stream(&self, call: Call) -> Result<ExecStream, Error> {
        self.run_stream_on(None, call).await
    }

    /// Runs a streaming `call` on pool `pool` (the default pool when `None`).
    pub async fn run_stream_on(&self, pool: Option<&str>, call: Call) -> Result<ExecStream, Error> {
        let pool = self.pool_handle(pool)?;
        let call = self.prepare(pool, call).await?;
        pool.execute_stream(call).await
    }

    /// Ends the session: every worker that ran it drops what it holds for it
    /// (within the cleanup timeout). A worker that cannot is reported as the
    /// event `snakepit.session.cleanup.error` and as the error returned here.
    pub async fn release(&self) -> Result<(), Error> {
        self.ask(|reply| OwnerMessage::Release {
            source: ReleaseSource::Manual,
            reply: Some(reply),
        })
        .await?
    }

    /// Attaches `key = value` to the session (replacing an earlier value).
    pub fn set_metadata(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), Error> {
        self.inner
            .owner
            .cast(OwnerMessage::SetMetadata {
                key: key.into(),
                value: value.into(),
            })
            .map_err(|_| Error::SessionNotFound(self.inner.id.clone()))
    }

    /// A snapshot of the session.
    pub async fn info(&self) -> Result<SessionInfo, Error> {
        self.ask(OwnerMessage::Info).await
    }

    /// Registers a typed variable.
    pub async fn register_variable(
        &self,
        name: &str,
        var_type: VarType,
        initial: impl Into<Value>,
        constraints: Constraints,
    ) -> Result<Variable, Error> {
        self.register_described_variable(name, var_type, initial, constraints, "")
            .await
    }

    /// Registers a typed variable with a description (free text, returned
    /// with the variable).
    pub async fn register_described_variable(
        &self,
        name: &str,
        var_type: VarType,
        initial: impl Into<Value>,
        constraints: Constraints,
        description: &str,
    ) -> Result<Variable, Error> {
        let (name, initial) = (name.to_string(), initial.into());
        let description = description.to_string();
        Ok(self
            .ask(|reply| OwnerMessage::Register {
                name,
                var_type,
                initial,
                constraints,
                description,
                reply,
            })
            .await??)
    }

    /// The variable with this name or id.
    pub async fn get_variable(&self, identifier: &str) -> Result<Variable, Error> {
        let identifier = identifier.to_string();
        Ok(self
            .ask(|reply| OwnerMessage::Get { identifier, reply })
            .await??)
    }

    /// Sets a variable (validated against its type and constraints); returns
    /// it with its new version.
    pub async fn set_variable(
        &self,
        identifier: &str,
        value: impl Into<Value>,
    ) -> Result<Variable, Error> {
        let (identifier, value) = (identifier.to_string(), value.into());
        Ok(self
            .ask(|reply| OwnerMessage::Set {
                identifier,
                value,
                source: UpdateSource::Host,
                metadata: Vec::new(),
                reply,
            })
            .await??)
    }

    /// Every variable, in registration order.
    pub async fn list_variables(&self) -> Result<Vec<Variable>, Error> {
        self.ask(OwnerMessage::List).await
    }

    /// Deletes a variable.
    pub async fn delete_variable(&self, identifier: &str) -> Result<(), Error> {
        let identifier = identifier.to_string();
        self.ask(|reply| OwnerMessage::Delete { identifier, reply })
            .await??;
        Ok(())
    }

    /// Updates of the variables `names` (all variables when empty) from now
    /// on, whoever makes them — Rust or Python; with `include_initial`, their
    /// current values first.
    pub async fn watch_variables(
        &self,
        names: &[&str],
        include_initial: bool,
    ) -> Result<VariableWatch, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let names = names.iter().map(|n| n.to_string()).collect();
        self.ask(|reply| OwnerMessage::Watch {
            names,
            include_initial,
            sink: WatchSink::Rust(tx),
            reply,
        })
        .await??;
        Ok(VariableWatch { rx })
    }

    /// Registers a host tool that only this session's Python code sees (it
    /// shadows a global tool of the same name). It goes with the session.
    pub fn register_host_tool(&self, tool: HostTool<HostCallContext>) -> Result<(), Error> {
        Ok(self
            .inner
            .bridge
            .registry
            .register_for_session(&self.inner.id, tool)?)
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> OwnerMessage,
    ) -> Result<T, Error> {
        crate::ask::ask(&self.inner.owner, msg, None)
            .await
            .map_err(|_| Error::SessionNotFound(self.inner.id.clone()))
    }
}

/// A stream of variable updates, from [`Session::watch_variables`]. It ends
/// when the session does.
pub struct VariableWatch {
    rx: mpsc::UnboundedReceiver<VariableUpdate>,
}

impl Stream for VariableWatch {
    type Item = VariableUpdate;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<VariableUpdate>> {
        self.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for VariableWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariableWatch").finish()
    }
}
