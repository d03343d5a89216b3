//! The worker actor: owns exactly one Python process and its connection.
//!
//! Started by its [`Pool`](crate::pool::Pool). It spawns the process in
//! `pre_start`, then waits for `Hello` (sent by the reader task) without
//! blocking: workers of a pool boot concurrently. When the process ends, for
//! whatever reason, the actor fails every request still waiting on it with
//! `WorkerCrashed` (exit code or signal included), kills what is left of the
//! process group, tells the pool why it is gone, and stops.

mod messages;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use messages::WorkerMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use snakepit_proto::v1::{self, frame::Kind};

use crate::config::PoolConfig;
use crate::connection::{self, Closed, Connection, Listeners};
use crate::error::{Error, ExitStatus, python_exception};
use crate::pool::{PoolMessage, WorkerGone, WorkerKey, WorkerLink};
use crate::process::{self, RUN_ID_ENV, SpawnSpec, StderrTail};
use crate::telemetry::{ExitCause, Telemetry, WorkerSpawned};

/// Extra time after a grace period before the group gets SIGKILL.
const KILL_SLACK: Duration = Duration::from_millis(500);

/// How long after the process is reaped we wait for its connection's last
/// frames before reporting the exit anyway.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// The worker actor (read-only configuration lives in its arguments).
pub struct Worker;

/// What a worker is started with.
pub struct WorkerArgs {
    pub(crate) key: WorkerKey,
    pub(crate) id: String,
    pub(crate) config: Arc<PoolConfig>,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    pub(crate) pool: ActorRef<PoolMessage>,
    pub(crate) telemetry: Telemetry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping,
}

/// The worker's state, built in `pre_start`.
pub struct WorkerState {
    key: WorkerKey,
    id: String,
    pool_name: Arc<str>,
    pool: ActorRef<PoolMessage>,
    pid: u32,
    conn: Connection,
    stderr: StderrTail,
    spawned_at: Instant,
    phase: Phase,
    /// Set when we know why the process is ending before it has ended.
    cause: Option<ExitCause>,
    /// What went wrong, for the requests that fail and the start-up error.
    detail: Option<String>,
    startup_error: Option<Error>,
    stop_replies: Vec<RpcReplyPort<()>>,
    /// Set once the process is reaped.
    exit_status: Option<ExitStatus>,
    /// Set once the reader has handed over every frame the worker sent.
    conn_closed: bool,
    finished: bool,
}

