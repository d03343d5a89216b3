//! A pool's slots and the workers in them, as plain state the pool actor
//! owns: each slot has a current worker, while it is recycled a successor
//! starting alongside it, and the retired workers still draining. Also the
//! ids by which workers and the refs they hold are named outside the pool
//! (`WorkerId`, `RefId`), parsed here and nowhere else.
//!
//! Nothing here sends messages. `Member` and `Slot` are generic over the
//! worker's link and actor so that routing (`routing.rs`) can be tested on
//! plain values; the pool itself uses the defaults.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use ractor::ActorRef;

use super::messages::{WorkerKey, WorkerLink};
use crate::telemetry::RecycleReason;
use crate::worker::messages::WorkerMessage;

/// A worker's id, `{pool}-{slot}.{generation}`, and `@{agent}` after it for
/// a remote worker: its environment's `SNAKEPIT_WORKER_ID`, the name in
/// telemetry and errors, the prefix of the refs it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WorkerId {
    pub pool: String,
    pub slot: usize,
    pub generation: u64,
    /// The node agent running it (remote pools).
    pub agent: Option<String>,
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}.{}", self.pool, self.slot, self.generation)?;
        match &self.agent {
            Some(agent) => write!(f, "@{agent}"),
            None => Ok(()),
        }
    }
}

/// Why a string is not a worker or ref id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a {1} id")]
pub(crate) struct BadId(String, &'static str);

/// A number as `Display` writes it: digits only, no leading zero, so that an
/// id parses back to the very string it came from.
fn canonical<T: FromStr + fmt::Display>(s: &str) -> Option<T> {
    let n: T = s.parse().ok()?;
    (s.bytes().all(|b| b.is_ascii_digit()) && n.to_string() == s).then_some(n)
}

impl FromStr for WorkerId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let bad = || BadId(s.to_string(), "worker");
        // The pool's name may hold `-`, `.` and `@`; slot and generation are
        // digits; an agent's id has no `@`.
        let local = |s: &str| {
            let (rest, generation) = s.rsplit_once('.')?;
            let (pool, slot) = rest.rsplit_once('-')?;
            Some(WorkerId {
                pool: pool.to_string(),
                slot: canonical(slot)?,
                generation: canonical(generation)?,
                agent: None,
            })
        };
        let remote = || {
            let (rest, agent) = s.rsplit_once('@')?;
            let valid = !agent.is_empty()
                && agent
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            let mut id = local(rest).filter(|_| valid)?;
            id.agent = Some(agent.to_string());
            Some(id)
        };
        remote().or_else(|| local(s)).ok_or_else(bad)
    }
}

/// An object ref's id, `{worker}/{n}`: the worker holding the object, and
/// its number there (the Python side makes them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RefId {
    pub worker: WorkerId,
    pub n: u64,
}

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.worker, self.n)
    }
}

impl FromStr for RefId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let bad = || BadId(s.to_string(), "ref");
        let (worker, n) = s.rsplit_once('/').ok_or_else(bad)?;
        Ok(RefId {
            worker: worker.parse().map_err(|_| bad())?,
            n: canonical(n).ok_or_else(bad)?,
        })
    }
}

/// How many requests a worker runs at once, as its link says.
pub(crate) trait Capacity {
    fn capacity(&self) -> u32;
}

impl Capacity for WorkerLink {
    fn capacity(&self) -> u32 {
        self.capacity
    }
}

pub(crate) enum MemberState<L = WorkerLink> {
    /// Process spawned, no `Hello` yet.
    Starting,
    /// Takes requests.
    Ready(L),
    /// Recycled: finishing its in-flight requests, taking no new ones.
    Draining(L),
}

/// One worker process of a slot, from spawn until its `WorkerGone`.
pub(crate) struct Member<L = WorkerLink, A = ActorRef<WorkerMessage>> {
    pub key: WorkerKey,
    /// Its [`WorkerId`], written out once.
    pub id: String,
    pub actor: A,
    pub state: MemberState<L>,
    pub in_flight: u32,
    pub completed: u64,
    /// Its connection refused a request: it is dying, route nothing more.
    pub closed: bool,
    /// It missed a heartbeat and has not answered since: route nothing more
    /// until it does (it is stopped, or stuck holding the GIL).
    pub suspect: bool,
    /// Why a successor was started for it.
    pub recycle: Option<RecycleReason>,
    /// When it last took or finished a request (or started): how long an
    /// idle one has been idle.
    pub last_active: Instant,
}

impl<L, A> Member<L, A> {
    /// A member that has just been spawned.
    pub fn starting(key: WorkerKey, id: String, actor: A) -> Self {
        Member {
            key,
            id,
            actor,
            state: MemberState::Starting,
            in_flight: 0,
            completed: 0,
            closed: false,
            suspect: false,
            recycle: None,
            last_active: Instant::now(),
        }
    }

    pub fn link(&self) -> Option<&L> {
        match &self.state {
            MemberState::Ready(link) | MemberState::Draining(link) => Some(link),
            MemberState::Starting => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, MemberState::Ready(_))
    }

    pub fn is_draining(&self) -> bool {
        matches!(self.state, MemberState::Draining(_))
    }
}

