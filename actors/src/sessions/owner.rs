//! The owner of one session: its variables and watches, its last-use time
//! (for the TTL), the pools it ran on, and its release.
//!
//! Messages come from [`Session`](super::Session) handles, from the host
//! bridge (Python reading and writing variables), and from its own timer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use snakepit_proto::v1::{self, Frame};
use snakepit_proto::{Value, frames};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::SessionInfo;
use crate::config::SessionsConfig;
use crate::error::Error;
use crate::handle::PoolHandle;
use crate::telemetry::{SessionCleanupError, SessionReleased, Telemetry};
use crate::variables::{
    Constraints, UpdateSource, VarType, Variable, VariableError, VariableStore, VariableUpdate,
};

/// Why a session is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseSource {
    /// `Session::release()`.
    Manual,
    /// Unused for its TTL.
    Ttl,
    /// The last handle of an auto session was dropped.
    Dropped,
}

impl ReleaseSource {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseSource::Manual => "manual",
            ReleaseSource::Ttl => "ttl",
            ReleaseSource::Dropped => "dropped",
        }
    }
}

/// Where a watch's updates go.
pub(crate) enum WatchSink {
    /// A `VariableWatch` stream.
    Rust(mpsc::UnboundedSender<VariableUpdate>),
    /// A Python worker: `VariableUpdate` frames on its connection.
    Python {
        frames: mpsc::UnboundedSender<Frame>,
    },
}

struct Watch {
    id: String,
    /// Variable ids watched; empty: all.
    variables: BTreeSet<String>,
    sink: WatchSink,
}

impl Watch {
    /// Delivers `update`; false once the receiver is gone.
    fn deliver(&self, session: &str, update: &VariableUpdate) -> bool {
        if !self.variables.is_empty() && !self.variables.contains(&update.variable_id) {
            return true;
        }
        match &self.sink {
            WatchSink::Rust(tx) => tx.send(update.clone()).is_ok(),
            WatchSink::Python { frames } => {
                let frame = frames::variable_update(v1::VariableUpdate {
                    session_id: session.to_string(),
                    watch_id: self.id.clone(),
                    variable_id: update.variable_id.clone(),
                    name: update.name.clone(),
                    old_value: Some(update.old_value.clone().into()),
                    new_value: Some(update.new_value.clone().into()),
                    version: update.version,
                    source: update.source.as_str().to_string(),
                    metadata: update.metadata.iter().cloned().collect(),
                });
                frames.send(frame).is_ok()
            }
        }
    }
}

pub(crate) struct SessionOwner;

/// What an owner asks of the host (which holds the host tools and the
/// late-bound pools) when its session ends.
pub(crate) trait SessionHost: Send + Sync + 'static {
    /// Drops the host tools and callbacks registered for `session`.
    fn drop_session(&self, session: &str);
    /// The pool named `name`, to release the session on.
    fn pool(&self, name: &str) -> Option<PoolHandle>;
}

pub(crate) struct OwnerArgs {
    pub registry: ActorRef<super::SessionsMessage>,
    pub id: String,
    pub auto: bool,
    pub config: SessionsConfig,
    pub telemetry: Telemetry,
    pub bridge: Arc<dyn SessionHost>,
}

pub(crate) struct OwnerState {
    registry: ActorRef<super::SessionsMessage>,
    id: String,
    auto: bool,
    config: SessionsConfig,
    telemetry: Telemetry,
    bridge: Arc<dyn SessionHost>,
    created: SystemTime,
    last_used: Instant,
    last_used_wall: SystemTime,
    pools: BTreeSet<String>,
    metadata: Vec<(String, String)>,
    variables: VariableStore,
    watches: Vec<Watch>,
    next_watch: u64,
    releasing: Option<ReleaseSource>,
    release_replies: Vec<RpcReplyPort<Result<(), Error>>>,
    /// The pending TTL check. Its task holds a reference to this actor, so
    /// it is aborted when the owner stops: otherwise every released session
    /// would stay in memory until its TTL ran out.
    ttl_timer:
        Option<ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<OwnerMessage>>>>,
}

