//! The callback registry: Rust async functions that Python tools may call
//! ("host tools"), and the invocation that runs them.
//!
//! A Python tool calls `SessionContext.call_host_tool(name, **kwargs)` (alias
//! `call_elixir_tool`); the wiring turns the `HostCall` frame into
//! [`HostToolRegistry::invoke`] and the outcome into a `HostCallResult`
//! ([`host_call_result`]). This module owns the registry and the invocation
//! only: frames, sessions and calls back into Python belong to the wiring,
//! which hands every tool a context of its own type `C`.
//!
//! Tools are registered globally or for one session; a session's tool
//! shadows a global tool of the same name for that session. Names starting
//! with `snakepit.` are reserved for the host's own tools.
//!
//! Every invocation runs in a task of its own, so a panicking tool cannot take
//! the caller or the registry down, and a tool that calls back into Python
//! (which may call another host tool in turn) never blocks the task that
//! reads the caller's frames. Each invocation is bounded by the tool's timeout,
//! or the caller's default when the tool has none; a tool that overruns is
//! aborted. Dropping the invocation future aborts the tool too.
//!
//! Parameter specs describe a tool to Python and are checked for presence
//! before the tool runs. Their type names are informative only: nothing
//! checks a value against them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use snakepit_proto::{Value, v1};
use tokio::task::JoinHandle;

#[cfg(test)]
mod tests;

/// Prefix of the host's own tools; user tools cannot take such a name.
pub const RESERVED_PREFIX: &str = "snakepit.";

/// What a host tool receives: the positional and keyword arguments of the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostArgs {
    /// Positional arguments, in order.
    pub args: Vec<Value>,
    /// Keyword arguments, in the order they were given.
    pub kwargs: Vec<(String, Value)>,
}

impl HostArgs {
    /// The positional and keyword arguments, taken apart.
    pub fn into_parts(self) -> (Vec<Value>, Vec<(String, Value)>) {
        (self.args, self.kwargs)
    }

    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.kwargs.push((name.into(), value.into()));
        self
    }

    /// The arguments of a `HostCall` frame. The wire's keyword map has no
    /// order, so keyword arguments are sorted by name.
    pub fn from_wire(args: Vec<v1::Value>, kwargs: HashMap<String, v1::Value>) -> Self {
        let mut kwargs: Vec<(String, Value)> = kwargs
            .into_iter()
            .map(|(name, value)| (name, Value::from(value)))
            .collect();
        kwargs.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            args: args.into_iter().map(Value::from).collect(),
            kwargs,
        }
    }

    /// The keyword argument `name`, when given.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The keyword argument `name`, or [`HostToolError::BadArguments`] naming
    /// it when it was not given.
    pub fn require(&self, name: &str) -> Result<&Value, HostToolError> {
        self.get(name).ok_or_else(|| HostToolError::BadArguments {
            parameter: Some(name.to_string()),
            message: format!("missing required argument `{name}`"),
        })
    }

    /// The keyword arguments as a `dict` with string keys, in order. The
    /// positional arguments are dropped.
    pub fn into_value(self) -> Value {
        Value::Map(
            self.kwargs
                .into_iter()
                .map(|(k, v)| (Value::Str(k), v))
                .collect(),
        )
    }
}

