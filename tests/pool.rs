//! Integration tests of pools of real Python workers (the showcase adapter and
//! the fixtures in `tests/fixtures`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{add, fixture_pool, poll_status, showcase, start, try_start, wait_event};
use futures::StreamExt;
use num_bigint::BigInt;
use serde_json::json;
use snakepit::{Call, Error, Event, ExitStatus, Value};
use snakepit_actors::processes_with_run_id;

// 1. Values cross the boundary in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_keeps_types() {
    let s = start(showcase("t", 1)).await;
    let sp = &s.sp;

    assert_eq!(
        sp.execute("add", json!({"a": 2, "b": 3})).await.unwrap(),
        Value::Int(5)
    );
    assert_eq!(
        sp.execute("echo", json!({"message": "hello snake"}))
            .await
            .unwrap(),
        Value::Str("hello snake".into())
    );

    // Rust → Python: a BigInt arrives as a Python int.
    let big: BigInt = BigInt::from(10u8).pow(30);
    let pool = sp.default_pool();
    let desc = pool
        .execute(Call::new("describe").kwarg("value", Value::BigInt(big.clone())))
        .await
        .unwrap();
    assert_eq!(common::field(&desc, "type"), &Value::Str("int".into()));
    assert_eq!(
        common::field(&desc, "repr"),
        &Value::Str("1000000000000000000000000000000".into())
    );
    // Python → Rust: an int beyond 64 bits comes back as a BigInt.
    let sum = pool
        .execute(
            Call::new("add")
                .kwarg("a", Value::BigInt(big.clone()))
                .kwarg("b", 1),
        )
        .await
        .unwrap();
    assert_eq!(sum, Value::BigInt(big + 1));

    // bytes stay bytes.
    match sp.execute("random_bytes", json!({"n": 10})).await.unwrap() {
        Value::Bytes(b) => assert_eq!(&b[..], &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]),
        other => panic!("expected bytes, got {other:?}"),
    }

    // numpy arrays arrive as NdArray.
    match sp
        .execute("matrix", json!({"rows": 2, "cols": 3}))
        .await
        .unwrap()
    {
        Value::NdArray(a) => {
            assert_eq!(a.dtype, "float64");
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.data.len(), 48);
            let xs: Vec<f64> = a
                .data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(xs, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        }
        other => panic!("expected an ndarray, got {other:?}"),
    }
    sp.shutdown().await;
}

// 2. Streams: in order and complete; an early drop cancels the generator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_in_order_and_cancel_on_drop() {
    let s = start(showcase("t", 1)).await;
    let sp = &s.sp;

    let stream = sp
        .execute_stream("progress", json!({"steps": 5, "delay_ms": 1}))
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    assert_eq!(chunks.len(), 5);
    for (i, c) in chunks.into_iter().enumerate() {
        let c = c.expect("chunk ok");
        assert_eq!(c.seq, i as u64);
        assert_eq!(common::field(&c.value, "step"), &Value::Int(i as i64 + 1));
        assert_eq!(common::field(&c.value, "total"), &Value::Int(5));
    }

    // 1000 steps × 5 ms = 5 s if not cancelled.
    let mut stream = sp
        .execute_stream("progress", json!({"steps": 1000, "delay_ms": 5}))
        .await
        .unwrap();
    let first = stream.next().await.expect("a first chunk").expect("ok");
    assert_eq!(first.seq, 0);
    drop(stream);
    // The worker stops the generator: the request leaves the worker well
    // before the 5 s it would take to finish.
    let st = poll_status(sp.default_pool(), |st| st.in_flight == 0).await;
    assert_eq!(st.workers_up, 1);
    assert_eq!(add(sp.default_pool(), 20, 22).await, 42);
    sp.shutdown().await;
}