impl<L: Capacity, A> Member<L, A> {
    /// Whether it takes one more request now: ready, neither closed nor
    /// suspect, and holding fewer than its capacity plus `pipeline_depth`.
    pub fn has_room(&self, pipeline_depth: u32) -> bool {
        matches!(&self.state, MemberState::Ready(link)
            if !self.closed && !self.suspect && self.in_flight < link.capacity() + pipeline_depth)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Current,
    Successor,
    Draining,
}

pub(crate) struct Slot<L = WorkerLink, A = ActorRef<WorkerMessage>> {
    /// The last generation started in this slot.
    pub generation: u64,
    pub current: Option<Member<L, A>>,
    pub successor: Option<Member<L, A>>,
    pub draining: Vec<Member<L, A>>,
    /// Failed starts since this slot last had a ready worker.
    pub failures: u32,
    /// No recycling start before this (after a successor failed to start).
    pub recycle_not_before: Option<Instant>,
    /// A remote pool's slot that found no agent with a free seat: started
    /// when one appears.
    pub awaiting_agent: bool,
    /// An autoscaled pool's slot beyond its target: no worker is started
    /// (or restarted) in it until the pool scales up.
    pub parked: bool,
}

impl<L, A> Default for Slot<L, A> {
    fn default() -> Self {
        Slot {
            generation: 0,
            current: None,
            successor: None,
            draining: Vec::new(),
            failures: 0,
            recycle_not_before: None,
            awaiting_agent: false,
            parked: false,
        }
    }
}

impl<L, A> Slot<L, A> {
    pub fn role_of(&self, generation: u64) -> Option<Role> {
        if self
            .current
            .as_ref()
            .is_some_and(|m| m.key.generation == generation)
        {
            Some(Role::Current)
        } else if self
            .successor
            .as_ref()
            .is_some_and(|m| m.key.generation == generation)
        {
            Some(Role::Successor)
        } else if self.draining.iter().any(|m| m.key.generation == generation) {
            Some(Role::Draining)
        } else {
            None
        }
    }

    pub fn member(&self, generation: u64) -> Option<&Member<L, A>> {
        self.members().find(|m| m.key.generation == generation)
    }

    pub fn member_mut(&mut self, generation: u64) -> Option<&mut Member<L, A>> {
        let matches = |m: &&mut Member<L, A>| m.key.generation == generation;
        self.current
            .as_mut()
            .filter(matches)
            .or_else(|| self.successor.as_mut().filter(matches))
            .or_else(|| {
                self.draining
                    .iter_mut()
                    .find(|m| m.key.generation == generation)
            })
    }

    pub fn take(&mut self, generation: u64) -> Option<(Member<L, A>, Role)> {
        match self.role_of(generation)? {
            Role::Current => self.current.take().map(|m| (m, Role::Current)),
            Role::Successor => self.successor.take().map(|m| (m, Role::Successor)),
            Role::Draining => {
                let pos = self
                    .draining
                    .iter()
                    .position(|m| m.key.generation == generation)?;
                Some((self.draining.remove(pos), Role::Draining))
            }
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member<L, A>> {
        self.current
            .iter()
            .chain(self.successor.iter())
            .chain(self.draining.iter())
    }

    pub fn is_ready(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|m| m.is_ready() && !m.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_round_trip() {
        for text in ["default-0.1", "a-b.c-12.345", "x-1-2.3"] {
            let id: WorkerId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        let id: WorkerId = "x-1-2.3".parse().unwrap();
        assert_eq!((id.pool.as_str(), id.slot, id.generation), ("x-1", 2, 3));
    }

    #[test]
    fn remote_worker_ids_carry_their_agent() {
        for text in ["gpu-0.1@node-a.1", "a@b-0.1@x", "p-2.3@a_b"] {
            let id: WorkerId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        let id: WorkerId = "gpu-1.4@node-7".parse().unwrap();
        assert_eq!(
            (
                id.pool.as_str(),
                id.slot,
                id.generation,
                id.agent.as_deref()
            ),
            ("gpu", 1, 4, Some("node-7"))
        );
        // A pool named with `@` and a local worker: no agent.
        let id: WorkerId = "a@b-0.1".parse().unwrap();
        assert_eq!((id.pool.as_str(), id.agent), ("a@b", None));
        let r: RefId = "gpu-0.1@node-a/9".parse().unwrap();
        assert_eq!(r.worker.agent.as_deref(), Some("node-a"));
        assert!("gpu-0.1@/9".parse::<RefId>().is_err());
    }

    #[test]
    fn worker_ids_refuse_what_display_never_writes() {
        for text in [
            "",
            "default",
            "default-0",
            "default.1",
            "d-x.1",
            "d-1.y",
            "d-01.1",
            "d-+1.1",
            "d-1.-1",
        ] {
            assert!(text.parse::<WorkerId>().is_err(), "{text}");
        }
    }

    #[test]
    fn ref_ids_round_trip_and_name_their_worker() {
        let id: RefId = "p-0.2/17".parse().unwrap();
        assert_eq!(id.worker.to_string(), "p-0.2");
        assert_eq!(id.n, 17);
        assert_eq!(id.to_string(), "p-0.2/17");
        for text in ["p-0.2", "p-0.2/", "p-0.2/x", "nope/1", "/1"] {
            assert!(text.parse::<RefId>().is_err(), "{text}");
        }
    }
}
