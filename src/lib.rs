//! # snakepit
//!
//! Supervised pools of Python worker processes for Rust services.
//!
//! ```no_run
//! # async fn demo() -> Result<(), snakepit::Error> {
//! let snakepit = snakepit::Snakepit::builder().start().await?; // the embedded default
//! let sum = snakepit.execute("add", serde_json::json!({"a": 2, "b": 3})).await?;
//! assert_eq!(i64::try_from(sum)?, 5);
//! snakepit.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - [`Snakepit`] / [`SnakepitBuilder`] (this file): start, call, stream, shut down.
//! - [`config`]: the TOML file and the embedded default.
//! - [`python_env`]: the bootstrapped virtual environment.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`server`]: the gRPC API of `snakepit serve` ([`Snakepit::serve`]).
//! - [`remote`]: a Rust client of `snakepit serve` (the same pools over gRPC).
//! - [`codegen`]: typed wrappers of Python libraries (`snakepit gen rust`, `build.rs`).
//! - [`shm`]: buffers in a pool's shared memory, which reach its workers
//!   without a copy.
//! - The supervision tree itself lives in the `snakepit-actors` crate, the
//!   wire protocol in `snakepit-proto`.
#![warn(missing_docs)]

pub mod agent;
mod attach;
pub mod codegen;
pub mod config;
pub mod envs;
pub mod metrics;
pub mod otel;
pub mod python_env;
pub mod remote;
pub mod server;
pub mod shm;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use snakepit_actors::ffi::{self, Ffi, FfiTarget, IntoArgs, IntoKwargs, PyStream, StreamRef};
pub use snakepit_actors::telemetry;
pub use snakepit_actors::{
    Affinity, Call, Chunk, Constraints, Error, Event, ExecStream, ExitStatus, HeartbeatConfig,
    HostArgs, HostCallContext, HostTool, HostToolError, PoolConfig, PoolHandle, PoolStatus,
    Profile, PythonException, RestartPolicy, SHOWCASE_ADAPTER, Session, SessionInfo,
    SessionsConfig, Telemetry, Unserializable, UpdateSource, VarType, Variable, VariableUpdate,
    VariableWatch, WorkerStatus,
};
use snakepit_actors::{RuntimeConfig, RuntimeHandle};
pub use snakepit_proto::{
    CallbackRef, ConversionError, IntoValue, NdArray, ObjectRef, StreamRefValue, Temporal,
    TemporalKind, Value,
};

pub use crate::attach::AttachConfig;

/// Markers a worker sends in place of Python objects with no wire form
/// (pool option `unserializable = "marker"`, the default), and how to read
/// them. [`Value::is_unserializable_marker`] and
/// [`Value::unserializable_info`] do the same as methods.
pub mod serialization {
    pub use snakepit_proto::{REPR_KEY, TYPE_KEY, UNSERIALIZABLE_KEY, UnserializableInfo};

    use snakepit_proto::Value;

    /// Whether `value` is such a marker.
    pub fn is_unserializable(value: &Value) -> bool {
        value.is_unserializable_marker()
    }

    /// The type (and repr, when sent) of the object the marker `value`
    /// stands in for; `None` when it is not a marker.
    pub fn unserializable_info(value: &Value) -> Option<UnserializableInfo<'_>> {
        value.unserializable_info()
    }
}
use crate::config::Config;
use crate::python_env::PythonEnvConfig;
pub use crate::server::{ListenAddr, ServeConfig, ServeError};

/// Time in-flight requests get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Builds a [`Snakepit`].
#[derive(Debug, Clone, Default)]
pub struct SnakepitBuilder {
    config: Option<Config>,
    extra_pools: Vec<PoolConfig>,
    python: Option<PathBuf>,
    venv: Option<PathBuf>,
    with_test_deps: bool,
    metrics_addr: Option<SocketAddr>,
    telemetry: Option<Telemetry>,
    registry_dir: Option<PathBuf>,
    serve: Option<ServeConfig>,
    attach: Option<AttachConfig>,
}

