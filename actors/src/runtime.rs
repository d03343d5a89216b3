//! The root of the supervision tree. Starts the `Sessions` registry and one
//! pool actor per configured pool, hands out their handles and sessions,
//! starts services on request (`service.rs`: the gRPC server is one), and
//! shuts them all down in order: services first (they drain while the pools
//! still answer), then the pools.
//!
//! Before any pool starts, the run registry is swept: processes left behind by
//! an earlier host run that died (found by their `SNAKEPIT_RUN_ID`) are ended,
//! and this run is recorded so that a later host can do the same for it. A
//! registry directory open to another user refuses the start. At shutdown,
//! once every pool is down, whatever still carries this run's id (children
//! that left their worker's process group) is ended too.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::ask::ask;
use crate::config::{PoolConfig, SessionsConfig};
use crate::error::Error;
use crate::handle::PoolHandle;
use crate::host::{Host, HostCallContext};
use crate::host_tools::HostTool;
use crate::pool::{Pool, PoolArgs, PoolMessage, ToolIndex};
use crate::reaper::{RegistryError, RunEntry, RunRegistry, default_registry_dir, end_strays};
use crate::remote::Agents;
use crate::service::{
    Service, ServiceArgs, ServiceFactory, ServiceFuture, ServiceMessage, ShutdownSignal,
    ShutdownTrigger,
};
use crate::sessions::{OwnerMessage, Session, Sessions, SessionsArgs, SessionsMessage};
use crate::telemetry::{OrphansReaped, ServiceFailed, Telemetry};
use crate::wire::shm::PoolArena;

/// What the runtime is started with.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The pools.
    pub pools: Vec<PoolConfig>,
    /// Python interpreter for pools that do not name their own.
    pub python: PathBuf,
    /// Identifies this host run in every worker's environment.
    pub run_id: String,
    /// The run registry directory (default:
    /// [`default_registry_dir`](crate::reaper::default_registry_dir), one per
    /// user). Hosts sharing it end each other's leftovers after a crash, and
    /// only those.
    pub registry_dir: Option<PathBuf>,
    /// Session limits and timeouts.
    pub sessions: SessionsConfig,
}

/// How long processes of this run still there after shutdown get between
/// SIGTERM and SIGKILL.
const LEFTOVER_TERM_GRACE: Duration = Duration::from_secs(1);

/// How long a service still running at the shutdown deadline gets to stop
/// once its future is dropped.
const SERVICE_STOP_WAIT: Duration = Duration::from_secs(1);

/// The root actor.
pub struct Runtime;

/// Messages to the root actor.
pub enum RuntimeMessage {
    /// The pools it started, in configuration order.
    Pools(RpcReplyPort<Vec<PoolHandle>>),
    /// Start a service as a child; refused once shutdown began.
    SpawnService {
        /// Its name, in logs and events.
        name: String,
        /// Makes its future.
        start: ServiceFactory,
        /// Answered once it runs.
        reply: RpcReplyPort<Result<(), Error>>,
    },
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
    /// Running services, by actor.
    services: HashMap<ActorId, (String, ActorRef<ServiceMessage>)>,
    /// Tells the services to stop.
    stopping: ShutdownTrigger,
    telemetry: Telemetry,
}