/// What a session owner is told.
pub(crate) enum OwnerMessage {
    /// A call of the session is about to run on `pool`.
    Touch {
        pool: Option<String>,
    },
    /// Which of `names` are not registered.
    Missing {
        names: Vec<String>,
        reply: RpcReplyPort<Vec<String>>,
    },
    Register {
        name: String,
        var_type: VarType,
        initial: Value,
        constraints: Constraints,
        description: String,
        reply: RpcReplyPort<Result<Variable, VariableError>>,
    },
    Get {
        identifier: String,
        reply: RpcReplyPort<Result<Variable, VariableError>>,
    },
    Set {
        identifier: String,
        value: Value,
        source: UpdateSource,
        metadata: Vec<(String, String)>,
        reply: RpcReplyPort<Result<Variable, VariableError>>,
    },
    List(RpcReplyPort<Vec<Variable>>),
    Delete {
        identifier: String,
        reply: RpcReplyPort<Result<Variable, VariableError>>,
    },
    Watch {
        names: Vec<String>,
        include_initial: bool,
        sink: WatchSink,
        reply: RpcReplyPort<Result<String, VariableError>>,
    },
    Unwatch {
        watch_id: String,
    },
    /// Sets (or replaces) a metadata entry.
    SetMetadata {
        key: String,
        value: String,
    },
    Info(RpcReplyPort<SessionInfo>),
    /// Release the session (answered once its workers were told, or the
    /// cleanup timeout passed).
    Release {
        source: ReleaseSource,
        reply: Option<RpcReplyPort<Result<(), Error>>>,
    },
    /// The release's cleanup is over.
    Released(Result<(), String>),
    /// See whether the TTL passed.
    TtlCheck,
}

impl Actor for SessionOwner {
    type Msg = OwnerMessage;
    type State = OwnerState;
    type Arguments = OwnerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OwnerMessage>,
        args: OwnerArgs,
    ) -> Result<OwnerState, ActorProcessingErr> {
        let ttl_timer = Some(myself.send_after(args.config.ttl(), || OwnerMessage::TtlCheck));
        Ok(OwnerState {
            ttl_timer,
            variables: VariableStore::with_limit(args.config.max_variables),
            registry: args.registry,
            id: args.id,
            auto: args.auto,
            config: args.config,
            telemetry: args.telemetry,
            bridge: args.bridge,
            created: SystemTime::now(),
            last_used: Instant::now(),
            last_used_wall: SystemTime::now(),
            pools: BTreeSet::new(),
            metadata: Vec::new(),
            watches: Vec::new(),
            next_watch: 1,
            releasing: None,
            release_replies: Vec::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<OwnerMessage>,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.ttl_timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<OwnerMessage>,
        message: OwnerMessage,
        state: &mut OwnerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            OwnerMessage::Touch { pool } => {
                state.last_used = Instant::now();
                state.last_used_wall = SystemTime::now();
                if let Some(pool) = pool
                    && !state.pools.contains(&pool)
                {
                    state.pools.insert(pool);
                }
            }
            OwnerMessage::Missing { names, reply } => {
                let missing = state
                    .variables
                    .missing(&names)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let _ = reply.send(missing);
            }
            OwnerMessage::Register {
                name,
                var_type,
                initial,
                constraints,
                description,
                reply,
            } => {
                let result = state
                    .variables
                    .register(&name, var_type, initial, constraints, &description)
                    .cloned();
                let _ = reply.send(result);
            }
            OwnerMessage::Get { identifier, reply } => {
                let _ = reply.send(state.variables.get(&identifier).cloned());
            }
            OwnerMessage::Set {
                identifier,
                value,
                source,
                metadata,
                reply,
            } => {
                let result = state
                    .variables
                    .set(&identifier, value, source, metadata)
                    .inspect(|update| {
                        let id = state.id.clone();
                        state.watches.retain(|w| w.deliver(&id, update));
                    })
                    .and_then(|update| state.variables.get(&update.variable_id).cloned());
                let _ = reply.send(result);
            }
            OwnerMessage::List(reply) => {
                let _ = reply.send(state.variables.list().cloned().collect());
            }
            OwnerMessage::Delete { identifier, reply } => {
                let result = state.variables.delete(&identifier);
                if let Ok(deleted) = &result {
                    for watch in &mut state.watches {
                        watch.variables.remove(&deleted.id);
                    }
                }
                let _ = reply.send(result);
            }
            OwnerMessage::Watch {
                names,
                include_initial,
                sink,
                reply,
            } => {
                let _ = reply.send(add_watch(state, names, include_initial, sink));
            }
            OwnerMessage::Unwatch { watch_id } => {
                state.watches.retain(|w| w.id != watch_id);
            }
            OwnerMessage::SetMetadata { key, value } => {
                match state.metadata.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = value,
                    None => state.metadata.push((key, value)),
                }
            }
            OwnerMessage::Info(reply) => {
                let _ = reply.send(SessionInfo {
                    id: state.id.clone(),
                    created: state.created,
                    last_used: state.last_used_wall,
                    auto: state.auto,
                    pools: state.pools.iter().cloned().collect(),
                    metadata: state.metadata.clone(),
                    variables: state.variables.len(),
                });
            }
            OwnerMessage::Release { source, reply } => {
                reply
                    .into_iter()
                    .for_each(|r| state.release_replies.push(r));
                if state.releasing.is_none() {
                    state.releasing = Some(source);
                    start_release(&myself, state, source);
                }
            }
            OwnerMessage::Released(result) => {
                SessionReleased {
                    session_id: state.id.clone(),
                    source: state.releasing.unwrap_or(ReleaseSource::Manual).as_str(),
                    clean: result.is_ok(),
                }
                .emit(&state.telemetry);
                let result = result.map_err(|reason| Error::SessionCleanupFailed {
                    session: state.id.clone(),
                    reason,
                });
                let _ = state.registry.cast(super::SessionsMessage::Forget {
                    id: state.id.clone(),
                    actor: myself.get_id(),
                });
                for reply in state.release_replies.drain(..) {
                    let _ = reply.send(result.clone());
                }
                myself.stop(None);
            }
            OwnerMessage::TtlCheck => {
                if state.releasing.is_none() {
                    let due = state.last_used + state.config.ttl();
                    if Instant::now() >= due {
                        state.releasing = Some(ReleaseSource::Ttl);
                        start_release(&myself, state, ReleaseSource::Ttl);
                    } else {
                        let wait = due - Instant::now();
                        state.ttl_timer = Some(myself.send_after(wait, || OwnerMessage::TtlCheck));
                    }
                }
            }
        }
        Ok(())
    }
}