impl SnakepitBuilder {
    /// Uses a parsed configuration instead of the embedded default.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Reads the configuration from a TOML file.
    pub fn config_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        Ok(self.config(Config::load(path.as_ref())?))
    }

    /// Adds a pool (on top of the file's pools, or instead of the embedded default).
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.extra_pools.push(pool);
        self
    }

    /// Runs workers with this interpreter as it is, without the managed venv.
    /// It must have `snakepit-bridge` and its dependencies installed.
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(python.into());
        self
    }

    /// Where the managed venv lives (default `venv` in
    /// [`python_env::data_dir`]).
    pub fn venv(mut self, venv: impl Into<PathBuf>) -> Self {
        self.venv = Some(venv.into());
        self
    }

    /// Also installs the test requirements into the managed venv.
    pub fn with_test_deps(mut self, yes: bool) -> Self {
        self.with_test_deps = yes;
        self
    }

    /// Serves Prometheus metrics on `addr` while the runtime runs.
    pub fn metrics_addr(mut self, addr: SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Shares a telemetry hub (to subscribe before the first worker starts).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Where this host records its run so that a later host can end what it
    /// leaves behind if it is killed (default: see
    /// [`reaper::default_registry_dir`](snakepit_actors::reaper::default_registry_dir)).
    pub fn run_registry(mut self, dir: impl Into<PathBuf>) -> Self {
        self.registry_dir = Some(dir.into());
        self
    }

    /// Serves the runtime over gRPC once it has started (see
    /// [`Snakepit::serve`]); `start` fails if the server cannot.
    pub fn serve(mut self, config: ServeConfig) -> Self {
        self.serve = Some(config);
        self
    }

    /// Listens for node agents (`snakepit agent`) for the pools declared
    /// `remote = true`, as the `[remote]` section of a configuration does.
    pub fn attach(mut self, config: AttachConfig) -> Self {
        self.attach = Some(config);
        self
    }

    /// Prepares Python, starts every pool and waits until all workers are
    /// ready; then serves, when [`serve`](Self::serve) asked for it.
    pub async fn start(self) -> Result<Snakepit, Error> {
        let mut config = match self.config {
            Some(config) => config,
            None if self.extra_pools.is_empty() => Config::embedded(),
            None => Config::default(),
        };
        config.pools.extend(self.extra_pools);
        if config.pools.is_empty() {
            return Err(Error::Config("no pools configured".into()));
        }
        let attach = match self.attach {
            Some(attach) => Some(attach),
            None => AttachConfig::from_section(&config.remote)?,
        };
        if let Some(attach) = &attach {
            // Before any worker starts.
            attach.validate()?;
        }
        if let Some(addr) = self.metrics_addr.or(config.metrics.addr) {
            metrics::serve(addr)?;
        }
        envs::prepare_pools(&mut config.pools).await?;
        // The runtime's interpreter serves the local pools without one of
        // their own; when there are none, the managed venv is not built.
        let own = config.pools.iter().find_map(|p| p.python.clone());
        let python = match own {
            Some(python)
                if self.python.is_none()
                    && config.pools.iter().all(|p| p.remote || p.python.is_some()) =>
            {
                python
            }
            _ => {
                resolve_python(self.python, self.venv, &config.python, self.with_test_deps).await?
            }
        };
        let telemetry = self.telemetry.unwrap_or_default();
        let runtime = RuntimeHandle::start(
            RuntimeConfig {
                pools: config.pools,
                python,
                run_id: new_run_id(),
                registry_dir: self.registry_dir,
                sessions: config.sessions,
            },
            telemetry,
        )
        .await?;
        metrics::set_readiness(readiness(runtime.pools().cloned().collect()));
        otel::follow(runtime.telemetry());
        let snakepit = Snakepit {
            runtime,
            auto_session: Arc::default(),
            server: Arc::default(),
            serving: Arc::default(),
            attach: Arc::default(),
        };
        if let Some(attach) = attach {
            match attach::start(&snakepit, attach).await {
                Ok(server) => *snakepit.attach.lock().await = Some(server),
                Err(err) => {
                    snakepit.shutdown_with_grace(Duration::from_secs(1)).await;
                    return Err(err.into());
                }
            }
        }
        if let Some(serve) = self.serve
            && let Err(err) = snakepit.serve(serve).await
        {
            snakepit.shutdown_with_grace(Duration::from_secs(1)).await;
            return Err(err.into());
        }
        Ok(snakepit)
    }
}

