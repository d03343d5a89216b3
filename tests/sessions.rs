//! Sessions against real Python workers: state kept in a worker across calls,
//! the three affinity modes under contention, a session whose worker died,
//! releases and their cleanup errors, session variables read and written from
//! both sides, host tools called from Python (reference style, nested three
//! levels deep, panicking).
//!
//! TTL expiry and auto-session release run on a paused clock in
//! `actors/src/sessions/tests.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_pool, wait_event};
use futures::StreamExt;
use serde_json::json;
use snakepit::{
    Affinity, Call, Constraints, Error, Event, HostArgs, HostCallContext, HostTool, HostToolError,
    PoolConfig, Snakepit, UpdateSource, Value, VarType,
};

fn stateful(size: usize, affinity: Affinity) -> PoolConfig {
    let mut cfg = fixture_pool("default", "stateful.StatefulAdapter", size);
    cfg.affinity = affinity;
    cfg
}

fn int(v: Value) -> i64 {
    i64::try_from(v).expect("an int")
}

// A value kept in the session's worker is read back by later calls: 100
// sessions at once on 4 workers, strict_queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_queue_keeps_state_for_100_concurrent_sessions() {
    let common::Started { sp, .. } = common::start(stateful(4, Affinity::StrictQueue)).await;
    let mut tasks = Vec::new();
    for i in 0..100i64 {
        let session = sp.new_session().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let pid = int(session
                .execute("remember", json!({"key": "k", "value": i}))
                .await
                .unwrap());
            for _ in 0..3 {
                assert_eq!(
                    int(session
                        .execute("recall", json!({"key": "k"}))
                        .await
                        .unwrap()),
                    i
                );
            }
            let me = session.execute("whoami", ()).await.unwrap();
            assert_eq!(
                int(common::field(&me, "pid").clone()),
                pid,
                "the session stayed on its worker"
            );
            assert_eq!(
                common::field(&me, "session_id"),
                &Value::Str(session.id().into())
            );
            pid
        }));
    }
    let mut pids = std::collections::HashSet::new();
    for t in tasks {
        pids.insert(t.await.unwrap());
    }
    assert!(pids.len() > 1, "sessions spread over workers: {pids:?}");
    sp.shutdown().await;
}

/// A session bound to a worker that is then kept busy by a `hold` call of
/// the same session; returns the session, the busy worker's pid and the
/// running hold.
async fn busy_session(
    sp: &Snakepit,
    hold_ms: u64,
) -> (
    snakepit::Session,
    i64,
    tokio::task::JoinHandle<Result<Value, Error>>,
) {
    let session = sp.new_session().await.unwrap();
    let pid = int(session
        .execute("remember", json!({"key": "k", "value": 1}))
        .await
        .unwrap());
    let s = session.clone();
    let hold = tokio::spawn(async move { s.execute("hold", json!({"ms": hold_ms})).await });
    // Until the hold runs, the worker is not busy yet.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let st = sp.default_pool().status().await.unwrap();
        if st
            .workers
            .iter()
            .any(|w| w.pid == Some(pid as u32) && w.in_flight > 0)
        {
            break;
        }
        assert!(Instant::now() < until, "the hold never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (session, pid, hold)
}

// hint: back-to-back calls of a session stay on its worker (the pool learns
// a call ended before its caller does, so the worker is never seen busy with
// a call that is already over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_keeps_back_to_back_calls_on_one_worker() {
    let common::Started { sp, .. } = common::start(stateful(2, Affinity::Hint)).await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let session = sp.new_session().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut pids = std::collections::HashSet::new();
            for _ in 0..50 {
                let me = session.execute("whoami", ()).await.unwrap();
                pids.insert(int(common::field(&me, "pid").clone()));
            }
            pids
        }));
    }
    for t in tasks {
        let pids = t.await.unwrap();
        assert_eq!(pids.len(), 1, "a session hopped workers: {pids:?}");
    }
    sp.shutdown().await;
}

