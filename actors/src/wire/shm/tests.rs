use std::os::fd::AsRawFd;

use snakepit_proto::v1::{self, Frame, SharedArena, SharedRegion, frame::Kind, value::Kind as V};
use snakepit_proto::{NdArray, Value, frames};

use super::*;

const MIB: u64 = 1 << 20;

fn ndarray(len: usize, fill: u8) -> v1::Value {
    Value::NdArray(NdArray {
        dtype: "uint8".into(),
        shape: vec![len as u64],
        data: Bytes::from(vec![fill; len]),
    })
    .into()
}

fn region_of(v: &v1::Value) -> SharedRegion {
    match v.kind.as_ref() {
        Some(V::Ndarray(nd)) => nd.shared.expect("shared"),
        Some(V::SharedBytes(r)) => *r,
        other => panic!("not shared: {other:?}"),
    }
}

fn execute(args: Vec<v1::Value>) -> Frame {
    frames::execute(
        1,
        v1::Execute {
            tool: "t".into(),
            args,
            ..Default::default()
        },
    )
}

#[test]
fn allocator_rounds_to_pages_and_merges_what_is_freed() {
    let mut a = Allocator::new(16 * PAGE);
    let x = a.alloc(1).unwrap();
    let y = a.alloc(PAGE + 1).unwrap();
    let z = a.alloc(PAGE).unwrap();
    assert_eq!((x, y, z), (0, PAGE, 3 * PAGE));
    assert_eq!(a.in_use, 4 * PAGE);
    assert_eq!(a.find(PAGE + 5, 10), Some(PAGE));
    assert_eq!(a.find(PAGE + 5, 2 * PAGE), None, "runs past its allocation");
    a.decref(y);
    a.decref(x);
    // The two freed neighbours are one range again: a 3-page allocation fits
    // before z.
    assert_eq!(a.alloc(3 * PAGE), Some(0));
    a.decref(0);
    a.decref(z);
    assert_eq!(a.in_use, 0);
    assert_eq!(a.free, BTreeMap::from([(0, 16 * PAGE)]));
    assert_eq!(a.alloc(17 * PAGE), None);
}

#[test]
fn an_allocation_lives_while_any_reference_does() {
    let mut a = Allocator::new(4 * PAGE);
    let x = a.alloc(10).unwrap();
    a.incref(x);
    a.decref(x);
    assert_eq!(a.used.len(), 1);
    a.decref(x);
    assert!(a.used.is_empty());
}

#[test]
fn export_moves_large_values_into_the_arena_and_leaves_small_ones() {
    let arena = PoolArena::create("t", 4 * MIB, 64 * 1024).unwrap();
    let mut keep = Vec::new();
    let mut big = ndarray(100_000, 7);
    let mut small = ndarray(100, 7);
    let mut bytes: v1::Value = Value::Bytes(Bytes::from(vec![1u8; 70_000])).into();
    arena.export(&mut big, &mut keep).unwrap();
    arena.export(&mut small, &mut keep).unwrap();
    arena.export(&mut bytes, &mut keep).unwrap();
    let r = region_of(&big);
    assert_eq!(r.arena, SharedArena::Host as i32);
    assert_eq!(r.length, 100_000);
    match &big.kind {
        Some(V::Ndarray(nd)) => assert!(nd.data.is_empty()),
        _ => unreachable!(),
    }
    assert!(
        matches!(&small.kind, Some(V::Ndarray(nd)) if nd.shared.is_none() && nd.data.len() == 100)
    );
    assert_eq!(region_of(&bytes).length, 70_000);
    assert_eq!(keep.len(), 2);
    assert!(keep[0].iter().all(|b| *b == 7));
    assert_eq!(arena.usage().allocations, 2);
    drop(keep);
    assert_eq!(arena.usage().allocations, 0, "nothing holds the copies");
}

#[test]
fn bytes_already_in_the_arena_are_not_copied() {
    let arena = PoolArena::create("t", 4 * MIB, 4096).unwrap();
    let mut buf = arena.buffer(1 << 20).unwrap();
    buf.fill(3);
    let data = buf.freeze();
    let slice = data.slice(4096..8192);
    let mut v: v1::Value = Value::NdArray(NdArray {
        dtype: "uint8".into(),
        shape: vec![4096],
        data: slice.clone(),
    })
    .into();
    let mut keep = Vec::new();
    arena.export(&mut v, &mut keep).unwrap();
    let r = region_of(&v);
    assert_eq!(
        r.offset as usize,
        slice.as_ptr() as usize - arena.map.base(),
        "names the bytes where they are"
    );
    assert_eq!(keep[0].as_ptr(), slice.as_ptr());
    assert_eq!(arena.usage().allocations, 1);
}