/// Errors a host tool returns, what the invocation turns failures into, and
/// why a registration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HostToolError {
    /// The tool returned an error.
    #[error("{message}")]
    Failed {
        /// What went wrong, in the tool's words.
        message: String,
    },
    /// The arguments did not fit the tool's parameters.
    #[error("bad arguments: {message}")]
    BadArguments {
        /// The parameter at fault, when there is one.
        parameter: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// No tool of that name is registered (for the session asked).
    #[error("unknown host tool `{name}` (available: {})", list_or_none(.available))]
    UnknownTool {
        /// Tool asked for.
        name: String,
        /// Names of the tools exposed to Python, sorted.
        available: Vec<String>,
    },
    /// The tool is registered but not exposed to Python, and Python asked.
    #[error("host tool `{name}` is not exposed to Python")]
    NotExposed {
        /// Tool asked for.
        name: String,
    },
    /// The tool panicked.
    #[error("host tool panicked: {message}")]
    Panicked {
        /// The panic message, or "a host tool panicked" when the payload was
        /// not text.
        message: String,
    },
    /// The tool did not finish in time and was aborted.
    #[error("host tool timed out after {after:?}")]
    TimedOut {
        /// The timeout that expired.
        after: Duration,
    },
    /// The tool's task was cancelled before it finished (the runtime is
    /// shutting down, or someone aborted it).
    #[error("host tool was cancelled")]
    Cancelled,
    /// A tool of that name is already registered in the same scope.
    #[error("a host tool named `{name}` is already registered")]
    Duplicate {
        /// The name taken.
        name: String,
    },
    /// The name starts with `snakepit.`, which is reserved for the host.
    #[error("host tool names starting with `snakepit.` are reserved: `{name}`")]
    Reserved {
        /// The name refused.
        name: String,
    },
    /// A session-variable operation of the host's own tools failed.
    #[error(transparent)]
    Variable(#[from] crate::variables::VariableError),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl HostToolError {
    /// A [`HostToolError::Failed`] with this message; what a tool returns
    /// when it fails.
    pub fn failed(message: impl Into<String>) -> Self {
        HostToolError::Failed {
            message: message.into(),
        }
    }

    /// The error as it travels back to Python in a `HostCallResult`, for a
    /// call of `tool`.
    ///
    /// Kinds: `Failed`, `Panicked`, `Duplicate` and `Reserved` are
    /// `HOST_TOOL` with `details["kind"]` saying which; `BadArguments` is
    /// `BAD_ARGUMENTS` with `parameter` set; `UnknownTool` and `NotExposed`
    /// are `NOT_FOUND` with `details["what"] = "host_tool"` (and
    /// `details["available"]`, a comma-separated list, for an unknown tool);
    /// `TimedOut` is `TIMEOUT` and `Cancelled` is `CANCELLED`. Every error
    /// carries `details["tool"]`.
    pub fn to_wire(&self, tool: &str) -> v1::Error {
        use v1::ErrorKind as K;
        let mut details = HashMap::from([("tool".to_string(), tool.to_string())]);
        let mut detail = |k: &str, v: &str| {
            details.insert(k.to_string(), v.to_string());
        };
        let mut parameter = String::new();
        let (kind, python_type, message) = match self {
            HostToolError::Failed { message } => {
                detail("kind", "failed");
                (
                    K::HostTool,
                    "HostToolError",
                    format!("Host tool `{tool}` failed: {message}"),
                )
            }
            HostToolError::Panicked { message } => {
                detail("kind", "panicked");
                (
                    K::HostTool,
                    "HostToolError",
                    format!("Host tool `{tool}` panicked: {message}"),
                )
            }
            HostToolError::BadArguments {
                parameter: p,
                message,
            } => {
                parameter = p.clone().unwrap_or_default();
                (
                    K::BadArguments,
                    "HostToolArgumentError",
                    format!("Bad arguments for host tool `{tool}`: {message}"),
                )
            }
            HostToolError::UnknownTool { name, available } => {
                detail("what", "host_tool");
                detail("available", &available.join(","));
                (
                    K::NotFound,
                    "HostToolNotFound",
                    format!(
                        "No host tool named `{name}`; available: {}.",
                        list_or_none(available)
                    ),
                )
            }
            HostToolError::NotExposed { name } => {
                detail("what", "host_tool");
                detail("reason", "not_exposed");
                (
                    K::NotFound,
                    "HostToolNotFound",
                    format!("Host tool `{name}` is not exposed to Python."),
                )
            }
            HostToolError::TimedOut { after } => {
                detail("timeout_ms", &after.as_millis().to_string());
                (
                    K::Timeout,
                    "HostToolTimeout",
                    format!("Host tool `{tool}` timed out after {after:?}."),
                )
            }
            HostToolError::Cancelled => (
                K::Cancelled,
                "HostToolCancelled",
                format!("Host tool `{tool}` was cancelled."),
            ),
            HostToolError::Duplicate { name } => {
                detail("kind", "duplicate");
                (
                    K::HostTool,
                    "HostToolError",
                    format!("A host tool named `{name}` is already registered."),
                )
            }
            HostToolError::Variable(err) => {
                use crate::variables::VariableError as V;
                let (kind, python_type) = match err {
                    V::NotFound { .. } => {
                        detail("what", "variable");
                        (K::NotFound, "VariableNotFound")
                    }
                    V::Constraint {
                        variable,
                        constraint,
                        ..
                    } => {
                        parameter = variable.clone();
                        detail("constraint", constraint);
                        (K::Constraint, "VariableConstraintError")
                    }
                    _ => (K::BadArguments, "VariableError"),
                };
                (kind, python_type, err.to_string())
            }
            HostToolError::Reserved { name } => {
                detail("kind", "reserved");
                (
                    K::HostTool,
                    "HostToolError",
                    format!(
                        "Host tool name `{name}` is reserved: names starting with `snakepit.` belong to the host."
                    ),
                )
            }
        };
        v1::Error {
            kind: kind as i32,
            python_type: python_type.to_string(),
            message,
            traceback: String::new(),
            parameter,
            details,
        }
    }
}

/// The outcome of a host call as the `HostCallResult` that answers it.
pub fn host_call_result(tool: &str, result: Result<Value, HostToolError>) -> v1::HostCallResult {
    use v1::host_call_result::Outcome;
    let outcome = match result {
        // Python could not decode it: say so instead of sending it.
        Ok(value) => match value.wire_depth_error() {
            Some(err) => Outcome::Error(v1::Error {
                kind: v1::ErrorKind::Encoding as i32,
                python_type: "HostToolError".into(),
                message: format!("host tool `{tool}` returned a value {err}"),
                details: HashMap::from([("tool".to_string(), tool.to_string())]),
                ..Default::default()
            }),
            None => Outcome::Value(value.into()),
        },
        Err(err) => Outcome::Error(err.to_wire(tool)),
    };
    v1::HostCallResult {
        outcome: Some(outcome),
    }
}

/// One parameter of a host tool, as Python sees it. The type name is
/// informative: it is shown to Python but never checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Parameter name, the keyword Python passes it by.
    pub name: String,
    /// Type name shown to Python (e.g. `map`, `str`); not enforced.
    pub type_name: String,
    /// Whether a call must give it.
    pub required: bool,
    /// What it is for.
    pub description: String,
}

