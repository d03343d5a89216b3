//! The root of the supervision tree. Starts the `Sessions` registry and one
//! pool actor per configured pool, hands out their handles and sessions, and
//! shuts them all down in order.
//!
//! Before any pool starts, the run registry is swept: processes left behind by
//! an earlier host run that died (found by their `SNAKEPIT_RUN_ID`) are ended,
//! and this run is recorded so that a later host can do the same for it. A
//! registry directory open to another user refuses the start. At shutdown,
//! once every pool is down, whatever still carries this run's id (children
//! that left their worker's process group) is ended too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::ask::ask;
use crate::config::{PoolConfig, SessionsConfig};
use crate::error::Error;
use crate::handle::PoolHandle;
use crate::host::{Host, HostCallContext};
use crate::host_tools::HostTool;
use crate::pool::{Pool, PoolArgs, PoolMessage, ToolIndex};
use crate::reaper::{RegistryError, RunEntry, RunRegistry, default_registry_dir, end_strays};
use crate::sessions::{Session, Sessions, SessionsArgs, SessionsMessage};
use crate::telemetry::{OrphansReaped, Telemetry};

/// What the runtime is started with.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The pools.
    pub pools: Vec<PoolConfig>,
    /// Python interpreter for pools that do not name their own.
    pub python: PathBuf,
    /// Identifies this host run in every worker's environment.
    pub run_id: String,
    /// The run registry directory (default: `$SNAKEPIT_HOME/run`, else
    /// `.snakepit/run`). Hosts sharing it end each other's leftovers after a
    /// crash, and only those.
    pub registry_dir: Option<PathBuf>,
    /// Session limits and timeouts.
    pub sessions: SessionsConfig,
}

/// How long processes of this run still there after shutdown get between
/// SIGTERM and SIGKILL.
const LEFTOVER_TERM_GRACE: Duration = Duration::from_secs(1);

/// The root actor.
pub struct Runtime;

/// Messages to the root actor.
pub enum RuntimeMessage {
    /// The pools it started, in configuration order.
    Pools(RpcReplyPort<Vec<PoolHandle>>),
    /// Shut every pool down; answered when every worker process is reaped.
    Shutdown {
        /// Time in-flight requests get to finish.
        grace: Duration,
        /// Answered at the end.
        reply: RpcReplyPort<()>,
    },
}

/// The root actor's state.
pub struct RuntimeState {
    pools: Vec<PoolHandle>,
}

/// What the root actor is started with.
pub struct RuntimeArgs {
    config: RuntimeConfig,
    telemetry: Telemetry,
    bridge: Arc<Host>,
}

