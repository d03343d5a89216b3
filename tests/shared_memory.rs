//! Large arrays and bytes through shared memory, with real workers: every
//! dtype and layout both ways in both profiles, mutation isolation, a worker
//! killed while holding segments, a thousand 1 MiB calls with the host's fds
//! and memory flat, a full arena's typed error, streams, session variables,
//! the FFI, and `max_frame_bytes` no longer limiting what goes through the
//! arenas.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use snakepit::{Call, Error, Ffi, NdArray, PoolConfig, PoolHandle, Profile, Value, VarType, shm};

const MIB: usize = 1 << 20;

/// The tests that count this process's fds run alone; the others share.
static FDS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn arrays_pool(name: &str) -> PoolConfig {
    common::fixture_pool(name, "arrays.ArraysAdapter", 1)
}

fn nd(dtype: &str, shape: &[u64], data: Bytes) -> Value {
    Value::NdArray(NdArray {
        dtype: dtype.into(),
        shape: shape.to_vec(),
        data,
    })
}

fn as_nd(v: &Value) -> &NdArray {
    match v {
        Value::NdArray(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

/// Whether every element of a float64 array is `x`.
fn all_f64(a: &NdArray, x: f64) -> bool {
    a.data
        .chunks_exact(8)
        .all(|b| f64::from_le_bytes(b.try_into().unwrap()) == x)
}

fn items(v: Value) -> Vec<Value> {
    match v {
        Value::List(items) => items,
        other => panic!("not a list: {other:?}"),
    }
}

async fn call(pool: &PoolHandle, tool: &str, args: Vec<Value>) -> Result<Value, Error> {
    let mut call = Call::new(tool);
    call.args = args;
    pool.execute(call).await
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

const DTYPES: [(&str, usize); 14] = [
    ("bool", 1),
    ("int8", 1),
    ("int16", 2),
    ("int32", 4),
    ("int64", 8),
    ("uint8", 1),
    ("uint16", 2),
    ("uint32", 4),
    ("uint64", 8),
    ("float16", 2),
    ("float32", 4),
    ("float64", 8),
    ("complex64", 8),
    ("complex128", 16),
];

const SHAPES: [&[u64]; 5] = [&[], &[0], &[3], &[40_000], &[20, 30, 70]];

/// Every dtype and shape, made in Python in every layout and sent from
/// Rust: the bytes arrive exactly, in C order, both ways, whether they
/// crossed in the frame or in shared memory (the threshold is 1 KiB here).
async fn round_trips(profile: Profile) {
    let _shared = FDS.read().await;
    let mut cfg = arrays_pool(&format!("rt-{profile:?}"));
    cfg.profile = profile;
    cfg.shared_threshold_bytes = 1024;
    let common::Started { sp, .. } = common::start(cfg).await;
    let pool = sp.default_pool();
    let mut shared = 0;
    for (dtype, size) in DTYPES {
        for shape in SHAPES {
            let n: u64 = shape.iter().product();
            let bytes_len = n as usize * size;
            // Python → Rust, in each layout it can make.
            let layouts: &[&str] = if shape.len() == 3 {
                &["c", "fortran", "strided", "big_endian"]
            } else {
                &["c", "strided"]
            };
            for layout in layouts {
                let made = items(
                    call(
                        pool,
                        "make",
                        vec![
                            (*dtype).into(),
                            Value::List(shape.iter().map(|d| Value::from(*d)).collect()),
                            (*layout).into(),
                        ],
                    )
                    .await
                    .unwrap(),
                );
                let a = as_nd(&made[0]);
                let Value::Bytes(expected) = &made[1] else {
                    panic!("bytes")
                };
                assert_eq!(a.dtype, *dtype, "{dtype} {shape:?} {layout}");
                assert_eq!(a.shape, shape.to_vec(), "{dtype} {shape:?} {layout}");
                assert_eq!(&a.data, expected, "{dtype} {shape:?} {layout}");
            }
            // Rust → Python → Rust.
            let data: Vec<u8> = (0..bytes_len)
                .map(|i| match dtype {
                    "bool" => (i % 2) as u8,
                    // Keep float16 bit patterns away from NaNs, which do not
                    // compare equal.
                    "float16" => (i % 61) as u8 & 0x3b,
                    _ => (i % 251) as u8,
                })
                .collect();
            let sent = nd(dtype, shape, Bytes::from(data));
            let seen = call(pool, "describe", vec![sent.clone()]).await.unwrap();
            let shared_here = common::field(&seen, "shared") == &Value::Bool(true);
            assert_eq!(
                shared_here,
                bytes_len >= 1024,
                "{dtype} {shape:?}: in shared memory exactly above the threshold"
            );
            shared += shared_here as usize;
            if shared_here {
                assert_eq!(common::field(&seen, "writeable"), &Value::Bool(false));
            }
            assert_eq!(
                common::field(&seen, "bytes"),
                &Value::Bytes(as_nd(&sent).data.clone())
            );
            let back = call(pool, "echo", vec![sent.clone()]).await.unwrap();
            assert_eq!(back, sent, "{dtype} {shape:?} echoed");
        }
    }
    assert!(
        shared > 20,
        "only {shared} arrays went through shared memory"
    );
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dtype_and_layout_round_trips_in_the_process_profile() {
    round_trips(Profile::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dtype_and_layout_round_trips_in_the_thread_profile() {
    round_trips(Profile::Thread).await;
}

/// Python cannot change what Rust holds: arrays it receives are read-only
/// (a writable copy is its own), and an array it built in shared memory is
/// made read-only as it is returned, so later writes do not take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cannot_change_what_rust_holds() {
    let _shared = FDS.read().await;
    let common::Started { sp, .. } = common::start(arrays_pool("iso")).await;
    let pool = sp.default_pool();
    let mut buf = shm::buffer(pool, MIB).unwrap();
    buf.fill(1);
    let sent = nd("uint8", &[MIB as u64], buf.freeze());
    let tried = call(pool, "try_write", vec![sent.clone()]).await.unwrap();
    assert_eq!(common::field(&tried, "wrote"), &Value::Bool(false));
    assert_eq!(common::field(&tried, "copy_first"), &Value::Int(99));
    assert!(as_nd(&sent).data.iter().all(|b| *b == 1));

    let got = call(pool, "ones_in_place", vec![Value::from(100_000)])
        .await
        .unwrap();
    let before = as_nd(&got).data.clone();
    let took = call(pool, "write_held", vec![]).await.unwrap();
    assert_eq!(took, Value::Int(0), "the returned buffer was frozen");
    assert_eq!(as_nd(&got).data, before);
    assert!(all_f64(as_nd(&got), 1.0));
    sp.shutdown().await;
}

/// A worker killed with SIGKILL while it holds arrays of the pool's arena,
/// and while Rust holds arrays of its own arena: once Rust drops them, the
/// arena is empty, no fd is left open and nothing was left in /dev/shm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaves_no_segment_and_no_fd() {
    let _alone = FDS.write().await;
    let common::Started { sp, .. } = common::start(arrays_pool("kill")).await;
    let pool = sp.default_pool();
    // Warm up once so that lazily opened fds of the runtime are counted.
    call(
        pool,
        "total",
        vec![nd("uint8", &[MIB as u64], Bytes::from(vec![1; MIB]))],
    )
    .await
    .unwrap();
    let (fds, shm_files) = (open_fds(), dev_shm());
    let pid = call(
        pool,
        "hold",
        vec![nd(
            "uint8",
            &[4 * MIB as u64],
            Bytes::from(vec![2; 4 * MIB]),
        )],
    )
    .await
    .unwrap();
    let ours = call(pool, "ones", vec![Value::from(MIB / 8 * 3)])
        .await
        .unwrap();
    assert!(
        pool.shared_usage().unwrap().allocations >= 1,
        "the worker holds one"
    );
    let pid = i64::try_from(pid).unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    common::wait_gone(pid as u32, Duration::from_secs(10), "the killed worker").await;
    // Rust's array, mapped from the dead worker's arena, still reads.
    assert!(all_f64(as_nd(&ours), 1.0));
    drop(ours);
    common::poll_status(pool, |s| {
        s.workers
            .iter()
            .any(|w| w.pid.is_some_and(|p| p != pid as u32))
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.shared_usage().unwrap().allocations != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool arena kept {:?}",
            pool.shared_usage()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open_fds(),
        fds,
        "the host's fds are back to where they were"
    );
    assert_eq!(dev_shm(), shm_files, "nothing was left in /dev/shm");
    sp.shutdown().await;
}

/// A thousand round trips of 1 MiB arrays: the host's open fds do not
/// change and its resident memory stays within a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_1mib_calls_leave_fds_and_rss_flat() {
    let _alone = FDS.write().await;
    let common::Started { sp, .. } = common::start(arrays_pool("flat")).await;
    let pool = sp.default_pool();
    let array = nd("float64", &[(MIB / 8) as u64], Bytes::from(vec![3u8; MIB]));
    for _ in 0..100 {
        call(pool, "echo", vec![array.clone()]).await.unwrap();
    }
    let (fds, rss) = (open_fds(), common::rss_bytes(std::process::id()));
    for _ in 0..1000 {
        let back = call(pool, "echo", vec![array.clone()]).await.unwrap();
        assert_eq!(as_nd(&back).data.len(), MIB);
    }
    let grown = common::rss_bytes(std::process::id()).saturating_sub(rss);
    assert_eq!(open_fds(), fds);
    assert!(
        grown < 64 * MIB as u64,
        "the host's RSS grew by {grown} bytes"
    );
    // The worker gives the last call's region back in a frame of its own,
    // after its answer: wait for it, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pool.shared_usage().unwrap().allocations != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(pool.shared_usage().unwrap().allocations, 0);
    sp.shutdown().await;
}

/// Past `max_shared_bytes`, both ways: a typed error, and the pool serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_arena_is_a_typed_error_both_ways() {
    let _shared = FDS.read().await;
    let mut cfg = arrays_pool("cap");
    cfg.max_shared_bytes = 4 * MIB as u64;
    let common::Started { sp, .. } = common::start(cfg).await;
    let pool = sp.default_pool();
    let big = nd("uint8", &[8 * MIB as u64], Bytes::from(vec![1; 8 * MIB]));
    let err = call(pool, "total", vec![big]).await.unwrap_err();
    assert!(
        matches!(err, Error::SharedMemoryExhausted { requested, capacity, .. }
            if requested == 8 * MIB as u64 && capacity == 4 * MIB as u64),
        "{err:?}"
    );
    assert_eq!(err.outcome(), "shared_memory_exhausted");
    let err = call(pool, "ones", vec![Value::from(MIB)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SharedMemoryExhausted { .. }),
        "{err:?}"
    );
    let total = call(
        pool,
        "total",
        vec![nd("uint8", &[MIB as u64], Bytes::from(vec![1; MIB]))],
    )
    .await
    .unwrap();
    assert_eq!(total, Value::Float(MIB as f64));
    sp.shutdown().await;
}

/// With shared memory, `max_frame_bytes` bounds only what stays in the
/// frame; without it, a large array is refused as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_frame_bytes_does_not_limit_shared_memory() {
    let _shared = FDS.read().await;
    let mut with = arrays_pool("with");
    with.max_frame_bytes = 256 * 1024;
    let mut without = arrays_pool("without");
    without.max_frame_bytes = 256 * 1024;
    without.max_shared_bytes = 0;
    let sp = snakepit::Snakepit::builder()
        .pool(with)
        .pool(without)
        .start()
        .await
        .unwrap();
    let big = nd("uint8", &[8 * MIB as u64], Bytes::from(vec![1; 8 * MIB]));
    let with = sp.pool("with").unwrap();
    assert_eq!(
        call(with, "total", vec![big.clone()]).await.unwrap(),
        Value::Float((8 * MIB) as f64)
    );
    let back = call(with, "ones", vec![Value::from(MIB)]).await.unwrap();
    assert_eq!(as_nd(&back).data.len(), 8 * MIB);
    let without = sp.pool("without").unwrap();
    assert!(without.shared_usage().is_none());
    let err = call(without, "total", vec![big]).await.unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err:?}");
    sp.shutdown().await;
}

/// Large bytes values cross in shared memory too, and arrive as `bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bytes_cross_both_ways() {
    let _shared = FDS.read().await;
    let common::Started { sp, .. } = common::start(arrays_pool("bytes")).await;
    let pool = sp.default_pool();
    let blob = call(pool, "blob", vec![Value::from(3 * MIB)])
        .await
        .unwrap();
    assert!(matches!(&blob, Value::Bytes(b) if b.len() == 3 * MIB && b.iter().all(|x| *x == 7)));
    let info = call(pool, "blob_info", vec![blob]).await.unwrap();
    assert_eq!(
        info,
        Value::List(vec!["bytes".into(), Value::from(3 * MIB), Value::from(7)])
    );
    sp.shutdown().await;
}

/// Arrays in stream chunks come through shared memory, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chunks_carry_arrays() {
    let _shared = FDS.read().await;
    let common::Started { sp, .. } = common::start(arrays_pool("stream")).await;
    let pool = sp.default_pool();
    let mut call = Call::new("stream_arrays");
    call.args = vec![Value::from(20), Value::from(100_000)];
    let mut stream = pool.execute_stream(call).await.unwrap();
    let mut k = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let a = as_nd(&chunk.value);
        assert_eq!(a.data.len(), 400_000);
        assert!(
            a.data
                .chunks_exact(4)
                .all(|x| f32::from_le_bytes(x.try_into().unwrap()) == k as f32)
        );
        k += 1;
    }
    assert_eq!(k, 20);
    sp.shutdown().await;
}

