//! The gRPC API against real Python workers, through the generated tonic
//! client: tools and their errors (with ErrorInfo details), deadlines that
//! cancel the worker's call, streams in order and cancelled when dropped,
//! sessions with strict affinity, the universal FFI and its refs, session
//! variables and their watch, pool status, health (following a degraded
//! pool) and reflection, a Unix socket, and a shutdown that drains a stream
//! in flight while refusing new calls.

mod common;
mod grpc;

use std::time::{Duration, Instant};

use common::{fixture_pool, showcase, wait_event};
use futures::StreamExt as _;
use grpc::{api, channel, client, execute, info, kind, kwargs, loopback, serve, value};
use snakepit::{Event, ServeConfig, Value};
use snakepit_proto::v1;
use tokio::sync::broadcast;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Every wait of these tests ends within this long.
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_answer_and_failures_carry_their_details() {
    let mut s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;

    let sum = c
        .execute(execute("add", [("a", 2.into()), ("b", 3.into())]))
        .await
        .expect("add answers")
        .into_inner();
    assert_eq!(value(sum.value), Value::Int(5), "ints stay ints");
    let bytes = c
        .execute(execute("random_bytes", [("n", 3.into())]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(bytes.value), Value::bytes(vec![0u8, 1, 2]));

    let failed = c
        .execute(execute("fail", [("message", "boom".into())]))
        .await
        .expect_err("fail raises");
    assert_eq!(failed.code(), Code::Unknown);
    let details = info(&failed);
    assert_eq!(details.metadata["kind"], "python_exception");
    assert_eq!(details.metadata["python_type"], "ValueError");
    assert!(details.metadata["message"].contains("boom"));
    assert!(
        details.metadata["traceback"].contains("ValueError: boom"),
        "{:?}",
        details.metadata["traceback"]
    );

    let unknown = c.execute(execute("nope", [])).await.unwrap_err();
    assert_eq!(
        (unknown.code(), kind(&unknown).as_str()),
        (Code::NotFound, "unknown_tool")
    );
    let mut elsewhere = execute("add", []);
    elsewhere.pool = "absent".into();
    let no_pool = c.execute(elsewhere).await.unwrap_err();
    assert_eq!(
        (no_pool.code(), kind(&no_pool).as_str()),
        (Code::NotFound, "unknown_pool")
    );
    let missing = c
        .execute(execute("add", [("a", 1.into())]))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), kind(&missing).as_str()),
        (Code::InvalidArgument, "bad_arguments")
    );

    // Every call is counted by method and code.
    wait_event(&mut s.events, WAIT, |e| {
        matches!(e, Event::GrpcRequestFinished(f) if f.method == "Execute" && f.code == "NOT_FOUND")
    })
    .await;
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fails_the_call_and_cancels_it_on_the_worker() {
    let mut s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;
    let started = Instant::now();
    let late = c
        .execute(grpc::with_deadline(
            execute("sleep", [("ms", 5_000.into())]),
            Duration::from_millis(400),
        ))
        .await
        .expect_err("the deadline passes first");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(late.code(), Code::DeadlineExceeded);
    assert_eq!(kind(&late), "timeout");
    cancelled_while_running(&mut s.events, "sleep").await;
    // The showcase sleep stops when cancelled: the one worker is free again.
    let sum = tokio::time::timeout(
        WAIT,
        c.execute(execute("add", [("a", 1.into()), ("b", 1.into())])),
    )
    .await
    .expect("the worker is free")
    .unwrap();
    assert_eq!(value(sum.into_inner().value), Value::Int(2));
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_arrive_in_order_and_a_dropped_stream_stops_the_generator() {
    let mut s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;
    let items: Vec<v1::StreamItem> = c
        .execute_stream(execute(
            "progress",
            [("steps", 5.into()), ("delay_ms", 1.into())],
        ))
        .await
        .unwrap()
        .into_inner()
        .map(|item| item.expect("an item"))
        .collect()
        .await;
    assert_eq!(items.len(), 5);
    for (i, item) in items.into_iter().enumerate() {
        assert_eq!(item.seq, i as u64);
        let step = value(item.value);
        assert_eq!(common::field(&step, "step"), &Value::Int(i as i64 + 1));
    }

    // 1000 steps of 5 ms: 5 s unless the client's cancel reaches Python.
    let mut endless = c
        .execute_stream(execute(
            "progress",
            [("steps", 1000.into()), ("delay_ms", 5.into())],
        ))
        .await
        .unwrap()
        .into_inner();
    let first = endless.next().await.expect("a first item").unwrap();
    assert_eq!(first.seq, 0);
    drop(endless);
    // The call ends as the server drops its response, which drops the
    // runtime's stream, which cancels the generator: in that order.
    wait_event(&mut s.events, WAIT, |e| {
        matches!(e, Event::GrpcRequestFinished(f) if f.method == "ExecuteStream" && f.code == "CANCELLED")
    })
    .await;
    cancelled_while_running(&mut s.events, "progress").await;
    common::poll_status(s.sp.default_pool(), |st| st.in_flight == 0).await;
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_bounds_a_whole_stream() {
    let mut s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;
    let started = Instant::now();
    let request = grpc::with_deadline(
        execute("progress", [("steps", 100.into()), ("delay_ms", 50.into())]),
        Duration::from_millis(500),
    );
    let mut stream = c.execute_stream(request).await.unwrap().into_inner();
    let mut items = 0;
    let status = loop {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the stream moves")
        {
            Some(Ok(_)) => items += 1,
            Some(Err(status)) => break status,
            None => panic!("the stream ended before its deadline failed it"),
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(items > 0 && items < 100, "{items} items");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(kind(&status), "timeout");
    cancelled_while_running(&mut s.events, "progress").await;
    s.sp.shutdown().await;
}

/// Waits for the worker's call of `tool` to be cancelled, and checks it was
/// running (not still queued) when it was.
async fn cancelled_while_running(events: &mut broadcast::Receiver<Event>, tool: &str) {
    let Event::RequestCancelled(cancelled) = wait_event(
        events,
        WAIT,
        |e| matches!(e, Event::RequestCancelled(c) if c.tool == tool),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(cancelled.stage, "running", "{tool}");
}

// A payload larger than the pool's frames is refused with its kind; one
// larger still than the server's message limit is refused by the transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_the_workers_cannot_take_is_refused() {
    let mut cfg = showcase("grpc", 1);
    cfg.max_frame_bytes = 64 * 1024;
    let s = serve(vec![cfg], loopback()).await;
    let mut c = client(&s.addr).await;
    let echo = |n: usize| execute("echo", [("message", "x".repeat(n).into())]);
    let fits = c.execute(echo(1_000)).await.unwrap().into_inner();
    assert_eq!(value(fits.value), Value::from("x".repeat(1_000)));
    let big = c.execute(echo(100 * 1024)).await.unwrap_err();
    assert_eq!(
        (big.code(), kind(&big).as_str()),
        (Code::ResourceExhausted, "payload_too_large")
    );
    let huge = c.execute(echo(1024 * 1024)).await.unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    // Nothing hangs, and the worker is still there.
    let sum = c
        .execute(execute("add", [("a", 1.into()), ("b", 2.into())]))
        .await
        .unwrap();
    assert_eq!(value(sum.into_inner().value), Value::Int(3));
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_session_keeps_its_state_until_it_is_released() {
    let s = serve(vec![showcase("grpc", 2)], loopback()).await;
    let mut c = client(&s.addr).await;
    let created = c
        .create_session(v1::CreateSessionRequest {
            affinity: v1::Affinity::StrictQueue as i32,
            metadata: [("owner".to_string(), "test".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("s-"), "{}", created.id);
    assert_eq!(created.affinity, v1::Affinity::StrictQueue as i32);
    assert_eq!(created.pool, "grpc");
    let mut totals = Vec::new();
    for n in [1, 2, 3] {
        let mut tally = execute("tally", [("n", n.into())]);
        tally.session_id = created.id.clone();
        totals.push(value(c.execute(tally).await.unwrap().into_inner().value));
    }
    assert_eq!(totals, [Value::Int(1), Value::Int(3), Value::Int(6)]);

    let got = c
        .get_session(v1::SessionRequest {
            session_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.metadata["owner"], "test");
    assert_eq!(got.pools, ["grpc"]);
    assert!(got.last_used_unix_ms >= got.created_unix_ms);

    let session = v1::SessionRequest {
        session_id: created.id.clone(),
    };
    c.release_session(session.clone()).await.expect("released");
    let gone = c.get_session(session.clone()).await.unwrap_err();
    assert_eq!(
        (gone.code(), kind(&gone).as_str()),
        (Code::NotFound, "session_not_found")
    );
    let mut after = execute("tally", []);
    after.session_id = created.id;
    let refused = c.execute(after).await.unwrap_err();
    assert_eq!(kind(&refused), "session_not_found", "never opened again");
    let twice = c.release_session(session).await.unwrap_err();
    assert_eq!(twice.code(), Code::NotFound);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ffi_calls_python_and_keeps_refs_for_the_session() {
    let s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;
    let call = |module: &str, function: &str, args: Vec<Value>, session: &str| v1::FfiCallRequest {
        session_id: session.to_string(),
        module: module.to_string(),
        function: function.to_string(),
        args: args.into_iter().map(Into::into).collect(),
        ..Default::default()
    };

    // Without a session: a one-shot session of the call's own.
    let root = c
        .ffi_call(call("math", "sqrt", vec![16.into()], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(root.value), Value::Float(4.0));
    let pi = c
        .ffi_get(v1::FfiGetRequest {
            module: "math".into(),
            attr: "pi".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(pi.value), Value::Float(std::f64::consts::PI));
    let counted: Vec<Value> = c
        .ffi_stream(call("builtins", "range", vec![3.into()], ""))
        .await
        .unwrap()
        .into_inner()
        .map(|item| value(item.expect("an item").value))
        .collect()
        .await;
    assert_eq!(counted, [Value::Int(0), Value::Int(1), Value::Int(2)]);

    let session = c
        .create_session(v1::CreateSessionRequest::default())
        .await
        .unwrap()
        .into_inner()
        .id;
    let path = c
        .ffi_call(call(
            "pathlib",
            "PurePosixPath",
            vec!["/tmp/x.txt".into()],
            &session,
        ))
        .await
        .unwrap()
        .into_inner();
    let Value::Ref(path) = value(path.value) else {
        panic!("a path stays in the worker");
    };
    let target = Some(v1::ObjectRef {
        id: path.id.clone(),
        session_id: path.session_id.clone(),
        type_name: path.type_name.clone(),
        repr: path.repr.clone(),
    });
    // No session named: the ref's own.
    let attr = |name: &str| v1::FfiAttrRequest {
        target: target.clone(),
        name: name.to_string(),
        ..Default::default()
    };
    let name = c.ffi_attr(attr("name")).await.unwrap().into_inner();
    assert_eq!(value(name.value), Value::from("x.txt"));
    let renamed = c
        .ffi_method(v1::FfiMethodRequest {
            target: target.clone(),
            name: "with_suffix".into(),
            args: vec![Value::from(".py").into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(value(renamed.value), Value::Ref(_)));

    let space = c
        .ffi_call_class(v1::FfiCallRequest {
            session_id: session.clone(),
            module: "types".into(),
            function: "SimpleNamespace".into(),
            kwargs: kwargs([("a", 1.into())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Value::Ref(space) = value(space.value) else {
        panic!("a namespace stays in the worker");
    };
    let space = Some(v1::ObjectRef {
        id: space.id,
        session_id: space.session_id,
        type_name: space.type_name,
        repr: space.repr,
    });
    c.ffi_set_attr(v1::FfiSetAttrRequest {
        target: space.clone(),
        name: "b".into(),
        value: Some(Value::from(2).into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let b = c
        .ffi_attr(v1::FfiAttrRequest {
            target: space,
            name: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(b.value), Value::Int(2));

    let numbers = Value::List(vec![1.into(), 2.into(), 3.into()]);
    let iterator = c
        .ffi_call(call("builtins", "iter", vec![numbers], &session))
        .await
        .unwrap()
        .into_inner();
    let Value::StreamRef(iterator) = value(iterator.value) else {
        panic!("an iterator comes back as a stream ref");
    };
    let next = |max_items: u32| v1::FfiNextRequest {
        stream: Some(v1::StreamRef {
            id: iterator.id.clone(),
            session_id: iterator.session_id.clone(),
            type_name: iterator.type_name.clone(),
        }),
        max_items,
        ..Default::default()
    };
    let first = c.ffi_next(next(2)).await.unwrap().into_inner();
    assert_eq!((first.items.len(), first.done), (2, false));
    let rest = c.ffi_next(next(2)).await.unwrap().into_inner();
    assert_eq!((rest.items.len(), rest.done), (1, true));
    assert_eq!(value(rest.items.into_iter().next()), Value::Int(3));

    let release = v1::FfiReleaseRefRequest {
        target: Some(v1::ffi_release_ref_request::Target::Ref(
            target.clone().unwrap(),
        )),
        ..Default::default()
    };
    c.ffi_release_ref(release.clone()).await.expect("released");
    c.ffi_release_ref(release).await.expect("twice is fine");
    let gone = c.ffi_attr(attr("name")).await.unwrap_err();
    assert_eq!(
        (gone.code(), kind(&gone).as_str()),
        (Code::NotFound, "ref_not_found")
    );
    c.release_session(v1::SessionRequest {
        session_id: session,
    })
    .await
    .unwrap();
    let after = c.ffi_attr(attr("suffix")).await.unwrap_err();
    assert_eq!(after.code(), Code::NotFound, "{after:?}");
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_register_set_and_watch() {
    let s = serve(vec![showcase("grpc", 1)], loopback()).await;
    let mut c = client(&s.addr).await;
    let session = c
        .create_session(v1::CreateSessionRequest::default())
        .await
        .unwrap()
        .into_inner()
        .id;
    let registered = c
        .register_variable(v1::RegisterVariableRequest {
            session_id: session.clone(),
            name: "temperature".into(),
            r#type: "float".into(),
            initial: Some(Value::from(0.5).into()),
            constraints: kwargs([("min", 0.0.into()), ("max", 1.0.into())]),
            description: "sampling temperature".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (registered.r#type.as_str(), registered.version),
        ("float", 0)
    );
    assert_eq!(registered.description, "sampling temperature");
    assert_eq!(
        value(registered.constraints.get("max").cloned()),
        Value::Float(1.0)
    );

    let mut watch = c
        .watch_variables(v1::WatchVariablesRequest {
            session_id: session.clone(),
            variables: vec!["temperature".into()],
            include_initial: true,
        })
        .await
        .unwrap()
        .into_inner();
    let initial = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the initial value")
        .unwrap()
        .unwrap();
    assert_eq!(initial.source, "initial");
    assert_eq!(value(initial.new_value), Value::Float(0.5));

    let set = |v: Value| v1::SetVariableRequest {
        session_id: session.clone(),
        variable: "temperature".into(),
        value: Some(v.into()),
    };
    let updated = c.set_variable(set(0.7.into())).await.unwrap().into_inner();
    assert_eq!(updated.version, 1);
    let change = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the change")
        .unwrap()
        .unwrap();
    assert_eq!(
        (value(change.old_value), value(change.new_value)),
        (Value::Float(0.5), Value::Float(0.7))
    );
    assert_eq!((change.version, change.source.as_str()), (1, "host"));
    assert_eq!(change.session_id, session);

    let refused = c.set_variable(set(2.0.into())).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let details = info(&refused);
    assert_eq!(details.metadata["kind"], "variable");
    assert_eq!(details.metadata["constraint"], "max");

    let got = c
        .get_variable(v1::VariableRequest {
            session_id: session.clone(),
            variable: registered.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(got.value), Value::Float(0.7));
    let listed = c
        .list_variables(v1::SessionRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.variables.len(), 1);
    let absent = c
        .get_variable(v1::VariableRequest {
            session_id: session.clone(),
            variable: "top_p".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);
    let bad_type = c
        .register_variable(v1::RegisterVariableRequest {
            session_id: session.clone(),
            name: "colour".into(),
            r#type: "colour".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_type.code(), Code::InvalidArgument);

    // The watch ends with its session.
    c.release_session(v1::SessionRequest {
        session_id: session,
    })
    .await
    .unwrap();
    let end = tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("the watch ends");
    assert!(end.is_none(), "{end:?}");
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_status_health_and_reflection() {
    let s = serve(vec![showcase("grpc", 2)], loopback()).await;
    let ch = channel(&s.addr).await;
    let mut c = api(ch.clone());
    let status = c
        .pool_status(v1::PoolStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let [pool] = status.pools.as_slice() else {
        panic!("one pool: {status:?}");
    };
    assert_eq!(
        (pool.name.as_str(), pool.size, pool.workers_up),
        ("grpc", 2, 2)
    );
    assert!(!pool.degraded);
    assert!(pool.workers.iter().all(|w| w.ready && w.pid > 0));
    assert!(
        pool.tools
            .iter()
            .any(|t| t.name == "progress" && t.supports_streaming)
    );
    let absent = c
        .pool_status(v1::PoolStatusRequest {
            pool: "absent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);

    for service in ["", "snakepit.v1.Snakepit", "snakepit.pool.grpc"] {
        let up = grpc::health(ch.clone(), service).await.unwrap();
        assert_eq!(up, ServingStatus::Serving, "{service:?}");
    }
    let unknown = grpc::health(ch.clone(), "snakepit.pool.absent")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let services = grpc::reflected_services(ch).await;
    for expected in ["snakepit.v1.Snakepit", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|s| s == expected), "{services:?}");
    }
    s.sp.shutdown().await;
}

// A pool whose adapter fails to import on restart: its health and the
// server's go NOT_SERVING while it is degraded, and back to SERVING once it
// recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_degraded_pool() {
    let marker = std::env::temp_dir().join(format!("snakepit-grpc-flaky-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut cfg = fixture_pool("flaky", "flaky_import.FlakyAdapter", 1);
    cfg.env
        .insert("FLAKY_IMPORT_MARKER".into(), marker.display().to_string());
    cfg.restart.max_restarts = 2;
    cfg.restart.restart_window_ms = 1_000;
    cfg.restart.backoff_initial_ms = 20;
    cfg.restart.backoff_max_ms = 200;
    let mut s = serve(vec![cfg], loopback()).await;
    let ch = channel(&s.addr).await;
    assert_eq!(
        grpc::health(ch.clone(), "snakepit.pool.flaky")
            .await
            .unwrap(),
        ServingStatus::Serving
    );

    let pid = s.sp.default_pool().status().await.unwrap().workers[0]
        .pid
        .unwrap();
    std::fs::write(&marker, "fail").unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_event(&mut s.events, Duration::from_secs(8), |e| {
        matches!(e, Event::PoolDegraded(_))
    })
    .await;
    health_becomes(&ch, "snakepit.pool.flaky", ServingStatus::NotServing).await;
    health_becomes(&ch, "", ServingStatus::NotServing).await;

    std::fs::remove_file(&marker).unwrap();
    wait_event(&mut s.events, Duration::from_secs(8), |e| {
        matches!(e, Event::PoolRecovered(_))
    })
    .await;
    health_becomes(&ch, "snakepit.pool.flaky", ServingStatus::Serving).await;
    health_becomes(&ch, "snakepit.v1.Snakepit", ServingStatus::Serving).await;
    s.sp.shutdown().await;
}

/// Waits (for `WAIT` at most) until the health of `service`, as a Watch
/// streams its changes, is `want`.
async fn health_becomes(ch: &tonic::transport::Channel, service: &str, want: ServingStatus) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut watch = HealthClient::new(ch.clone())
        .watch(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut now = None;
    let reached = tokio::time::timeout(WAIT, async {
        while let Some(answer) = watch.next().await {
            now = Some(answer.unwrap().status());
            if now == Some(want) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(reached, Ok(true)), "{service:?} stayed {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_serves_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snakepit.sock");
    let config = ServeConfig::new(format!("unix:{}", path.display()).parse().unwrap());
    let s = serve(vec![showcase("grpc", 1)], config).await;
    assert_eq!(s.addr.to_string(), format!("unix:{}", path.display()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may connect");

    let sum = client(&s.addr)
        .await
        .execute(execute("add", [("a", 40.into()), ("b", 2.into())]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value(sum.value), Value::Int(42));
    s.sp.shutdown().await;
    assert!(!path.exists(), "the socket file goes with the server");
}

// Shutdown drains: a stream in flight when it starts runs to its end, while
// new calls are refused and health turns NOT_SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_streams_in_flight_and_refuses_new_calls() {
    let mut s = serve(vec![showcase("grpc", 2)], loopback()).await;
    let ch = channel(&s.addr).await;
    let mut c = api(ch.clone());
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let up = health.next().await.unwrap().unwrap();
    assert_eq!(up.status(), ServingStatus::Serving);

    // 10 steps of 100 ms: a second of work in flight.
    let mut stream = c
        .execute_stream(execute(
            "progress",
            [("steps", 10.into()), ("delay_ms", 100.into())],
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.seq, 0);

    let sp = s.sp.clone();
    let shutdown = tokio::spawn(async move {
        sp.shutdown_with_grace(Duration::from_secs(4)).await;
    });
    let down = tokio::time::timeout(WAIT, health.next())
        .await
        .expect("health changes")
        .unwrap()
        .unwrap();
    assert_eq!(down.status(), ServingStatus::NotServing);
    drop(health);
    let refused = c
        .execute(execute("add", [("a", 1.into()), ("b", 1.into())]))
        .await
        .expect_err("no new calls once shutdown began");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(kind(&refused), "shutting_down");

    let mut seqs = vec![first.seq];
    while let Some(item) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream goes on")
    {
        seqs.push(item.expect("no item fails").seq);
    }
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<u64>>(),
        "the stream ran to its end"
    );
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown ends once drained")
        .unwrap();
    let Event::ServerStopped(stopped) = wait_event(&mut s.events, WAIT, |e| {
        matches!(e, Event::ServerStopped(_))
    })
    .await
    else {
        unreachable!()
    };
    assert!(stopped.drained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_serves_once_even_when_asked_twice_at_once() {
    let sp = snakepit::Snakepit::builder()
        .pool(showcase("once", 1))
        .start()
        .await
        .expect("the runtime starts");
    let (first, second) = tokio::join!(sp.serve(loopback()), sp.serve(loopback()));
    let (served, refused) = match (first, second) {
        (Ok(addr), Err(err)) | (Err(err), Ok(addr)) => (addr, err),
        other => panic!("exactly one serve must start a server: {other:?}"),
    };
    assert!(
        matches!(&refused, snakepit::ServeError::AlreadyServing(at) if *at == served),
        "{refused:?}"
    );
    assert_eq!(sp.server_addr(), Some(&served));
    sp.shutdown().await;
}

// The correlation id a gRPC caller sends as the `x-snakepit-correlation-id`
// header (or in the request's metadata) is the call's: Python sees it, and
// the host's request events carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_id_header_reaches_python_and_the_hosts_events() {
    let pool = fixture_pool("default", "migrated_adapter.MigratedAdapter", 1);
    let mut s = serve(vec![pool], loopback()).await;
    let mut c = client(&s.addr).await;
    let mut request = tonic::Request::new(execute("summarise", [("text", "a b".into())]));
    request.metadata_mut().insert(
        "x-snakepit-correlation-id",
        "grpc-corr-1".parse().expect("ascii"),
    );
    let r = value(c.execute(request).await.unwrap().into_inner().value);
    assert_eq!(
        common::field(&r, "correlation_id"),
        &Value::Str("grpc-corr-1".into())
    );
    let Event::RequestStopped(done) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::RequestStopped(r) if r.tool == "summarise"),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(&*done.correlation_id, "grpc-corr-1");
    // In the request's metadata it wins over the header.
    let mut req = execute("summarise", [("text", "a".into())]);
    req.metadata
        .insert("x-snakepit-correlation-id".into(), "in-metadata".into());
    let mut request = tonic::Request::new(req);
    request.metadata_mut().insert(
        "x-snakepit-correlation-id",
        "in-header".parse().expect("ascii"),
    );
    let r = value(c.execute(request).await.unwrap().into_inner().value);
    assert_eq!(
        common::field(&r, "correlation_id"),
        &Value::Str("in-metadata".into())
    );
    s.sp.shutdown().await;
}
