//! Python calling the host: the `HostCall` frames a worker sends, answered
//! with `HostCallResult`.
//!
//! A host call names either one of the host's own tools (`snakepit.*`: the
//! session's variables, the list of host tools) or a host tool registered by
//! the embedding service (`crate::host_tools`). Every call runs in its own
//! task, bounded by its timeout, so the connection's reader never waits (the
//! connection bounds how many run at once: `max_host_calls`); a
//! host tool may call back into Python through its [`HostCallContext`], and
//! that call goes to the same worker, which runs it while the Python caller
//! waits (see `Call::parent`). A panicking host tool becomes a Python
//! exception, not a dead registry.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::ActorRef;
use snakepit_proto::Value;
use snakepit_proto::v1::{self, Frame};
use tokio::sync::mpsc;

use crate::config::SessionsConfig;
use crate::error::Error;
use crate::handle::{Call, ExecStream, PoolHandle};
use crate::host_tools::{HostArgs, HostToolError, HostToolRegistry, host_call_result};
use crate::sessions::{OwnerMessage, Session, SessionsMessage, WatchSink};
use crate::variables::{Constraints, UpdateSource, VariableError, parse_var_type};
use crate::wire::{HostCallReply, HostCalls};

/// What the runtime's host calls share: the host tools, the sessions, the pools.
pub(crate) struct HostBridge {
    pub registry: HostToolRegistry<HostCallContext>,
    /// Rust closures handed to Python as callables (`Ffi::callback`), by
    /// session; Python calls them as host tool `snakepit.callback.{id}`.
    pub callbacks: HostToolRegistry<HostCallContext>,
    sessions: OnceLock<ActorRef<SessionsMessage>>,
    pools: OnceLock<Arc<BTreeMap<String, PoolHandle>>>,
    pub config: SessionsConfig,
}

