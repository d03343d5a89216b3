//! A worker that attacks the host (`tests/fixtures/hostile.py`): forged
//! frames on its connection, undecodable and endless output, floods of host
//! calls. The host never panics or hangs: every call ends within its timeout
//! with its own answer or a typed error, the host's memory stays bounded, and
//! a worker caught lying is replaced while the pool goes on serving.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_pool, poll_status, poll_status_within, rss_bytes, start};
use snakepit::{Call, Error, Event, HostArgs, HostCallContext, HostTool, PoolConfig, Value};

/// The tests run one at a time: those that measure the host's resident
/// memory would otherwise count each other's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hostile(name: &str, size: usize) -> PoolConfig {
    let mut cfg = fixture_pool(name, "hostile.HostileAdapter", size);
    cfg.restart.max_restarts = 100;
    // A request goes only to a worker with a free slot, so a test knows
    // which worker runs what.
    cfg.pipeline_depth = 0;
    cfg
}

/// Resident memory of this process (the host) in bytes.
fn host_rss() -> u64 {
    rss_bytes(std::process::id())
}

/// Runs `call` bounded by its own timeout plus slack: a hang fails the test.
async fn run(pool: &snakepit::PoolHandle, call: Call) -> Result<Value, Error> {
    let call = call.timeout(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(8), pool.execute(call))
        .await
        .expect("the call ends within its timeout")
}

async fn pids(pool: &snakepit::PoolHandle) -> Vec<u32> {
    let st = pool.status().await.unwrap();
    st.workers.iter().filter_map(|w| w.pid).collect()
}

/// Waits until every worker is up and idle, then checks each one serves.
async fn serves_again(pool: &snakepit::PoolHandle, size: usize) {
    poll_status_within(pool, Duration::from_secs(8), |st| {
        st.workers_up == size && st.in_flight == 0 && st.workers.iter().all(|w| w.in_flight == 0)
    })
    .await;
    // Calls held at once, so each lands on a worker of its own.
    let dir = tempfile::tempdir().unwrap();
    let calls = (0..size).map(|i| {
        let path = dir.path().join(format!("serves-{i}"));
        run(
            pool,
            Call::new("hold")
                .kwarg("path", path.to_str().unwrap())
                .kwarg("ms", 50),
        )
    });
    for r in futures::future::join_all(calls).await {
        r.expect("every worker serves");
    }
}

fn violation(r: &Result<Value, Error>) -> bool {
    matches!(r, Err(Error::WorkerCrashed { detail: Some(d), .. }) if d.contains("protocol violation"))
}

/// Runs `call` on a one-worker pool; it must fail as a protocol violation,
/// and the worker must be replaced.
async fn expect_violation(pool: &snakepit::PoolHandle, what: &str, call: Call) {
    let before = pids(pool).await;
    let r = run(pool, call).await;
    assert!(
        violation(&r),
        "{what}: expected a protocol violation, got {r:?}"
    );
    serves_again(pool, 1).await;
    let after = pids(pool).await;
    assert_ne!(before, after, "{what}: the worker was not replaced");
}

/// Makes the worker print `text` to stderr and die: the crash must name it
/// (the stderr tail's last line).
async fn expect_last_words(pool: &snakepit::PoolHandle, text: &str) {
    match run(pool, Call::new("die_saying").kwarg("text", text)).await {
        Err(Error::WorkerCrashed {
            detail: Some(d), ..
        }) => assert!(d.contains(text), "detail: {d}"),
        other => panic!("expected WorkerCrashed naming the last stderr line, got {other:?}"),
    }
}

// Undecodable bytes on stdout and stderr: later prints still work, and the
// stderr tail still holds later lines (a crash report names the last one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_output_does_not_stop_printing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("utf8", 1)).await;
    let pool = s.sp.default_pool().clone();
    assert_eq!(
        run(&pool, Call::new("write_undecodable")).await.unwrap(),
        Value::Int(1)
    );
    for i in 0..3 {
        // Gives the host every chance to have read the bad bytes first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = run(&pool, Call::new("say").kwarg("text", format!("after {i}"))).await;
        assert_eq!(r.unwrap(), Value::Int(1), "print after undecodable output");
    }
    expect_last_words(&pool, "last words \u{e9}").await;
    serves_again(&pool, 1).await;
    s.sp.shutdown().await;
}