type ToolFn<C> =
    dyn Fn(C, HostArgs) -> BoxFuture<'static, Result<Value, HostToolError>> + Send + Sync;

/// Everything about a tool except its function; shared between clones.
#[derive(Debug, Clone)]
struct ToolSpec {
    name: String,
    description: String,
    parameters: Vec<ParamSpec>,
    exposed_to_python: bool,
    timeout: Option<Duration>,
}

/// A host tool, generic over the context its caller hands it. Cheap to clone.
pub struct HostTool<C> {
    spec: Arc<ToolSpec>,
    func: Arc<ToolFn<C>>,
}

impl<C> Clone for HostTool<C> {
    fn clone(&self) -> Self {
        Self {
            spec: Arc::clone(&self.spec),
            func: Arc::clone(&self.func),
        }
    }
}

impl<C> fmt::Debug for HostTool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostTool")
            .field("name", &self.spec.name)
            .field("description", &self.spec.description)
            .field("parameters", &self.spec.parameters)
            .field("exposed_to_python", &self.spec.exposed_to_python)
            .field("timeout", &self.spec.timeout)
            .finish_non_exhaustive()
    }
}

impl<C: Send + 'static> HostTool<C> {
    /// A tool named `name` running `f`, exposed to Python, without
    /// parameters, description or timeout of its own.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(C, HostArgs) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HostToolError>> + Send + 'static,
    {
        Self {
            spec: Arc::new(ToolSpec {
                name: name.into(),
                description: String::new(),
                parameters: Vec::new(),
                exposed_to_python: true,
                timeout: None,
            }),
            func: Arc::new(move |ctx, args| f(ctx, args).boxed()),
        }
    }
}