impl HostBridge {
    pub fn new(config: SessionsConfig) -> Self {
        Self {
            registry: HostToolRegistry::new(),
            callbacks: HostToolRegistry::new(),
            sessions: OnceLock::new(),
            pools: OnceLock::new(),
            config,
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
        match sessions
            .call(|reply| SessionsMessage::Lookup { id, reply }, None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(owner)) => owner,
            _ => None,
        }
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

    /// Answers a host call from a worker of `pool`, in a task of its own;
    /// `reply` holds one of the worker's `max_host_calls` until the answer
    /// is queued. `frames` is the connection's own queue, for what a call
    /// leaves behind (a watch's updates).
    fn handle(
        self: &Arc<Self>,
        frames: mpsc::UnboundedSender<Frame>,
        reply: HostCallReply,
        pool: Arc<str>,
        call: v1::HostCall,
    ) {
        let bridge = self.clone();
        tokio::spawn(async move {
            let tool = call.tool.clone();
            let result = bridge.run(&pool, &frames, call).await;
            reply.send(host_call_result(&tool, result)).await;
        });
    }

    async fn run(
        self: &Arc<Self>,
        pool: &str,
        frames: &mpsc::UnboundedSender<Frame>,
        call: v1::HostCall,
    ) -> Result<Value, HostToolError> {
        let session = (!call.session_id.is_empty()).then_some(call.session_id.as_str());
        let timeout = match call.timeout_ms {
            0 => self.config.host_call_timeout(),
            ms => Duration::from_millis(ms),
        };
        let args = HostArgs::from_wire(call.args, call.kwargs);
        if call.tool == "snakepit.host_tools.list" {
            return Ok(self.registry.exposed_specs(session));
        }
        if let Some(op) = call.tool.strip_prefix("snakepit.variables.") {
            let Some(session) = session else {
                return Err(HostToolError::BadArguments {
                    parameter: None,
                    message: "session variables need a session: call the tool from a session"
                        .into(),
                });
            };
            return self.variables(session, op, args, timeout, frames).await;
        }
        let Some(pool_handle) = self.pool(pool) else {
            return Err(HostToolError::failed(format!("pool `{pool}` is gone")));
        };
        let session_handle = match session {
            Some(id) => self.session(id, pool).await,
            None => None,
        };
        let ctx = HostCallContext {
            session: session_handle,
            pool: pool_handle,
            parent: call.parent_request_id,
            deadline: tokio::time::Instant::now() + timeout,
        };
        if let Some(id) = call.tool.strip_prefix(crate::ffi::CALLBACK_PREFIX) {
            return self
                .callbacks
                .invoke(session, id, ctx, args, false, timeout)
                .await;
        }
        self.registry
            .invoke(session, &call.tool, ctx, args, true, timeout)
            .await
    }

    /// `snakepit.variables.<op>` for `session`.
    async fn variables(
        &self,
        session: &str,
        op: &str,
        args: HostArgs,
        timeout: Duration,
        frames: &mpsc::UnboundedSender<Frame>,
    ) -> Result<Value, HostToolError> {
        let Some(owner) = self.owner(session).await else {
            return Err(HostToolError::UnknownTool {
                name: format!("session `{session}`"),
                available: Vec::new(),
            });
        };
        let text = |name: &str| -> Result<String, HostToolError> {
            match args.require(name)? {
                Value::Str(s) => Ok(s.clone()),
                other => Err(HostToolError::BadArguments {
                    parameter: Some(name.to_string()),
                    message: format!("`{name}` must be a string, not {}", other.type_name()),
                }),
            }
        };
        let variable = |r: Result<crate::variables::Variable, VariableError>| {
            r.map(|v| v.to_value()).map_err(variable_error)
        };
        match op {
            "register" => {
                let name = text("name")?;
                let var_type = parse_var_type(&text("type")?).map_err(variable_error)?;
                let initial = args.get("initial_value").cloned().unwrap_or(Value::Null);
                let constraints = match args.get("constraints") {
                    None | Some(Value::Null) => Constraints::default(),
                    Some(v) => Constraints::from_value(&name, v).map_err(variable_error)?,
                };
                let description = match args.get("description") {
                    Some(Value::Str(s)) => s.clone(),
                    _ => String::new(),
                };
                variable(
                    ask(&owner, session, timeout, |reply| OwnerMessage::Register {
                        name,
                        var_type,
                        initial,
                        constraints,
                        description,
                        reply,
                    })
                    .await?,
                )
            }
            "get" => {
                let identifier = text("identifier")?;
                variable(
                    ask(&owner, session, timeout, |reply| OwnerMessage::Get {
                        identifier,
                        reply,
                    })
                    .await?,
                )
            }
            "set" => {
                let identifier = text("identifier")?;
                let value = args.get("value").cloned().unwrap_or(Value::Null);
                let metadata = string_map(args.get("metadata"));
                variable(
                    ask(&owner, session, timeout, |reply| OwnerMessage::Set {
                        identifier,
                        value,
                        source: UpdateSource::Python,
                        metadata,
                        reply,
                    })
                    .await?,
                )
            }
            "list" => {
                let all: Vec<crate::variables::Variable> =
                    ask(&owner, session, timeout, OwnerMessage::List).await?;
                Ok(Value::List(all.iter().map(|v| v.to_value()).collect()))
            }
            "delete" => {
                let identifier = text("identifier")?;
                variable(
                    ask(&owner, session, timeout, |reply| OwnerMessage::Delete {
                        identifier,
                        reply,
                    })
                    .await?,
                )
                .map(|_| Value::Null)
            }
            "watch" => {
                let names = match args.get("identifiers") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::List(items) | Value::Tuple(items)) => items
                        .iter()
                        .map(|v| match v {
                            Value::Str(s) => Ok(s.clone()),
                            other => Err(HostToolError::BadArguments {
                                parameter: Some("identifiers".into()),
                                message: format!(
                                    "identifiers must be strings, not {}",
                                    other.type_name()
                                ),
                            }),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(Value::Str(s)) => vec![s.clone()],
                    Some(other) => {
                        return Err(HostToolError::BadArguments {
                            parameter: Some("identifiers".into()),
                            message: format!(
                                "identifiers must be a list, not {}",
                                other.type_name()
                            ),
                        });
                    }
                };
                let include_initial =
                    matches!(args.get("include_initial"), Some(Value::Bool(true)));
                let sink = WatchSink::Python {
                    frames: frames.clone(),
                };
                let id: Result<String, VariableError> =
                    ask(&owner, session, timeout, |reply| OwnerMessage::Watch {
                        names,
                        include_initial,
                        sink,
                        reply,
                    })
                    .await?;
                id.map(Value::Str).map_err(variable_error)
            }
            "unwatch" => {
                let watch_id = text("watch_id")?;
                let _ = owner.cast(OwnerMessage::Unwatch { watch_id });
                Ok(Value::Null)
            }
            other => Err(HostToolError::UnknownTool {
                name: format!("snakepit.variables.{other}"),
                available: [
                    "register", "get", "set", "list", "delete", "watch", "unwatch",
                ]
                .iter()
                .map(|s| format!("snakepit.variables.{s}"))
                .collect(),
            }),
        }
    }
}

async fn ask<T: Send + 'static>(
    owner: &ActorRef<OwnerMessage>,
    session: &str,
    timeout: Duration,
    msg: impl FnOnce(ractor::RpcReplyPort<T>) -> OwnerMessage,
) -> Result<T, HostToolError> {
    match owner.call(msg, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
        _ => Err(HostToolError::failed(format!(
            "session `{session}` is gone"
        ))),
    }
}

fn string_map(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Map(entries)) => entries
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Str(v)) => Some((k.clone(), v.clone())),
                (Value::Str(k), other) => Some((k.clone(), format!("{other:?}"))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn variable_error(err: VariableError) -> HostToolError {
    HostToolError::Variable(err)
}

/// The host runs the host calls of every worker.
pub(crate) struct BridgeCalls(pub Arc<HostBridge>);

impl HostCalls for BridgeCalls {
    fn start(
        &self,
        pool: &Arc<str>,
        call: v1::HostCall,
        reply: HostCallReply,
        push: mpsc::UnboundedSender<Frame>,
    ) {
        self.0.handle(push, reply, pool.clone(), call);
    }
}

/// What a host tool gets besides its arguments: the calling session and a
/// way to call back into Python.
#[derive(Clone)]
pub struct HostCallContext {
    session: Option<Session>,
    pool: PoolHandle,
    parent: u64,
    /// When the Python caller stops waiting for this host call.
    deadline: tokio::time::Instant,
}

impl std::fmt::Debug for HostCallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCallContext")
            .field(
                "session",
                &self.session.as_ref().map(|s| s.id().to_string()),
            )
            .field("pool", &self.pool.name())
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

    /// Calls `tool` back in Python, in the caller's session, on the caller's
    /// worker (which runs it while the caller waits); `args` as in
    /// [`Call::from_args`].
    pub async fn execute(&self, tool: &str, args: impl Into<Value>) -> Result<Value, Error> {
        self.run(Call::from_args(tool, args.into())?).await
    }

    /// Where FFI calls made through this context go: the caller's worker.
    pub(crate) fn ffi_target_now(&self) -> crate::ffi::FfiTarget {
        crate::ffi::FfiTarget::nested(self.clone())
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
        call
    }
}