// 64 MiB written to stderr without a newline: the host keeps 64 KiB of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_does_not_grow_the_host() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut s = start(hostile("endless", 1)).await;
    let pool = s.sp.default_pool().clone();
    run(&pool, Call::new("ok")).await.unwrap();
    let before = host_rss();
    let r = pool
        .execute(
            Call::new("endless_line")
                .kwarg("mb", 64)
                .timeout(Duration::from_secs(20)),
        )
        .await;
    assert_eq!(r.unwrap(), Value::Int(64));
    let grown = host_rss().saturating_sub(before);
    assert!(grown < 16 << 20, "the host grew by {} MiB", grown >> 20);
    // The worker goes on, and so does its output.
    assert_eq!(
        run(&pool, Call::new("say").kwarg("text", "next"))
            .await
            .unwrap(),
        Value::Int(1)
    );
    // What was cut is counted once the line ends, as an event (and in the
    // metrics).
    let Event::WorkerOutputTruncated(cut) =
        common::wait_event(&mut s.events, Duration::from_secs(5), |e| {
            matches!(e, Event::WorkerOutputTruncated(_))
        })
        .await
    else {
        unreachable!()
    };
    // The cut line is the 64 MiB and the "next" that ended it.
    assert_eq!(cut.stream, "stderr");
    assert_eq!(cut.bytes, (64 << 20) + 4 - (64 << 10));
    expect_last_words(&pool, "after the long line").await;
    s.sp.shutdown().await;
}

// A worker that answers (Result, Error, final Chunk) for a request running on
// another worker is replaced; the other request completes normally and the
// pool's accounting ends at zero in flight everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_complete_another_workers_request() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("cross", 2)).await;
    let pool = s.sp.default_pool().clone();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["result", "error", "final_chunk"] {
        let path = dir.path().join(kind);
        let path_str = path.to_str().unwrap().to_string();
        let p = pool.clone();
        let held = path_str.clone();
        let victim = tokio::spawn(async move {
            run(&p, Call::new("hold").kwarg("path", held).kwarg("ms", 1000)).await
        });
        let until = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < until, "the held call never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim_id: i64 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        // The only free worker is the other one.
        let r = run(
            &pool,
            Call::new("forge")
                .kwarg("kind", kind)
                .kwarg("path", path_str),
        )
        .await;
        assert!(violation(&r), "{kind}: the forger was not stopped: {r:?}");
        let answer = victim.await.unwrap();
        assert_eq!(
            answer.unwrap(),
            Value::Int(victim_id),
            "{kind}: the victim's own answer"
        );
        serves_again(&pool, 2).await;
    }
    // The last answers may reach their callers just before the pool hears
    // of them; then nothing may stay counted in flight.
    poll_status(&pool, |st| {
        st.workers_up == 2 && st.in_flight == 0 && st.workers.iter().all(|w| w.in_flight == 0)
    })
    .await;
    s.sp.shutdown().await;
}

// Frames with ids the worker never owned, a second Hello, a chunk for a
// unary call, a frame with no content: each is a protocol violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_ids_and_frames_replace_the_worker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("forged", 1)).await;
    let pool = s.sp.default_pool().clone();
    let forged = [
        ("result", 0u64),
        ("result", 0x5eed_5eed_5eed),
        ("error", 0),
        ("error", 987_654_321),
        ("final_chunk", 42),
        ("chunk", 43),
        ("hello", 0),
        ("empty", 7),
    ];
    for (kind, id) in forged {
        let call = Call::new("forge")
            .kwarg("kind", kind)
            .kwarg("id", id as i64);
        expect_violation(&pool, &format!("{kind} for id {id}"), call).await;
    }
    expect_violation(
        &pool,
        "chunk for a unary call",
        Call::new("forge_own").kwarg("kind", "chunk"),
    )
    .await;
    // A second answer to its own request: the first is the caller's answer,
    // the second a violation.
    let before = pids(&pool).await;
    let r = run(&pool, Call::new("forge_own").kwarg("kind", "result")).await;
    assert_eq!(r.unwrap(), Value::Int(7));
    let until = Instant::now() + Duration::from_secs(5);
    while pids(&pool).await == before {
        assert!(
            Instant::now() < until,
            "a worker that answered twice was kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serves_again(&pool, 1).await;
    s.sp.shutdown().await;
}

// Frames only the host may send, from the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_only_frames_replace_the_worker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("hostonly", 1)).await;
    let pool = s.sp.default_pool().clone();
    for kind in [
        "execute",
        "ping",
        "cancel",
        "shutdown",
        "host_call_result",
        "release_session",
    ] {
        let call = Call::new("forge").kwarg("kind", kind).kwarg("id", 5);
        expect_violation(&pool, kind, call).await;
    }
    s.sp.shutdown().await;
}

