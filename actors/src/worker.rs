//! The worker actor: owns exactly one Python process and its connection.
//!
//! Started by its [`Pool`](crate::pool::Pool). It spawns the process in
//! `pre_start`, then waits for `Hello` (sent by the reader task) without
//! blocking: workers of a pool boot concurrently. Once ready it ticks every
//! heartbeat interval: it pings the worker (and kills it after too many missed
//! beats), and tells the pool when the worker is due for recycling by age or
//! by resident memory.
//!
//! A worker of a remote pool runs the same way on a process a node agent
//! started for it (`crate::remote`): its connection reads and writes the
//! agent's relayed stream, the agent reports the process's start and end,
//! and killing it is a message to the agent, which owns its process group.
//!
//! When the process ends, for whatever reason, the actor fails every request
//! still waiting on it with `WorkerCrashed` (exit code or signal included) —
//! or hands idempotent ones back to the pool to run elsewhere — tells the pool
//! why it is gone, ends what is left of the process group (SIGTERM, then
//! SIGKILL), then every process that still carries its run and worker id
//! (children that left the group with `setsid`), and stops.

mod liveness;
pub(crate) mod messages;

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use messages::WorkerMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use snakepit_proto::{frames, v1};

use liveness::{Beat, Heartbeat};
use rand::Rng;

use crate::config::PoolConfig;
use crate::error::{Error, ExitStatus, python_exception};
use crate::pool::{PoolMessage, Retry, WorkerGone, WorkerKey, WorkerLink};
use crate::process::{self, RUN_ID_ENV, SpawnSpec, StderrTail, WORKER_ID_ENV};
use crate::reaper;
use crate::remote::{RemoteControl, RemoteEvent, RemoteProcess};
use crate::telemetry::{
    ExitCause, HeartbeatMissed, KillReason, RecycleReason, RequestRetryWithheld, Telemetry,
    WorkerKilled, WorkerSpawned,
};
use crate::wire::shm::{PoolArena, WorkerShm};
use crate::wire::{self, Closed, Connection, ConnectionEvents, Listeners};

/// Extra time after a grace period before the group gets SIGKILL.
const KILL_SLACK: Duration = Duration::from_millis(500);

/// How long after the process is reaped we wait for its connection's last
/// frames before reporting the exit anyway.
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// How long the rest of a process group gets between SIGTERM and SIGKILL.
const GROUP_TERM_GRACE: Duration = Duration::from_secs(1);

/// The worker actor (read-only configuration lives in its arguments).
pub struct Worker;

/// Where a worker's connection reports: connection events to the worker
/// actor, a request done to its pool.
struct Events {
    worker: ActorRef<WorkerMessage>,
    pool: ActorRef<PoolMessage>,
    key: WorkerKey,
}

impl ConnectionEvents for Events {
    fn done(&self, id: u64) {
        let _ = self.pool.cast(PoolMessage::Done { key: self.key, id });
    }

    fn hello(&self, hello: v1::Hello) {
        let _ = self.worker.cast(WorkerMessage::Hello(hello));
    }

    fn startup_failed(&self, error: v1::Error) {
        let _ = self.worker.cast(WorkerMessage::StartupFailed(error));
    }

    fn pong(&self, seq: u64) {
        let _ = self.worker.cast(WorkerMessage::Pong(seq));
    }

    fn closed(&self, why: Closed) {
        let _ = self.worker.cast(WorkerMessage::ConnectionClosed(why));
    }
}

/// What a worker is started with.
pub struct WorkerArgs {
    pub(crate) host_calls: Arc<dyn wire::HostCalls>,
    pub(crate) key: WorkerKey,
    pub(crate) id: String,
    pub(crate) config: Arc<PoolConfig>,
    pub(crate) python: PathBuf,
    pub(crate) run_id: String,
    pub(crate) pool: ActorRef<PoolMessage>,
    pub(crate) telemetry: Telemetry,
    /// For a remote pool: the process an agent started for this worker.
    pub(crate) remote: Option<RemoteProcess>,
    /// The pool's shared-memory arena, for a local worker.
    pub(crate) arena: Option<Arc<PoolArena>>,
}