impl<C> HostTool<C> {
    /// Sets the description shown to Python.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.spec).description = description.into();
        self
    }

    /// Adds a parameter. Its type name is informative, not enforced.
    pub fn param(
        self,
        name: impl Into<String>,
        type_name: impl Into<String>,
        required: bool,
    ) -> Self {
        self.param_described(name, type_name, required, "")
    }

    /// Adds a parameter with a description. Its type name is informative,
    /// not enforced.
    pub fn param_described(
        mut self,
        name: impl Into<String>,
        type_name: impl Into<String>,
        required: bool,
        description: impl Into<String>,
    ) -> Self {
        Arc::make_mut(&mut self.spec).parameters.push(ParamSpec {
            name: name.into(),
            type_name: type_name.into(),
            required,
            description: description.into(),
        });
        self
    }

    /// Whether Python may call it (the default); a tool that is not exposed
    /// can still be invoked from Rust.
    pub fn exposed_to_python(mut self, yes: bool) -> Self {
        Arc::make_mut(&mut self.spec).exposed_to_python = yes;
        self
    }

    /// Bounds every invocation, instead of the caller's default timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.spec).timeout = Some(timeout);
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The tool's parameters, in declaration (and positional) order.
    pub fn parameters(&self) -> &[ParamSpec] {
        &self.spec.parameters
    }

    /// Whether Python may call it.
    pub fn is_exposed_to_python(&self) -> bool {
        self.spec.exposed_to_python
    }

    /// The tool's own timeout, when it has one.
    pub fn timeout_limit(&self) -> Option<Duration> {
        self.spec.timeout
    }

    /// The tool as Python sees it: a `dict` with `name`, `description`,
    /// `parameters` (a list of `dict`s with `name`, `type`, `required` and
    /// `description`) and `exposed_to_python`.
    pub fn spec_value(&self) -> Value {
        let s = &self.spec;
        let parameters: Vec<Value> = s
            .parameters
            .iter()
            .map(|p| {
                Value::map([
                    ("name", Value::from(p.name.as_str())),
                    ("type", Value::from(p.type_name.as_str())),
                    ("required", Value::from(p.required)),
                    ("description", Value::from(p.description.as_str())),
                ])
            })
            .collect();
        Value::map([
            ("name", Value::from(s.name.as_str())),
            ("description", Value::from(s.description.as_str())),
            ("parameters", Value::List(parameters)),
            ("exposed_to_python", Value::from(s.exposed_to_python)),
        ])
    }

    /// Checks that every required parameter is given, by keyword or by
    /// position (the n-th positional argument covers the n-th parameter).
    /// Unknown keywords pass: the tool receives them.
    fn check_args(&self, args: &HostArgs) -> Result<(), HostToolError> {
        let missing = self
            .spec
            .parameters
            .iter()
            .enumerate()
            .find(|(i, p)| p.required && *i >= args.args.len() && args.get(&p.name).is_none());
        match missing {
            Some((_, p)) => Err(HostToolError::BadArguments {
                parameter: Some(p.name.clone()),
                message: format!(
                    "host tool `{}` is missing required argument `{}`",
                    self.spec.name, p.name
                ),
            }),
            None => Ok(()),
        }
    }
}

/// Tools by name; a `BTreeMap` so listings come out sorted.
type Tools<C> = BTreeMap<String, HostTool<C>>;

struct Inner<C> {
    global: Tools<C>,
    sessions: HashMap<String, Tools<C>>,
}