// A length prefix of 4 GiB, undecodable bytes, a body cut off by EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_framing_replaces_the_worker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("framing", 1)).await;
    let pool = s.sp.default_pool().clone();
    let huge = Value::Bytes(vec![0xff, 0xff, 0xff, 0xff].into());
    expect_violation(&pool, "4 GiB prefix", Call::new("raw").kwarg("data", huge)).await;
    let garbage = Value::Bytes(vec![0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].into());
    expect_violation(
        &pool,
        "garbage body",
        Call::new("raw").kwarg("data", garbage),
    )
    .await;
    // A body cut off: the worker exits mid-frame.
    let cut = Value::Bytes(vec![0, 0, 0, 100, 0x08, 0x01].into());
    let r = run(
        &pool,
        Call::new("raw")
            .kwarg("data", cut)
            .kwarg("exit_after", true),
    )
    .await;
    assert!(
        matches!(r, Err(Error::WorkerCrashed { .. })),
        "cut body: {r:?}"
    );
    serves_again(&pool, 1).await;
    s.sp.shutdown().await;
}

// ~200 random frames and byte strings in all, then the worker exits: every
// call ends with its own answer or a typed error, and the pool recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_never_hang_or_crash_the_host() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("random", 1)).await;
    let pool = s.sp.default_pool().clone();
    let before = host_rss();
    for seed in 0..4i64 {
        let call = Call::new("random_frames")
            .kwarg("seed", seed)
            .kwarg("count", 50);
        let r = pool.execute(call.timeout(Duration::from_secs(2)));
        match tokio::time::timeout(Duration::from_secs(5), r).await {
            Err(_) => panic!("seed {seed}: the call hung"),
            Ok(Ok(_) | Err(Error::WorkerCrashed { .. } | Error::Timeout { .. })) => {}
            Ok(Err(e)) => panic!("seed {seed}: unexpected error {e:?}"),
        }
        // Whatever the host made of the bytes, a worker that sent them goes.
        let pid = pids(&pool).await;
        for p in pid {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        serves_again(&pool, 1).await;
    }
    let grown = host_rss().saturating_sub(before);
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    s.sp.shutdown().await;
}

// 200k HostCall frames written at once, never reading the answers: the host
// answers at most max_host_calls at a time, refuses the rest, and stops
// reading while its replies wait; its memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_flood_keeps_host_memory_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("flood", 1)).await;
    let pool = s.sp.default_pool().clone();
    run(&pool, Call::new("ok")).await.unwrap();
    let before = host_rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(host_rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let call = Call::new("flood_host_calls")
        .kwarg("count", 200_000)
        .timeout(Duration::from_secs(20));
    let r = tokio::time::timeout(Duration::from_secs(25), pool.execute(call))
        .await
        .expect("the flood call ends");
    assert!(
        matches!(
            r,
            Ok(_) | Err(Error::WorkerCrashed { .. } | Error::Timeout { .. })
        ),
        "{r:?}"
    );
    serves_again(&pool, 1).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.unwrap();
    let grown = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!("host grew by {} KiB during the flood", grown >> 10);
    assert!(grown < 64 << 20, "the host grew by {} MiB", grown >> 20);
    s.sp.shutdown().await;
}

// With max_host_calls = 2, five concurrent host calls to a slow host tool:
// two run, three are refused at once with kind `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_past_the_bound_are_refused_busy() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cfg = hostile("busy", 1);
    cfg.max_host_calls = 2;
    let mut s = start(cfg).await;
    s.sp.register_host_tool(HostTool::new(
        "slow",
        |_ctx: HostCallContext, _args: HostArgs| async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok(Value::Int(1))
        },
    ))
    .unwrap();
    let pool = s.sp.default_pool().clone();
    let r = run(
        &pool,
        Call::new("concurrent_host_calls")
            .kwarg("name", "slow")
            .kwarg("count", 5),
    )
    .await
    .unwrap();
    let Value::List(kinds) = r else {
        panic!("{r:?}")
    };
    let count = |k: &str| kinds.iter().filter(|v| **v == Value::Str(k.into())).count();
    assert_eq!((count("ok"), count("busy")), (2, 3), "{kinds:?}");
    let mut rejected = 0;
    while let Ok(e) = s.events.try_recv() {
        rejected += usize::from(
            matches!(e, Event::HostCallRejected(ref r) if r.tool == "slow" && r.limit == 2),
        );
    }
    assert_eq!(rejected, 3, "each refusal is an event");
    // The bound is on calls running at once: later ones run again.
    let r = run(
        &pool,
        Call::new("concurrent_host_calls")
            .kwarg("name", "slow")
            .kwarg("count", 2),
    )
    .await
    .unwrap();
    assert_eq!(
        r,
        Value::List(vec![Value::Str("ok".into()), Value::Str("ok".into())])
    );
    s.sp.shutdown().await;
}