impl Actor for Runtime {
    type Msg = RuntimeMessage;
    type State = RuntimeState;
    type Arguments = RuntimeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RuntimeMessage>,
        args: RuntimeArgs,
    ) -> Result<RuntimeState, ActorProcessingErr> {
        let sessions_args = SessionsArgs {
            config: args.config.sessions.clone(),
            telemetry: args.telemetry.clone(),
            bridge: args.bridge.clone(),
        };
        let (sessions, _) = Actor::spawn_linked(None, Sessions, sessions_args, myself.get_cell())
            .await
            .map_err(|e| format!("could not start the session registry: {e}"))?;
        args.bridge.set_sessions(sessions);
        let mut pools = Vec::new();
        for pool in args.config.pools {
            let pool = Arc::new(pool);
            let tools = ToolIndex::default();
            let pool_args = PoolArgs {
                host_calls: args.bridge.calls(),
                tools: tools.clone(),
                config: pool.clone(),
                python: args.config.python.clone(),
                run_id: args.config.run_id.clone(),
                telemetry: args.telemetry.clone(),
            };
            let (actor, _) = Actor::spawn_linked(None, Pool, pool_args, myself.get_cell())
                .await
                .map_err(|e| format!("could not start pool `{}`: {e}", pool.name))?;
            pools.push(PoolHandle::new(actor, pool, args.telemetry.clone(), tools));
        }
        args.bridge.set_pools(Arc::new(
            pools
                .iter()
                .map(|p: &PoolHandle| (p.name().to_string(), p.clone()))
                .collect(),
        ));
        Ok(RuntimeState { pools })
    }

    async fn handle(
        &self,
        myself: ActorRef<RuntimeMessage>,
        message: RuntimeMessage,
        state: &mut RuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RuntimeMessage::Pools(reply) => {
                let _ = reply.send(state.pools.clone());
            }
            RuntimeMessage::Shutdown { grace, reply } => {
                let deadline = Instant::now() + grace;
                let pools: Vec<_> = state.pools.iter().map(|p| p.actor().clone()).collect();
                // Pools drain in parallel; the reply waits for the slowest,
                // and each pool answers only once its processes are reaped.
                tokio::spawn(async move {
                    let waits = pools.iter().map(|pool| {
                        ask(
                            pool,
                            |reply| PoolMessage::Shutdown { deadline, reply },
                            None,
                        )
                    });
                    futures::future::join_all(waits).await;
                    let _ = reply.send(());
                    myself.stop(None);
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RuntimeMessage>,
        event: SupervisionEvent,
        _state: &mut RuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, err) = event {
            tracing::error!(error = %err, "A pool actor failed.");
        }
        Ok(())
    }
}

/// A running supervision tree.
#[derive(Clone)]
pub struct RuntimeHandle {
    root: ActorRef<RuntimeMessage>,
    pools: Arc<BTreeMap<String, PoolHandle>>,
    telemetry: Telemetry,
    run_id: String,
    /// This run's registry entry; removed once shutdown is over.
    entry: Arc<Mutex<Option<RunEntry>>>,
    bridge: Arc<Host>,
}

impl RuntimeHandle {
    /// Starts the tree and waits until every worker of every pool is ready.
    /// If any pool fails to start, everything started so far is shut down
    /// and the first error is returned.
    pub async fn start(config: RuntimeConfig, telemetry: Telemetry) -> Result<Self, Error> {
        let mut names = std::collections::BTreeSet::new();
        for pool in &config.pools {
            pool.validate()?;
            if !names.insert(pool.name.clone()) {
                return Err(Error::Config(format!(
                    "pool `{}` is defined twice",
                    pool.name
                )));
            }
        }
        let run_id = config.run_id.clone();
        let entry = reap_and_register(&config, &telemetry).await?;
        let bridge = Arc::new(Host::new(config.sessions.clone()));
        let (root, _) = Actor::spawn(
            None,
            Runtime,
            RuntimeArgs {
                config,
                telemetry: telemetry.clone(),
                bridge: bridge.clone(),
            },
        )
        .await
        .map_err(|e| Error::Config(format!("could not start the runtime: {e}")))?;
        let started = ask(&root, RuntimeMessage::Pools, None).await?;
        let pools = started
            .into_iter()
            .map(|pool| (pool.name().to_string(), pool))
            .collect();
        let handle = Self {
            root,
            pools: Arc::new(pools),
            telemetry,
            run_id,
            entry: Arc::new(Mutex::new(entry)),
            bridge,
        };
        let ready = futures::future::join_all(handle.pools.values().map(|p| p.wait_ready())).await;
        if let Some(err) = ready.into_iter().find_map(Result::err) {
            handle.shutdown(Duration::from_secs(1)).await;
            return Err(err);
        }
        Ok(handle)
    }

    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Result<&PoolHandle, Error> {
        self.pools
            .get(name)
            .ok_or_else(|| Error::UnknownPool(name.to_string()))
    }

    /// Every pool, by name.
    pub fn pools(&self) -> impl Iterator<Item = &PoolHandle> {
        self.pools.values()
    }

    /// A new session with a generated id, released when its last handle is
    /// dropped (or by `release()`, or its TTL).
    pub async fn new_session(&self) -> Result<Session, Error> {
        self.open_session(None, true).await
    }

    /// The session `id`, created if it does not exist. It lives until
    /// `release()` or until it goes unused for the TTL; dropping handles does
    /// not end it.
    pub async fn session(&self, id: &str) -> Result<Session, Error> {
        self.open_session(Some(id.to_string()), false).await
    }

    async fn open_session(&self, id: Option<String>, auto: bool) -> Result<Session, Error> {
        let sessions = self.bridge_sessions()?;
        let opened = ask(
            &sessions,
            |reply| SessionsMessage::Open { id, auto, reply },
            None,
        )
        .await?;
        let (id, owner) = opened?;
        let default_pool = self
            .pools
            .get("default")
            .or_else(|| self.pools.values().next())
            .map(|p| p.name().to_string())
            .unwrap_or_default();
        Ok(Session::new(
            id,
            owner,
            self.pools.clone(),
            default_pool,
            self.bridge.clone(),
            auto,
        ))
    }

    /// How many sessions are live.
    pub async fn session_count(&self) -> Result<usize, Error> {
        Ok(ask(&self.bridge_sessions()?, SessionsMessage::Count, None).await?)
    }

    fn bridge_sessions(&self) -> Result<ActorRef<SessionsMessage>, Error> {
        self.bridge.sessions().ok_or(Error::ShuttingDown)
    }

    /// Registers a host tool that Python code of every session (and of calls
    /// outside sessions) may call through `session_context.call_host_tool`.
    pub fn register_host_tool(&self, tool: HostTool<HostCallContext>) -> Result<(), Error> {
        Ok(self.bridge.registry.register(tool)?)
    }

    /// The telemetry hub.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// This run's id (in every worker's `SNAKEPIT_RUN_ID`).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Stops taking calls, lets in-flight ones finish within `grace`, ends
    /// every worker process group, then every process still carrying this
    /// run's id (SIGTERM, up to a second, SIGKILL), and returns once all are
    /// reaped.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = ask(
            &self.root,
            |reply| RuntimeMessage::Shutdown { grace, reply },
            None,
        )
        .await;
        // The workers are gone: nothing waits for their host calls.
        self.bridge.shutdown();
        end_strays(
            self.run_id.clone(),
            None,
            LEFTOVER_TERM_GRACE,
            &self.telemetry,
        )
        .await;
        let entry = self.entry.lock().expect("registry entry lock").take();
        if let Some(entry) = entry
            && let Err(err) = entry.release()
        {
            tracing::warn!(error = %err, "Could not remove this run's registry entry.");
        }
    }
}