/// `/readyz` of the metrics endpoint: every pool has a worker up.
fn readiness(pools: Vec<PoolHandle>) -> metrics::Check {
    let pools = Arc::new(pools);
    Arc::new(move || {
        let pools = pools.clone();
        Box::pin(async move {
            let mut waiting = Vec::new();
            for pool in pools.iter() {
                match pool.status().await {
                    Ok(status) if status.workers_up > 0 => {}
                    Ok(_) => waiting.push(format!("pool {}: no worker up", pool.name())),
                    Err(err) => waiting.push(format!("pool {}: {err}", pool.name())),
                }
            }
            if waiting.is_empty() {
                Ok(())
            } else {
                Err(waiting.join("\n") + "\n")
            }
        })
    })
}

/// The interpreter workers run: `python` or the config's `interpreter`
/// as they are, else the venv (`venv`, the config's, or the default)
/// bootstrapped with the bridge installed.
pub async fn resolve_python(
    python: Option<PathBuf>,
    venv: Option<PathBuf>,
    section: &config::PythonSection,
    with_test_deps: bool,
) -> Result<PathBuf, Error> {
    if let Some(python) = python.or(section.interpreter.clone()) {
        return Ok(python);
    }
    let mut env = PythonEnvConfig::default();
    if let Some(base) = section.base.clone() {
        env.base_python = base;
    }
    if let Some(venv) = venv.or(section.venv.clone()) {
        env.venv = venv;
    }
    env.with_test_deps = with_test_deps;
    Ok(
        tokio::task::spawn_blocking(move || python_env::ensure(&env))
            .await
            .map_err(|e| Error::Environment(format!("bootstrap task failed: {e}")))??
            .python,
    )
}

/// A new run id: the process id and the time.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// A running snakepit: pools of Python workers, ready to call.
///
/// It implements [`Ffi`] (call any Python function, keep objects as refs) on
/// an auto-session of its own, created on first use; [`Snakepit::release_session`]
/// drops its refs and the next FFI call starts a fresh one.
#[derive(Clone)]
pub struct Snakepit {
    runtime: RuntimeHandle,
    auto_session: Arc<tokio::sync::Mutex<Option<Session>>>,
    /// Where its gRPC server listens, once it serves.
    server: Arc<OnceLock<ListenAddr>>,
    /// Held while a server starts, so that two `serve` calls at once cannot
    /// both start one.
    serving: Arc<tokio::sync::Mutex<()>>,
    /// The node agents' listener, when remote pools have one.
    attach: Arc<tokio::sync::Mutex<Option<attach::AttachServer>>>,
}

impl Snakepit {
    /// Starts configuring.
    pub fn builder() -> SnakepitBuilder {
        SnakepitBuilder::default()
    }

    /// The default pool: the one named `default`, else the first configured.
    pub fn default_pool(&self) -> &PoolHandle {
        self.runtime
            .pool("default")
            .ok()
            .or_else(|| self.runtime.pools().next())
            .expect("a runtime has at least one pool")
    }

    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Result<&PoolHandle, Error> {
        self.runtime.pool(name)
    }

    /// Every pool.
    pub fn pools(&self) -> impl Iterator<Item = &PoolHandle> {
        self.runtime.pools()
    }

    /// Runs `tool` on the default pool. `args` is a map of keyword arguments
    /// (anything that converts into a [`Value::Map`] with string keys, such as
    /// `serde_json::json!({...})`), a list/tuple of positional ones, or `()`.
    pub async fn execute(&self, tool: &str, args: impl Into<Value>) -> Result<Value, Error> {
        self.default_pool().execute(call(tool, args.into())?).await
    }

    /// Runs a streaming `tool` on the default pool.
    pub async fn execute_stream(
        &self,
        tool: &str,
        args: impl Into<Value>,
    ) -> Result<ExecStream, Error> {
        self.default_pool()
            .execute_stream(call(tool, args.into())?)
            .await
    }

    /// A new session with a generated id, released when its last handle is
    /// dropped (or by [`Session::release`], or its TTL).
    pub async fn new_session(&self) -> Result<Session, Error> {
        self.runtime.new_session().await
    }