// A host tool's answer Python could not read (nested past the wire's limit,
// or over max_frame_bytes) is refused on the host as an error the calling
// tool sees at once, not a frame that would leave it waiting out its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_tool_answers_python_cannot_read_are_typed_errors() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cfg = hostile("unreadable", 1);
    cfg.max_frame_bytes = 1 << 20;
    // Without shared memory, through which a 2 MiB answer would cross.
    cfg.max_shared_bytes = 0;
    let s = start(cfg).await;
    s.sp.register_host_tool(HostTool::new(
        "deep",
        |_ctx: HostCallContext, _args: HostArgs| async move {
            let mut v = Value::Int(1);
            for _ in 0..50 {
                v = Value::List(vec![v]);
            }
            Ok(v)
        },
    ))
    .unwrap();
    s.sp.register_host_tool(HostTool::new(
        "huge",
        |_ctx: HostCallContext, _args: HostArgs| async move { Ok(Value::bytes(vec![0u8; 2 << 20])) },
    ))
    .unwrap();
    let pool = s.sp.default_pool().clone();
    let before = pids(&pool).await;
    for (tool, kind) in [("deep", "encoding"), ("huge", "payload_too_large")] {
        let started = Instant::now();
        let r = run(
            &pool,
            Call::new("concurrent_host_calls")
                .kwarg("name", tool)
                .kwarg("count", 1),
        )
        .await
        .unwrap();
        assert_eq!(r, Value::List(vec![Value::Str(kind.into())]), "{tool}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{tool}: the caller waited {:?}",
            started.elapsed()
        );
    }
    assert_eq!(pids(&pool).await, before, "the worker served on");
    s.sp.shutdown().await;
}

// Host calls are tasks the host owns: a host tool still running when the
// runtime shuts down is ended with it (its future dropped), not left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_host_calls_still_running() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("abandoned", 1)).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    let dropped_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
    /// Tells `dropped` when the host tool's future goes away.
    struct OnDrop(std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
    let started = std::sync::Arc::new(started_tx);
    s.sp.register_host_tool(HostTool::new(
        "forever",
        move |_ctx: HostCallContext, _args: HostArgs| {
            let guard = OnDrop(dropped_tx.clone());
            let started = started.clone();
            async move {
                let _guard = guard;
                if let Some(tx) = started.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(Value::Null)
            }
        },
    ))
    .unwrap();
    let pool = s.sp.default_pool().clone();
    let call = tokio::spawn(async move {
        pool.execute(
            Call::new("concurrent_host_calls")
                .kwarg("name", "forever")
                .kwarg("count", 1),
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), started_rx)
        .await
        .expect("the host tool started")
        .unwrap();
    let begun = Instant::now();
    s.sp.shutdown_with_grace(Duration::from_millis(200)).await;
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        begun.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("the host call was ended with the runtime")
        .unwrap();
    let answer = call.await.unwrap();
    assert!(answer.is_err(), "the caller was told: {answer:?}");
}

// A batch answered with fewer items than it has calls, or with a call left
// without an outcome: each caller gets a typed error of its own (or its
// value), nothing hangs, and the worker, whose real answer then names a
// request no one waits for, is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_wrongly_gives_each_caller_a_typed_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let s = start(hostile("batch", 1)).await;
    let pool = s.sp.default_pool().clone();
    // The worker's own answer follows each forged one: it names a request
    // no one waits for, and the worker is replaced.
    let replaced = |old: Vec<u32>| {
        let pool = pool.clone();
        async move {
            poll_status_within(&pool, Duration::from_secs(8), |st| {
                st.workers_up == 1
                    && st
                        .workers
                        .iter()
                        .all(|w| w.pid.is_none_or(|p| !old.contains(&p)))
            })
            .await;
            serves_again(&pool, 1).await;
        }
    };
    let before = pids(&pool).await;
    let short = futures::future::join_all(
        (0..3).map(|x| run(&pool, Call::new("short_batch").kwarg("x", x))),
    )
    .await;
    for r in &short {
        assert!(
            matches!(r, Err(Error::Protocol(m)) if m.contains("answered 1 of 3 calls")),
            "{r:?}"
        );
    }
    replaced(before).await;
    let before = pids(&pool).await;
    let hollow = futures::future::join_all(
        (0..3).map(|x| run(&pool, Call::new("hollow_batch").kwarg("x", x))),
    )
    .await;
    assert!(matches!(hollow[0], Ok(Value::Int(0))), "{:?}", hollow[0]);
    assert!(
        matches!(&hollow[1], Err(Error::Protocol(m)) if m.contains("with nothing")),
        "{:?}",
        hollow[1]
    );
    assert!(matches!(hollow[2], Ok(Value::Int(2))), "{:?}", hollow[2]);
    replaced(before).await;
    s.sp.shutdown().await;
}
