//! Routing on plain values: slots whose link is just a capacity and whose
//! actor is `()`, so no process, connection or actor is involved.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::pool::slots::MemberState;

/// In these tests a worker's link is its capacity.
impl Capacity for u32 {
    fn capacity(&self) -> u32 {
        *self
    }
}

const POOL: &str = "p";
const CAPACITY: u32 = 2;
const DEPTH: u32 = 1;

type TestSlot = Slot<u32, ()>;

fn key(slot: usize) -> WorkerKey {
    WorkerKey {
        slot,
        generation: 1,
    }
}

fn id(slot: usize) -> String {
    format!("{POOL}-{slot}.1")
}

fn member(slot: usize, state: MemberState<u32>) -> Member<u32, ()> {
    let mut m = Member::starting(key(slot), id(slot), ());
    m.state = state;
    m
}

/// A pool of `size` ready workers of generation 1, nothing in flight.
struct Pool {
    slots: Vec<TestSlot>,
    assigned: HashMap<u64, WorkerKey>,
    bindings: Bindings,
}

impl Pool {
    fn new(size: usize) -> Self {
        let slots = (0..size)
            .map(|slot| TestSlot {
                generation: 1,
                current: Some(member(slot, MemberState::Ready(CAPACITY))),
                ..TestSlot::default()
            })
            .collect();
        Pool {
            slots,
            assigned: HashMap::new(),
            bindings: Bindings::default(),
        }
    }

    fn view(&self) -> View<'_, u32, ()> {
        View {
            pool: POOL,
            slots: &self.slots,
            assigned: &self.assigned,
            bindings: &self.bindings,
            depth: DEPTH,
        }
    }

    fn current(&mut self, slot: usize) -> &mut Member<u32, ()> {
        self.slots[slot].current.as_mut().expect("a current worker")
    }

    fn load(&mut self, slot: usize, in_flight: u32) -> &mut Self {
        self.current(slot).in_flight = in_flight;
        self
    }

    /// Worker `slot` is busy: every seat taken, pipeline room left.
    fn busy(&mut self, slot: usize) -> &mut Self {
        self.load(slot, CAPACITY)
    }

    /// Worker `slot` is full: no room even for pipelining.
    fn full(&mut self, slot: usize) -> &mut Self {
        self.load(slot, CAPACITY + DEPTH)
    }

    fn bind(&mut self, session: &str, slot: usize) -> &mut Self {
        self.bindings.bind(Arc::from(session), key(slot), &id(slot));
        self
    }

    /// Request `parent` runs on worker `slot`.
    fn running(&mut self, parent: u64, slot: usize) -> &mut Self {
        self.assigned.insert(parent, key(slot));
        self
    }

    /// Worker `slot` was replaced by generation 2 (it died and restarted, or
    /// was recycled and is gone).
    fn replace(&mut self, slot: usize) -> &mut Self {
        let mut next = member(slot, MemberState::Ready(CAPACITY));
        next.key.generation = 2;
        next.id = format!("{POOL}-{slot}.2");
        self.slots[slot].generation = 2;
        self.slots[slot].current = Some(next);
        self
    }

    /// Worker `slot` is recycled: its successor serves, it drains.
    fn drain(&mut self, slot: usize) -> &mut Self {
        let mut old = self.slots[slot].current.take().expect("a current worker");
        old.state = MemberState::Draining(CAPACITY);
        self.slots[slot].draining.push(old);
        self.slots[slot].current = Some(member(slot, MemberState::Ready(CAPACITY)));
        let successor = self.current(slot);
        successor.key.generation = 2;
        successor.id = format!("{POOL}-{slot}.2");
        self.slots[slot].generation = 2;
        self
    }

    fn place(&self, route: Route<'_>) -> Place {
        self.view().place(&route)
    }
}

fn plain() -> Route<'static> {
    Route {
        session: None,
        affinity: Affinity::Hint,
        parent: None,
        pin: None,
    }
}

