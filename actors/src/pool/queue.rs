//! The pool's queue of requests waiting for a worker. It keeps count of the
//! requests that may leave out of order (strict-affinity session calls and
//! nested calls), so that `pump` knows without a scan whether anything behind
//! a waiting request could still go.

use std::collections::VecDeque;
use std::time::Instant;

use super::Request;

#[derive(Default)]
pub(crate) struct RequestQueue {
    items: VecDeque<Box<Request>>,
    special: usize,
}

impl RequestQueue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any queued request may leave out of order.
    pub fn has_special(&self) -> bool {
        self.special > 0
    }

    pub fn get(&self, i: usize) -> &Request {
        &self.items[i]
    }

    pub fn push_back(&mut self, request: Box<Request>) {
        self.special += usize::from(request.is_special());
        self.items.push_back(request);
    }

    pub fn push_front(&mut self, request: Box<Request>) {
        self.special += usize::from(request.is_special());
        self.items.push_front(request);
    }

    pub fn insert(&mut self, i: usize, request: Box<Request>) {
        self.special += usize::from(request.is_special());
        self.items.insert(i, request);
    }

    pub fn remove(&mut self, i: usize) -> Box<Request> {
        let request = self.items.remove(i).expect("index within the queue");
        self.special -= usize::from(request.is_special());
        request
    }

    /// Where request `id` waits, if it does.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.items.iter().position(|r| r.id == id)
    }

    /// When the longest-waiting request arrived (requests leave out of
    /// order, so it is not always in front).
    pub fn oldest(&self) -> Option<Instant> {
        self.items.iter().map(|r| r.enqueued).min()
    }

    /// Empties the queue.
    pub fn take_all(&mut self) -> impl Iterator<Item = Box<Request>> + use<> {
        self.special = 0;
        std::mem::take(&mut self.items).into_iter()
    }
}
