//! Adapters written to the reference documentation, on real workers: the
//! thread-safe examples in the thread profile (hammer test, concurrency), the
//! refusal of an adapter that does not declare itself thread-safe, Python
//! telemetry reaching the host, and the reference examples run unchanged
//! through `snakepit exec`.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_pool, wait_event};
use snakepit::{Call, Error, Event, PoolConfig, Profile, Value};

fn threaded(adapter: &str, threads: u32) -> PoolConfig {
    let mut cfg = fixture_pool("threads", adapter, 1);
    cfg.profile = Profile::Thread;
    cfg.threads_per_worker = threads;
    cfg
}

fn count_of(v: &Value) -> i64 {
    i64::try_from(common::field(v, "count").clone()).unwrap()
}

// The reference's hammer test: 100 concurrent requests on one thread-profile
// worker; the lock-protected counter on the shared instance is exactly 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammer_test_counts_exactly() {
    let s = common::start(threaded("reference_threaded.CounterAdapter", 8)).await;
    let pool = s.sp.default_pool().clone();
    let calls = (0..100).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.execute(Call::new("increment")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let count = pool.execute(Call::new("get_count")).await.unwrap();
    assert_eq!(count_of(&count), 100);
    s.sp.shutdown().await;
}

// One worker with 8 threads really runs 8 requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_profile_runs_requests_concurrently() {
    let s = common::start(threaded("traced.SleepyAdapter", 8)).await;
    let pool = s.sp.default_pool().clone();
    let st = pool.status().await.unwrap();
    assert_eq!(st.workers[0].capacity, 8);
    let t0 = Instant::now();
    let calls = (0..16).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.execute(Call::new("sleep").kwarg("ms", 100)).await })
    });
    for call in futures::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap(), Value::Int(100));
    }
    let took = t0.elapsed();
    // One at a time would take 1.6 s; two rounds of 8 take about 0.2 s.
    assert!(took < Duration::from_millis(800), "took {took:?}");
    s.sp.shutdown().await;
}

// An adapter that does not declare `__thread_safe__ = True` is refused in the
// thread profile, with a message that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_thread_safe_adapter_is_refused_in_the_thread_profile() {
    let cfg = threaded("reference_adapter.ExampleAdapter", 4);
    match common::try_start(cfg).await {
        Err(Error::WorkerStartFailed { reason, .. }) => {
            assert!(reason.contains("ExampleAdapter"), "{reason}");
            assert!(reason.contains("__thread_safe__"), "{reason}");
        }
        Err(other) => panic!("expected WorkerStartFailed, got {other:?}"),
        Ok(_) => panic!("a non-thread-safe adapter started in the thread profile"),
    }
}

// `telemetry.span` and `telemetry.emit` in a tool arrive at the host as typed
// events, the span with its duration and the caller's trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_spans_and_events_reach_the_host() {
    let mut s = common::start(fixture_pool("traced", "traced.TracedAdapter", 1)).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let call = Call::new("traced")
        .kwarg("n", 1000)
        .meta("traceparent", traceparent);
    let total = s.sp.default_pool().execute(call).await.unwrap();
    assert_eq!(total, Value::Int(499_500));
    let Event::PythonEvent(span) = wait_event(
        &mut s.events,
        Duration::from_secs(2),
        |e| matches!(e, Event::PythonEvent(p) if p.name == "traced.work"),
    )
    .await
    else {
        unreachable!()
    };
    assert!(span.duration.is_some(), "a span has a duration");
    assert!(
        span.measurements
            .iter()
            .any(|(k, v)| k == "items" && *v == 1000.0)
    );
    let meta = |key: &str| {
        span.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(meta("traceparent"), Some(Value::Str(traceparent.into())));
    assert_eq!(meta("n"), Some(Value::Int(1000)));
    let Event::PythonEvent(done) = wait_event(
        &mut s.events,
        Duration::from_secs(2),
        |e| matches!(e, Event::PythonEvent(p) if p.name == "traced.done"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(done.duration, None);
    assert_eq!(done.measurements, [("total".to_string(), 499_500.0)]);
    s.sp.shutdown().await;
}

// The reference examples, unchanged, through `snakepit exec`.
#[test]
fn reference_examples_run_unchanged_through_exec() {
    let fixtures = ["--python-path", "tests/fixtures"];
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "--adapter",
            "reference_threaded.CounterAdapter",
            "--profile",
            "thread",
            "increment",
        ],
        vec![
            "--adapter",
            "reference_threaded.MLAdapter",
            "--profile",
            "thread",
            "predict",
            "--args",
            r#"{"input_data": [1.0, 2.0, 3.0], "cache_key": "k"}"#,
        ],
        vec![
            "--adapter",
            "reference_adapter.ExampleAdapter",
            "process_with_progress",
            "--args",
            r#"{"items": 3}"#,
        ],
        vec![
            "--adapter",
            "reference_adapter.ExampleAdapter",
            "predict",
            "--args",
            r#"{"input_data": {"features": [1, 2, 3]}}"#,
        ],
    ];
    let handles: Vec<_> = runs
        .into_iter()
        .map(|run| {
            std::thread::spawn(move || {
                let mut args = fixtures.to_vec();
                args.extend(run.iter().copied());
                (run.join(" "), common::exec(&args))
            })
        })
        .collect();
    for h in handles {
        let (what, (ok, stdout, stderr)) = h.join().unwrap();
        assert!(ok, "{what}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(!stdout.trim().is_empty(), "{what}: no output");
        if what.contains("increment") {
            assert!(stdout.contains(r#""count":1"#), "{what}: {stdout}");
        }
        if what.contains("process_with_progress") {
            assert_eq!(
                stdout.lines().count(),
                3,
                "{what}: one line per chunk: {stdout}"
            );
        }
    }
}

// With `thread_safety_check`, the worker watches tool calls; an adapter that
// updates shared state without its lock is reported as telemetry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_safety_checker_reports_unlocked_updates() {
    let mut cfg = threaded("traced.RacyAdapter", 4);
    cfg.thread_safety_check = true;
    let mut s = common::start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let calls = (0..8).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.execute(Call::new("bump")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let Event::PythonEvent(warning) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::PythonEvent(p) if p.name == "snakepit.thread_safety.warning"),
    )
    .await
    else {
        unreachable!()
    };
    let meta = |key: &str| {
        warning
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        meta("adapter"),
        Some(Value::Str("traced.RacyAdapter".into()))
    );
    assert_eq!(meta("method"), Some(Value::Str("bump".into())));
    s.sp.shutdown().await;
}