fn session(affinity: Affinity) -> Route<'static> {
    Route {
        session: Some("s"),
        affinity,
        ..plain()
    }
}

fn pin(slot: usize, generation: u64) -> RefPin {
    RefPin {
        worker: WorkerId {
            agent: None,
            pool: POOL.into(),
            slot,
            generation,
        },
        ref_id: format!("{POOL}-{slot}.{generation}/1"),
        session: "s".into(),
    }
}

fn pinned(pin: &RefPin) -> Route<'_> {
    Route {
        session: Some("s"),
        pin: Some(pin),
        ..plain()
    }
}

#[track_caller]
fn assert_worker(place: Place, slot: usize) {
    match place {
        Place::Worker(k) => assert_eq!(k.slot, slot, "placed on the wrong worker"),
        other => panic!("expected worker {slot}, got {other:?}"),
    }
}

#[track_caller]
fn assert_wait(place: Place) {
    assert!(matches!(place, Place::Wait), "expected Wait, got {place:?}");
}

#[track_caller]
fn ref_gone_reason(place: Place) -> String {
    match place {
        Place::Fail(Error::RefNotFound { reason, .. }) => reason,
        other => panic!("expected RefNotFound, got {other:?}"),
    }
}

// Plain requests: the least-loaded worker.

#[test]
fn plain_requests_go_to_the_least_loaded_worker_lowest_slot_first() {
    let mut pool = Pool::new(3);
    assert_worker(pool.place(plain()), 0);
    pool.load(0, 1);
    assert_worker(pool.place(plain()), 1);
    pool.load(1, 1).load(2, 1);
    assert_worker(pool.place(plain()), 0);
}

#[test]
fn plain_requests_pipeline_past_capacity_then_wait() {
    let mut pool = Pool::new(2);
    pool.busy(0).busy(1);
    assert_worker(pool.place(plain()), 0);
    pool.full(0).full(1);
    assert_wait(pool.place(plain()));
}

#[test]
fn plain_requests_skip_suspect_closed_starting_and_missing_workers() {
    let mut pool = Pool::new(5);
    pool.current(0).suspect = true;
    pool.current(1).closed = true;
    pool.current(2).state = MemberState::Starting;
    pool.slots[3].current = None;
    pool.load(4, CAPACITY);
    assert_worker(pool.place(plain()), 4);
    pool.full(4);
    assert_wait(pool.place(plain()));
}

#[test]
fn plain_requests_never_go_to_a_draining_worker() {
    let mut pool = Pool::new(1);
    pool.drain(0).full(0);
    assert_wait(pool.place(plain()));
}

// Session calls: affinity × busy.

const EVERY_AFFINITY: [Affinity; 3] = [
    Affinity::Hint,
    Affinity::StrictQueue,
    Affinity::StrictFailFast,
];
const STRICT: [Affinity; 2] = [Affinity::StrictQueue, Affinity::StrictFailFast];

#[test]
fn an_unbound_session_goes_anywhere_whatever_its_affinity() {
    let mut pool = Pool::new(2);
    pool.load(0, 1);
    for affinity in EVERY_AFFINITY {
        assert_worker(pool.place(session(affinity)), 1);
    }
}

#[test]
fn a_bound_session_with_a_free_worker_goes_there_whatever_its_affinity() {
    let mut pool = Pool::new(2);
    pool.bind("s", 1).load(1, 1);
    for affinity in EVERY_AFFINITY {
        assert_worker(pool.place(session(affinity)), 1);
    }
}

#[test]
fn hint_leaves_a_busy_worker_for_the_least_loaded() {
    let mut pool = Pool::new(2);
    pool.bind("s", 1).busy(1);
    assert_worker(pool.place(session(Affinity::Hint)), 0);
    // Busy everywhere: the least loaded takes it, pipelined.
    pool.busy(0).full(1);
    assert_worker(pool.place(session(Affinity::Hint)), 0);
    pool.full(0);
    assert_wait(pool.place(session(Affinity::Hint)));
}