/// What runs the worker's Python.
enum Body {
    /// A process of ours; its stderr's last lines.
    Local { stderr: StderrTail },
    /// A process a node agent runs.
    Remote(RemoteControl),
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
    /// The host run's id, which the worker's children carry with its id.
    run_id: String,
    config: Arc<PoolConfig>,
    telemetry: Telemetry,
    heartbeat: Option<Heartbeat>,
    /// When the worker is due for recycling by age.
    recycle_at: Option<Instant>,
    pool_name: Arc<str>,
    pool: ActorRef<PoolMessage>,
    /// Its process (for a remote worker: on the agent's machine; 0 until
    /// the agent started it).
    pid: u32,
    conn: Connection<Retry>,
    body: Body,
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
    /// The exit has been reported to the pool.
    finished: bool,
    /// The rest of the process group is gone too.
    group_ended: bool,
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
        let mut args = args;
        let remote = args.remote.take();
        let cfg = &args.config;
        let pool_name: Arc<str> = Arc::from(cfg.name.as_str());
        let limits = wire::Limits {
            max_frame_bytes: cfg.max_frame_bytes,
            busy_poll: Duration::from_micros(cfg.busy_poll_us as u64),
            max_host_calls: cfg.max_host_calls as usize,
        };
        let listeners = Listeners {
            events: Events {
                worker: myself.clone(),
                pool: args.pool.clone(),
                key: args.key,
            },
            host_calls: args.host_calls.clone(),
            pool_name: pool_name.clone(),
            worker_id: Arc::from(args.id.as_str()),
            telemetry: args.telemetry.clone(),
        };
        let (pid, conn, body) = match remote {
            Some(remote) => start_remote(&myself, remote, limits, listeners),
            None => start_local(&myself, &args, limits, listeners)?,
        };
        myself.send_after(cfg.startup_timeout(), || WorkerMessage::StartupDeadline);
        if let Body::Local { .. } = body {
            WorkerSpawned {
                pool: cfg.name.clone(),
                worker: args.id.clone(),
                pid,
            }
            .emit(&args.telemetry);
        }
        let heartbeat = cfg
            .heartbeat
            .enabled
            .then(|| Heartbeat::new(&cfg.heartbeat));
        let recycle_at = cfg.worker_ttl.map(|ttl| {
            // Up to 10% earlier, so that a pool started at once is not recycled at once.
            Instant::now() + ttl.mul_f64(1.0 - 0.1 * rand::rng().random::<f64>())
        });
        Ok(WorkerState {
            key: args.key,
            id: args.id,
            run_id: args.run_id,
            heartbeat,
            recycle_at,
            telemetry: args.telemetry,
            config: args.config,
            pool_name,
            pool: args.pool,
            pid,
            conn,
            body,
            spawned_at: Instant::now(),
            phase: Phase::Starting,
            cause: None,
            detail: None,
            startup_error: None,
            stop_replies: Vec::new(),
            exit_status: None,
            conn_closed: false,
            finished: false,
            group_ended: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMessage>,
        message: WorkerMessage,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::Hello(hello) => {
                if on_hello(state, hello) {
                    myself.send_after(state.config.tick_interval(), || WorkerMessage::Tick);
                }
            }
            WorkerMessage::Pong(seq) => {
                if let Some(hb) = &mut state.heartbeat
                    && hb.pong(seq)
                {
                    let _ = state.pool.cast(PoolMessage::Suspect {
                        key: state.key,
                        suspect: false,
                    });
                }
            }
            WorkerMessage::Tick => {
                if state.exit_status.is_none() && tick(state) {
                    myself.send_after(state.config.tick_interval(), || WorkerMessage::Tick);
                }
            }
            WorkerMessage::Kill(reason) => {
                if state.exit_status.is_none() {
                    kill(state, reason, None);
                }
            }
            WorkerMessage::GroupEnded => finish(&myself, state),
            WorkerMessage::StartupFailed(err) => {
                let python = python_exception(err);
                state.detail = Some(format!("{}: {}", python.python_type, python.message));
                state.startup_error = Some(Error::WorkerStartFailed {
                    pool: state.pool_name.to_string(),
                    reason: format!(
                        "the adapter failed to load: {}: {}\n{}",
                        python.python_type, python.message, python.traceback
                    ),
                    python: Some(Box::new(python)),
                });
                state.cause = Some(ExitCause::StartupFailed);
                // It exits by itself; make sure of it.
                myself.send_after(KILL_SLACK, || WorkerMessage::KillDeadline);
            }
            WorkerMessage::StartupDeadline => {
                if state.phase == Phase::Starting && state.cause.is_none() {
                    state.cause = Some(ExitCause::StartupFailed);
                    let detail = format!(
                        "no Hello within {:?} of spawning",
                        state.spawned_at.elapsed()
                    );
                    kill(state, KillReason::StartupTimeout, Some(detail));
                }
            }
            WorkerMessage::ConnectionClosed(closed) => {
                if let Closed::Protocol(reason) = &closed {
                    // We no longer trust this stream: end the process now.
                    state.cause.get_or_insert(ExitCause::ProtocolViolation);
                    let detail = format!("protocol violation: {reason}");
                    kill(state, KillReason::ProtocolViolation, Some(detail));
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
                    kill(state, KillReason::GraceExpired, None);
                }
            }
            WorkerMessage::Stop {
                grace,
                cause,
                reply,
            } => {
                reply.into_iter().for_each(|r| state.stop_replies.push(r));
                if state.group_ended {
                    finish(&myself, state);
                    return Ok(());
                }
                if state.phase == Phase::Stopping || state.finished {
                    return Ok(());
                }
                state.phase = Phase::Stopping;
                state.cause.get_or_insert(cause);
                state.conn.send(frames::shutdown(grace));
                myself.send_after(grace + KILL_SLACK, || WorkerMessage::KillDeadline);
            }
            WorkerMessage::RemoteStarted(pid) => {
                state.pid = pid;
                WorkerSpawned {
                    pool: state.pool_name.to_string(),
                    worker: state.id.clone(),
                    pid,
                }
                .emit(&state.telemetry);
            }
            WorkerMessage::RemoteDraining(grace) => {
                if state.phase == Phase::Ready {
                    let _ = state.pool.cast(PoolMessage::Retire {
                        key: state.key,
                        grace,
                    });
                }
            }
            WorkerMessage::RemoteExited {
                status,
                detail,
                lost,
            } => {
                if lost {
                    state.cause.get_or_insert(ExitCause::AgentLost);
                    state.detail = Some(detail);
                } else if !detail.is_empty() {
                    state.detail.get_or_insert(detail);
                }
                state.exit_status = Some(status);
                myself.send_after(EXIT_SETTLE, || WorkerMessage::ExitSettled);
                settle(&myself, state);
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
        // A successor in the slot sets it again on its next tick.
        crate::telemetry::metric_worker_rss(&state.pool_name, state.key.slot, None);
        // Whatever happened, nothing of ours outlives the actor.
        if state.exit_status.is_none() || !state.group_ended {
            match &state.body {
                Body::Local { .. } => process::signal_group(state.pid, libc::SIGKILL),
                Body::Remote(control) => control.stop(true, Duration::ZERO),
            }
        }
        Ok(())
    }
}

type Started = (u32, Connection<Retry>, Body);

/// Spawns the worker's process here and connects to it.
fn start_local(
    myself: &ActorRef<WorkerMessage>,
    args: &WorkerArgs,
    limits: wire::Limits,
    listeners: Listeners<Events>,
) -> Result<Started, ActorProcessingErr> {
    let mut spec = spawn_spec(&args.config, &args.python, &args.run_id, &args.id);
    let shm = args.arena.as_ref().and_then(|arena| {
        WorkerShm::create(arena, &args.id)
            .inspect_err(|err| {
                tracing::warn!(worker = %args.id, error = %err, "No shared memory for this worker (arrays cross inline).");
            })
            .ok()
            .map(|shm| (arena, shm))
    });
    if let Some((arena, shm)) = &shm {
        spec.inherit = vec![
            (arena.fd(), process::SHM_POOL_FD),
            (shm.worker_fd.as_raw_fd(), process::SHM_WORKER_FD),
        ];
        spec.args.extend(
            [
                "--shm-host-fd".to_string(),
                process::SHM_POOL_FD.to_string(),
                "--shm-worker-fd".into(),
                process::SHM_WORKER_FD.to_string(),
                "--shm-bytes".into(),
                arena.capacity().to_string(),
                "--shm-threshold".into(),
                arena.threshold().to_string(),
            ]
            .map(OsString::from),
        );
    }
    let spawned = process::spawn(&spec, &args.telemetry).map_err(|err| {
        format!(
            "could not run {} for pool `{}`: {err}",
            spec.program.display(),
            args.config.name
        )
    })?;
    // The child has its copy of the worker arena's fd; the host keeps its
    // mapping only.
    let shared = shm.map(|(_, shm)| (shm.conn, shm.releases));
    let (read, write) = spawned.stream.into_split();
    let conn = Connection::start(read, write, limits, listeners, shared);
    let mut child = spawned.child;
    let waiter = myself.clone();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => ExitStatus::from(status),
            Err(_) => ExitStatus::Unknown,
        };
        let _ = waiter.cast(WorkerMessage::Exited(status));
    });
    let body = Body::Local {
        stderr: spawned.stderr_tail,
    };
    Ok((spawned.pid, conn, body))
}