/// Global tools plus per-session ones. Cheap to clone; clones share the same
/// tools. No lock is held while a tool runs.
pub struct HostToolRegistry<C> {
    inner: Arc<RwLock<Inner<C>>>,
}

impl<C> Clone for HostToolRegistry<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for HostToolRegistry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("HostToolRegistry")
            .field("global", &inner.global.keys().collect::<Vec<_>>())
            .field("sessions", &inner.sessions.len())
            .finish()
    }
}

impl<C: Send + 'static> Default for HostToolRegistry<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Send + 'static> HostToolRegistry<C> {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                global: BTreeMap::new(),
                sessions: HashMap::new(),
            })),
        }
    }

    /// Registers a tool for every session. Refuses a name already taken by a
    /// global tool ([`HostToolError::Duplicate`]), a reserved name
    /// ([`HostToolError::Reserved`]) and an empty one
    /// ([`HostToolError::BadArguments`]).
    pub fn register(&self, tool: HostTool<C>) -> Result<(), HostToolError> {
        check_name(tool.name())?;
        let mut inner = self.write();
        insert_new(&mut inner.global, tool)
    }

    /// Registers a tool for one session only; it shadows a global tool of
    /// the same name for that session. Refuses the same names as
    /// [`register`](Self::register), a duplicate being a name the session
    /// already has a tool of its own for.
    pub fn register_for_session(
        &self,
        session_id: &str,
        tool: HostTool<C>,
    ) -> Result<(), HostToolError> {
        check_name(tool.name())?;
        let mut inner = self.write();
        let tools = inner.sessions.entry(session_id.to_string()).or_default();
        insert_new(tools, tool)
    }

    /// Removes the global tool `name`; true when there was one. Session
    /// tools go with their session ([`drop_session`](Self::drop_session)).
    /// Invocations already running finish.
    pub fn unregister(&self, name: &str) -> bool {
        self.write().global.remove(name).is_some()
    }

    /// Forgets every tool registered for the session.
    pub fn drop_session(&self, session_id: &str) {
        self.write().sessions.remove(session_id);
    }

    /// The tool `name` as the session sees it: its own tool first, then the
    /// global one.
    pub fn lookup(&self, session_id: Option<&str>, name: &str) -> Option<HostTool<C>> {
        let inner = self.read();
        session_id
            .and_then(|s| inner.sessions.get(s))
            .and_then(|tools| tools.get(name))
            .or_else(|| inner.global.get(name))
            .cloned()
    }

    /// The tools the session sees that are exposed to Python: a `dict` from
    /// name to [`HostTool::spec_value`], sorted by name.
    pub fn exposed_specs(&self, session_id: Option<&str>) -> Value {
        let inner = self.read();
        Value::Map(
            visible(&inner, session_id)
                .into_values()
                .filter(|t| t.is_exposed_to_python())
                .map(|t| (Value::from(t.name()), t.spec_value()))
                .collect(),
        )
    }

    /// Names of the tools the session sees that are exposed to Python, sorted.
    fn exposed_names(&self, session_id: Option<&str>) -> Vec<String> {
        let inner = self.read();
        visible(&inner, session_id)
            .into_values()
            .filter(|t| t.is_exposed_to_python())
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Runs the tool `name` as the session sees it, with `ctx` and `args`.
    ///
    /// The tool runs in a task of its own, so a panic cannot reach the caller
    /// or the registry, and a tool calling back into Python cannot deadlock
    /// the caller's task. It is bounded by the tool's timeout, or
    /// `default_timeout` when it has none. Failures:
    /// - [`UnknownTool`](HostToolError::UnknownTool) listing the exposed
    ///   names when no such tool is registered;
    /// - [`NotExposed`](HostToolError::NotExposed) when `from_python` and the
    ///   tool is not exposed to Python;
    /// - [`BadArguments`](HostToolError::BadArguments) naming a required
    ///   parameter given neither by keyword nor by position;
    /// - [`Panicked`](HostToolError::Panicked) with the panic message;
    /// - [`TimedOut`](HostToolError::TimedOut) once the timeout expires, the
    ///   tool's task being aborted;
    /// - [`Cancelled`](HostToolError::Cancelled) when the task was aborted
    ///   from elsewhere;
    /// - whatever the tool itself returns.
    ///
    /// Dropping the returned future aborts the tool.
    pub async fn invoke(
        &self,
        session_id: Option<&str>,
        name: &str,
        ctx: C,
        args: HostArgs,
        from_python: bool,
        default_timeout: Duration,
    ) -> Result<Value, HostToolError> {
        let Some(tool) = self.lookup(session_id, name) else {
            return Err(HostToolError::UnknownTool {
                name: name.to_string(),
                available: self.exposed_names(session_id),
            });
        };
        if from_python && !tool.is_exposed_to_python() {
            return Err(HostToolError::NotExposed {
                name: name.to_string(),
            });
        }
        tool.check_args(&args)?;
        let limit = tool.timeout_limit().unwrap_or(default_timeout);
        let func = Arc::clone(&tool.func);
        // The function is called inside the task, so a panic while building
        // the future is caught like one while running it.
        // In the host call's span: the calls it makes back into Python are
        // its children.
        let run = tracing::Instrument::in_current_span(async move { func(ctx, args).await });
        let mut task = AbortOnDrop(tokio::spawn(run));
        match tokio::time::timeout(limit, &mut task.0).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => {
                let message = panic_message(join.into_panic());
                tracing::warn!(tool = name, %message, "host tool panicked");
                Err(HostToolError::Panicked { message })
            }
            Ok(Err(_)) => Err(HostToolError::Cancelled),
            Err(_) => {
                tracing::warn!(tool = name, timeout = ?limit, "host tool timed out; aborting it");
                task.0.abort();
                Err(HostToolError::TimedOut { after: limit })
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<C>> {
        // A panic never happens while the lock is held (tools run outside
        // it), so a poisoned lock still holds consistent maps.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<C>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The tools a session sees: the global ones, shadowed by its own.
fn visible<'a, C>(
    inner: &'a Inner<C>,
    session_id: Option<&str>,
) -> BTreeMap<&'a str, &'a HostTool<C>> {
    let mut tools: BTreeMap<&str, &HostTool<C>> =
        inner.global.iter().map(|(k, t)| (k.as_str(), t)).collect();
    if let Some(own) = session_id.and_then(|s| inner.sessions.get(s)) {
        tools.extend(own.iter().map(|(k, t)| (k.as_str(), t)));
    }
    tools
}

fn check_name(name: &str) -> Result<(), HostToolError> {
    if name.is_empty() {
        return Err(HostToolError::BadArguments {
            parameter: Some("name".to_string()),
            message: "a host tool needs a non-empty name".to_string(),
        });
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(HostToolError::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn insert_new<C>(tools: &mut Tools<C>, tool: HostTool<C>) -> Result<(), HostToolError> {
    use std::collections::btree_map::Entry;
    match tools.entry(tool.name().to_string()) {
        Entry::Occupied(e) => Err(HostToolError::Duplicate {
            name: e.key().clone(),
        }),
        Entry::Vacant(e) => {
            e.insert(tool);
            Ok(())
        }
    }
}

/// The text of a host tool's panic payload (see [`panic_text`]), or "a host
/// tool panicked" when it has none.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    panic_text(payload).unwrap_or_else(|| "a host tool panicked".to_string())
}

/// The text of a panic payload, which is a `&str` or a `String` for the
/// usual `panic!` forms; `None` for any other payload.
pub(crate) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> Option<String> {
    match payload.downcast::<String>() {
        Ok(s) => Some(*s),
        Err(payload) => payload
            .downcast::<&'static str>()
            .ok()
            .map(|s| (*s).to_string()),
    }
}

/// Aborts the tool's task when the invocation is dropped before it finished.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
