//! The batching window, as plain state the pool actor owns: calls to a
//! batched tool gather here until the batch is full (`max_size`, or the
//! frame would grow past its limit) or `max_wait` has passed since its first
//! call; then they leave together, as one request.
//!
//! Calls gather by [`BatchKey`]: the tool, and the worker they must run on
//! when they must run on one (a strict session's, or the holder of a ref
//! they carry), so that a batch never mixes calls bound to different
//! workers. Nothing here sends or sleeps: the pool arms a timer when
//! [`Batcher::add`] opens a batch and calls [`Batcher::due`] when it fires;
//! every rule is tested on plain values with a paused clock
//! (`batching/tests.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

#[cfg(test)]
mod tests;

/// How a batched tool gathers its calls (its `ToolSpec.batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    /// Most calls in one batch (at least 1).
    pub max_size: usize,
    /// Longest the first call of a batch waits for others.
    pub max_wait: Duration,
}

impl BatchPolicy {
    /// The policy a worker advertised for a tool; `None` for a tool that is
    /// not batched.
    pub fn of(spec: &snakepit_proto::v1::ToolSpec) -> Option<Self> {
        spec.batch.as_ref().map(|b| Self {
            max_size: (b.max_size as usize).max(1),
            max_wait: Duration::from_millis(u64::from(b.max_wait_ms)),
        })
    }
}

/// Which calls may share a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BatchKey {
    pub tool: Arc<str>,
    /// The worker the calls must run on (its id), if they must.
    pub worker: Option<String>,
    /// For calls carrying refs: their session, in which the worker resolves
    /// the refs of the whole batch.
    pub session: Option<Arc<str>>,
}

/// Why a batch left the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// It reached `max_size`.
    Full,
    /// One more call would have made its frame too large.
    Bytes,
    /// `max_wait` passed since its first call.
    Waited,
    /// The pool is shutting down, or the tool is no longer batched.
    Flushed,
}

impl Closed {
    /// Bounded label.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Full => "full",
            Closed::Bytes => "bytes",
            Closed::Waited => "max_wait",
            Closed::Flushed => "flushed",
        }
    }
}

/// A batch that left the window: its calls in arrival order.
#[derive(Debug)]
pub(crate) struct Formed<T> {
    pub key: BatchKey,
    pub calls: Vec<T>,
    /// When its first call arrived.
    pub opened: Instant,
    pub closed: Closed,
}

/// What adding a call did: the batches that left the window because of it
/// (the open one, full with it or too large to take it; a batch of one),
/// and the batch it opened, whose timer to arm (`epoch`, due at).
#[derive(Debug)]
pub(crate) struct Added<T> {
    pub left: Vec<Formed<T>>,
    pub opened: Option<(u64, Instant)>,
}

struct Gathering<T> {
    calls: Vec<T>,
    bytes: usize,
    opened: Instant,
    /// Tells this batch's timer from an earlier one's on the same key.
    epoch: u64,
}

/// The batches gathering now, one per key at most.
pub(crate) struct Batcher<T> {
    open: HashMap<BatchKey, Gathering<T>>,
    epochs: u64,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            epochs: 0,
        }
    }
}

impl<T> Batcher<T> {
    /// Adds `call` (of `bytes` on the wire) under `key`. A batch holds at
    /// most `policy.max_size` calls and `max_bytes` of them (or one call,
    /// however large).
    pub fn add(
        &mut self,
        key: BatchKey,
        call: T,
        bytes: usize,
        policy: BatchPolicy,
        max_bytes: usize,
        now: Instant,
    ) -> Added<T> {
        let max_size = policy.max_size.max(1);
        let mut left = Vec::new();
        if self
            .open
            .get(&key)
            .is_some_and(|open| open.bytes + bytes > max_bytes)
        {
            left.push(self.close(&key, Closed::Bytes));
        }
        if let Some(open) = self.open.get_mut(&key) {
            open.calls.push(call);
            open.bytes += bytes;
            if open.calls.len() >= max_size {
                left.push(self.close(&key, Closed::Full));
            }
            return Added { left, opened: None };
        }
        self.epochs += 1;
        let epoch = self.epochs;
        self.open.insert(
            key.clone(),
            Gathering {
                calls: vec![call],
                bytes,
                opened: now,
                epoch,
            },
        );
        if max_size == 1 {
            left.push(self.close(&key, Closed::Full));
            return Added { left, opened: None };
        }
        Added {
            left,
            opened: Some((epoch, now + policy.max_wait)),
        }
    }

    /// Takes the open batch of `key` out of the window.
    fn close(&mut self, key: &BatchKey, closed: Closed) -> Formed<T> {
        let g = self.open.remove(key).expect("an open batch");
        Formed {
            key: key.clone(),
            calls: g.calls,
            opened: g.opened,
            closed,
        }
    }

    /// The batch of `key` whose timer `epoch` fired, if it still gathers.
    pub fn due(&mut self, key: &BatchKey, epoch: u64) -> Option<Formed<T>> {
        if self.open.get(key)?.epoch != epoch {
            return None;
        }
        Some(self.close(key, Closed::Waited))
    }

    /// Takes out the first gathering call for which `is` holds (a caller
    /// gave up); a batch left empty is dropped, its timer then finds
    /// nothing.
    pub fn remove(&mut self, mut is: impl FnMut(&T) -> bool) -> Option<T> {
        let (key, i) = self
            .open
            .iter()
            .find_map(|(key, g)| g.calls.iter().position(&mut is).map(|i| (key.clone(), i)))?;
        let g = self.open.get_mut(&key).expect("just found");
        let call = g.calls.remove(i);
        if g.calls.is_empty() {
            self.open.remove(&key);
        }
        Some(call)
    }

    /// Every batch gathering now, closed as `Flushed`.
    pub fn flush(&mut self) -> Vec<Formed<T>> {
        self.open
            .drain()
            .map(|(key, g)| Formed {
                key,
                calls: g.calls,
                opened: g.opened,
                closed: Closed::Flushed,
            })
            .collect()
    }

    /// Batches gathering now.
    pub fn batches(&self) -> usize {
        self.open.len()
    }

    /// Calls gathering now, in all batches.
    pub fn len(&self) -> usize {
        self.open.values().map(|g| g.calls.len()).sum()
    }
}
