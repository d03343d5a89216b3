//! Where a request may run now, as pure functions over the pool's slots, its
//! requests in flight (by id, for nested calls) and its session bindings.
//! The pool actor asks on every `pump`; nothing here changes state or sends
//! anything, so every rule is tested on plain values (`routing/tests.rs`).
//!
//! The rules, first match wins:
//! - a call carrying a ref runs on the worker holding it (`place_pinned`), or
//!   fails when that worker is gone, closed or draining;
//! - a nested call (a host tool calling back into Python) runs on its
//!   parent's worker, whatever its load, while that worker is connected;
//! - a session call follows its binding as its affinity says: `hint` while
//!   the bound worker has a free seat, else anywhere; `strict_queue` waits
//!   for it; `strict_fail_fast` fails when it is busy; the strict ones fail
//!   when it is gone;
//! - anything else goes to the least-loaded ready worker, or waits.

use std::collections::HashMap;

use ractor::ActorRef;

use super::bindings::Bindings;
use super::messages::{RefPin, Request, WorkerKey, WorkerLink};
use super::slots::{Capacity, Member, Slot, WorkerId};
use crate::config::Affinity;
use crate::error::Error;
use crate::worker::messages::WorkerMessage;

#[cfg(test)]
mod tests;

/// What routing decided for a request.
#[derive(Debug)]
pub(crate) enum Place {
    /// Run it on this worker now.
    Worker(WorkerKey),
    /// Leave it queued.
    Wait,
    /// It cannot run: fail it with this.
    Fail(Error),
}

/// What routing reads of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub session: Option<&'a str>,
    pub affinity: Affinity,
    pub parent: Option<u64>,
    pub pin: Option<&'a RefPin>,
}

impl Request {
    /// What routing reads of it.
    pub fn route(&self) -> Route<'_> {
        Route {
            session: self.session.as_deref(),
            affinity: self.affinity,
            parent: self.parent,
            pin: self.pin.as_deref(),
        }
    }
}

/// The pool as routing sees it.
pub(crate) struct View<'a, L = WorkerLink, A = ActorRef<WorkerMessage>> {
    /// The pool's name (for errors, and to tell its worker ids).
    pub pool: &'a str,
    pub slots: &'a [Slot<L, A>],
    /// The worker each request in flight runs on.
    pub assigned: &'a HashMap<u64, WorkerKey>,
    pub bindings: &'a Bindings,
    /// Requests a worker may hold beyond its capacity.
    pub depth: u32,
}

impl<L: Capacity, A> View<'_, L, A> {
    /// Where `request` may run now.
    pub fn place(&self, request: &Route<'_>) -> Place {
        let any = || match self.least_loaded() {
            Some(slot) => Place::Worker(self.slots[slot].current.as_ref().expect("ready").key),
            None => Place::Wait,
        };
        if let Some(pin) = request.pin {
            return self.place_pinned(request, pin);
        }
        if let Some(parent) = request.parent
            && let Some(key) = self.assigned.get(&parent)
            && let Some(member) = self.slots[key.slot].member(key.generation)
            && member.link().is_some()
            && !member.closed
        {
            return Place::Worker(*key);
        }
        let Some(session) = request.session else {
            return any();
        };
        let Some(binding) = self.bindings.get(session) else {
            // A new session: the least loaded worker, and of those the one
            // with the fewest sessions, so that sessions spread and `hint`
            // rarely finds its worker busy with another session's call.
            return match self.least_loaded_by(|key| self.bindings.on(key)) {
                Some(slot) => Place::Worker(self.slots[slot].current.as_ref().expect("ready").key),
                None => Place::Wait,
            };
        };
        let member = self.slots[binding.key.slot]
            .current
            .as_ref()
            .filter(|m| m.key == binding.key && !m.closed);
        let Some(member) = member.filter(|m| m.is_ready()) else {
            // Dead, recycled or dying: its in-memory state is gone.
            if request.affinity.is_strict() {
                return Place::Fail(Error::SessionWorkerUnavailable {
                    pool: self.pool.to_string(),
                    worker: binding.worker.clone(),
                    session: session.to_string(),
                });
            }
            return any();
        };
        // Free: room without pipelining (it is ready and not closed).
        let free = member.has_room(0);
        match request.affinity {
            Affinity::Hint if free => Place::Worker(member.key),
            Affinity::Hint => any(),
            Affinity::StrictQueue if member.has_room(self.depth) => Place::Worker(member.key),
            Affinity::StrictQueue => Place::Wait,
            Affinity::StrictFailFast if free => Place::Worker(member.key),
            Affinity::StrictFailFast => Place::Fail(Error::WorkerBusy {
                pool: self.pool.to_string(),
                worker: member.id.clone(),
                session: session.to_string(),
            }),
        }
    }

    /// Where a call carrying a ref may run: only on the worker holding it.
    fn place_pinned(&self, request: &Route<'_>, pin: &RefPin) -> Place {
        let gone = |why: String| {
            Place::Fail(Error::RefNotFound {
                ref_id: pin.ref_id.clone(),
                session: pin.session.clone(),
                reason: why,
            })
        };
        let Some(member) = self.member_by_id(&pin.worker) else {
            return gone(format!(
                "worker {} that held it is gone (it died or was recycled), and its objects with it",
                pin.worker
            ));
        };
        // Its connection closed: it died, and the pool has not heard yet.
        if member.closed {
            return gone(format!(
                "worker {} that held it is gone (its connection closed), and its objects with it",
                pin.worker
            ));
        }
        if member.is_draining() {
            return gone(format!(
                "worker {} that holds it is shutting down, and its objects with it",
                pin.worker
            ));
        }
        // A nested call on its parent's worker runs while the parent waits.
        if let Some(parent) = request.parent
            && self.assigned.get(&parent) == Some(&member.key)
        {
            return Place::Worker(member.key);
        }
        if member.has_room(self.depth) {
            Place::Worker(member.key)
        } else {
            Place::Wait
        }
    }

    /// The slot whose current worker has the fewest requests in flight, below
    /// its limit.
    pub fn least_loaded(&self) -> Option<usize> {
        // Ties go to the lowest slot: a worker that just answered is the one
        // most likely still awake (polling), so back-to-back calls stay fast,
        // while concurrent calls still spread because loads differ.
        self.least_loaded_by(|_| 0)
    }

    /// As [`least_loaded`](Self::least_loaded), ties broken by the least
    /// `then`.
    fn least_loaded_by(&self, then: impl Fn(WorkerKey) -> usize) -> Option<usize> {
        let mut best: Option<(usize, (u32, usize))> = None;
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(m) = &s.current
                && m.has_room(self.depth)
            {
                let load = (m.in_flight, then(m.key));
                if best.is_none_or(|(_, best)| load < best) {
                    best = Some((slot, load));
                }
            }
        }
        best.map(|(slot, _)| slot)
    }
}

impl<'a, L, A> View<'a, L, A> {
    /// The live member of this pool named `id`.
    pub fn member_by_id(&self, id: &WorkerId) -> Option<&'a Member<L, A>> {
        if id.pool != self.pool {
            return None;
        }
        self.slots.get(id.slot)?.member(id.generation)
    }
}