// hint: a busy session's call runs on another worker at once, and the
// session moves there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_routes_a_busy_session_elsewhere() {
    let common::Started { sp, .. } = common::start(stateful(2, Affinity::Hint)).await;
    let (session, busy, hold) = busy_session(&sp, 1000).await;
    let t0 = Instant::now();
    let me = session.execute("whoami", ()).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "it did not wait for the busy worker"
    );
    let moved = int(common::field(&me, "pid").clone());
    assert_ne!(moved, busy);
    // The preference moved with it.
    let me = session.execute("whoami", ()).await.unwrap();
    assert_eq!(int(common::field(&me, "pid").clone()), moved);
    assert_eq!(int(hold.await.unwrap().unwrap()), busy);
    sp.shutdown().await;
}

// strict_queue waits for the session's worker (and keeps its state);
// strict_fail_fast says WorkerBusy at once, for calls and streams; a second
// session meanwhile runs on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_modes_under_contention() {
    let common::Started { sp, .. } = common::start(stateful(2, Affinity::StrictQueue)).await;
    let (session, busy, hold) = busy_session(&sp, 600).await;

    let other = sp.new_session().await.unwrap();
    let t0 = Instant::now();
    let elsewhere = int(other.execute("hold", json!({"ms": 1})).await.unwrap());
    assert_ne!(elsewhere, busy);
    assert!(t0.elapsed() < Duration::from_millis(400));

    let fail_fast = Call::new("recall")
        .kwarg("key", "k")
        .affinity(Affinity::StrictFailFast);
    match session.run(fail_fast.clone()).await {
        Err(Error::WorkerBusy { session: s, .. }) => assert_eq!(s, session.id()),
        other => panic!("expected WorkerBusy, got {other:?}"),
    }
    let mut stream = session.run_stream(fail_fast).await.unwrap();
    match stream.next().await {
        Some(Err(Error::WorkerBusy { .. })) => {}
        other => panic!("expected WorkerBusy for the stream, got {other:?}"),
    }

    let t0 = Instant::now();
    let kept = session
        .execute("recall", json!({"key": "k"}))
        .await
        .unwrap();
    assert_eq!(
        int(kept),
        1,
        "strict_queue waited for the worker holding the state"
    );
    assert!(t0.elapsed() >= Duration::from_millis(200), "it did wait");
    assert_eq!(int(hold.await.unwrap().unwrap()), busy);
    sp.shutdown().await;
}

// strict_queue is bounded by the queue timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_queue_gives_up_at_the_queue_timeout() {
    let mut cfg = stateful(2, Affinity::StrictQueue);
    cfg.queue_timeout = std::time::Duration::from_millis(200);
    cfg.pipeline_depth = 0;
    let common::Started { sp, .. } = common::start(cfg).await;
    let (session, _, hold) = busy_session(&sp, 1500).await;
    match session.execute("recall", json!({"key": "k"})).await {
        Err(Error::QueueTimeout { .. }) => {}
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    hold.await.unwrap().unwrap();
    sp.shutdown().await;
}

/// Binds `session` to a worker by storing a value there, kills that worker
/// with SIGKILL and waits until the pool has seen it go.
async fn kill_the_sessions_worker(
    session: &snakepit::Session,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) {
    let stored = session.execute("remember", json!({"key": "k", "value": 7}));
    let pid = int(stored.await.unwrap());
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_event(
        events,
        Duration::from_secs(5),
        |e| matches!(e, Event::WorkerExited(x) if x.pid == pid as u32),
    )
    .await;
}