    /// The session `id`, created if needed; it lives until
    /// [`Session::release`] or its TTL.
    pub async fn session(&self, id: &str) -> Result<Session, Error> {
        self.runtime.session(id).await
    }

    /// The live session `id`, never created: [`Error::SessionNotFound`]
    /// when it does not exist, was released or expired.
    pub async fn lookup_session(&self, id: &str) -> Result<Session, Error> {
        self.runtime.lookup_session(id).await
    }

    /// How many sessions are live.
    pub async fn session_count(&self) -> Result<usize, Error> {
        self.runtime.session_count().await
    }

    /// Registers a host tool that Python tools may call through
    /// `session_context.call_host_tool(name, **kwargs)` (or the reference's
    /// `call_elixir_tool`).
    pub fn register_host_tool(&self, tool: HostTool<HostCallContext>) -> Result<(), Error> {
        self.runtime.register_host_tool(tool)
    }

    /// The auto-session the runtime's own FFI calls run in, created (again)
    /// when there is none live.
    pub async fn auto_session(&self) -> Result<Session, Error> {
        let mut slot = self.auto_session.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| s.is_live()) {
            return Ok(session.clone());
        }
        let session = self.runtime.new_session().await?;
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Releases the auto-session (every ref its FFI calls made is dropped in
    /// the workers); the next FFI call starts a new one.
    pub async fn release_session(&self) -> Result<(), Error> {
        let session = self.auto_session.lock().await.take();
        match session {
            Some(session) => session.release().await,
            None => Ok(()),
        }
    }

    /// Subscribes to telemetry events.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.runtime.telemetry().subscribe()
    }

    /// This host run's id.
    pub fn run_id(&self) -> &str {
        self.runtime.run_id()
    }

    /// Serves this runtime's pools, sessions, FFI and variables over gRPC
    /// (`proto/snakepit/v1/service.proto`) until it shuts down; returns the
    /// address bound (with the port chosen, for port 0). The server is a
    /// service of the runtime: [`shutdown`](Self::shutdown) drains it first.
    /// A runtime serves once.
    pub async fn serve(&self, config: ServeConfig) -> Result<ListenAddr, ServeError> {
        let _starting = self.serving.lock().await;
        if let Some(addr) = self.server.get() {
            return Err(ServeError::AlreadyServing(addr.clone()));
        }
        let addr = server::start(self, config).await?;
        self.server.get_or_init(|| addr.clone());
        Ok(addr)
    }

    /// Where the gRPC server listens, when the runtime serves.
    pub fn server_addr(&self) -> Option<&ListenAddr> {
        self.server.get()
    }

    /// Where node agents attach, when the runtime listens for them.
    pub async fn attach_addr(&self) -> Option<ListenAddr> {
        self.attach.lock().await.as_ref().map(|a| a.addr.clone())
    }

    /// The node agents attached now.
    pub fn agents(&self) -> Vec<snakepit_actors::remote::AgentStatus> {
        self.runtime.agents().list()
    }

    pub(crate) fn runtime(&self) -> &RuntimeHandle {
        &self.runtime
    }

    /// Drains the gRPC server when there is one, stops taking calls, lets
    /// in-flight ones finish (5 s at most in all), ends every worker process
    /// group, and returns once all are reaped.
    pub async fn shutdown(&self) {
        self.shutdown_with_grace(DEFAULT_SHUTDOWN_GRACE).await;
    }

    /// [`shutdown`](Self::shutdown) with a chosen grace period.
    pub async fn shutdown_with_grace(&self, grace: Duration) {
        self.runtime.shutdown(grace).await;
        // The remote workers are stopped: their links may go now.
        if let Some(attach) = self.attach.lock().await.take() {
            attach.stop().await;
        }
    }
}

impl Ffi for Snakepit {
    async fn ffi_target(&self) -> Result<FfiTarget, Error> {
        self.auto_session().await?.ffi_target().await
    }
}

/// Builds a [`Call`] from a tool name and an argument value (see
/// [`Call::from_args`]).
pub fn call(tool: &str, args: Value) -> Result<Call, Error> {
    Call::from_args(tool, args)
}