#[test]
fn hint_leaves_a_suspect_worker() {
    let mut pool = Pool::new(2);
    pool.bind("s", 1).current(1).suspect = true;
    assert_worker(pool.place(session(Affinity::Hint)), 0);
}

#[test]
fn strict_queue_pipelines_on_a_busy_worker_then_waits_for_it() {
    let mut pool = Pool::new(2);
    pool.bind("s", 1).busy(1);
    assert_worker(pool.place(session(Affinity::StrictQueue)), 1);
    pool.full(1);
    assert_wait(pool.place(session(Affinity::StrictQueue)));
    pool.load(1, 0).current(1).suspect = true;
    assert_wait(pool.place(session(Affinity::StrictQueue)));
}

#[test]
fn strict_fail_fast_fails_on_a_busy_worker_naming_it() {
    let mut pool = Pool::new(2);
    pool.bind("s", 1).busy(1);
    match pool.place(session(Affinity::StrictFailFast)) {
        Place::Fail(Error::WorkerBusy {
            pool,
            worker,
            session,
        }) => assert_eq!(
            (pool.as_str(), worker.as_str(), session.as_str()),
            (POOL, "p-1.1", "s")
        ),
        other => panic!("expected WorkerBusy, got {other:?}"),
    }
}

#[test]
fn a_session_whose_worker_is_gone_moves_under_hint_and_fails_strict() {
    // Gone: replaced by a new generation, closed, draining, or still starting.
    let setups: [fn(&mut Pool); 4] = [
        |p| {
            p.replace(1);
        },
        |p| p.current(1).closed = true,
        |p| {
            p.drain(1);
        },
        |p| p.current(1).state = MemberState::Starting,
    ];
    for setup in setups {
        let mut pool = Pool::new(2);
        pool.bind("s", 1).load(0, 1);
        setup(&mut pool);
        let expected_anywhere = pool.view().least_loaded().expect("a worker has room");
        // The whole key: the slot's current generation, never the gone one
        // the binding still names (in `replace` and `drain` both share slot 1).
        let current = pool.slots[expected_anywhere].current.as_ref().unwrap().key;
        match pool.place(session(Affinity::Hint)) {
            Place::Worker(k) => assert_eq!(k, current, "placed on the wrong worker"),
            other => panic!("expected worker {current:?}, got {other:?}"),
        }
        for affinity in STRICT {
            match pool.place(session(affinity)) {
                Place::Fail(Error::SessionWorkerUnavailable {
                    worker, session, ..
                }) => assert_eq!((worker.as_str(), session.as_str()), ("p-1.1", "s")),
                other => panic!("expected SessionWorkerUnavailable, got {other:?}"),
            }
        }
    }
}

// Nested calls: on the parent's worker.

#[test]
fn a_nested_call_runs_on_its_parents_worker_however_busy() {
    let mut pool = Pool::new(2);
    pool.running(7, 1).full(1);
    let nested = Route {
        parent: Some(7),
        ..plain()
    };
    assert_worker(pool.place(nested), 1);
    // Whatever its session's binding and affinity say.
    pool.bind("s", 0);
    for affinity in STRICT {
        let nested = Route {
            parent: Some(7),
            ..session(affinity)
        };
        assert_worker(pool.place(nested), 1);
    }
}

#[test]
fn a_nested_call_follows_its_parent_onto_a_draining_worker() {
    let mut pool = Pool::new(2);
    pool.running(7, 1).drain(1);
    let nested = Route {
        parent: Some(7),
        ..plain()
    };
    match pool.place(nested) {
        Place::Worker(k) => assert_eq!(k, key(1), "the draining generation 1"),
        other => panic!("expected the parent's worker, got {other:?}"),
    }
}

