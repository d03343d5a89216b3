//! Pool configuration: what a pool runs and the limits it keeps. The same
//! structs are read from TOML (by the `snakepit` crate) and built in code.
//! Durations are whole milliseconds so that files stay plain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The showcase adapter shipped with the bridge package.
pub const SHOWCASE_ADAPTER: &str = "snakepit_bridge.adapters.showcase.ShowcaseAdapter";

/// How a worker process runs requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// One request at a time per process.
    #[default]
    Process,
    /// `threads_per_worker` requests at once on real threads.
    Thread,
}

impl Profile {
    /// The name used on the worker's command line and in `Hello`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Process => "process",
            Profile::Thread => "thread",
        }
    }
}

/// What a worker does with a tool result (or stream item) holding a Python
/// object that has no wire form, after trying its conversion methods
/// (`model_dump`, `to_dict`, `_asdict`, `tolist`, `isoformat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unserializable {
    /// Replace that object with a marker map (`__ffi_unserializable__`,
    /// `__type__`, and `__repr__` when `SNAKEPIT_UNSERIALIZABLE_DETAIL` asks
    /// for it); see [`Value::unserializable_info`](snakepit_proto::Value::unserializable_info).
    #[default]
    Marker,
    /// Keep the object in the worker and send an object ref in its place.
    Ref,
    /// Fail the call with an encoding error naming the type and where it is.
    Error,
}

impl Unserializable {
    /// The name used on the worker's command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Unserializable::Marker => "marker",
            Unserializable::Ref => "ref",
            Unserializable::Error => "error",
        }
    }
}

/// How a call that belongs to a session picks its worker.
///
/// A session's first call binds it to the worker that runs it; later calls
/// follow the binding as the mode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// Prefer the session's worker; when it has no free slot, run on another
    /// worker and move the session there.
    #[default]
    Hint,
    /// Wait for the session's worker (bounded by the queue timeout).
    StrictQueue,
    /// Fail with `WorkerBusy` at once when the session's worker has no free slot.
    StrictFailFast,
}

impl Affinity {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Hint => "hint",
            Affinity::StrictQueue => "strict_queue",
            Affinity::StrictFailFast => "strict_fail_fast",
        }
    }

    /// Whether the call must run on the session's worker.
    pub fn is_strict(self) -> bool {
        !matches!(self, Affinity::Hint)
    }
}

/// Limits of the runtime's sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionsConfig {
    /// A session unused this long is released (each use refreshes it).
    #[serde(rename = "ttl_ms", with = "millis")]
    pub ttl: Duration,
    /// Live sessions at most; one more is refused with `SessionQuotaExceeded`.
    pub max_sessions: usize,
    /// How long releasing a session may take on its workers before the
    /// attempt counts as a cleanup error.
    #[serde(rename = "cleanup_timeout_ms", with = "millis")]
    pub cleanup_timeout: Duration,
    /// Variables a session may hold.
    pub max_variables: usize,
    /// How long a host tool called from Python may run, unless the call or
    /// the tool says otherwise.
    #[serde(rename = "host_call_timeout_ms", with = "millis")]
    pub host_call_timeout: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_millis(3_600_000),
            max_sessions: 10_000,
            cleanup_timeout: Duration::from_millis(10_000),
            max_variables: 1_000,
            host_call_timeout: Duration::from_millis(30_000),
        }
    }
}

impl SessionsConfig {
    /// The session time-to-live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The release timeout.
    pub fn cleanup_timeout(&self) -> Duration {
        self.cleanup_timeout
    }

    /// The default host-call timeout.
    pub fn host_call_timeout(&self) -> Duration {
        self.host_call_timeout
    }
}

/// When and how often failed workers are restarted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// Restarts allowed within `restart_window_ms`; one more marks the pool
    /// degraded: restarts then wait the capped backoff (`backoff_max_ms`), and
    /// callers get `PoolDegraded` while no worker is up. The pool recovers once
    /// every worker is up and the window holds no more than this again.
    pub max_restarts: u32,
    /// The window over which restarts are counted.
    #[serde(rename = "restart_window_ms", with = "millis")]
    pub restart_window: Duration,
    /// First backoff delay.
    #[serde(rename = "backoff_initial_ms", with = "millis")]
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    #[serde(rename = "backoff_max_ms", with = "millis")]
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            restart_window: Duration::from_millis(60_000),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(5_000),
        }
    }
}

