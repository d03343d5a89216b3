//! Which worker each session lives on, and what a session leaves on workers
//! when it is released: the pool actor binds a session when it dispatches
//! one of its calls, routing (`routing.rs`) reads the binding, and
//! `ReleaseSession` / `ReleaseRef` (from [`PoolHandle`](crate::PoolHandle))
//! tell the workers that hold its state to drop it.

use std::collections::HashMap;
use std::sync::Arc;

use snakepit_proto::Value;
use snakepit_proto::frames;

use super::slots::RefId;
use super::{PoolState, ReleaseSent, SessionRelease, WorkerKey, WorkerLink};
use crate::error::Error;
use crate::wire::{self, Pending};

/// Where a session's calls go.
pub(crate) struct Binding {
    pub key: WorkerKey,
    /// The worker's id, for errors once it is gone.
    pub worker: String,
    /// Workers the session ran on before `hint` moved it: they may hold some
    /// of its state too, and are told at its release.
    pub earlier: Vec<(WorkerKey, String)>,
}

/// Session → its binding, and how many sessions each worker has.
#[derive(Default)]
pub(crate) struct Bindings {
    sessions: HashMap<Arc<str>, Binding>,
    per_worker: HashMap<WorkerKey, usize>,
}

impl Bindings {
    pub fn get(&self, session: &str) -> Option<&Binding> {
        self.sessions.get(session)
    }

    pub fn remove(&mut self, session: &str) -> Option<Binding> {
        let binding = self.sessions.remove(session)?;
        self.count(binding.key, false);
        Some(binding)
    }

    /// Sessions living on `key`.
    pub fn on(&self, key: WorkerKey) -> usize {
        self.per_worker.get(&key).copied().unwrap_or(0)
    }

    fn count(&mut self, key: WorkerKey, add: bool) {
        let n = self.per_worker.entry(key).or_default();
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_worker.remove(&key);
            }
        }
    }

    /// The session now lives on `key` (named `worker`); for `hint`, this
    /// moves it, and the worker it left is remembered for its release.
    pub fn bind(&mut self, session: Arc<str>, key: WorkerKey, worker: &str) {
        match self.sessions.get_mut(&session) {
            Some(b) if b.key != key => {
                let old = (b.key, std::mem::replace(&mut b.worker, worker.to_string()));
                let left = old.0;
                b.earlier.retain(|(k, _)| *k != key);
                if !b.earlier.iter().any(|(k, _)| *k == old.0) {
                    b.earlier.push(old);
                }
                b.key = key;
                self.count(left, false);
                self.count(key, true);
            }
            Some(_) => {}
            None => {
                self.count(key, true);
                self.sessions.insert(
                    session,
                    Binding {
                        key,
                        worker: worker.to_string(),
                        earlier: Vec::new(),
                    },
                );
            }
        }
    }
}

/// Tells the worker holding `ref_id` to drop it; `None` when that worker is
/// gone (the ref went with it).
pub(super) fn release_ref(
    state: &PoolState,
    session: &str,
    ref_id: &str,
) -> Option<tokio::sync::oneshot::Receiver<Result<Value, Error>>> {
    let parsed: RefId = ref_id.parse().ok()?;
    let link = super::view(state)
        .member_by_id(&parsed.worker)
        .filter(|m| !m.closed)
        .and_then(|m| m.link())?;
    send_release(link, "<release ref>", |id| {
        frames::release_ref(id, session, ref_id)
    })
    .map(|(_, rx)| rx)
}

/// Forgets `session` and asks every worker that ran it to drop its state.
pub(super) fn release_session(state: &mut PoolState, session: &str) -> SessionRelease {
    let mut release = SessionRelease::default();
    let Some(binding) = state.bindings.remove(session) else {
        return release;
    };
    let holders = std::iter::once((binding.key, binding.worker)).chain(binding.earlier);
    for (key, worker) in holders {
        let link = state.slots[key.slot]
            .member(key.generation)
            .filter(|m| !m.closed)
            .and_then(|m| m.link());
        let Some(link) = link else {
            release.gone.push(worker);
            continue;
        };
        let frame = |id| frames::release_session(id, session);
        let Some((id, rx)) = send_release(link, "<release session>", frame) else {
            release.gone.push(worker);
            continue;
        };
        release.sent.push(ReleaseSent {
            worker,
            id,
            answer: rx,
        });
    }
    release
}

/// Sends a release frame (`frame` of the exchange's id) to a worker as an
/// exchange of its own; its id and the answer to come, or `None` when the
/// connection is closed.
fn send_release(
    link: &WorkerLink,
    what: &str,
    frame: impl FnOnce(u64) -> snakepit_proto::v1::Frame,
) -> Option<(u64, tokio::sync::oneshot::Receiver<Result<Value, Error>>)> {
    let id = wire::next_request_id();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = Pending {
        tool: Arc::from(what),
        sink: wire::Sink::Unary(tx),
        retry: None,
        delivered: false,
        done_first: true,
        span: tracing::Span::none(),
    };
    link.conn.register(id, pending).ok()?;
    link.conn.send(frame(id));
    Some((id, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slot: usize, generation: u64) -> WorkerKey {
        WorkerKey { slot, generation }
    }

    #[test]
    fn a_session_binds_where_it_first_runs() {
        let mut bindings = Bindings::default();
        bindings.bind(Arc::from("s"), key(1, 1), "p-1.1");
        let b = bindings.get("s").expect("bound");
        assert_eq!((b.key, b.worker.as_str()), (key(1, 1), "p-1.1"));
        assert!(b.earlier.is_empty());
        bindings.bind(Arc::from("s"), key(1, 1), "p-1.1");
        assert!(bindings.get("s").unwrap().earlier.is_empty());
    }

    #[test]
    fn a_moved_session_remembers_each_earlier_worker_once() {
        let mut bindings = Bindings::default();
        let s: Arc<str> = Arc::from("s");
        bindings.bind(s.clone(), key(0, 1), "p-0.1");
        bindings.bind(s.clone(), key(1, 1), "p-1.1");
        bindings.bind(s.clone(), key(0, 1), "p-0.1");
        bindings.bind(s.clone(), key(1, 1), "p-1.1");
        let b = bindings.get("s").unwrap();
        assert_eq!((b.key, b.worker.as_str()), (key(1, 1), "p-1.1"));
        assert_eq!(b.earlier, vec![(key(0, 1), "p-0.1".to_string())]);
        assert!(bindings.remove("s").is_some());
        assert!(bindings.get("s").is_none());
    }
}
