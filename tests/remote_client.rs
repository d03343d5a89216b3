//! `snakepit::remote::RemoteClient` against a real server (a runtime serving
//! on a loopback port or a Unix socket, real Python workers): tools, streams
//! and their errors read back as `RemoteError` (kind, Python type, traceback,
//! code), a deadline, sessions with strict affinity, the universal FFI with
//! its refs, session variables and their watch, pool status, the token,
//! TLS and mTLS.

mod common;
mod grpc;

use std::time::Duration;

use common::showcase;
use futures::StreamExt as _;
use grpc::{loopback, serve};
use snakepit::remote::{ClientIdentity, RemoteClient, RemoteError, RemoteOptions, SessionOptions};
use snakepit::server::Token;
use snakepit::{
    Affinity, Call, Constraints, ListenAddr, ServeConfig, StreamRefValue, Value, VarType,
};
use tonic::Code;

async fn connect(addr: &ListenAddr, options: RemoteOptions) -> RemoteClient {
    RemoteClient::connect(&addr.to_string(), options)
        .await
        .expect("the client connects")
}

/// The code and kind of a failure.
fn code_kind(err: &RemoteError) -> (Option<Code>, Option<&str>) {
    (err.code(), err.kind())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_streams_and_their_failures() {
    let s = serve(vec![showcase("remote", 1)], loopback()).await;
    let c = connect(&s.addr, RemoteOptions::default()).await;

    let sum = c
        .execute(Call::new("add").kwarg("a", 2).kwarg("b", 3))
        .await
        .expect("add answers");
    assert_eq!(sum, Value::Int(5));
    let items: Vec<Value> = c
        .execute_stream(Call::new("progress").kwarg("steps", 3).kwarg("delay_ms", 0))
        .await
        .expect("progress streams")
        .map(|item| item.expect("an item").get("step").cloned().unwrap())
        .collect()
        .await;
    assert_eq!(items, [Value::Int(1), Value::Int(2), Value::Int(3)]);

    let err = c
        .execute(Call::new("fail").kwarg("message", "no luck"))
        .await
        .expect_err("fail raises");
    assert_eq!(
        code_kind(&err),
        (Some(Code::Unknown), Some("python_exception"))
    );
    assert_eq!(err.python_type(), Some("ValueError"));
    assert!(err.traceback().unwrap().contains("ValueError: no luck"));
    assert_eq!(err.to_string(), "python raised ValueError: no luck");
    assert_eq!(err.status().unwrap().message, "no luck");

    let err = c.execute(Call::new("nope")).await.unwrap_err();
    assert_eq!(
        code_kind(&err),
        (Some(Code::NotFound), Some("unknown_tool"))
    );
    let err = c.execute(Call::new("add").kwarg("a", 1)).await.unwrap_err();
    assert_eq!(
        code_kind(&err),
        (Some(Code::InvalidArgument), Some("bad_arguments"))
    );
    let err = c
        .on_pool("absent")
        .execute(Call::new("noop"))
        .await
        .unwrap_err();
    assert_eq!(
        code_kind(&err),
        (Some(Code::NotFound), Some("unknown_pool"))
    );

    // The deadline travels as grpc-timeout and becomes the call's timeout.
    let mut slow = Call::new("sleep").kwarg("ms", 5_000);
    slow.timeout = Some(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = c.execute(slow).await.unwrap_err();
    assert_eq!(
        code_kind(&err),
        (Some(Code::DeadlineExceeded), Some("timeout"))
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");

    let pools = c.pool_status(None).await.expect("status");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name, "remote");
    assert!(
        pools[0]
            .tools
            .iter()
            .any(|t| t.name == "progress" && t.supports_streaming)
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_state_and_refs_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote.sock");
    let config = ServeConfig::new(format!("unix:{}", path.display()).parse().unwrap());
    let s = serve(vec![showcase("remote", 2)], config).await;
    assert!(matches!(s.addr, ListenAddr::Unix(_)));
    let c = connect(&s.addr, RemoteOptions::default()).await;

    let info = c
        .create_session(SessionOptions {
            affinity: Some(Affinity::StrictQueue),
            ..SessionOptions::default()
        })
        .await
        .expect("a session");
    assert!(!info.id.is_empty());
    let session = c.in_session(&info.id);
    let mut tallies = Vec::new();
    for _ in 0..3 {
        tallies.push(session.execute(Call::new("tally")).await.unwrap());
    }
    assert_eq!(tallies, [Value::Int(1), Value::Int(2), Value::Int(3)]);
    assert_eq!(c.get_session(&info.id).await.unwrap().id, info.id);

    // The universal FFI: values, refs, methods, attributes, streams.
    assert_eq!(
        c.call("math", "sqrt", [16], ()).await.unwrap(),
        Value::Float(4.0)
    );
    assert_eq!(
        c.get("math", "pi").await.unwrap(),
        Value::Float(std::f64::consts::PI)
    );
    let Value::Ref(buffer) = session.call_class("io", "StringIO", (), ()).await.unwrap() else {
        panic!("a StringIO is a ref")
    };
    session.method(&buffer, "write", ["abc"], ()).await.unwrap();
    let text = session.method(&buffer, "getvalue", (), ()).await.unwrap();
    assert_eq!(text, Value::from("abc"));
    let Value::Ref(ns) = session
        .call_class("types", "SimpleNamespace", (), [("x", 1)])
        .await
        .unwrap()
    else {
        panic!("a namespace is a ref")
    };
    session.set_attr(&ns, "x", 41).await.unwrap();
    assert_eq!(session.attr(&ns, "x").await.unwrap(), Value::Int(41));
    let streamed: Vec<Value> = session
        .stream("builtins", "range", [3], ())
        .await
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(streamed, [Value::Int(0), Value::Int(1), Value::Int(2)]);
    let iter: StreamRefValue = session
        .call("builtins", "iter", [Value::from(vec![7, 8, 9])], ())
        .await
        .unwrap()
        .extract()
        .unwrap();
    let first = session.next(&iter, 2).await.unwrap();
    assert_eq!(
        (first.items, first.done),
        (vec![Value::Int(7), Value::Int(8)], false)
    );
    let rest = session.next(&iter, 5).await.unwrap();
    assert_eq!((rest.items, rest.done), (vec![Value::Int(9)], true));
    session.release_stream_ref(&iter).await.unwrap();

    session.release_ref(&buffer).await.unwrap();
    session
        .release_ref(&buffer)
        .await
        .expect("releasing twice is fine");
    let err = session
        .method(&buffer, "getvalue", (), ())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("ref_not_found"), "{err}");

    c.release_session(&info.id).await.unwrap();
    let err = c.get_session(&info.id).await.unwrap_err();
    assert_eq!(
        code_kind(&err),
        (Some(Code::NotFound), Some("session_not_found"))
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_variables_are_typed_checked_and_watched() {
    let s = serve(vec![showcase("remote", 1)], loopback()).await;
    let c = connect(&s.addr, RemoteOptions::default()).await;
    let id = c
        .create_session(SessionOptions::default())
        .await
        .expect("a session")
        .id;
    let bounds = Constraints {
        min: Some(0.0),
        max: Some(1.0),
        ..Constraints::default()
    };
    let registered = c
        .register_variable(&id, "temperature", VarType::Float, 0.5, &bounds, "sampling")
        .await
        .expect("registered");
    assert_eq!(
        (registered.r#type.as_str(), registered.version),
        ("float", 0)
    );
    assert_eq!(registered.constraints.len(), 2, "min and max travel");
    let mut watch = c
        .watch_variables(&id, &["temperature"], false)
        .await
        .expect("a watch");

    // An int is a float here, normalized as the runtime does it.
    let set = c.set_variable(&id, "temperature", 1).await.expect("set");
    assert_eq!(
        (set.value.map(Value::from), set.version),
        (Some(Value::Float(1.0)), 1)
    );
    let err = c
        .set_variable(&id, "temperature", 7.5)
        .await
        .expect_err("above max");
    assert_eq!(
        code_kind(&err),
        (Some(Code::InvalidArgument), Some("variable"))
    );
    let update = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch answers in time")
        .expect("an update")
        .expect("not an error");
    assert_eq!(
        (
            update.name.as_str(),
            update.version,
            update.new_value.map(Value::from)
        ),
        ("temperature", 1, Some(Value::Float(1.0)))
    );
    let got = c.get_variable(&id, "temperature").await.expect("get");
    assert_eq!(got.version, 1, "the refused set changed nothing");
    let names: Vec<String> = c
        .list_variables(&id)
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["temperature"]);
    let err = c
        .get_variable(&id, "nope")
        .await
        .expect_err("no such variable");
    assert_eq!(code_kind(&err), (Some(Code::NotFound), Some("variable")));

    c.release_session(&id).await.expect("released");
    let ended = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch ends with its session");
    assert!(
        matches!(ended, None | Some(Err(_))),
        "the watch went on after its session: {ended:?}"
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_on_every_call() {
    let config = loopback().token(Token::new("s3cret").unwrap());
    let s = serve(vec![showcase("remote", 1)], config).await;
    for token in [None, Some("wrong")] {
        let c = connect(
            &s.addr,
            RemoteOptions {
                token: token.map(String::from),
                ..RemoteOptions::default()
            },
        )
        .await;
        let err = c.execute(Call::new("noop")).await.unwrap_err();
        assert_eq!(
            code_kind(&err),
            (Some(Code::Unauthenticated), Some("unauthenticated"))
        );
        assert!(err.to_string().contains("token"), "{err}");
    }
    let c = connect(
        &s.addr,
        RemoteOptions {
            token: Some("s3cret".into()),
            ..RemoteOptions::default()
        },
    )
    .await;
    assert_eq!(c.execute(Call::new("noop")).await.unwrap(), Value::Null);
    assert_eq!(
        c.call("operator", "add", (1, 2), ()).await.unwrap(),
        Value::Int(3)
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = grpc::self_signed(dir.path(), "server");
    let (ca_path, client_cert_pem, client_key_pem) = grpc::client_ca(dir.path());
    let s = serve(
        vec![showcase("remote", 1)],
        loopback().tls(&cert, &key).client_ca(&ca_path),
    )
    .await;
    let options = |identity: Option<ClientIdentity>| RemoteOptions {
        ca_pem: Some(cert_pem.clone().into_bytes()),
        identity,
        tls_domain: Some("localhost".into()),
        connect_timeout: Duration::from_secs(5),
        timeout: Some(Duration::from_secs(5)),
        ..RemoteOptions::default()
    };
    // Without a client certificate: refused at connect or at the first call.
    if let Ok(c) = RemoteClient::connect(&s.addr.to_string(), options(None)).await {
        c.execute(Call::new("noop"))
            .await
            .expect_err("no certificate");
    }
    let identity = ClientIdentity {
        cert_pem: client_cert_pem.clone().into_bytes(),
        key_pem: client_key_pem.clone().into_bytes(),
    };
    let c = connect(&s.addr, options(Some(identity))).await;
    assert_eq!(
        c.execute(Call::new("add").kwarg("a", 2).kwarg("b", 3))
            .await
            .unwrap(),
        Value::Int(5)
    );
    s.sp.shutdown().await;
}