/// Ends the leftovers of dead earlier runs and records this one. A registry
/// directory open to another user is refused with `UntrustedPath`; other
/// failures are logged, never fatal: the registry is a safety net, not a
/// dependency.
async fn reap_and_register(
    config: &RuntimeConfig,
    telemetry: &Telemetry,
) -> Result<Option<RunEntry>, Error> {
    let registry = RunRegistry::new(
        config
            .registry_dir
            .clone()
            .unwrap_or_else(default_registry_dir),
    );
    let run_id = config.run_id.clone();
    let work = tokio::task::spawn_blocking(move || {
        registry.prepare()?;
        let swept = registry.sweep();
        Ok::<_, RegistryError>((swept, registry.register(&run_id)))
    });
    let (swept, entry) = match work.await {
        Ok(Ok(done)) => done,
        Ok(Err(RegistryError::Untrusted(untrusted))) => return Err(untrusted.into()),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "Could not prepare the run registry.");
            return Ok(None);
        }
        Err(err) => {
            tracing::warn!(error = %err, "The run registry task failed.");
            return Ok(None);
        }
    };
    match swept {
        Ok(report) => {
            for run in report.runs {
                OrphansReaped {
                    run_id: run.run_id,
                    host_pid: run.host_pid,
                    pids: run.pids,
                    survivors: run.survivors,
                }
                .emit(telemetry);
            }
        }
        Err(RegistryError::Untrusted(untrusted)) => return Err(untrusted.into()),
        Err(err) => tracing::warn!(error = %err, "Could not sweep the run registry."),
    }
    Ok(entry
        .inspect_err(
            |err| tracing::warn!(error = %err, "Could not record this run in the registry."),
        )
        .ok())
}
