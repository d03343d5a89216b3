//! Requests waiting for their answer on one connection, and where each
//! answer goes.
//!
//! The pool registers a request (through [`Connection::register`]) when it
//! sends its frame; the connection's reader takes it out when the final frame
//! comes and completes the caller's [`Sink`] directly. What the owner keeps
//! with a request to send it again (`P`, the retry payload) rides along
//! unread.
//!
//! [`Connection::register`]: super::Connection::register

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use snakepit_proto::Value;
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

/// One item of a streamed result.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position in the stream, from 0.
    pub seq: u64,
    /// The item.
    pub value: Value,
    /// Metadata the tool attached (`StreamChunk.metadata`).
    pub metadata: Vec<(String, Value)>,
}

/// The answers to a batch: one per call, in the order of `Execute.batch`.
pub(crate) type BatchAnswers = Vec<Result<Value, Error>>;

/// Where the answer to a request goes.
pub(crate) enum Sink {
    Unary(oneshot::Sender<Result<Value, Error>>),
    Stream(mpsc::UnboundedSender<Result<Chunk, Error>>),
    /// A batch of calls (`Execute.batch`): its `Result.items`, or the error
    /// of the whole batch.
    Batch(oneshot::Sender<Result<BatchAnswers, Error>>),
}

impl Sink {
    /// Whether the caller has gone away.
    pub fn is_closed(&self) -> bool {
        match self {
            Sink::Unary(tx) => tx.is_closed(),
            Sink::Stream(tx) => tx.is_closed(),
            Sink::Batch(tx) => tx.is_closed(),
        }
    }

    /// Completes the request with an error.
    pub fn fail(self, err: Error) {
        match self {
            Sink::Unary(tx) => {
                let _ = tx.send(Err(err));
            }
            Sink::Stream(tx) => {
                let _ = tx.send(Err(err));
            }
            Sink::Batch(tx) => {
                let _ = tx.send(Err(err));
            }
        }
    }
}

/// A request waiting for its answer; `P` is what its owner needs to send
/// it again (the wire never reads it).
pub(crate) struct Pending<P> {
    pub tool: Arc<str>,
    pub sink: Sink,
    /// For an idempotent call's first attempt: the request, to run again
    /// elsewhere if this worker dies.
    pub retry: Option<Box<P>>,
    /// A stream chunk reached the caller (a stream that has started is never
    /// retried: the caller would see items twice).
    pub delivered: bool,
    /// The call's span: the worker's timing of it is recorded under it.
    pub span: tracing::Span,
    /// Tell the owner it is done before telling the caller: for session
    /// calls, so that the caller's next call finds the worker free again
    /// (affinity would otherwise see it busy and move the session). Other
    /// calls wake their caller first, which is a little faster.
    pub done_first: bool,
}

/// The requests of one connection.
pub(super) struct Table<P> {
    pub closed: bool,
    pub pending: HashMap<u64, Pending<P>>,
    /// Requests of this connection whose caller gave up (`forget`) and whose
    /// final frame has not come yet: their answer is still theirs to give.
    pub forgotten: HashSet<u64>,
}

impl<P> Default for Table<P> {
    fn default() -> Self {
        Self {
            closed: false,
            pending: HashMap::new(),
            forgotten: HashSet::new(),
        }
    }
}

/// Whose request a final frame answers.
pub(super) enum Owner<P> {
    /// A caller waits for it.
    Waiting(Pending<P>),
    /// The caller gave up; only the owner still counts it.
    Forgotten,
}

impl<P> Table<P> {
    /// Takes request `id` out of the table if this connection owns it.
    pub fn take(&mut self, id: u64) -> Option<Owner<P>> {
        match self.pending.remove(&id) {
            Some(p) => Some(Owner::Waiting(p)),
            None => self.forgotten.remove(&id).then_some(Owner::Forgotten),
        }
    }

    /// Whether exactly one request waits, and for a single answer: then a
    /// sleeping reader's wake-up would dominate the call.
    pub fn awaits_lone_unary(&self) -> bool {
        self.pending.len() == 1
            && self
                .pending
                .values()
                .all(|p| matches!(p.sink, Sink::Unary(_) | Sink::Batch(_)))
    }
}