/// Tensor session variables: set from Rust and read by Python through the
/// host, set by Python and read from Rust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_session_variables_go_through_shared_memory() {
    let _shared = FDS.read().await;
    let common::Started { sp, .. } = common::start(arrays_pool("vars")).await;
    let session = sp.new_session().await.unwrap();
    let data: Vec<u8> = (0..MIB / 8).flat_map(|_| 2.0f64.to_le_bytes()).collect();
    session
        .register_variable(
            "weights",
            VarType::Tensor,
            nd("float64", &[(MIB / 8) as u64], Bytes::from(data)),
            Default::default(),
        )
        .await
        .unwrap();
    let total = session
        .execute("variable_total", serde_json::json!({"name": "weights"}))
        .await
        .unwrap();
    assert_eq!(total, Value::Float((MIB / 8 * 2) as f64));
    session
        .execute(
            "set_ones_variable",
            serde_json::json!({"name": "weights", "n": 200_000}),
        )
        .await
        .unwrap();
    let var = session.get_variable("weights").await.unwrap();
    let a = as_nd(&var.value);
    assert_eq!(a.shape, vec![200_000]);
    assert!(all_f64(a, 1.0));
    sp.shutdown().await;
}

/// The FFI: `numpy.ones(8388608)` (64 MiB) comes back and goes to
/// `numpy.sum`, with `max_frame_bytes` at its default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numpy_through_the_ffi_without_a_frame_limit() {
    let _shared = FDS.read().await;
    let common::Started { sp, .. } = common::start(common::showcase("default", 1)).await;
    assert_eq!(
        sp.default_pool().config().max_frame_bytes,
        snakepit::PoolConfig::default().max_frame_bytes
    );
    let ones = sp
        .call("numpy", "ones", (Value::from(8_388_608),), ())
        .await
        .unwrap();
    assert_eq!(as_nd(&ones).data.len(), 64 * MIB);
    let sum = sp.call("numpy", "sum", (ones,), ()).await.unwrap();
    assert_eq!(sum, Value::Float(8_388_608.0));
    sp.shutdown().await;
}
