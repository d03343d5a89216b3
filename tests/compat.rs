//! Adapters as users migrating to snakepit have them, on real workers: their
//! own logger, chunk class and conversion methods, an object that cannot
//! cross (a marker, a ref or an error, as the pool says), telemetry spans with
//! the request's correlation id, the thread-safe adapter's tracker and
//! statistics in the thread profile, and the shipped adapters under their
//! configured module paths, run through `snakepit exec` as a user runs them.

mod common;

use std::time::Duration;

use common::{fixture_pool, wait_event};
use serde_json::Value as Json;
use snakepit::{
    Call, Error, Event, HostArgs, HostCallContext, HostTool, Profile, Unserializable, Value,
};

/// The JSON lines of a successful `snakepit exec ARGS`.
fn exec_ok(args: &[&str]) -> Vec<Json> {
    let (ok, stdout, stderr) = common::exec(args);
    assert!(ok, "exec {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const MIGRATED: [&str; 4] = [
    "--python-path",
    "tests/fixtures",
    "--adapter",
    "migrated_adapter.MigratedAdapter",
];

fn is_marker_of(v: &Json, type_name: &str) -> bool {
    v["__ffi_unserializable__"] == Json::Bool(true) && v["__type__"] == type_name
}

#[test]
fn a_migrated_adapter_runs_unchanged_under_exec() {
    let mut args = MIGRATED.to_vec();
    args.extend(["summarise", "--args", r#"{"text": "three small words"}"#]);
    let out = exec_ok(&args);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(r["summary"], serde_json::json!({"words": 3, "chars": 17}));
    assert!(is_marker_of(&r["handle"], "migrated_adapter.Opaque"), "{r}");
    // exec runs the tool in a session of its own, and every request has a
    // correlation id.
    assert!(!r["session_id"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["correlation_id"].as_str().unwrap().len(), 36, "{r}");

    let mut args = MIGRATED.to_vec();
    args.extend(["words", "--args", r#"{"text": "one two three"}"#]);
    let out = exec_ok(&args);
    let words: Vec<_> = out.iter().map(|c| c["word"].as_str().unwrap()).collect();
    assert_eq!(words, ["one", "two", "three"]);
    assert_eq!(
        out[1]["summary"],
        serde_json::json!({"words": 1, "chars": 3})
    );
}

#[test]
fn the_shipped_adapters_resolve_under_their_configured_paths() {
    let out = exec_ok(&[
        "process_text",
        "--adapter",
        "snakepit_bridge.adapters.showcase.ShowcaseAdapter",
        "--args",
        r#"{"text": "Hello", "operation": "upper"}"#,
    ]);
    assert_eq!(out[0]["result"], "HELLO", "{out:?}");
    // The thread-safe adapter under its path, in the thread profile.
    let out = exec_ok(&[
        "--adapter",
        "snakepit_bridge.adapters.threaded_showcase.ThreadedShowcaseAdapter",
        "--profile",
        "thread",
        "process_batch",
        "--args",
        r#"{"items": [1.0, 2.0, 3.0]}"#,
    ]);
    assert!(out[0].is_object(), "{out:?}");
    // The template starts and answers.
    let out = exec_ok(&[
        "--adapter",
        "snakepit_bridge.adapters.template.TemplateAdapter",
        "add",
        "--args",
        r#"{"a": 2, "b": 3}"#,
    ]);
    assert_eq!(out[0], serde_json::json!(5), "{out:?}");
}

#[test]
fn a_thread_safe_adapter_reads_its_tracker_under_exec_in_the_thread_profile() {
    let out = exec_ok(&[
        "--python-path",
        "tests/fixtures",
        "--adapter",
        "migrated_threaded.TrackedAdapter",
        "--profile",
        "thread",
        "stats",
    ]);
    let r = &out[0];
    assert!(r["tracker"]["total_requests"].is_u64(), "{r}");
    assert!(r["adapter_requests"].is_u64(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_counts_concurrent_requests_in_the_thread_profile() {
    let mut cfg = fixture_pool("threads", "migrated_threaded.TrackedAdapter", 1);
    cfg.profile = Profile::Thread;
    cfg.threads_per_worker = 4;
    let s = common::start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let calls = (0..20).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.execute(Call::new("work")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let stats = pool.execute(Call::new("stats")).await.unwrap();
    let int = |v: &Value| i64::try_from(v.clone()).unwrap();
    assert_eq!(int(common::field(&stats, "done")), 20);
    let tracker = common::field(&stats, "tracker");
    // Each `work` counts twice: as a thread-safe method and in its
    // track_request block.
    assert_eq!(int(common::field(tracker, "total_requests")), 40);
    assert_eq!(int(common::field(tracker, "active_requests")), 0);
    assert_eq!(int(common::field(&stats, "adapter_requests")), 40);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correlation_id_reaches_python_and_the_hosts_events() {
    let mut s = common::start(fixture_pool("m", "migrated_adapter.MigratedAdapter", 1)).await;
    let pool = s.sp.default_pool().clone();
    let cid = "order-7-correlation";
    let call = Call::new("summarise")
        .kwarg("text", "a b")
        .correlation_id(cid);
    let r = pool.execute(call).await.unwrap();
    assert_eq!(common::field(&r, "correlation_id"), &Value::Str(cid.into()));
    let marker = common::field(&r, "handle");
    let info = marker.unserializable_info().expect("a marker");
    assert_eq!(info.type_name, "migrated_adapter.Opaque");
    assert!(snakepit::serialization::is_unserializable(marker));
    let Event::PythonEvent(span) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::PythonEvent(p) if p.name == "summarise"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(span.correlation_id(), Some(cid));
    let Event::RequestStopped(done) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::RequestStopped(r) if r.tool == "summarise"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(&*done.correlation_id, cid);

    // A call without one gets a fresh id, the same in Python and on the host.
    let r = pool
        .execute(Call::new("summarise").kwarg("text", "x"))
        .await
        .unwrap();
    let Value::Str(given) = common::field(&r, "correlation_id").clone() else {
        panic!("{r:?}")
    };
    assert_eq!(given.len(), 36);
    let Event::RequestStopped(done) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::RequestStopped(r) if r.tool == "summarise"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(*done.correlation_id, *given);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_chooses_what_an_object_with_no_wire_form_becomes() {
    let mut cfg = fixture_pool("refs", "migrated_adapter.MigratedAdapter", 1);
    cfg.unserializable = Unserializable::Ref;
    let s = common::start(cfg).await;
    let session = s.sp.new_session().await.unwrap();
    let r = session
        .execute("summarise", serde_json::json!({"text": "a"}))
        .await
        .unwrap();
    match common::field(&r, "handle") {
        Value::Ref(r) => assert!(r.type_name.contains("Opaque"), "{r:?}"),
        other => panic!("expected a ref, got {other:?}"),
    }
    s.sp.shutdown().await;

    let mut cfg = fixture_pool("strict", "migrated_adapter.MigratedAdapter", 1);
    cfg.unserializable = Unserializable::Error;
    let s = common::start(cfg).await;
    let err =
        s.sp.default_pool()
            .execute(Call::new("summarise").kwarg("text", "a"))
            .await
            .unwrap_err();
    match &err {
        Error::Encoding { message } => assert!(message.contains("Opaque"), "{message}"),
        other => panic!("expected an encoding error, got {other:?}"),
    }
    s.sp.shutdown().await;
}

// A host tool sees the correlation id of the Python code that called it, and
// its calls back into Python carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_carries_the_correlation_id_there_and_back() {
    let s = common::start(fixture_pool("m", "migrated_adapter.MigratedAdapter", 1)).await;
    s.sp.register_host_tool(HostTool::new(
        "whoami",
        |ctx: HostCallContext, _args: HostArgs| async move {
            let host_saw = ctx.correlation_id().map(str::to_string);
            let python_saw = ctx
                .execute("my_correlation", Value::Null)
                .await
                .map_err(|e| snakepit::HostToolError::failed(e.to_string()))?;
            Ok(Value::List(vec![Value::from(host_saw), python_saw]))
        },
    ))
    .unwrap();
    let session = s.sp.new_session().await.unwrap();
    let r = session
        .run(Call::new("ask_host").correlation_id("chain-42"))
        .await
        .unwrap();
    assert_eq!(
        r,
        Value::List(vec![
            Value::Str("chain-42".into()),
            Value::Str("chain-42".into())
        ])
    );
    s.sp.shutdown().await;
}