impl Actor for Worker {
    type Msg = WorkerMessage;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMessage>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let cfg = &args.config;
        let spec = spawn_spec(&args);
        let spawned = process::spawn(&spec).map_err(|err| {
            format!(
                "could not run {} for pool `{}`: {err}",
                spec.program.display(),
                cfg.name
            )
        })?;
        let pid = spawned.pid;
        let pool_name: Arc<str> = Arc::from(cfg.name.as_str());
        let conn = Connection::start(
            spawned.stream,
            cfg.max_frame_bytes,
            Duration::from_micros(cfg.busy_poll_us as u64),
            Listeners {
                worker: myself.clone(),
                pool: args.pool.clone(),
                key: args.key,
                pool_name: pool_name.clone(),
            },
        );
        let mut child = spawned.child;
        let waiter = myself.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => ExitStatus::from(status),
                Err(_) => ExitStatus::Unknown,
            };
            let _ = waiter.cast(WorkerMessage::Exited(status));
        });
        myself.send_after(cfg.startup_timeout(), || WorkerMessage::StartupDeadline);
        WorkerSpawned {
            pool: cfg.name.clone(),
            worker: args.id.clone(),
            pid,
        }
        .emit(&args.telemetry);
        Ok(WorkerState {
            key: args.key,
            id: args.id,
            pool_name,
            pool: args.pool,
            pid,
            conn,
            stderr: spawned.stderr_tail,
            spawned_at: Instant::now(),
            phase: Phase::Starting,
            cause: None,
            detail: None,
            startup_error: None,
            stop_replies: Vec::new(),
            exit_status: None,
            conn_closed: false,
            finished: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMessage>,
        message: WorkerMessage,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::Hello(hello) => on_hello(state, hello),
            WorkerMessage::StartupFailed(err) => {
                let python = python_exception(err);
                state.detail = Some(format!("{}: {}", python.python_type, python.message));
                state.startup_error = Some(Error::WorkerStartFailed {
                    pool: state.pool_name.to_string(),
                    reason: format!(
                        "the adapter failed to load: {}: {}\n{}",
                        python.python_type, python.message, python.traceback
                    ),
                    python: Some(python),
                });
                state.cause = Some(ExitCause::StartupFailed);
                // It exits by itself; make sure of it.
                myself.send_after(KILL_SLACK, || WorkerMessage::KillDeadline);
            }
            WorkerMessage::StartupDeadline => {
                if state.phase == Phase::Starting && state.cause.is_none() {
                    state.cause = Some(ExitCause::StartupFailed);
                    state.detail = Some(format!(
                        "no Hello within {:?} of spawning",
                        state.spawned_at.elapsed()
                    ));
                    process::signal_group(state.pid, libc::SIGKILL);
                }
            }
            WorkerMessage::ConnectionClosed(closed) => {
                if let Closed::Protocol(reason) = &closed {
                    // We no longer trust this stream: end the process now.
                    state.cause.get_or_insert(ExitCause::ProtocolViolation);
                    state.detail = Some(format!("protocol violation: {reason}"));
                    process::signal_group(state.pid, libc::SIGKILL);
                } else {
                    if let Closed::Io(reason) = &closed {
                        state
                            .detail
                            .get_or_insert_with(|| format!("connection failed: {reason}"));
                    }
                    // It closed its end; it should exit on its own.
                    myself.send_after(KILL_SLACK, || WorkerMessage::KillDeadline);
                }
                tracing::debug!(worker = %state.id, ?closed, "Worker connection closed.");
                state.conn_closed = true;
                settle(&myself, state);
            }
            WorkerMessage::ExitSettled => {
                state.conn_closed = true;
                settle(&myself, state);
            }
            WorkerMessage::KillDeadline => {
                if state.exit_status.is_none() {
                    process::signal_group(state.pid, libc::SIGKILL);
                }
            }
            WorkerMessage::Stop { grace, reply } => {
                reply.into_iter().for_each(|r| state.stop_replies.push(r));
                if state.finished {
                    finish(&myself, state);
                    return Ok(());
                }
                if state.phase == Phase::Stopping {
                    return Ok(());
                }
                state.phase = Phase::Stopping;
                state.cause.get_or_insert(ExitCause::Shutdown);
                state.conn.send(connection::frame(
                    0,
                    Kind::Shutdown(v1::Shutdown {
                        grace_ms: grace.as_millis() as u32,
                    }),
                ));
                myself.send_after(grace + KILL_SLACK, || WorkerMessage::KillDeadline);
            }
            WorkerMessage::Exited(status) => {
                state.exit_status = Some(status);
                // The reader may still hold the worker's last frames (such as
                // the error that explains a failed start): let it deliver them.
                myself.send_after(EXIT_SETTLE, || WorkerMessage::ExitSettled);
                settle(&myself, state);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkerMessage>,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        // Whatever happened, nothing of ours outlives the actor.
        if state.exit_status.is_none() {
            process::signal_group(state.pid, libc::SIGKILL);
        }
        Ok(())
    }
}

fn spawn_spec(args: &WorkerArgs) -> SpawnSpec {
    let cfg = &args.config;
    let mut argv: Vec<OsString> = vec![
        "-m".into(),
        "snakepit_bridge.worker".into(),
        "--adapter".into(),
        cfg.adapter.clone().into(),
        "--fd".into(),
        process::WORKER_FD.to_string().into(),
        "--profile".into(),
        cfg.profile.as_str().into(),
        "--threads".into(),
        cfg.threads_per_worker.to_string().into(),
        "--max-frame-bytes".into(),
        cfg.max_frame_bytes.to_string().into(),
        "--worker-id".into(),
        args.id.clone().into(),
        "--pool".into(),
        cfg.name.clone().into(),
        "--busy-poll-us".into(),
        cfg.busy_poll_us.to_string().into(),
    ];
    for dir in &cfg.python_path {
        argv.push("--python-path".into());
        argv.push(dir.clone().into());
    }
    let mut env: Vec<(String, String)> = cfg
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push((RUN_ID_ENV.into(), args.run_id.clone()));
    env.push(("SNAKEPIT_WORKER_ID".into(), args.id.clone()));
    SpawnSpec {
        program: cfg.python.clone().unwrap_or_else(|| args.python.clone()),
        args: argv,
        env,
        worker_id: args.id.clone(),
    }
}

fn on_hello(state: &mut WorkerState, hello: v1::Hello) {
    if state.phase != Phase::Starting {
        tracing::warn!(worker = %state.id, "Ignored a second Hello.");
        return;
    }
    if hello.protocol_version != snakepit_proto::PROTOCOL_VERSION {
        state.cause = Some(ExitCause::StartupFailed);
        state.detail = Some(format!(
            "worker speaks protocol {}, host speaks {}",
            hello.protocol_version,
            snakepit_proto::PROTOCOL_VERSION
        ));
        process::signal_group(state.pid, libc::SIGKILL);
        return;
    }
    state.phase = Phase::Ready;
    let link = WorkerLink {
        conn: state.conn.clone(),
        capacity: hello.capacity.max(1),
        startup: state.spawned_at.elapsed(),
        hello: Arc::new(hello),
        pid: state.pid,
    };
    let _ = state.pool.cast(PoolMessage::WorkerReady {
        key: state.key,
        link,
    });
}

fn on_exit(state: &mut WorkerState, status: ExitStatus) {
    let cause = match state.cause {
        Some(cause) => cause,
        None if state.phase == Phase::Starting => ExitCause::StartupFailed,
        None => ExitCause::Crashed,
    };
    // Grandchildren the tool started share the group; end them too. After the
    // leader is reaped, this is the last time we use its pgid.
    process::signal_group(state.pid, libc::SIGKILL);
    let stderr = state.stderr.text();
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    let detail = state
        .detail
        .clone()
        .or_else(|| last_line.map(|l| format!("last stderr line: {l}")));
    let pending = state.conn.close();
    let failed_requests = pending.len();
    for p in pending {
        p.sink.fail(Error::WorkerCrashed {
            pool: state.pool_name.to_string(),
            worker: state.id.clone(),
            status,
            detail: detail.clone(),
        });
    }
    let startup_error = (cause == ExitCause::StartupFailed).then(|| {
        state
            .startup_error
            .take()
            .unwrap_or_else(|| Error::WorkerStartFailed {
                pool: state.pool_name.to_string(),
                reason: format!(
                    "the worker ended ({status}) before saying Hello{}{}",
                    state
                        .detail
                        .as_ref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default(),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!("\nstderr:\n{stderr}")
                    }
                ),
                python: None,
            })
    });
    let _ = state.pool.cast(PoolMessage::WorkerGone {
        key: state.key,
        gone: WorkerGone {
            pid: state.pid,
            status,
            cause,
            failed_requests,
            startup_error,
        },
    });
}

/// Once the process is reaped and its connection drained, reports the end.
fn settle(myself: &ActorRef<WorkerMessage>, state: &mut WorkerState) {
    if state.finished || !state.conn_closed {
        return;
    }
    let Some(status) = state.exit_status else {
        return;
    };
    state.finished = true;
    on_exit(state, status);
    finish(myself, state);
}

fn finish(myself: &ActorRef<WorkerMessage>, state: &mut WorkerState) {
    for reply in state.stop_replies.drain(..) {
        let _ = reply.send(());
    }
    myself.stop(None);
}