#[test]
fn a_nested_call_whose_parent_is_gone_or_its_worker_closed_routes_as_usual() {
    let mut pool = Pool::new(2);
    let nested = Route {
        parent: Some(7),
        ..plain()
    };
    assert_worker(pool.place(nested), 0);
    pool.running(7, 1).current(1).closed = true;
    assert_worker(pool.place(nested), 0);
    pool.full(0);
    assert_wait(pool.place(nested));
}

// Calls pinned to the worker holding their refs.

#[test]
fn a_pinned_call_runs_on_the_live_holder_whatever_its_session_says() {
    let mut pool = Pool::new(2);
    pool.bind("s", 0);
    let pin = pin(1, 1);
    assert_worker(pool.place(pinned(&pin)), 1);
    pool.busy(1);
    assert_worker(pool.place(pinned(&pin)), 1);
}

#[test]
fn a_pinned_call_waits_for_a_full_or_suspect_holder() {
    let mut pool = Pool::new(2);
    let pin = pin(1, 1);
    pool.full(1);
    assert_wait(pool.place(pinned(&pin)));
    pool.load(1, 0).current(1).suspect = true;
    assert_wait(pool.place(pinned(&pin)));
}

#[test]
fn a_pinned_call_nested_in_a_call_on_the_holder_runs_however_busy() {
    let mut pool = Pool::new(2);
    let pin = pin(1, 1);
    pool.running(7, 1).full(1);
    let route = Route {
        parent: Some(7),
        ..pinned(&pin)
    };
    assert_worker(pool.place(route), 1);
    // A parent elsewhere does not lift the limit.
    pool.running(8, 0);
    let route = Route {
        parent: Some(8),
        ..pinned(&pin)
    };
    assert_wait(pool.place(route));
}

#[test]
fn a_pinned_call_fails_when_its_holder_died() {
    let mut pool = Pool::new(2);
    pool.replace(1);
    let reason = ref_gone_reason(pool.place(pinned(&pin(1, 1))));
    assert_eq!(
        reason,
        "worker p-1.1 that held it is gone (it died or was recycled), and its objects with it"
    );
    // Unknown slot, and a worker of another pool.
    ref_gone_reason(pool.place(pinned(&pin(9, 1))));
    let mut other = pin(0, 1);
    other.worker.pool = "q".into();
    ref_gone_reason(pool.place(pinned(&other)));
}

#[test]
fn a_pinned_call_fails_when_its_holders_connection_closed() {
    let mut pool = Pool::new(2);
    pool.current(1).closed = true;
    let reason = ref_gone_reason(pool.place(pinned(&pin(1, 1))));
    assert!(reason.contains("its connection closed"), "{reason}");
}

#[test]
fn a_pinned_call_fails_when_its_holder_drains() {
    let mut pool = Pool::new(2);
    pool.drain(1);
    let reason = ref_gone_reason(pool.place(pinned(&pin(1, 1))));
    assert!(reason.contains("shutting down"), "{reason}");
    // Its successor holds none of its objects, but is live itself.
    assert_worker(pool.place(pinned(&pin(1, 2))), 1);
}

#[test]
fn a_pinned_call_on_a_starting_worker_waits() {
    let mut pool = Pool::new(1);
    pool.current(0).state = MemberState::Starting;
    assert_wait(pool.place(pinned(&pin(0, 1))));
}

#[test]
fn a_new_session_goes_where_fewest_sessions_live_when_loads_tie() {
    let mut pool = Pool::new(3);
    pool.bind("a", 0).bind("b", 0).bind("c", 1);
    assert_worker(pool.place(session(Affinity::Hint)), 2);
    // Load still comes first.
    pool.load(2, 1);
    assert_worker(pool.place(session(Affinity::Hint)), 1);
    // A session moved by `hint` counts where it lives now.
    pool.bind("a", 2).bind("b", 2);
    pool.load(2, 0);
    assert_worker(pool.place(session(Affinity::Hint)), 0);
}