/// Host↔worker liveness checks. The host sends a `Ping` every `interval_ms`;
/// a ping not answered within `timeout_ms` is a missed beat, and after
/// `max_missed` missed beats in a row the worker is killed and replaced. A
/// worker that is stopped (SIGSTOP) or holds the GIL without pause is caught
/// this way; a tool that merely runs long is not (its worker keeps answering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// Whether to ping at all.
    pub enabled: bool,
    /// Time between two pings.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// How long a ping may go unanswered before it counts as missed.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Missed beats in a row that get the worker killed.
    pub max_missed: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_millis(2_000),
            timeout: Duration::from_millis(2_000),
            max_missed: 3,
        }
    }
}

impl HeartbeatConfig {
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The universal FFI every worker carries (call any Python function, keep
/// objects as refs). See `docs/ffi-protocol.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FfiConfig {
    /// Whether the `snakepit.ffi.*` operations are served at all. The FFI runs
    /// any importable Python code; turn it off for pools that must run only
    /// their adapter's tools.
    pub enabled: bool,
    /// Refs a session may hold in one worker; one more evicts the least
    /// recently used.
    pub max_refs: u32,
    /// Drop a ref unused this long (unset: refs live until released).
    #[serde(rename = "ref_ttl_ms", with = "millis::option")]
    pub ref_ttl: Option<Duration>,
    /// Directories `call_helper("file.function")` loads helpers from.
    pub helper_dirs: Vec<PathBuf>,
    /// `fnmatch` patterns over `file.function` a helper must match (unset:
    /// everything in `helper_dirs`).
    pub helper_allowlist: Option<Vec<String>>,
}

impl Default for FfiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_refs: 10_000,
            ref_ttl: None,
            helper_dirs: Vec::new(),
            helper_allowlist: None,
        }
    }
}