// 3. async def tools run on the worker's event loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tool() {
    let s = start(showcase("t", 1)).await;
    let v =
        s.sp.execute("async_sleep", json!({"ms": 10}))
            .await
            .unwrap();
    assert_eq!(v, Value::Int(10));
    s.sp.shutdown().await;
}

// 4. Two workers run two calls at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_spread_over_workers() {
    let s = start(showcase("t", 2)).await;
    let pool = s.sp.default_pool().clone();
    let t0 = Instant::now();
    let calls = (0..4).map(|_| {
        let pool = pool.clone();
        async move { pool.execute(Call::new("sleep").kwarg("ms", 300)).await }
    });
    let results = futures::future::join_all(calls).await;
    let elapsed = t0.elapsed();
    for r in results {
        assert_eq!(r.unwrap(), Value::Int(300));
    }
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    let st = pool.status().await.unwrap();
    assert_eq!(st.workers.len(), 2);
    for w in &st.workers {
        assert!(
            w.completed >= 1,
            "worker {} completed nothing: {st:?}",
            w.id
        );
    }
    s.sp.shutdown().await;
}

// 5. Python exceptions arrive typed, with their traceback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exception_is_typed() {
    let s = start(showcase("t", 1)).await;
    match s.sp.execute("fail", json!({"message": "boom"})).await {
        Err(Error::Python(e)) => {
            assert_eq!(e.python_type, "ValueError");
            assert_eq!(e.message, "boom");
            assert!(e.traceback.contains("raise ValueError"), "{}", e.traceback);
        }
        other => panic!("expected a Python error, got {other:?}"),
    }
    // The worker survives it.
    assert_eq!(add(s.sp.default_pool(), 1, 1).await, 2);
    s.sp.shutdown().await;
}

// 6. Unknown tools and bad arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tool_and_bad_arguments() {
    let s = start(showcase("t", 1)).await;
    let sp = &s.sp;
    match sp.execute("no_such_tool", json!({})).await {
        Err(Error::UnknownTool { tool, pool, .. }) => {
            assert_eq!(tool, "no_such_tool");
            assert_eq!(pool, "t");
        }
        other => panic!("expected UnknownTool, got {other:?}"),
    }
    match sp.execute("add", json!({"a": 1})).await {
        Err(Error::BadArguments {
            tool, parameter, ..
        }) => {
            assert_eq!(tool, "add");
            assert_eq!(parameter.as_deref(), Some("b"));
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    match sp.execute("add", json!({"a": "two", "b": 2})).await {
        Err(Error::BadArguments { parameter, .. }) => {
            assert_eq!(parameter.as_deref(), Some("a"));
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    sp.shutdown().await;
}

// 7. A caller timeout cancels the call on the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_timeout_cancels_and_pool_recovers() {
    let s = start(showcase("t", 1)).await;
    let pool = s.sp.default_pool();
    let t0 = Instant::now();
    let r = pool
        .execute(
            Call::new("sleep")
                .kwarg("ms", 2000)
                .timeout(Duration::from_millis(200)),
        )
        .await;
    let elapsed = t0.elapsed();
    match r {
        Err(Error::Timeout { tool, after }) => {
            assert_eq!(tool, "sleep");
            assert_eq!(after, Duration::from_millis(200));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // The showcase sleep is cooperative: the single worker is free again
    // long before the 2 s sleep would have ended.
    let t1 = Instant::now();
    let v = tokio::time::timeout(Duration::from_secs(3), add(pool, 2, 3))
        .await
        .expect("next call within 3 s");
    assert_eq!(v, 5);
    assert!(
        t1.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t1.elapsed()
    );
    s.sp.shutdown().await;
}

// 8a. A full queue refuses calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_queue_refuses() {
    let mut cfg = showcase("t", 1);
    cfg.queue_capacity = 1;
    cfg.pipeline_depth = 0;
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();

    let p1 = pool.clone();
    let first = tokio::spawn(async move { p1.execute(Call::new("sleep").kwarg("ms", 500)).await });
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::RequestStarted(_))
    })
    .await;
    let p2 = pool.clone();
    let second = tokio::spawn(async move { p2.execute(Call::new("sleep").kwarg("ms", 10)).await });
    poll_status(&pool, |st| st.queued == 1).await;

    match pool
        .execute(Call::new("add").kwarg("a", 1).kwarg("b", 2))
        .await
    {
        Err(Error::PoolSaturated { pool, capacity }) => {
            assert_eq!(pool, "t");
            assert_eq!(capacity, 1);
        }
        other => panic!("expected PoolSaturated, got {other:?}"),
    }
    assert_eq!(first.await.unwrap().unwrap(), Value::Int(500));
    assert_eq!(second.await.unwrap().unwrap(), Value::Int(10));
    s.sp.shutdown().await;
}