fn add_watch(
    state: &mut OwnerState,
    names: Vec<String>,
    include_initial: bool,
    sink: WatchSink,
) -> Result<String, VariableError> {
    let mut variables = BTreeSet::new();
    for name in &names {
        variables.insert(state.variables.get(name)?.id.clone());
    }
    let watch = Watch {
        id: format!("watch-{}", state.next_watch),
        variables,
        sink,
    };
    state.next_watch += 1;
    if include_initial {
        for variable in state.variables.list() {
            if watch.variables.is_empty() || watch.variables.contains(&variable.id) {
                watch.deliver(&state.id, &variable.initial_update());
            }
        }
    }
    let id = watch.id.clone();
    state.watches.push(watch);
    Ok(id)
}

/// Tells every pool the session ran on to release it, in a task bounded by
/// the cleanup timeout; the outcome comes back as `Released`.
fn start_release(myself: &ActorRef<OwnerMessage>, state: &mut OwnerState, source: ReleaseSource) {
    state.watches.clear();
    state.bridge.drop_session(&state.id);
    let pools: Vec<_> = state
        .pools
        .iter()
        .filter_map(|name| state.bridge.pool(name))
        .collect();
    let session = state.id.clone();
    let timeout = state.config.cleanup_timeout();
    let telemetry = state.telemetry.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let releases = pools
            .iter()
            .map(|pool| pool.release_session(&session, timeout));
        let outcomes = futures::future::join_all(releases).await;
        let mut reasons = Vec::new();
        for (pool, outcome) in pools.iter().zip(outcomes) {
            if let Err(reason) = outcome {
                SessionCleanupError {
                    session_id: session.clone(),
                    source: source.as_str(),
                    pool: pool.name().to_string(),
                    reason: reason.clone(),
                }
                .emit(&telemetry);
                reasons.push(format!("pool `{}`: {reason}", pool.name()));
            }
        }
        let result = if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        };
        let _ = me.cast(OwnerMessage::Released(result));
    });
}