/// One pool of Python workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Pool name, unique within a runtime.
    pub name: String,
    /// Number of worker processes (for a remote pool: how many remote
    /// workers it expects).
    pub size: usize,
    /// The workers run on node agents (`snakepit agent`) that dial the
    /// host, not here: the pool starts no process of its own, and each
    /// worker an attached agent runs for it becomes a member. Its adapter,
    /// profile, environment and limits are the agent's (`agent.toml`).
    pub remote: bool,
    /// The adapter class, `module.Class`.
    pub adapter: String,
    /// Python for the pool: a version to find (`"3.12"`: `python3.12` on
    /// `PATH`, else pyenv's `~/.pyenv/versions/3.12*`), a command name on
    /// `PATH`, or an interpreter path. With a version, or with
    /// `requirements` / `requirements_file`, the pool runs in an environment
    /// of its own built from that interpreter; an interpreter path alone is
    /// run as it is (it must have the bridge installed). Unset: the runtime's
    /// (the managed venv).
    pub python: Option<PathBuf>,
    /// Python packages the pool's workers need (pip requirement strings,
    /// `"psutil>=5"`), installed into an environment of the pool's own.
    pub requirements: Vec<String>,
    /// A pip requirements file installed likewise; a relative path is
    /// relative to the configuration file's directory.
    pub requirements_file: Option<PathBuf>,
    /// Directories prepended to the worker's `sys.path`.
    pub python_path: Vec<PathBuf>,
    /// Extra environment for the worker process.
    pub env: BTreeMap<String, String>,
    /// When set, the only variables of the host's environment a worker
    /// inherits: exact names, or prefixes ending in `*` (`"LC_*"`). `PATH`
    /// always passes; what snakepit sets itself (`SNAKEPIT_RUN_ID`,
    /// `SNAKEPIT_WORKER_ID`, `PYTHONUNBUFFERED`) and `env` above are added
    /// regardless. Unset (the default), a worker inherits the host's whole
    /// environment, secrets included; setting it is recommended.
    pub env_passthrough: Option<Vec<String>>,
    /// `process` or `thread`.
    pub profile: Profile,
    /// Threads per worker in the thread profile.
    pub threads_per_worker: u32,
    /// Run Python's thread-safety checker around every tool call; its
    /// warnings arrive as `snakepit.python.event` events named
    /// `snakepit.thread_safety.warning`. For development: it costs time.
    pub thread_safety_check: bool,
    /// What a result holding an object with no wire form becomes: `marker`
    /// (the default), `ref` or `error`.
    pub unserializable: Unserializable,
    /// Requests that may wait for a worker before callers get `PoolSaturated`.
    pub queue_capacity: usize,
    /// How long a request may wait for a worker before `QueueTimeout`.
    #[serde(rename = "queue_timeout_ms", with = "millis")]
    pub queue_timeout: Duration,
    /// Default per-call timeout (a call may set its own).
    #[serde(rename = "call_timeout_ms", with = "millis")]
    pub call_timeout: Duration,
    /// Default timeout for a whole stream.
    #[serde(rename = "stream_timeout_ms", with = "millis")]
    pub stream_timeout: Duration,
    /// How long a worker may take from spawn to `Hello`.
    #[serde(rename = "startup_timeout_ms", with = "millis")]
    pub startup_timeout: Duration,
    /// How long shutdown waits for in-flight requests before killing.
    #[serde(rename = "shutdown_grace_ms", with = "millis")]
    pub shutdown_grace: Duration,
    /// Largest frame either side may send. Arrays and bytes that travel in
    /// shared memory do not count (see `max_shared_bytes`).
    pub max_frame_bytes: usize,
    /// Size of each shared-memory arena of a local pool, in bytes: the
    /// pool's (the host writes, its workers read) and each worker's (the
    /// worker writes, the host reads). Large ndarrays and bytes cross in
    /// them without a copy through the socket; past this a call fails with
    /// `SharedMemoryExhausted`. Pages are taken as they are used, not up
    /// front. 0 turns shared memory off (everything inline, limited by
    /// `max_frame_bytes`); remote pools always send inline.
    pub max_shared_bytes: u64,
    /// Arrays whose data, and bytes values whose length, reach this many
    /// bytes travel in shared memory; smaller ones stay in the frame.
    pub shared_threshold_bytes: u64,
    /// Requests sent to a worker beyond its capacity, so it never idles between
    /// two of them. 0 sends a request only to a worker with a free slot.
    pub pipeline_depth: u32,
    /// Chunks a stream may run ahead of its consumer.
    pub stream_window: u32,
    /// Host calls of one worker that may run at once; more are refused at
    /// once with kind `busy` (Python: `HostCallRejected`), and nothing runs.
    pub max_host_calls: u32,
    /// While requests are outstanding (host) or just answered (worker), poll
    /// the connection this long before sleeping. Waking a sleeping thread
    /// costs tens of microseconds on many machines — more than a whole call —
    /// so a short poll halves the latency of back-to-back calls, for at most
    /// this much CPU per idle transition. 0 turns it off.
    pub busy_poll_us: u32,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// How session calls pick their worker, unless a call says otherwise.
    pub affinity: Affinity,
    /// Liveness checks.
    pub heartbeat: HeartbeatConfig,
    /// Recycle a worker once it is this old (unset: never). Each worker's
    /// deadline gets up to 10% jitter so that a pool does not recycle at once.
    #[serde(rename = "worker_ttl_ms", with = "millis::option")]
    pub worker_ttl: Option<Duration>,
    /// Recycle a worker after it answered this many requests (unset: never).
    pub max_requests: Option<u64>,
    /// Recycle a worker whose Python process's resident memory, as the OS
    /// reports it, exceeds this many MiB (unset: never). Checked every
    /// heartbeat interval.
    pub max_memory_mb: Option<u64>,
    /// How long a recycled worker may take to finish its in-flight requests
    /// before it is killed (they then fail with `WorkerCrashed`, or are
    /// retried when idempotent).
    #[serde(rename = "drain_timeout_ms", with = "millis")]
    pub drain_timeout: Duration,
    /// The universal FFI.
    pub ffi: FfiConfig,
    /// Fewest workers of an autoscaled pool (one with `max_size`); 0 lets
    /// it scale to none, the next call then starting one and waiting for it
    /// (within `queue_timeout_ms`). Unset: 1.
    pub min_size: Option<usize>,
    /// Most workers: set, the pool scales between `min_size` and this with
    /// its load, and `size` is not used.
    pub max_size: Option<usize>,
    /// Scale up when the 90th percentile of the time calls waited in the
    /// queue over the last `scale_up_window_ms`, or the oldest call waiting
    /// now, passes this.
    #[serde(rename = "scale_up_wait_ms", with = "millis")]
    pub scale_up_wait: Duration,
    /// The window of queue waits scale-up looks at.
    #[serde(rename = "scale_up_window_ms", with = "millis")]
    pub scale_up_window: Duration,
    /// Scale up also when more calls than this wait per worker for the
    /// whole `scale_up_window_ms` (unset: the wait alone decides).
    pub scale_up_queue_depth: Option<usize>,
    /// Scale down a worker that ran nothing for this long (never below
    /// `min_size`, never one with calls in flight or, under a strict
    /// affinity, sessions bound to it).
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// Idle workers kept ready ahead of demand (within `max_size`): the
    /// pool aims for the workers its calls keep busy plus these, so a burst
    /// finds them started (and warmed up: the adapter's `warmup()` runs
    /// before a worker counts as ready).
    pub prestart: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            size: 2,
            remote: false,
            adapter: SHOWCASE_ADAPTER.into(),
            python: None,
            requirements: Vec::new(),
            requirements_file: None,
            python_path: Vec::new(),
            env: BTreeMap::new(),
            env_passthrough: None,
            profile: Profile::Process,
            threads_per_worker: 8,
            thread_safety_check: false,
            queue_capacity: 1000,
            queue_timeout: Duration::from_millis(5_000),
            call_timeout: Duration::from_millis(30_000),
            stream_timeout: Duration::from_millis(300_000),
            startup_timeout: Duration::from_millis(30_000),
            shutdown_grace: Duration::from_millis(5_000),
            max_frame_bytes: snakepit_proto::framing::DEFAULT_MAX_FRAME_BYTES,
            max_shared_bytes: 1 << 30,
            shared_threshold_bytes: 64 * 1024,
            unserializable: Unserializable::default(),
            pipeline_depth: 2,
            stream_window: 256,
            max_host_calls: 64,
            busy_poll_us: 100,
            restart: RestartPolicy::default(),
            affinity: Affinity::Hint,
            heartbeat: HeartbeatConfig::default(),
            worker_ttl: None,
            max_requests: None,
            max_memory_mb: None,
            drain_timeout: Duration::from_millis(30_000),
            ffi: FfiConfig::default(),
            min_size: None,
            max_size: None,
            scale_up_wait: Duration::from_millis(100),
            scale_up_window: Duration::from_millis(1_000),
            scale_up_queue_depth: None,
            idle_timeout: Duration::from_millis(30_000),
            prestart: 0,
        }
    }
}

