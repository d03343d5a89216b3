//! Pool configuration: what a pool runs and the limits it keeps. The same
//! structs are read from TOML (by the `snakepit` crate) and built in code.
//! Durations are whole milliseconds so that files stay plain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The showcase adapter shipped with the bridge package.
pub const SHOWCASE_ADAPTER: &str = "snakepit_bridge.showcase.ShowcaseAdapter";

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

/// When and how often failed workers are restarted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartPolicy {
    /// Restarts allowed within `restart_window_ms` before the pool is degraded.
    pub max_restarts: u32,
    /// The window over which restarts are counted.
    pub restart_window_ms: u64,
    /// First backoff delay.
    pub backoff_initial_ms: u64,
    /// Largest backoff delay.
    pub backoff_max_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            restart_window_ms: 60_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
        }
    }
}

/// One pool of Python workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name, unique within a runtime.
    pub name: String,
    /// Number of worker processes.
    pub size: usize,
    /// The adapter class, `module.Class`.
    pub adapter: String,
    /// Python interpreter; unset means the runtime's (the bootstrapped venv).
    pub python: Option<PathBuf>,
    /// Directories prepended to the worker's `sys.path`.
    pub python_path: Vec<PathBuf>,
    /// Extra environment for the worker process.
    pub env: BTreeMap<String, String>,
    /// `process` or `thread`.
    pub profile: Profile,
    /// Threads per worker in the thread profile.
    pub threads_per_worker: u32,
    /// Requests that may wait for a worker before callers get `PoolSaturated`.
    pub queue_capacity: usize,
    /// How long a request may wait for a worker before `QueueTimeout`.
    pub queue_timeout_ms: u64,
    /// Default per-call timeout (a call may set its own).
    pub call_timeout_ms: u64,
    /// Default timeout for a whole stream.
    pub stream_timeout_ms: u64,
    /// How long a worker may take from spawn to `Hello`.
    pub startup_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests before killing.
    pub shutdown_grace_ms: u64,
    /// Largest frame either side may send.
    pub max_frame_bytes: usize,
    /// Requests sent to a worker beyond its capacity, so it never idles between
    /// two of them. 0 sends a request only to a worker with a free slot.
    pub pipeline_depth: u32,
    /// Chunks a stream may run ahead of its consumer.
    pub stream_window: u32,
    /// While requests are outstanding (host) or just answered (worker), poll
    /// the connection this long before sleeping. Waking a sleeping thread
    /// costs tens of microseconds on many machines — more than a whole call —
    /// so a short poll halves the latency of back-to-back calls, for at most
    /// this much CPU per idle transition. 0 turns it off.
    pub busy_poll_us: u32,
    /// Restart policy.
    pub restart: RestartPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            size: 2,
            adapter: SHOWCASE_ADAPTER.into(),
            python: None,
            python_path: Vec::new(),
            env: BTreeMap::new(),
            profile: Profile::Process,
            threads_per_worker: 8,
            queue_capacity: 1000,
            queue_timeout_ms: 5_000,
            call_timeout_ms: 30_000,
            stream_timeout_ms: 300_000,
            startup_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
            max_frame_bytes: snakepit_proto::framing::DEFAULT_MAX_FRAME_BYTES,
            pipeline_depth: 2,
            stream_window: 64,
            busy_poll_us: 100,
            restart: RestartPolicy::default(),
        }
    }
}

impl PoolConfig {
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
        if self.size == 0 {
            return bad("size must be at least 1");
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
        if self.stream_window == 0 {
            return bad("stream_window must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub(crate) fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Default per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Default stream timeout.
    pub fn stream_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_timeout_ms)
    }
}