// A session whose worker died: strict modes say SessionWorkerUnavailable
// (never a silent fresh worker), hint starts over elsewhere; releasing it
// reports the cleanup error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_session_is_unavailable_in_strict_modes() {
    let common::Started { sp, mut events } =
        common::start(stateful(2, Affinity::StrictFailFast)).await;
    let session = sp.session("doomed").await.unwrap();
    kill_the_sessions_worker(&session, &mut events).await;
    for affinity in [Affinity::StrictFailFast, Affinity::StrictQueue] {
        let call = Call::new("recall").kwarg("key", "k").affinity(affinity);
        match session.run(call).await {
            Err(Error::SessionWorkerUnavailable { session: s, .. }) => assert_eq!(s, "doomed"),
            other => panic!("{affinity:?}: expected SessionWorkerUnavailable, got {other:?}"),
        }
    }
    match session.release().await {
        Err(Error::SessionCleanupFailed { session: s, reason }) => {
            assert_eq!(s, "doomed");
            assert!(reason.contains("gone"), "{reason}");
        }
        other => panic!("expected SessionCleanupFailed, got {other:?}"),
    }
    let Event::SessionCleanupError(e) = wait_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, Event::SessionCleanupError(_))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!((e.session_id.as_str(), e.source), ("doomed", "manual"));

    // Under hint the same situation starts over on a live worker.
    let s2 = sp.session("restart-me").await.unwrap();
    kill_the_sessions_worker(&s2, &mut events).await;
    let fresh = s2
        .run(
            Call::new("recall")
                .kwarg("key", "k")
                .affinity(Affinity::Hint),
        )
        .await
        .unwrap();
    assert_eq!(fresh, Value::Null, "its state went with the worker");
    sp.shutdown().await;
}

// Release runs the adapter's hook in the worker; a hook that raises is a
// cleanup error with Python's text; a clean release frees the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_runs_the_hook_and_reports_its_failure() {
    let common::Started { sp, mut events } = common::start(stateful(1, Affinity::Hint)).await;
    let ok = sp.session("fine").await.unwrap();
    ok.execute("remember", json!({"key": "k", "value": 1}))
        .await
        .unwrap();
    ok.release().await.unwrap();
    // Same id again: a new session, and the worker forgot the old state.
    let again = sp.session("fine").await.unwrap();
    assert_eq!(
        again.execute("recall", json!({"key": "k"})).await.unwrap(),
        Value::Null
    );

    let bad = sp.session("fail-release-1").await.unwrap();
    bad.execute("remember", json!({"key": "k", "value": 1}))
        .await
        .unwrap();
    match bad.release().await {
        Err(Error::SessionCleanupFailed { reason, .. }) => {
            assert!(reason.contains("RuntimeError"), "{reason}");
            assert!(reason.contains("cannot let go"), "{reason}");
        }
        other => panic!("expected SessionCleanupFailed, got {other:?}"),
    }
    wait_event(
        &mut events,
        Duration::from_secs(1),
        |e| matches!(e, Event::SessionCleanupError(x) if x.session_id == "fail-release-1"),
    )
    .await;
    // Dropping the last handle of an auto session releases it.
    let auto = sp.new_session().await.unwrap();
    let id = auto.id().to_string();
    auto.execute("whoami", ()).await.unwrap();
    drop(auto);
    wait_event(&mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::SessionReleased(r) if r.session_id == id && r.source == "dropped" && r.clean)
    })
    .await;
    sp.shutdown().await;
}