// 8b. A request that waits too long for a worker gets QueueTimeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_expires() {
    let mut cfg = showcase("t", 1);
    cfg.queue_timeout = std::time::Duration::from_millis(100);
    cfg.pipeline_depth = 0;
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();

    let p1 = pool.clone();
    let first = tokio::spawn(async move { p1.execute(Call::new("sleep").kwarg("ms", 1000)).await });
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::RequestStarted(_))
    })
    .await;
    let t0 = Instant::now();
    let r = pool
        .execute(Call::new("add").kwarg("a", 1).kwarg("b", 2))
        .await;
    let elapsed = t0.elapsed();
    match r {
        Err(Error::QueueTimeout { pool, waited }) => {
            assert_eq!(pool, "t");
            assert!(waited >= Duration::from_millis(100), "waited {waited:?}");
        }
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(600),
        "took {elapsed:?}"
    );
    assert_eq!(first.await.unwrap().unwrap(), Value::Int(1000));
    s.sp.shutdown().await;
}

// 9. Frames over the limit are refused on both sides; the pool carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_and_reply_are_typed_errors() {
    let mut cfg = showcase("t", 1);
    cfg.max_frame_bytes = 4096;
    let s = start(cfg).await;
    let sp = &s.sp;

    let t0 = Instant::now();
    let big = "x".repeat(10_000);
    match sp.execute("echo", json!({"message": big})).await {
        Err(Error::PayloadTooLarge { size, limit }) => {
            assert_eq!(limit, 4096);
            assert!(size > 10_000, "size {size}");
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        sp.execute("echo", json!({"message": "ok"})).await.unwrap(),
        Value::Str("ok".into())
    );

    match sp.execute("random_bytes", json!({"n": 10_000})).await {
        Err(Error::PayloadTooLarge { size, limit }) => {
            assert_eq!(limit, 4096);
            assert!(size > 10_000, "size {size}");
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(
        sp.execute("echo", json!({"message": "ok"})).await.unwrap(),
        Value::Str("ok".into())
    );
    let st = sp.default_pool().status().await.unwrap();
    assert_eq!(st.workers_up, 1);
    sp.shutdown().await;
}

async fn expect_protocol_crash(s: &mut common::Started, tool: &str) {
    let pool = s.sp.default_pool().clone();
    let old_pid = pool.status().await.unwrap().workers[0].pid.expect("pid");
    let r = tokio::time::timeout(Duration::from_secs(10), pool.execute(Call::new(tool)))
        .await
        .expect("the call ends promptly");
    match r {
        Err(Error::WorkerCrashed {
            detail: Some(d),
            pool: p,
            ..
        }) => {
            assert_eq!(p, "bad");
            assert!(d.contains("protocol violation"), "detail: {d}");
        }
        other => panic!("expected WorkerCrashed with a detail, got {other:?}"),
    }
    wait_event(
        &mut s.events,
        Duration::from_secs(10),
        |e| matches!(e, Event::WorkerExited(x) if x.pid == old_pid),
    )
    .await;
    let ready = wait_event(&mut s.events, Duration::from_secs(15), |e| {
        matches!(e, Event::WorkerReady(_))
    })
    .await;
    match ready {
        Event::WorkerReady(r) => {
            assert_ne!(r.pid, old_pid);
            assert_eq!(r.workers_up, 1);
        }
        _ => unreachable!(),
    }
    assert!(
        !common::pid_alive(old_pid),
        "old worker {old_pid} still alive"
    );
    assert_eq!(pool.execute(Call::new("ok")).await.unwrap(), Value::Int(1));
}

// 10. A worker that sends garbage is killed and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_replace_the_worker() {
    let mut s = start(fixture_pool("bad", "bad_frames.BadFrames", 1)).await;
    assert_eq!(
        s.sp.default_pool().execute(Call::new("ok")).await.unwrap(),
        Value::Int(1)
    );
    expect_protocol_crash(&mut s, "garbage").await;
    expect_protocol_crash(&mut s, "huge_header").await;
    s.sp.shutdown().await;
}

// 11. A worker killed mid-call fails the call and is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_is_worker_crashed_and_pool_recovers() {
    let mut s = start(showcase("t", 1)).await;
    let pool = s.sp.default_pool().clone();
    let p1 = pool.clone();
    let call = tokio::spawn(async move { p1.execute(Call::new("sleep").kwarg("ms", 5000)).await });
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::RequestStarted(_))
    })
    .await;
    let pid = pool.status().await.unwrap().workers[0].pid.expect("pid");
    let t0 = Instant::now();
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let r = tokio::time::timeout(Duration::from_secs(2), call)
        .await
        .expect("the call fails promptly")
        .unwrap();
    match r {
        Err(Error::WorkerCrashed {
            status, pool: p, ..
        }) => {
            assert_eq!(status, ExitStatus::Signal(9));
            assert_eq!(p, "t");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    let v = tokio::time::timeout(Duration::from_secs(10), add(&pool, 4, 5))
        .await
        .expect("the pool comes back within 10 s");
    assert_eq!(v, 9);
    let new_pid = pool.status().await.unwrap().workers[0].pid.expect("pid");
    assert_ne!(new_pid, pid);
    s.sp.shutdown().await;
}

// 12. Adapters that cannot be imported fail start() with Python's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failure_reports_python_error() {
    let mut cfg = showcase("t", 1);
    cfg.adapter = "no_such_module.Adapter".into();
    match try_start(cfg).await {
        Err(Error::WorkerStartFailed {
            pool,
            reason,
            python,
        }) => {
            assert_eq!(pool, "t");
            let p = python.unwrap_or_else(|| panic!("no python exception; reason: {reason}"));
            assert_eq!(p.python_type, "ModuleNotFoundError");
            assert!(p.message.contains("no_such_module"), "{}", p.message);
        }
        Err(other) => panic!("expected WorkerStartFailed, got {other:?}"),
        Ok(_) => panic!("start succeeded with a missing module"),
    }

    match try_start(fixture_pool("t", "broken_syntax.Adapter", 1)).await {
        Err(Error::WorkerStartFailed { reason, .. }) => {
            assert!(reason.contains("SyntaxError"), "reason: {reason}");
        }
        Err(other) => panic!("expected WorkerStartFailed, got {other:?}"),
        Ok(_) => panic!("start succeeded with a syntax error"),
    }
}