/// Connects to the process an agent starts for the worker, and follows
/// what the agent says of it.
fn start_remote(
    myself: &ActorRef<WorkerMessage>,
    remote: RemoteProcess,
    limits: wire::Limits,
    listeners: Listeners<Events>,
) -> Started {
    let RemoteProcess {
        read,
        write,
        mut events,
        control,
    } = remote;
    let conn = Connection::start(read, write, limits, listeners, None);
    let me = myself.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let message = match event {
                RemoteEvent::Started { pid } => WorkerMessage::RemoteStarted(pid),
                RemoteEvent::Draining { grace } => WorkerMessage::RemoteDraining(grace),
                RemoteEvent::Exited {
                    status,
                    detail,
                    lost,
                } => {
                    let _ = me.cast(WorkerMessage::RemoteExited {
                        status,
                        detail,
                        lost,
                    });
                    return;
                }
            };
            let _ = me.cast(message);
        }
        // The registry went away without a word (the host is going down).
        let _ = me.cast(WorkerMessage::RemoteExited {
            status: ExitStatus::Unknown,
            detail: "the host's agent registry is gone".into(),
            lost: true,
        });
    });
    (0, conn, Body::Remote(control))
}

/// The command line and environment of a worker process of pool `cfg`,
/// named `worker_id`; the node agent spawns its workers with it too.
pub(crate) fn spawn_spec(
    cfg: &PoolConfig,
    python: &std::path::Path,
    run_id: &str,
    worker_id: &str,
) -> SpawnSpec {
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
        worker_id.into(),
        "--pool".into(),
        cfg.name.clone().into(),
        "--busy-poll-us".into(),
        cfg.busy_poll_us.to_string().into(),
        "--unserializable".into(),
        cfg.unserializable.as_str().into(),
    ];
    if cfg.thread_safety_check {
        argv.push("--thread-safety-check".into());
    }
    let ffi = &cfg.ffi;
    if ffi.enabled {
        argv.push("--max-refs".into());
        argv.push(ffi.max_refs.to_string().into());
        if let Some(ttl) = ffi.ref_ttl {
            argv.push("--ref-ttl-ms".into());
            argv.push(ttl.as_millis().to_string().into());
        }
        for dir in &ffi.helper_dirs {
            argv.push("--helper-dir".into());
            argv.push(dir.clone().into());
        }
        for pattern in ffi.helper_allowlist.iter().flatten() {
            argv.push("--helper-allow".into());
            argv.push(pattern.clone().into());
        }
    } else {
        argv.push("--no-ffi".into());
    }
    for dir in &cfg.python_path {
        argv.push("--python-path".into());
        argv.push(dir.clone().into());
    }
    let mut env: Vec<(String, String)> = cfg
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push((RUN_ID_ENV.into(), run_id.to_string()));
    env.push((WORKER_ID_ENV.into(), worker_id.to_string()));
    SpawnSpec {
        program: cfg.python.clone().unwrap_or_else(|| python.to_path_buf()),
        args: argv,
        env,
        env_passthrough: cfg.env_passthrough.clone(),
        worker_id: worker_id.to_string(),
        pool: cfg.name.clone(),
        inherit: Vec::new(),
    }
}