impl PoolConfig {
    /// Lets workers inherit only these variables of the host's environment
    /// (see [`env_passthrough`](Self::env_passthrough)).
    pub fn with_env_passthrough<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env_passthrough = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// A pool with defaults and this name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(format!("pool `{}`: {what}", self.name)));
        if self.name.is_empty() {
            return Err(Error::Config("a pool needs a name".into()));
        }
        match (self.min_size, self.max_size) {
            (_, None) if self.size == 0 => return bad("size must be at least 1"),
            (Some(_), None) => return bad("min_size needs max_size (an autoscaled pool)"),
            (_, Some(0)) => return bad("max_size must be at least 1"),
            (Some(min), Some(max)) if min > max => {
                return bad("min_size must not exceed max_size");
            }
            (_, Some(max)) if self.prestart > max => {
                return bad("prestart must not exceed max_size");
            }
            (_, Some(_)) if self.remote => {
                return bad("a remote pool does not autoscale: its agents decide its workers");
            }
            (_, Some(_)) if self.idle_timeout.is_zero() || self.scale_up_window.is_zero() => {
                return bad("idle_timeout_ms and scale_up_window_ms must be at least 1");
            }
            _ => {}
        }
        if !self.adapter.contains('.') {
            return bad("adapter must be `module.Class`");
        }
        if self.profile == Profile::Thread && self.threads_per_worker == 0 {
            return bad("threads_per_worker must be at least 1");
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > u32::MAX as usize {
            return bad("max_frame_bytes must be between 1 KiB and 4 GiB");
        }
        if self.max_shared_bytes != 0 && !(1 << 20..=1 << 40).contains(&self.max_shared_bytes) {
            return bad("max_shared_bytes must be 0 (off) or between 1 MiB and 1 TiB");
        }
        if self.shared_threshold_bytes == 0 {
            return bad("shared_threshold_bytes must be at least 1");
        }
        if self.stream_window == 0 {
            return bad("stream_window must be at least 1");
        }
        if self.max_host_calls == 0 {
            return bad("max_host_calls must be at least 1");
        }
        let hb = &self.heartbeat;
        if hb.enabled && (hb.interval.is_zero() || hb.timeout.is_zero() || hb.max_missed == 0) {
            return bad("heartbeat interval_ms, timeout_ms and max_missed must be at least 1");
        }
        if self.restart.backoff_initial > self.restart.backoff_max {
            return bad("restart.backoff_initial_ms must not exceed restart.backoff_max_ms");
        }
        if self.restart.restart_window.is_zero() {
            return bad("restart.restart_window_ms must be at least 1");
        }
        if self.worker_ttl == Some(Duration::ZERO)
            || [self.max_requests, self.max_memory_mb].contains(&Some(0))
        {
            return bad(
                "worker_ttl_ms, max_requests and max_memory_mb must be at least 1 when set",
            );
        }
        if let Some(entry) = self.env_passthrough.iter().flatten().find(|p| {
            let name = p.strip_suffix('*').unwrap_or(p);
            name.is_empty() || name.contains(['*', '=', '\0'])
        }) {
            return bad(&format!(
                "env_passthrough entry {entry:?} must be a variable name, optionally ending in `*`"
            ));
        }
        if let Some(req) = self.requirements.iter().find(|r| {
            let r = r.trim();
            r.is_empty() || r.starts_with('-') || r.contains(['\n', '\0'])
        }) {
            return bad(&format!(
                "requirements entry {req:?} must be a requirement such as \"psutil>=5\" (options belong in requirements_file)"
            ));
        }
        if self.ffi.max_refs == 0 || self.ffi.ref_ttl == Some(Duration::ZERO) {
            return bad("ffi.max_refs and ffi.ref_ttl_ms must be at least 1 when set");
        }
        Ok(())
    }

    /// `(min_size, max_size)` of an autoscaled pool; `None` for a pool of
    /// a fixed `size`.
    pub fn autoscale(&self) -> Option<(usize, usize)> {
        self.max_size
            .map(|max| (self.min_size.unwrap_or(1).min(max), max))
    }

    /// The slots the pool has: `max_size` for an autoscaled pool, else
    /// `size`.
    pub fn slots(&self) -> usize {
        self.max_size.unwrap_or(self.size)
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    pub(crate) fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// The interval of the worker's periodic checks (heartbeat, memory, age).
    pub(crate) fn tick_interval(&self) -> Duration {
        self.heartbeat.interval.max(Duration::from_millis(1))
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Default per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Default stream timeout.
    pub fn stream_timeout(&self) -> Duration {
        self.stream_timeout
    }
}

/// Durations as whole milliseconds in configuration files (`*_ms` keys):
/// the API speaks `Duration`, TOML speaks milliseconds.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    /// An optional duration as optional milliseconds.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `d` as milliseconds, or nothing.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Reads optional milliseconds.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
        }
    }
}
