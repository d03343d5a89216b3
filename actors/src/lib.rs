//! `snakepit-actors`: the supervision tree, and everything that owns a process.
//!
//! ```text
//! Runtime (root)                   runtime.rs
//! ├── Reaper      at start: ends leftovers of dead runs; records this run   reaper.rs
//! ├── Telemetry   typed events → tracing + metrics + subscribers   telemetry.rs
//! ├── Host        host tools, callbacks, variables: each call a task  host.rs, host/
//! └── Pool × n    queue, routing, restarts, degradation, recycling pool.rs, pool/{routing,lifecycle,..}.rs
//!     └── Worker × size (+ a successor while one is recycled)
//!                 one Python process + its connection, heartbeats  worker.rs, worker/liveness.rs
//!                 ├── reader task: frames → callers, Done → pool   wire/connection.rs
//!                 ├── writer task: batched frames → socket         wire/connection.rs
//!                 └── wait task: process exit → worker             worker.rs
//! ```
//!
//! The Reaper is a step of the runtime's start rather than an actor: it has
//! nothing to do once the sweep is over, and running it before the first pool
//! means `start()` returns with the leftovers already gone.
//!
//! Callers hold a [`PoolHandle`] (handle.rs) and never build actor messages
//! themselves. A request travels caller → pool actor → connection writer →
//! Python, and its answer comes back reader task → caller directly, with a
//! `Done` to the pool so it can hand out the next request.
//!
//! Telemetry is a shared handle rather than an actor: emitting an event is a
//! synchronous, cheap call, so events keep the order in which things happened.
#![warn(missing_docs)]

mod ask;
pub mod config;
pub mod error;
pub mod ffi;
mod handle;
mod host;
mod pool;
mod process;
pub mod reaper;
mod runtime;
mod sessions;
pub mod telemetry;
pub mod variables;
mod wire;
mod worker;

pub use config::{
    Affinity, HeartbeatConfig, PoolConfig, Profile, RestartPolicy, SHOWCASE_ADAPTER, SessionsConfig,
};
pub use error::{Error, ExitStatus, PythonException};
pub use ffi::{Ffi, FfiTarget, IntoArgs, IntoKwargs, PyStream, StreamRef};
pub use handle::{Call, ExecStream, PoolHandle};
pub use host::HostCallContext;
pub use host::tools as host_tools;
pub use host::tools::{HostArgs, HostTool, HostToolError};
pub use pool::{PoolStatus, WorkerStatus};
pub use process::{RUN_ID_ENV, WORKER_ID_ENV};
pub use reaper::{
    ReapedRun, RegistryError, RunRegistry, SweepReport, Untrusted, UntrustedPath, end_processes,
    processes_with_run_id,
};
pub use runtime::{RuntimeConfig, RuntimeHandle};
pub use sessions::{Session, SessionInfo, VariableWatch};
pub use telemetry::{Event, Telemetry};
pub use variables::{Constraints, UpdateSource, VarType, Variable, VariableUpdate};
pub use wire::Chunk;