/// Handles `Hello`; true when the worker is now ready.
fn on_hello(state: &mut WorkerState, hello: v1::Hello) -> bool {
    if state.phase != Phase::Starting {
        tracing::warn!(worker = %state.id, "Ignored a second Hello.");
        return false;
    }
    if hello.protocol_version != snakepit_proto::PROTOCOL_VERSION {
        state.cause = Some(ExitCause::StartupFailed);
        state.detail = Some(format!(
            "worker speaks protocol {}, host speaks {}",
            hello.protocol_version,
            snakepit_proto::PROTOCOL_VERSION
        ));
        kill_process(state);
        return false;
    }
    state.phase = Phase::Ready;
    report_rss(state);
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
    true
}

/// The periodic checks of a running worker; false once it is being killed.
fn tick(state: &mut WorkerState) -> bool {
    if let Some(hb) = &mut state.heartbeat {
        let max_missed = hb.max_missed();
        let beat = hb.tick(tokio::time::Instant::now());
        if let Beat::Missed { missed, .. } | Beat::Dead { missed } = beat {
            HeartbeatMissed {
                pool: state.pool_name.to_string(),
                worker: state.id.clone(),
                pid: state.pid,
                missed,
                max_missed,
            }
            .emit(&state.telemetry);
        }
        match beat {
            Beat::Waiting => {}
            Beat::Ping(seq) => state.conn.send(frames::ping(seq, SystemTime::now())),
            Beat::Missed { missed, ping } => {
                if missed == 1 {
                    // Send it no new work until it answers again.
                    let _ = state.pool.cast(PoolMessage::Suspect {
                        key: state.key,
                        suspect: true,
                    });
                }
                state.conn.send(frames::ping(ping, SystemTime::now()));
            }
            Beat::Dead { missed } => {
                state.cause = Some(ExitCause::Unresponsive);
                let detail = format!(
                    "unresponsive: missed {missed} heartbeats in a row ({} ms timeout each)",
                    state.config.heartbeat.timeout.as_millis()
                );
                kill(state, KillReason::Unresponsive, Some(detail));
                return false;
            }
        }
    }
    if state.phase != Phase::Ready {
        return true;
    }
    let due = if state.recycle_at.is_some_and(|at| Instant::now() >= at) {
        Some(RecycleReason::Age)
    } else {
        let rss = report_rss(state);
        state.config.max_memory_mb.and_then(|limit| {
            let rss_mb = rss? >> 20;
            (rss_mb > limit).then_some(RecycleReason::Memory { rss_mb })
        })
    };
    if let Some(reason) = due {
        // Repeated every tick until the pool acts; it ignores repeats.
        let _ = state.pool.cast(PoolMessage::RecycleDue {
            key: state.key,
            reason,
        });
    }
    true
}