// Variables: constraints enforced, required variables checked before the
// tool runs, Python reads and writes them, Rust watches see Python's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_across_rust_and_python() {
    let common::Started { sp, .. } = common::start(stateful(1, Affinity::Hint)).await;
    let s = sp.new_session().await.unwrap();
    match s.execute("needs_key", ()).await {
        Err(Error::MissingVariables { tool, missing }) => {
            assert_eq!(tool, "needs_key");
            assert_eq!(missing, ["api_key"]);
        }
        other => panic!("expected MissingVariables, got {other:?}"),
    }
    s.register_variable("api_key", VarType::String, "secret", Constraints::default())
        .await
        .unwrap();
    assert_eq!(
        s.execute("needs_key", ()).await.unwrap(),
        Value::Str("secret".into())
    );

    let limits = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Constraints::default()
    };
    s.register_variable("counter", VarType::Integer, 0, limits)
        .await
        .unwrap();
    let mut watch = s.watch_variables(&["counter"], false).await.unwrap();
    assert_eq!(
        int(s.execute("bump", json!({"name": "counter"})).await.unwrap()),
        1
    );
    let update = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.source, UpdateSource::Python);
    assert_eq!(
        (update.old_value, update.new_value),
        (Value::Int(0), Value::Int(1))
    );
    s.set_variable("counter", 2).await.unwrap();
    match s.execute("bump", json!({"name": "counter"})).await {
        Err(Error::Python(e)) => {
            assert_eq!(e.python_type, "VariableConstraintError");
            assert!(e.message.contains("maximum"), "{}", e.message);
        }
        other => panic!("expected the constraint error in Python, got {other:?}"),
    }
    // A Python watch callback sees changes made from Rust.
    s.execute("watch_into", json!({"name": "counter"}))
        .await
        .unwrap();
    s.set_variable("counter", 0).await.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let seen = s.execute("seen", ()).await.unwrap();
        if matches!(&seen, Value::List(items) if !items.is_empty()) {
            break seen;
        }
        assert!(Instant::now() < until, "the Python watch never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let expected = Value::List(vec![Value::List(vec![
        Value::Int(2),
        Value::Int(0),
        Value::Str("host".into()),
    ])]);
    assert_eq!(seen, expected);
    match s.set_variable("counter", "three").await {
        Err(Error::Variable(e)) => assert_eq!(e.constraint(), Some("type")),
        other => panic!("expected a type error, got {other:?}"),
    }
    sp.shutdown().await;
}

fn host_tools(sp: &Snakepit) {
    sp.register_host_tool(
        HostTool::new("validate", |_ctx: HostCallContext, args: HostArgs| async move {
            let data = args.require("data")?.clone();
            let valid = matches!(&data, Value::Map(m) if m.iter().any(|(k, _)| k == &Value::Str("name".into())));
            let errors = if valid { vec![] } else { vec![Value::Str("name is required".into())] };
            Ok(Value::map([
                ("valid", Value::Bool(valid)),
                ("errors", Value::List(errors)),
                ("echo", data),
            ]))
        })
        .description("Checks that data has a name")
        .param("data", "map", true),
    )
    .unwrap();
    sp.register_host_tool(
        HostTool::new("climb", |ctx: HostCallContext, args: HostArgs| async move {
            let level = i64::try_from(args.require("level")?.clone())
                .map_err(|e| HostToolError::failed(e.to_string()))?;
            ctx.execute("descend", json!({"level": level - 1}))
                .await
                .map_err(|e| HostToolError::failed(e.to_string()))
        })
        .param("level", "int", true),
    )
    .unwrap();
    sp.register_host_tool(HostTool::new(
        "explode",
        |_ctx: HostCallContext, _args: HostArgs| async move {
            if true {
                panic!("the host tool blew up");
            }
            Ok(Value::Null)
        },
    ))
    .unwrap();
}

