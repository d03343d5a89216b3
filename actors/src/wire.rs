//! The wire: one worker connection over any byte stream, the table of
//! requests waiting on it, and the ids of host-to-worker exchanges.
//!
//! A leaf of the crate: it knows frames (`snakepit_proto`), errors and
//! telemetry, and nothing of pools, workers, sessions or host tools. Whoever
//! starts a connection hands it where to report — a [`ConnectionEvents`]
//! (the worker actor and its pool: `Hello`, `Pong`, a start-up failure, a
//! request done, the end of the stream) and a [`HostCalls`] (the host, which
//! runs what Python asks of it) — and what a request carries for its owner
//! (the pool's retry data) is an opaque payload the wire never reads.
//!
//! - `connection.rs`: the reader and writer tasks, the hardening against a
//!   worker that breaks the protocol, the bound on host calls.
//! - `pending.rs`: a request waiting for its answer, where the answer goes
//!   (`Sink`), and the table of them.
//! - `shm.rs`: the shared-memory arenas large arrays and bytes cross in,
//!   and the references each side holds on them.

mod connection;
mod pending;
pub(crate) mod shm;

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use connection::{
    Closed, Connection, ConnectionEvents, HostCallReply, HostCalls, Limits, Listeners,
};
pub use pending::Chunk;
pub(crate) use pending::{BatchAnswers, Pending, Sink};

static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id for a host-to-worker exchange (requests, session releases):
/// unique in the process, so an answer names exactly one exchange.
pub(crate) fn next_request_id() -> u64 {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
}