// 13. Shutdown leaves no Python process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_python_behind() {
    let s = start(showcase("t", 2)).await;
    let run_id = s.sp.run_id().to_string();
    let st = s.sp.default_pool().status().await.unwrap();
    let pids: Vec<u32> = st.workers.iter().map(|w| w.pid.expect("pid")).collect();
    assert_eq!(pids.len(), 2);
    assert_eq!(
        processes_with_run_id(&run_id).len(),
        2,
        "workers carry the run id"
    );
    for &pid in &pids {
        assert!(common::pid_alive(pid));
    }
    s.sp.shutdown().await;
    for &pid in &pids {
        assert!(!common::pid_alive(pid), "worker {pid} survived shutdown");
    }
    let left = processes_with_run_id(&run_id);
    assert!(left.is_empty(), "processes of this run left: {left:?}");
}

// 14a. The guide's adapter runs unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_adapter_in_a_pool() {
    let s = start(fixture_pool("ref", "reference_adapter.ExampleAdapter", 1)).await;
    let sp = &s.sp;
    assert_eq!(
        sp.execute("echo", json!({"message": "hi"})).await.unwrap(),
        Value::Str("Echo: hi".into())
    );
    assert_eq!(
        sp.execute("add", json!({"a": 2.5, "b": 0.5}))
            .await
            .unwrap(),
        Value::Float(3.0)
    );
    let pred = sp
        .execute("predict", json!({"input_data": {"features": [1, 2, 3]}}))
        .await
        .unwrap();
    assert_eq!(
        common::field(&pred, "prediction"),
        &Value::List(vec![Value::Int(6)])
    );

    let items: Vec<_> = sp
        .execute_stream("process_with_progress", json!({"items": 3}))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    for (i, c) in items.into_iter().enumerate() {
        let c = c.unwrap();
        assert_eq!(c.seq, i as u64);
        assert_eq!(common::field(&c.value, "item"), &Value::Int(i as i64 + 1));
    }
    sp.shutdown().await;
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snakepit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the snakepit binary")
}