/// What the root actor is started with.
pub struct RuntimeArgs {
    config: RuntimeConfig,
    telemetry: Telemetry,
    bridge: Arc<Host>,
    agents: Agents,
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
            let arena = shared_arena(&pool);
            let pool_args = PoolArgs {
                host_calls: args.bridge.calls(),
                tools: tools.clone(),
                config: pool.clone(),
                python: args.config.python.clone(),
                run_id: args.config.run_id.clone(),
                telemetry: args.telemetry.clone(),
                agents: pool.remote.then(|| args.agents.clone()),
                arena: arena.clone(),
            };
            let (actor, _) = Actor::spawn_linked(None, Pool, pool_args, myself.get_cell())
                .await
                .map_err(|e| format!("could not start pool `{}`: {e}", pool.name))?;
            pools.push(PoolHandle::new(
                actor,
                pool,
                args.telemetry.clone(),
                tools,
                arena,
            ));
        }
        args.bridge.set_pools(Arc::new(
            pools
                .iter()
                .map(|p: &PoolHandle| (p.name().to_string(), p.clone()))
                .collect(),
        ));
        Ok(RuntimeState {
            pools,
            services: HashMap::new(),
            stopping: ShutdownTrigger::new(),
            telemetry: args.telemetry,
        })
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
            RuntimeMessage::SpawnService { name, start, reply } => {
                let _ = reply.send(spawn_service(&myself, state, name, start).await);
            }
            RuntimeMessage::Shutdown { grace, reply } => {
                let deadline = Instant::now() + grace;
                let pools: Vec<_> = state.pools.iter().map(|p| p.actor().clone()).collect();
                state.stopping.request(deadline);
                let services: Vec<_> = state.services.values().map(|(_, s)| s.clone()).collect();
                tokio::spawn(async move {
                    // Services first: a server drains its streams while the
                    // pools still answer them.
                    futures::future::join_all(services.iter().map(|s| stop_service(s, deadline)))
                        .await;
                    // Pools drain in parallel; the reply waits for the slowest,
                    // and each pool answers only once its processes are reaped.
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
        state: &mut RuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                match state.services.remove(&cell.get_id()) {
                    Some((service, _)) => ServiceFailed {
                        service,
                        error: err.to_string(),
                    }
                    .emit(&state.telemetry),
                    None => tracing::error!(error = %err, "A pool actor failed."),
                }
            }
            SupervisionEvent::ActorTerminated(cell, ..) => {
                state.services.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Starts `start` as a linked child of the root, unless shutdown began.
async fn spawn_service(
    myself: &ActorRef<RuntimeMessage>,
    state: &mut RuntimeState,
    name: String,
    start: ServiceFactory,
) -> Result<(), Error> {
    if state.stopping.is_requested() {
        return Err(Error::ShuttingDown);
    }
    let args = ServiceArgs {
        start,
        signal: state.stopping.signal(),
    };
    let (actor, _) = Actor::spawn_linked(None, Service, args, myself.get_cell())
        .await
        .map_err(|e| Error::Config(format!("could not start service `{name}`: {e}")))?;
    state.services.insert(actor.get_id(), (name, actor));
    Ok(())
}

/// Waits until `service` is over, at most until `deadline`; then stops it.
async fn stop_service(service: &ActorRef<ServiceMessage>, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if service.wait(Some(left)).await.is_err() {
        let _ = service
            .stop_and_wait(Some("shutdown deadline".into()), Some(SERVICE_STOP_WAIT))
            .await;
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
    agents: Agents,
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
        let entry =
            reap_and_register(config.registry_dir.clone(), &config.run_id, &telemetry).await?;
        let bridge = Arc::new(Host::new(config.sessions.clone()));
        let agents = Agents::new(
            config
                .pools
                .iter()
                .filter(|p| p.remote)
                .map(|p| p.name.clone()),
            telemetry.clone(),
        );
        let (root, _) = Actor::spawn(
            None,
            Runtime,
            RuntimeArgs {
                config,
                telemetry: telemetry.clone(),
                bridge: bridge.clone(),
                agents: agents.clone(),
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
            agents,
        };
        let ready = futures::future::join_all(handle.pools.values().map(|p| p.wait_ready())).await;
        if let Some(err) = ready.into_iter().find_map(Result::err) {
            handle.shutdown(Duration::from_secs(1)).await;
            return Err(err);
        }
        Ok(handle)
    }

    /// The node agents' registry: where the host's end of their links
    /// (the `Attach` service) hands them, and where remote pools find
    /// their workers.
    pub fn agents(&self) -> &Agents {
        &self.agents
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

    /// The live session `id`: `SessionNotFound` when it was never opened,
    /// was released or expired. Never creates one. The handle does not
    /// release the session when dropped.
    pub async fn lookup_session(&self, id: &str) -> Result<Session, Error> {
        let sessions = self.bridge_sessions()?;
        let looked = ask(
            &sessions,
            |reply| SessionsMessage::Lookup {
                id: id.to_string(),
                reply,
            },
            None,
        )
        .await?;
        let owner = looked.ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
        Ok(self.session_handle(id.to_string(), owner, false))
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
        Ok(self.session_handle(id, owner, auto))
    }

    fn session_handle(
        &self,
        id: String,
        owner: ActorRef<OwnerMessage>,
        release_on_drop: bool,
    ) -> Session {
        let default_pool = self
            .pools
            .get("default")
            .or_else(|| self.pools.values().next())
            .map(|p| p.name().to_string())
            .unwrap_or_default();
        Session::new(
            id,
            owner,
            self.pools.clone(),
            default_pool,
            self.bridge.clone(),
            release_on_drop,
        )
    }

    /// Runs a service as a child of the runtime's root: `start` is called
    /// once, with the signal that says when the runtime shuts down, and the
    /// future it returns runs until it resolves. A service that fails or
    /// panics is logged and reported as the event
    /// `snakepit.runtime.service.failed`. At shutdown, services are told to
    /// stop and waited for (until the grace period's deadline) before the
    /// pools go down. Refused with `ShuttingDown` once shutdown began.
    pub async fn spawn_service<F>(&self, name: &str, start: F) -> Result<(), Error>
    where
        F: FnOnce(ShutdownSignal) -> ServiceFuture + Send + 'static,
    {
        let name = name.to_string();
        ask(
            &self.root,
            |reply| RuntimeMessage::SpawnService {
                name,
                start: Box::new(start),
                reply,
            },
            None,
        )
        .await?
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

    /// Tells the services to stop and waits for them, then stops taking
    /// calls; in-flight ones (a service's included) finish within `grace`
    /// in all. Then ends every worker process group, then every process still
    /// carrying this run's id (SIGTERM, up to a second, SIGKILL), and returns
    /// once all are reaped.
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
pub(crate) async fn reap_and_register(
    registry_dir: Option<PathBuf>,
    run_id: &str,
    telemetry: &Telemetry,
) -> Result<Option<RunEntry>, Error> {
    let registry = RunRegistry::new(registry_dir.unwrap_or_else(default_registry_dir));
    let run_id = run_id.to_string();
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

/// The shared-memory arena of `pool`: a local pool's, unless
/// `max_shared_bytes` is 0 or the system refuses one (arrays then cross
/// inline, and a warning says why).
fn shared_arena(pool: &PoolConfig) -> Option<Arc<PoolArena>> {
    if pool.remote || pool.max_shared_bytes == 0 {
        return None;
    }
    PoolArena::create(&pool.name, pool.max_shared_bytes, pool.shared_threshold_bytes)
        .inspect_err(|err| {
            tracing::warn!(pool = %pool.name, error = %err, "No shared memory for this pool: large arrays cross inline.");
        })
        .ok()
}

#[cfg(test)]
mod tests;