// The reference's `call_elixir_tool("validate", data={...})`, every value
// type through a host call, a host tool calling back into Python three levels
// deep on a one-worker pool, and a panicking host tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_calls_host_tools_nested_and_survives_a_panic() {
    let common::Started { sp, .. } = common::start(stateful(1, Affinity::Hint)).await;
    host_tools(&sp);
    let s = sp.new_session().await.unwrap();
    let ok = s
        .execute(
            "process_with_validation",
            json!({"data": {"name": "ada", "tags": ["x", "y"], "n": {"deep": 1}}}),
        )
        .await
        .unwrap();
    assert_eq!(common::field(&ok, "success"), &Value::Bool(true));
    assert_eq!(
        common::field(common::field(common::field(&ok, "echo"), "n"), "deep"),
        &Value::Int(1)
    );
    let refused = s
        .execute("process_with_validation", json!({"data": {"age": 3}}))
        .await
        .unwrap();
    assert_eq!(
        common::field(&refused, "error"),
        &Value::Str("Validation failed".into())
    );

    // Bytes, big ints, nested maps and tuples cross both ways unchanged.
    let payload = Value::map([
        ("bytes", Value::Bytes(vec![0u8, 255, 7].into())),
        ("big", Value::from(1i128 << 100)),
        (
            "nested",
            Value::map([(
                "t",
                Value::Tuple(vec![Value::Int(1), Value::Str("two".into())]),
            )]),
        ),
        ("name", Value::Str("x".into())),
    ]);
    let call = Call::new("call_host")
        .kwarg("name", "validate")
        .kwarg("kwargs", Value::map([("data", payload.clone())]));
    let echoed = s.run(call).await.unwrap();
    assert_eq!(common::field(&echoed, "echo"), &payload);

    // Python -> host -> Python -> host -> Python -> host -> Python, one worker.
    let t0 = Instant::now();
    let pids = s.execute("descend", json!({"level": 3})).await.unwrap();
    let Value::List(pids) = pids else {
        panic!("{pids:?}")
    };
    assert_eq!(pids.len(), 4);
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "all on the session's worker: {pids:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));

    let call = Call::new("call_host")
        .kwarg("name", "explode")
        .kwarg("kwargs", Value::map::<&str, Value>([]));
    match s.run(call).await {
        Err(Error::Python(e)) => {
            assert_eq!(e.python_type, "HostToolError");
            assert!(e.message.contains("the host tool blew up"), "{}", e.message);
        }
        other => panic!("expected HostToolError from Python, got {other:?}"),
    }
    // The registry and the worker are fine afterwards.
    let again = s
        .execute("process_with_validation", json!({"data": {"name": "b"}}))
        .await
        .unwrap();
    assert_eq!(common::field(&again, "success"), &Value::Bool(true));
    let unknown = Call::new("call_host")
        .kwarg("name", "nope")
        .kwarg("kwargs", Value::map::<&str, Value>([]));
    match s.run(unknown).await {
        Err(Error::Python(e)) => assert_eq!(e.python_type, "HostToolNotFound"),
        other => panic!("expected HostToolNotFound, got {other:?}"),
    }
    sp.shutdown().await;
}

// A session that hint moved keeps state on both workers: its release reaches
// both, and a worker among them that is gone is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_sessions_release_reaches_every_worker_it_used() {
    let common::Started { sp, mut events } = common::start(stateful(2, Affinity::Hint)).await;
    let (session, first, hold) = busy_session(&sp, 2000).await;
    let moved = session
        .execute("remember", json!({"key": "k2", "value": 2}))
        .await
        .unwrap();
    assert_ne!(int(moved), first, "hint moved the busy session");
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    assert!(matches!(
        hold.await.unwrap(),
        Err(Error::WorkerCrashed { .. })
    ));
    wait_event(
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, Event::WorkerExited(x) if x.pid == first as u32),
    )
    .await;
    match session.release().await {
        Err(Error::SessionCleanupFailed { reason, .. }) => {
            assert!(reason.contains("is gone"), "{reason}");
        }
        other => panic!("the first worker's share was forgotten: {other:?}"),
    }
    sp.shutdown().await;
}

// A caller that gives up cancels its Python tool, and with it the calls a
// host tool made back into Python on that tool's behalf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_cancels_what_its_host_tool_started() {
    let mut s = common::start(stateful(1, Affinity::Hint)).await;
    s.sp.register_host_tool(HostTool::new(
        "nap",
        |ctx: HostCallContext, _args: HostArgs| async move {
            ctx.execute("hold", json!({"ms": 3000}))
                .await
                .map_err(|e| HostToolError::failed(e.to_string()))
        },
    ))
    .unwrap();
    let session = s.sp.new_session().await.unwrap();
    let call = Call::new("call_host")
        .kwarg("name", "nap")
        .kwarg("kwargs", Value::map::<&str, Value>([]))
        .timeout(Duration::from_millis(400));
    match session.run(call).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    let Event::RequestCancelled(nested) = wait_event(
        &mut s.events,
        Duration::from_secs(2),
        |e| matches!(e, Event::RequestCancelled(c) if c.tool == "hold"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(nested.stage, "running");
    s.sp.shutdown().await;
}
