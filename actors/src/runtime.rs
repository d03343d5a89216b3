//! The root of the supervision tree. Starts one pool actor per configured
//! pool, hands out their handles, and shuts them all down in order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::config::PoolConfig;
use crate::error::Error;
use crate::handle::PoolHandle;
use crate::pool::{Pool, PoolArgs, PoolMessage};
use crate::telemetry::Telemetry;

/// What the runtime is started with.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The pools.
    pub pools: Vec<PoolConfig>,
    /// Python interpreter for pools that do not name their own.
    pub python: PathBuf,
    /// Identifies this host run in every worker's environment.
    pub run_id: String,
}

/// The root actor.
pub struct Runtime;

/// Messages to the root actor.
pub enum RuntimeMessage {
    /// The pools it started, in configuration order.
    Pools(RpcReplyPort<Vec<(Arc<PoolConfig>, ActorRef<PoolMessage>)>>),
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
    pools: Vec<(Arc<PoolConfig>, ActorRef<PoolMessage>)>,
}

/// What the root actor is started with.
pub struct RuntimeArgs {
    config: RuntimeConfig,
    telemetry: Telemetry,
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
        let mut pools = Vec::new();
        for pool in args.config.pools {
            let pool = Arc::new(pool);
            let pool_args = PoolArgs {
                config: pool.clone(),
                python: args.config.python.clone(),
                run_id: args.config.run_id.clone(),
                telemetry: args.telemetry.clone(),
            };
            let (actor, _) = Actor::spawn_linked(None, Pool, pool_args, myself.get_cell())
                .await
                .map_err(|e| format!("could not start pool `{}`: {e}", pool.name))?;
            pools.push((pool, actor));
        }
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
                let pools: Vec<_> = state.pools.iter().map(|(_, a)| a.clone()).collect();
                // Pools drain in parallel; the reply waits for the slowest,
                // and each pool answers only once its processes are reaped.
                tokio::spawn(async move {
                    let waits = pools.iter().map(|pool| {
                        pool.call(|reply| PoolMessage::Shutdown { deadline, reply }, None)
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
        let (root, _) = Actor::spawn(
            None,
            Runtime,
            RuntimeArgs {
                config,
                telemetry: telemetry.clone(),
            },
        )
        .await
        .map_err(|e| Error::Config(format!("could not start the runtime: {e}")))?;
        let started = match root.call(RuntimeMessage::Pools, None).await {
            Ok(ractor::rpc::CallResult::Success(pools)) => pools,
            _ => return Err(Error::ShuttingDown),
        };
        let pools = started
            .into_iter()
            .map(|(config, actor)| {
                (
                    config.name.clone(),
                    PoolHandle::new(actor, config, telemetry.clone()),
                )
            })
            .collect();
        let handle = Self {
            root,
            pools: Arc::new(pools),
            telemetry,
            run_id,
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

    /// The telemetry hub.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// This run's id (in every worker's `SNAKEPIT_RUN_ID`).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Stops taking calls, lets in-flight ones finish within `grace`, ends
    /// every worker process group, and returns once all are reaped.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self
            .root
            .call(|reply| RuntimeMessage::Shutdown { grace, reply }, None)
            .await;
    }
}