/// Reads the worker's resident memory and sets its slot's gauge.
fn report_rss(state: &WorkerState) -> Option<u64> {
    let rss = match &state.body {
        Body::Local { .. } => process::resident_bytes(state.pid),
        Body::Remote(control) => control.resident_bytes(),
    };
    crate::telemetry::metric_worker_rss(&state.pool_name, state.key.slot, rss);
    rss
}

/// Kills the worker process (SIGKILL); the rest of its group is ended once
/// it is reaped.
fn kill(state: &mut WorkerState, reason: KillReason, detail: Option<String>) {
    WorkerKilled {
        pool: state.pool_name.to_string(),
        worker: state.id.clone(),
        pid: state.pid,
        reason,
    }
    .emit(&state.telemetry);
    if reason == KillReason::DrainTimeout {
        state.cause.get_or_insert(ExitCause::Recycled);
        state.detail.get_or_insert_with(|| {
            format!(
                "recycled, and still busy after the drain timeout of {} ms",
                state.config.drain_timeout.as_millis()
            )
        });
    }
    if let Some(detail) = detail {
        state.detail = Some(detail);
    }
    kill_process(state);
}

/// SIGKILL to the worker's process (through its agent, for a remote one).
fn kill_process(state: &WorkerState) {
    match &state.body {
        Body::Local { .. } => process::signal_process(state.pid, libc::SIGKILL),
        Body::Remote(control) => control.stop(true, Duration::ZERO),
    }
}