// 14b. The same through the CLI, plus the showcase tools.
#[test]
fn cli_exec() {
    let runs: Vec<(&str, Vec<&'static str>)> = vec![
        (
            "ref-echo",
            vec![
                "exec",
                "echo",
                "--python-path",
                "tests/fixtures",
                "--adapter",
                "reference_adapter.ExampleAdapter",
                "--args",
                r#"{"message":"hi"}"#,
            ],
        ),
        ("add", vec!["exec", "add", "--args", r#"{"a": 2, "b": 3}"#]),
        (
            "progress",
            vec![
                "exec",
                "progress",
                "--args",
                r#"{"steps": 3, "delay_ms": 1}"#,
            ],
        ),
        ("fail", vec!["exec", "fail"]),
    ];
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(name, args)| std::thread::spawn(move || (name, cli(&args))))
        .collect();
    for h in handles {
        let (name, out) = h.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let ctx = format!(
            "{name}: status {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        match name {
            "ref-echo" => {
                assert!(out.status.success(), "{ctx}");
                assert_eq!(stdout.trim(), r#""Echo: hi""#, "{ctx}");
            }
            "add" => {
                assert!(out.status.success(), "{ctx}");
                assert_eq!(stdout.trim(), "5", "{ctx}");
            }
            "progress" => {
                assert!(out.status.success(), "{ctx}");
                let lines: Vec<&str> = stdout.lines().collect();
                assert_eq!(lines.len(), 3, "{ctx}");
                for (i, line) in lines.iter().enumerate() {
                    let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                    assert_eq!(v["step"], json!(i + 1), "{ctx}");
                }
            }
            "fail" => {
                assert_eq!(out.status.code(), Some(1), "{ctx}");
                assert!(stderr.contains("ValueError"), "{ctx}");
                assert!(stdout.trim().is_empty(), "{ctx}");
            }
            _ => unreachable!(),
        }
    }
}

// The README's main command: the demo tour runs end to end, including the
// worker it kills with SIGKILL and the retried call.
#[test]
fn cli_demo_runs_the_tour() {
    let out = cli(&["demo", "--metrics-addr", "127.0.0.1:0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    for expected in [
        "1. Started pool `default`",
        "Error::Python",
        "7. kill -9 of the worker running an idempotent call",
        "the call was retried on another worker and returned 300",
        "2 of 2 up again",
        "tally(3) -> 6",
        "Python asked the host tool `lookup_price`",
        "Summary",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
