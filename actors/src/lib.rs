//! `snakepit-actors`: the supervision tree, and everything that owns a process.
//!
//! ```text
//! Runtime (root)                                                   runtime.rs
//! ├── Reaper      at start: ends leftovers of dead runs; records this run; at
//! │               a worker's end and at shutdown, ends what left its group  reaper.rs, reaper/
//! ├── Telemetry   typed events → tracing + metrics + subscribers     telemetry.rs
//! ├── Sessions    registry actor                                     sessions.rs
//! │   └── SessionOwner × live sessions: variables, TTL, release     sessions/owner.rs
//! ├── Host        host tools, callbacks, variables ops               host.rs, host/
//! │   └── host call × running: a task in the host's JoinSet,
//! │                at most max_host_calls per worker                 host/calls.rs
//! ├── Service × n a future the root supervises, told to stop first at
//! │               shutdown; e.g. `Server`, the gRPC API of `snakepit
//! │               serve` (its code lives in the `snakepit` crate)    service.rs
//! ├── Agents      not an actor: the registry of node agents' links
//! │               (admitted by the `snakepit` crate's Attach listener),
//! │               where remote pools place their workers             remote.rs, remote/
//! └── Pool × n    the actor: queue, dispatch, Done, status           pool.rs
//!     │           placement (pure functions)                         pool/routing.rs
//!     │           slots, members, WorkerId, RefId                    pool/slots.rs
//!     │           session bindings, releases                         pool/bindings.rs
//!     │           start, restart, recycle, degrade, shut down        pool/lifecycle.rs, pool/restarts.rs
//!     └── Worker × size (+ a successor while one is recycled)
//!                 one Python process — here, or run by a node agent
//!                 and reached through its link — heartbeats, its end worker.rs, worker/liveness.rs
//!                 ├── reader task: frames → callers, events → worker wire/connection.rs
//!                 ├── writer task: batched frames → socket           wire/connection.rs
//!                 ├── output tasks: stdout/stderr → tracing          process.rs
//!                 └── wait task: process exit → worker               worker.rs
//! ```
//!
//! Three layers; a file imports only from its own layer or below
//! (`tests/layers.rs` fails otherwise, and on any import cycle through more
//! than three files):
//!
//! - **leaf**: `wire/` (a connection over any byte stream, the pending table;
//!   frames are built by `snakepit_proto::frames`), `process`, `reaper`,
//!   `config`, `error`, `telemetry`, `variables`, `host::tools` (the host tool
//!   registry), `ask` (one way to wait for an actor's reply), `remote` (the
//!   agents' links and a remote worker's byte stream; it knows pools by name
//!   only).
//! - **supervision**: `worker/`, `pool/`, `service` (a supervised future
//!   and its shutdown signal; it knows nothing of what it serves).
//! - **API**: `handle` (the caller's side of a pool), `sessions/`, `host/`,
//!   `ffi`, `runtime`, `agent` (the node agent's side: its processes, for
//!   `snakepit agent`).
//!
//! The transport knows nothing of who owns it: a worker hands its connection
//! a `wire::ConnectionEvents` (Done, Hello, Pong, the end) and the pool's
//! `wire::HostCalls` (the host, behind a trait object); an idempotent
//! request's retry data is the pool's, carried unread.
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

pub mod agent;
mod ask;
pub mod config;
pub mod error;
pub mod ffi;
mod handle;
mod host;
mod pool;
mod process;
pub mod reaper;
pub mod remote;
mod runtime;
mod service;
mod sessions;
pub mod telemetry;
pub mod variables;
mod wire;
mod worker;

pub use config::{
    Affinity, HeartbeatConfig, PoolConfig, Profile, RestartPolicy, SHOWCASE_ADAPTER,
    SessionsConfig, Unserializable,
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
pub use service::{ServiceFactory, ServiceFuture, ShutdownSignal};
pub use sessions::{Session, SessionInfo, VariableWatch};
pub use telemetry::{Event, Telemetry};
pub use variables::{Constraints, UpdateSource, VarType, Variable, VariableUpdate};
pub use wire::Chunk;
pub use wire::shm::{ArenaUsage, SharedBufferMut};