fn on_exit(state: &mut WorkerState, status: ExitStatus) {
    let cause = match state.cause {
        Some(cause) => cause,
        None if state.phase == Phase::Starting => ExitCause::StartupFailed,
        None => ExitCause::Crashed,
    };
    let stderr = match &state.body {
        Body::Local { stderr } => stderr.text(),
        Body::Remote(_) => String::new(),
    };
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    let detail = state
        .detail
        .clone()
        .or_else(|| last_line.map(|l| format!("last stderr line: {l}")));
    let mut retry = Vec::new();
    let mut failed_requests = 0;
    let retry_allowed = retry_allowed(cause, status);
    for (id, p) in state.conn.close() {
        match p.retry {
            Some(again) if !p.delivered && retry_allowed => {
                retry.push(again.into_request(id, p.tool, p.sink));
            }
            other => {
                let withheld = other.is_some() && !p.delivered && cause != ExitCause::Shutdown;
                if withheld {
                    RequestRetryWithheld {
                        pool: state.pool_name.to_string(),
                        tool: p.tool.to_string(),
                        worker: state.id.clone(),
                        status,
                    }
                    .emit(&state.telemetry);
                }
                failed_requests += 1;
                p.sink.fail(if cause == ExitCause::Shutdown {
                    Error::ShuttingDown
                } else {
                    Error::WorkerCrashed {
                        pool: state.pool_name.to_string(),
                        worker: state.id.clone(),
                        status,
                        detail: if withheld {
                            Some(detail.as_deref().map_or_else(
                                || POISON_NOTE.to_string(),
                                |d| format!("{d}; {POISON_NOTE}"),
                            ))
                        } else {
                            detail.clone()
                        },
                    }
                });
            }
        }
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
            retry,
        },
    });
}

/// Said of the requests a worker was running when its end points at them.
const POISON_NOTE: &str =
    "not retried: the worker ended itself or broke the protocol while running it";

/// Whether the idempotent requests a worker was running when it ended may run
/// again on another worker. Only when its end says nothing about them: it was
/// killed from outside (SIGKILL, SIGTERM, ...) or recycled. A worker that
/// ended itself (an exit code, a fault signal such as SIGSEGV or SIGABRT),
/// broke the protocol, or hung while running them was most likely ended by
/// one of them: run again, such a request would take the next worker down
/// too, and the one after, until the pool is empty.
fn retry_allowed(cause: ExitCause, status: ExitStatus) -> bool {
    match cause {
        // The request did nothing wrong: its worker's agent went away.
        ExitCause::Recycled | ExitCause::AgentLost | ExitCause::Drained | ExitCause::ScaledDown => {
            true
        }
        ExitCause::Crashed => matches!(
            status,
            ExitStatus::Signal(libc::SIGKILL | libc::SIGTERM | libc::SIGINT | libc::SIGHUP)
        ),
        ExitCause::Shutdown
        | ExitCause::ProtocolViolation
        | ExitCause::StartupFailed
        | ExitCause::Unresponsive => false,
    }
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
    if let Body::Remote(_) = state.body {
        // The agent ends the process group on its machine.
        let _ = myself.cast(WorkerMessage::GroupEnded);
        return;
    }
    // Grandchildren the tool started share the group: end them too; then
    // those that left it but carry this worker's identity; then stop.
    let pgid = state.pid;
    let run_id = state.run_id.clone();
    let worker_id = state.id.clone();
    let telemetry = state.telemetry.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        process::end_group(pgid, GROUP_TERM_GRACE).await;
        reaper::end_strays(run_id, Some(worker_id), GROUP_TERM_GRACE, &telemetry).await;
        let _ = me.cast(WorkerMessage::GroupEnded);
    });
}

fn finish(myself: &ActorRef<WorkerMessage>, state: &mut WorkerState) {
    state.group_ended = true;
    for reply in state.stop_replies.drain(..) {
        let _ = reply.send(());
    }
    myself.stop(None);
}
