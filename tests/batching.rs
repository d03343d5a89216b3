//! Dynamic batching with real workers: concurrent single calls of a tool
//! declared `@tool(batch=Batch(...))` (`fixtures/batched.py`) run as
//! batches, and every caller gets its own answer — or its own error.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use snakepit::{Affinity, Call, Error, Event, NdArray, PoolHandle, Value};

use common::{field, fixture_pool, start};

fn batched(name: &str, size: usize) -> snakepit::PoolConfig {
    fixture_pool(name, "batched.BatchedAdapter", size)
}

fn int(v: &Value) -> i64 {
    i64::try_from(v.clone()).expect("an int")
}

async fn call_x(pool: &PoolHandle, tool: &str, x: i64) -> Result<Value, Error> {
    pool.execute(Call::new(tool).kwarg("x", x)).await
}

/// The batches formed since `events` was subscribed, as (tool, size).
fn batches(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::BatchFormed(b) = event {
            out.push((b.tool, b.size));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_callers_each_get_their_own_answer_from_four_batches() {
    let mut s = start(batched("b64", 2)).await;
    let pool = s.sp.pool("b64").unwrap().clone();
    let calls = (0..64).map(|x| {
        let pool = pool.clone();
        async move { (x, call_x(&pool, "square", x).await) }
    });
    for (x, result) in join_all(calls).await {
        let v = result.expect("each call succeeds");
        assert_eq!(
            int(field(&v, "x")),
            x * x,
            "caller {x} got another's answer"
        );
        assert_eq!(int(field(&v, "batch")), 16, "caller {x}");
    }
    let formed = batches(&mut s.events);
    assert_eq!(formed.len(), 4, "{formed:?}");
    assert!(
        formed
            .iter()
            .all(|(tool, size)| tool == "square" && *size == 16)
    );
    // The calls count one by one: 64 started, and the pool is idle again.
    let status = pool.status().await.unwrap();
    assert_eq!((status.in_flight, status.queued), (0, 0));
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_call_leaves_when_the_window_closes() {
    let mut s = start(batched("lone", 1)).await;
    let pool = s.sp.pool("lone").unwrap().clone();
    let v = call_x(&pool, "quick", 7).await.unwrap();
    assert_eq!((int(field(&v, "x")), int(field(&v, "batch"))), (21, 1));
    assert_eq!(batches(&mut s.events), vec![("quick".to_string(), 1)]);
    // A tool that is not batched is called as always.
    let v = call_x(&pool, "plain", 5).await.unwrap();
    assert_eq!(int(&v), 5);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_item_fails_alone_and_a_raising_tool_fails_its_batch() {
    let s = start(batched("bad", 1)).await;
    let pool = s.sp.pool("bad").unwrap().clone();
    let xs = [1, -2, 3, -4, 5];
    let results = join_all(xs.iter().map(|&x| call_x(&pool, "checked", x))).await;
    for (x, result) in xs.iter().zip(results) {
        match result {
            Ok(v) if *x >= 0 => assert_eq!(int(&v), x * 10),
            Err(Error::Python(e)) if *x < 0 => {
                assert_eq!(e.python_type, "BatchItemError");
                assert!(e.message.contains(&x.to_string()), "{}", e.message);
            }
            other => panic!("x = {x}: {other:?}"),
        }
    }
    // x == 13 makes the tool raise: every call of that batch gets the error.
    let results = join_all([2, 13, 4].map(|x| call_x(&pool, "checked", x))).await;
    for result in results {
        match result {
            Err(Error::Python(e)) => {
                assert_eq!(e.python_type, "RuntimeError");
                assert!(e.message.contains("unlucky batch"));
            }
            other => panic!("expected the batch's error, got {other:?}"),
        }
    }
    // Arguments the tool cannot take fail alone, before the tool runs.
    let results = join_all([
        pool.execute(Call::new("checked").kwarg("x", 6)),
        pool.execute(Call::new("checked").arg(6)),
    ])
    .await;
    assert_eq!(int(results[0].as_ref().unwrap()), 60);
    assert!(
        matches!(&results[1], Err(Error::BadArguments { .. })),
        "{:?}",
        results[1]
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_leaves_the_batch_and_the_others_go_on() {
    let mut s = start(batched("cancel", 1)).await;
    let pool = s.sp.pool("cancel").unwrap().clone();
    let keep: Vec<_> = (0..3)
        .map(|x| {
            let pool = pool.clone();
            tokio::spawn(async move { call_x(&pool, "gathered", x).await })
        })
        .collect();
    // Two callers give up while the batch gathers (its window is 300 ms).
    let gone = pool
        .execute(
            Call::new("gathered")
                .kwarg("x", 100)
                .timeout(Duration::from_millis(50)),
        )
        .await;
    assert!(matches!(gone, Err(Error::Timeout { .. })), "{gone:?}");
    let dropped = {
        let pool = pool.clone();
        tokio::spawn(async move { call_x(&pool, "gathered", 200).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    dropped.abort();
    for (x, handle) in keep.into_iter().enumerate() {
        let v = handle.await.unwrap().expect("the others are answered");
        assert_eq!(int(field(&v, "x")), x as i64);
        assert_eq!(int(field(&v, "batch")), 3, "the batch went without the two");
    }
    assert_eq!(batches(&mut s.events), vec![("gathered".to_string(), 3)]);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sessions_batch_only_with_calls_for_their_own_worker() {
    let mut cfg = batched("sessions", 2);
    cfg.affinity = Affinity::StrictQueue;
    let s = start(cfg).await;
    let pool = s.sp.pool("sessions").unwrap().clone();
    // Bind each session to a worker with a first call, one at a time.
    let mut home = std::collections::HashMap::new();
    for session in ["a", "b", "c", "d"] {
        let v = pool
            .execute(Call::new("where").session(session))
            .await
            .unwrap();
        home.insert(session, int(field(&v, "pid")));
    }
    let pids: std::collections::HashSet<_> = home.values().collect();
    assert_eq!(pids.len(), 2, "sessions spread over both workers: {home:?}");
    // Now many calls at once: each runs on its session's worker.
    let calls = (0..40).map(|i| {
        let session = ["a", "b", "c", "d"][i % 4];
        let pool = pool.clone();
        async move {
            let v = pool.execute(Call::new("where").session(session)).await;
            (session, v)
        }
    });
    let mut largest = 0;
    for (session, result) in join_all(calls).await {
        let v = result.unwrap();
        assert_eq!(
            int(field(&v, "pid")),
            home[session],
            "session {session} moved"
        );
        largest = largest.max(int(field(&v, "batch")));
    }
    assert!(largest > 1, "the calls did batch");
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_arrays_come_back_row_by_row() {
    let s = start(batched("stack", 1)).await;
    let pool = s.sp.pool("stack").unwrap().clone();
    let row = |x: f64| {
        Value::NdArray(NdArray {
            dtype: "float64".into(),
            shape: vec![3],
            data: Bytes::from(
                [x, x + 1.0, x + 2.0]
                    .iter()
                    .flat_map(|f| f.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
        })
    };
    let results =
        join_all((0..5).map(|i| pool.execute(Call::new("doubled").kwarg("v", row(i as f64)))))
            .await;
    for (i, result) in results.into_iter().enumerate() {
        let Value::NdArray(a) = result.unwrap() else {
            panic!("not an array");
        };
        assert_eq!(a.shape, vec![3]);
        let got: Vec<f64> = a
            .data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let x = i as f64 * 2.0;
        assert_eq!(got, vec![x, x + 2.0, x + 4.0]);
    }
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_of_a_batch_whose_worker_dies_runs_again() {
    let s = start(batched("retry", 1)).await;
    let pool = s.sp.pool("retry").unwrap().clone();
    let pid = pool.status().await.unwrap().workers[0].pid.unwrap();
    let calls = (0..4).map(|x| {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.execute(Call::new("slow").kwarg("x", x).idempotent(x % 2 == 0))
                .await
        })
    });
    let calls: Vec<_> = calls.collect();
    // The batch left its window (20 ms) and runs for a second: kill its
    // worker meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    for (x, handle) in calls.into_iter().enumerate() {
        match handle.await.unwrap() {
            Ok(v) if x % 2 == 0 => assert_eq!(int(field(&v, "x")), x as i64),
            Err(Error::WorkerCrashed { .. }) if x % 2 == 1 => {}
            other => panic!("call {x} (idempotent: {}): {other:?}", x % 2 == 0),
        }
    }
    s.sp.shutdown().await;
}

/// The Must-show: 64 concurrent Rust callers of a tool declared
/// `Batch(max_size=16, max_wait_ms=5)` each get their own answer, and the
/// batch-size histogram on `/metrics` shows batches larger than 1. (The
/// only test here that installs the process-wide metrics recorder.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_size_histogram_on_metrics_shows_batches_larger_than_one() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().unwrap()
    };
    let sp = snakepit::Snakepit::builder()
        .pool(batched("mb", 2))
        .metrics_addr(addr)
        .start()
        .await
        .expect("runtime starts");
    let pool = sp.pool("mb").unwrap().clone();
    let calls = (0..64).map(|x| {
        let pool = pool.clone();
        async move { (x, call_x(&pool, "quick", x).await) }
    });
    for (x, result) in join_all(calls).await {
        let v = result.expect("each call succeeds");
        assert_eq!(
            int(field(&v, "x")),
            x * 3,
            "caller {x} got another's answer"
        );
    }
    let (code, body) = common::http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    // What the Must-show looks at (visible with --nocapture).
    for line in body
        .lines()
        .filter(|l| l.starts_with("snakepit_batch_size") && l.contains(r#"pool="mb""#))
    {
        println!("{line}");
    }
    let labels = [r#"pool="mb""#, r#"tool="quick""#];
    let sample = |metric: &str, extra: &[&str]| {
        let all: Vec<&str> = labels.iter().chain(extra).copied().collect();
        common::metric_sample(&body, metric, &all).unwrap_or_else(|| panic!("{metric}: {body}"))
    };
    let batches = sample("snakepit_batch_size_count", &[]);
    let calls = sample("snakepit_batch_size_sum", &[]);
    let of_one = sample("snakepit_batch_size_bucket", &[r#"le="1""#]);
    assert_eq!(calls, 64.0, "every call was in a batch");
    assert!(
        of_one < batches,
        "some batch held more than one call: {body}"
    );
    assert!(batches <= 64.0 / 2.0, "64 calls made {batches} batches");
    assert_eq!(sample("snakepit_batch_wait_seconds_count", &[]), 64.0);
    sp.shutdown().await;
}