#[test]
fn a_full_arena_is_a_typed_error() {
    let arena = PoolArena::create("t", MIB, 1024).unwrap();
    let _held = arena.buffer(MIB as usize - 4096).unwrap();
    let mut v = ndarray(8192, 1);
    let err = arena.export(&mut v, &mut Vec::new()).unwrap_err();
    match err {
        Error::SharedMemoryExhausted {
            requested,
            capacity,
            in_use,
        } => assert_eq!((requested, capacity, in_use), (8192, MIB, MIB - 4096)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_holds_what_it_was_sent_until_it_releases_it_or_closes() {
    let arena = PoolArena::create("t", 4 * MIB, 1024).unwrap();
    let shm = WorkerShm::create(&arena, "w").unwrap();
    let conn = shm.conn.clone();
    let mut keep = Vec::new();
    let mut frame = execute(vec![ndarray(5000, 1), ndarray(5000, 2)]);
    if let Some(Kind::Execute(e)) = frame.kind.as_mut() {
        for v in &mut e.args {
            arena.export(v, &mut keep).unwrap();
        }
    }
    conn.count_out(&mut frame);
    // The request is gone; the worker still holds both regions.
    drop(keep);
    assert_eq!(arena.usage().allocations, 2);
    let offsets: Vec<u64> = match &frame.kind {
        Some(Kind::Execute(e)) => e.args.iter().map(|v| region_of(v).offset).collect(),
        _ => unreachable!(),
    };
    conn.release_in(&offsets[..1]).unwrap();
    assert_eq!(arena.usage().allocations, 1);
    let err = conn.release_in(&offsets[..1]).unwrap_err();
    assert!(err.contains("does not hold"), "{err}");
    // A crashed worker: everything it held comes back.
    conn.close();
    assert_eq!(arena.usage().allocations, 0);
    // Nothing is counted after the close.
    let mut keep = Vec::new();
    let mut frame = execute(vec![ndarray(5000, 1)]);
    if let Some(Kind::Execute(e)) = frame.kind.as_mut() {
        arena.export(&mut e.args[0], &mut keep).unwrap();
    }
    conn.count_out(&mut frame);
    drop(keep);
    assert_eq!(arena.usage().allocations, 0);
}

#[test]
fn worker_regions_become_bytes_that_send_themselves_back() {
    let arena = PoolArena::create("t", 4 * MIB, 1024).unwrap();
    let shm = WorkerShm::create(&arena, "w").unwrap();
    // Stand in for the worker: write its arena through a mapping of our own.
    let writer = Mapping::new(shm.worker_fd.as_raw_fd(), 4 * MIB as usize, true).unwrap();
    unsafe { std::ptr::write_bytes(writer.ptr.as_ptr().add(8192), 9, 3000) };
    let (conn, mut releases) = (shm.conn.clone(), shm.releases);
    let region = SharedRegion {
        arena: SharedArena::Worker as i32,
        offset: 8192,
        length: 3000,
    };
    let mut frame = frames::result(
        1,
        v1::Value {
            kind: Some(V::List(v1::ValueList {
                items: vec![
                    v1::Value {
                        kind: Some(V::Ndarray(v1::NdArray {
                            dtype: "uint8".into(),
                            shape: vec![3000],
                            data: Bytes::new(),
                            shared: Some(region),
                        })),
                    },
                    v1::Value {
                        kind: Some(V::SharedBytes(region)),
                    },
                ],
            })),
        },
    );
    conn.resolve_in(&mut frame).unwrap();
    let Some(Kind::Result(r)) = frame.kind else {
        unreachable!()
    };
    let value = Value::from(r.value.unwrap());
    let Value::List(items) = value else {
        unreachable!()
    };
    let Value::NdArray(a) = &items[0] else {
        unreachable!()
    };
    assert_eq!(a.data.len(), 3000);
    assert!(a.data.iter().all(|b| *b == 9));
    assert!(matches!(&items[1], Value::Bytes(b) if b.len() == 3000));
    let kept = a.data.clone();
    drop(items);
    assert_eq!(
        releases.try_recv().unwrap(),
        8192,
        "the bytes value's reference"
    );
    assert!(releases.try_recv().is_err(), "the array is still held");
    drop(kept);
    assert_eq!(releases.try_recv().unwrap(), 8192);
}

#[test]
fn a_worker_naming_what_it_may_not_is_a_protocol_violation() {
    let arena = PoolArena::create("t", 4 * MIB, 1024).unwrap();
    let shm = WorkerShm::create(&arena, "w").unwrap();
    let bad = |arena: SharedArena, offset: u64, length: u64| {
        let mut frame = frames::result(
            1,
            v1::Value {
                kind: Some(V::SharedBytes(SharedRegion {
                    arena: arena as i32,
                    offset,
                    length,
                })),
            },
        );
        shm.conn.resolve_in(&mut frame).unwrap_err()
    };
    assert!(bad(SharedArena::Host, 0, 10).contains("names only its own"));
    assert!(bad(SharedArena::Worker, 4 * MIB - 10, 11).contains("past the end"));
    assert!(bad(SharedArena::Worker, u64::MAX, 2).contains("past the end"));
    assert!(bad(SharedArena::Unspecified, 0, 1).contains("names only its own"));
}

#[test]
fn arenas_are_sealed_against_resizing() {
    let arena = PoolArena::create("t", MIB, 1024).unwrap();
    // SAFETY: plain syscalls on our fd.
    let seals = unsafe { libc::fcntl(arena.fd(), libc::F_GET_SEALS) };
    for seal in [libc::F_SEAL_SHRINK, libc::F_SEAL_GROW, libc::F_SEAL_SEAL] {
        assert_ne!(seals & seal, 0);
    }
    assert!(unsafe { libc::ftruncate(arena.fd(), 0) } < 0);
}
