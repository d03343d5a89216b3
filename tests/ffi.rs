//! The universal FFI against real Python workers: calls, refs, type
//! fidelity, streams, context managers, callbacks, helpers, and the errors
//! each of them can end in.

#![allow(clippy::approx_constant)] // 3.14159 and 3.14 are the README's examples

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt as _;
use num_bigint::BigInt;
use snakepit::{
    Affinity, Call, ConversionError, Error, Ffi, ObjectRef, PoolConfig, Snakepit, StreamRefValue,
    Temporal, TemporalKind, Value,
};

/// A pool whose helpers come from `tests/fixtures/ffi_helpers`.
fn ffi_pool(size: usize) -> PoolConfig {
    let mut cfg = common::showcase("ffi", size);
    cfg.ffi.helper_dirs = vec![common::fixtures_dir().join("ffi_helpers")];
    cfg
}

async fn start(cfg: PoolConfig) -> Snakepit {
    Snakepit::builder()
        .with_test_deps(true) // numpy, for the ndarray and ML-error cases
        .pool(cfg)
        .start()
        .await
        .expect("runtime starts")
}

/// Awaits a call that must succeed and converts its value.
async fn ok<T: TryFrom<Value, Error = ConversionError>>(
    call: impl std::future::Future<Output = Result<Value, Error>>,
) -> T {
    call.await
        .expect("the call succeeds")
        .extract()
        .expect("the value converts")
}

/// The Python exception type a call failed with (panics on anything else).
fn python_type(result: Result<Value, Error>) -> String {
    match result {
        Err(Error::Python(e)) => e.python_type,
        other => panic!("expected a Python exception, got {other:?}"),
    }
}

fn obj(v: Value) -> ObjectRef {
    v.extract().expect("an object ref")
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_functions_and_reads_module_attributes() {
    let sp = start(ffi_pool(1)).await;
    let root: f64 = ok(sp.call("math", "sqrt", [16], ())).await;
    assert_eq!(root, 4.0);
    let rounded = sp
        .call("builtins", "round", [3.14159], [("ndigits", 2)])
        .await
        .unwrap();
    assert_eq!(rounded, Value::Float(3.14));
    let pi: f64 = ok(sp.get("math", "pi")).await;
    assert_eq!(pi, std::f64::consts::PI);
    // Dotted names reach into classes.
    let joined: String = ok(sp.call("os.path", "join", ["/tmp", "x.txt"], ())).await;
    assert_eq!(joined, "/tmp/x.txt");

    let digest = sp
        .call("hashlib", "md5", [Value::bytes(&b"abc"[..])], ())
        .await
        .unwrap();
    let hex: String = sp
        .method(&obj(digest), "hexdigest", (), ())
        .await
        .unwrap()
        .extract()
        .unwrap();
    assert_eq!(hex, "900150983cd24fb0d6963f7d28e17f72");

    // Bad input: every failure is typed and names the culprit.
    assert_eq!(
        python_type(sp.call("no_such_module_xyz", "f", (), ()).await),
        "ModuleNotFoundError"
    );
    assert_eq!(
        python_type(sp.call("math", "no_such_function", (), ()).await),
        "AttributeError"
    );
    match sp.call("math", "sqrt", ["sixteen"], ()).await {
        Err(Error::Python(e)) => {
            assert_eq!(e.python_type, "TypeError");
            assert!(e.traceback.contains("Traceback"), "{}", e.traceback);
        }
        other => panic!("expected TypeError, got {other:?}"),
    }
    assert_eq!(
        python_type(sp.call("math", "sqrt", [-1], ()).await),
        "ValueError"
    );
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_stay_in_python_as_refs() {
    let sp = start(ffi_pool(2)).await;
    let session = sp.new_session().await.unwrap();
    let path = obj(session
        .call("pathlib", "Path", ["/tmp/x.txt"], ())
        .await
        .unwrap());
    assert_eq!(path.session_id, session.id());
    assert!(path.type_name.ends_with("Path"), "{}", path.type_name);
    let name: String = ok(session.attr(&path, "name")).await;
    assert_eq!(name, "x.txt");
    let parent = obj(session.attr(&path, "parent").await.unwrap());
    assert_ne!(parent.id, path.id);
    assert_eq!(session.repr(&parent).await.unwrap(), "PosixPath('/tmp')");
    let csv: ObjectRef = ok(session.method(&path, "with_suffix", [".csv"], ())).await;
    assert_eq!(session.repr(&csv).await.unwrap(), "PosixPath('/tmp/x.csv')");

    // Objects can be changed in place.
    let ns = obj(session
        .call("types", "SimpleNamespace", (), [("a", 1)])
        .await
        .unwrap());
    session.set_attr(&ns, "b", "two").await.unwrap();
    let b: String = ok(session.attr(&ns, "b")).await;
    assert_eq!(b, "two");

    // Containers cross; only their unserialisable leaves become refs, and
    // the same object gives the same ref.
    let mixed = session.call_helper("fidelity.mixed", (), ()).await.unwrap();
    let paths = match mixed.get("paths") {
        Some(Value::List(items)) => items.clone(),
        other => panic!("expected a list of refs, got {other:?}"),
    };
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0], paths[1], "one object, one ref");
    assert_eq!(mixed.get("count"), Some(&Value::Int(2)));
    // A cycle ends in a ref instead of recursing.
    let cyclic = session
        .call_helper("fidelity.cyclic", (), ())
        .await
        .unwrap();
    match &cyclic {
        Value::List(items) => {
            assert_eq!(&items[..2], &[Value::Int(1), Value::Int(2)]);
            assert!(matches!(items[2], Value::Ref(_)), "{cyclic:?}");
        }
        other => panic!("expected a list, got {other:?}"),
    }

    // Use after release names the ref.
    session.release_ref(&path).await.unwrap();
    session.release_ref(&path).await.unwrap(); // twice is fine
    match session.attr(&path, "name").await {
        Err(Error::RefNotFound { ref_id, .. }) => assert_eq!(ref_id, path.id),
        other => panic!("expected RefNotFound, got {other:?}"),
    }
    // The parent was not released with it.
    assert_eq!(session.repr(&parent).await.unwrap(), "PosixPath('/tmp')");

    // A ref of one session is refused in another, before it leaves the host.
    let other = sp.new_session().await.unwrap();
    match other.attr(&parent, "name").await {
        Err(Error::SessionMismatch {
            ref_id,
            ref_session,
            call_session,
        }) => {
            assert_eq!(ref_id, parent.id);
            assert_eq!(ref_session, session.id());
            assert_eq!(call_session, other.id());
        }
        other => panic!("expected SessionMismatch, got {other:?}"),
    }

    // Releasing the session drops its refs.
    session.release_session().await.unwrap();
    let again = sp.session(session.id()).await.unwrap();
    match again.repr(&parent).await {
        Err(Error::RefNotFound { .. }) => {}
        other => panic!("expected RefNotFound after the session's release, got {other:?}"),
    }
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn values_keep_their_python_types_both_ways() {
    let sp = start(ffi_pool(1)).await;
    let big = BigInt::from(10).pow(30);
    let cases: Vec<Value> = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::BigInt(big.clone()),
        Value::BigInt(-big.clone()),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(-0.0),
        Value::Str("héllo".into()),
        Value::bytes(vec![0u8, 1, 2, 128, 255]),
        Value::List(vec![Value::Int(1), Value::Str("a".into())]),
        Value::Tuple(vec![Value::Int(1), Value::Null]),
        Value::Set(vec![Value::Int(3)]),
        Value::FrozenSet(vec![Value::Str("f".into())]),
        Value::Map(vec![
            (Value::Int(1), Value::Str("int key".into())),
            (
                Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                Value::Str("tuple key".into()),
            ),
        ]),
        Value::Temporal(Temporal {
            kind: TemporalKind::DateTime,
            text: "2026-11-21T10:30:00+01:00".into(),
        }),
        Value::Temporal(Temporal {
            kind: TemporalKind::Date,
            text: "2026-11-21".into(),
        }),
        Value::Temporal(Temporal {
            kind: TemporalKind::Time,
            text: "10:30:00.250000".into(),
        }),
        Value::Temporal(Temporal {
            kind: TemporalKind::TimeDelta,
            text: "-1500000".into(),
        }),
        Value::Complex { re: 1.5, im: -2.0 },
    ];
    for case in cases {
        let back = sp
            .call_helper("fidelity.identity", [case.clone()], ())
            .await
            .unwrap();
        assert_eq!(back, case, "round trip of {case}");
    }
    let exact: BigInt = ok(sp.call("builtins", "pow", [10, 30], ())).await;
    assert_eq!(exact, big);
    let nan: f64 = ok(sp.call("builtins", "float", ["nan"], ())).await;
    assert!(nan.is_nan());
    // str and bytes are never confused.
    let kinds = sp
        .call_helper(
            "fidelity.describe",
            [Value::List(vec![
                Value::Str("s".into()),
                Value::bytes(&b"b"[..]),
            ])],
            (),
        )
        .await
        .unwrap();
    assert_eq!(
        kinds,
        Value::List(vec!["list".into(), "bytes".into(), "str".into()])
    );
    let bytes: Vec<u8> =
        ok::<bytes::Bytes>(sp.call("builtins", "bytes", [vec![0, 1, 2, 128, 255]], ()))
            .await
            .to_vec();
    assert_eq!(bytes, vec![0, 1, 2, 128, 255]);
    // Dicts with tuple keys arrive as such.
    let keyed = sp
        .call(
            "builtins",
            "dict",
            [Value::List(vec![Value::Tuple(vec![
                Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                Value::from("pair"),
            ])])],
            (),
        )
        .await
        .unwrap();
    assert_eq!(
        keyed,
        Value::Map(vec![(
            Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
            Value::from("pair")
        )])
    );
    let typed: HashMap<String, i64> =
        ok(sp.call("builtins", "dict", (), [("a", 1), ("b", 2)])).await;
    assert_eq!(typed, HashMap::from([("a".into(), 1), ("b".into(), 2)]));
    // numpy: scalars as numbers, arrays with dtype and shape.
    let np = sp
        .call_helper("fidelity.numpy_values", (), ())
        .await
        .unwrap();
    assert_eq!(np.get("scalar_f"), Some(&Value::Float(1.5)));
    assert_eq!(np.get("scalar_i"), Some(&Value::Int(7)));
    match np.get("array") {
        Some(Value::NdArray(a)) => {
            assert_eq!(
                (a.dtype.as_str(), a.shape.as_slice()),
                ("int16", &[2u64, 3][..])
            );
            assert_eq!(a.data.len(), 12);
        }
        other => panic!("expected an ndarray, got {other:?}"),
    }
    // A wrong Rust type is a typed conversion error, not a panic.
    let wrong = sp
        .call("math", "sqrt", [16], ())
        .await
        .unwrap()
        .extract::<String>();
    assert!(wrong.is_err());
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn generators_stream_natively_and_as_stream_refs() {
    let sp = start(ffi_pool(1)).await;
    // A stream ref: items on demand, continuing where the last take ended.
    let counter: StreamRefValue = ok(sp.call("itertools", "count", [1], ())).await;
    let stream = sp.stream_ref(&counter).await.unwrap();
    let first: Vec<i64> = stream
        .clone()
        .into_stream()
        .take(5)
        .map(|v| v.unwrap().extract::<i64>().unwrap())
        .collect()
        .await;
    assert_eq!(first, vec![1, 2, 3, 4, 5]);
    let mut next = Vec::new();
    for _ in 0..5 {
        next.push(
            stream
                .next()
                .await
                .unwrap()
                .unwrap()
                .extract::<i64>()
                .unwrap(),
        );
    }
    // into_stream fetched a batch ahead; the iterator moved on by that much.
    assert!(next[0] >= 6, "{next:?}");
    assert!(next.windows(2).all(|w| w[1] == w[0] + 1), "{next:?}");

    // Exact continuation with next(): take 5, then the next 5 from 6.
    let fresh: StreamRefValue = ok(sp.call("itertools", "count", [1], ())).await;
    let fresh = sp.stream_ref(&fresh).await.unwrap();
    let a: Vec<i64> = fresh
        .next_batch(5)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.extract().unwrap())
        .collect();
    let b: Vec<i64> = fresh
        .next_batch(5)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.extract().unwrap())
        .collect();
    assert_eq!((a, b), (vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10]));

    // A finite iterator ends; len() works where Python has one.
    let listed: StreamRefValue = ok(sp.call("builtins", "iter", [vec![1, 2, 3]], ())).await;
    let listed = sp.stream_ref(&listed).await.unwrap();
    let all: Vec<Value> = listed
        .clone()
        .into_stream()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(all, vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
    assert_eq!(listed.next().await.unwrap(), None);

    // Native streaming: the generator's items pushed, in order, all of them.
    let failed = match sp.stream("no_such_module_xyz", "f", (), ()).await {
        Err(err) => err,
        Ok(mut s) => s.next().await.expect("an item or an error").unwrap_err(),
    };
    match failed {
        Error::Python(e) => assert_eq!(e.python_type, "ModuleNotFoundError"),
        other => panic!("expected ModuleNotFoundError, got {other:?}"),
    }
    let got: Vec<i64> = sp
        .stream("builtins", "range", [10_000], ())
        .await
        .unwrap()
        .map(|v| v.unwrap().extract::<i64>().unwrap())
        .collect()
        .await;
    assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    // Dropping a stream early stops the generator; the worker keeps serving.
    let mut endless = sp.stream("itertools", "count", (), ()).await.unwrap();
    for want in 0..3 {
        assert_eq!(endless.next().await.unwrap().unwrap(), Value::Int(want));
    }
    drop(endless);
    let root: f64 = ok(sp.call("math", "sqrt", [9], ())).await;
    assert_eq!(root, 3.0);
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn context_managers_always_exit_with_the_real_exception() {
    let sp = start(ffi_pool(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let file_path = dir.path().join("out.txt");
    let file = obj(sp
        .call("builtins", "open", [file_path.to_str().unwrap(), "w"], ())
        .await
        .unwrap());
    let written = sp
        .with_python(&file, |_entered| async {
            sp.method(&file, "write", ["content"], ()).await
        })
        .await
        .unwrap();
    assert_eq!(written, Some(Value::Int(7)));
    let closed: bool = ok(sp.attr(&file, "closed")).await;
    assert!(closed, "__exit__ closed the file");
    assert_eq!(std::fs::read_to_string(&file_path).unwrap(), "content");

    // The body fails with a Python exception: __exit__ sees its real class.
    let recorder = obj(sp.call_helper("contexts.recorder", (), ()).await.unwrap());
    let sp_ref = &sp;
    let failed = sp
        .with_python(&recorder, |entered| async move {
            assert_eq!(entered, Value::from("inside"));
            sp_ref.call("math", "sqrt", [-1], ()).await
        })
        .await;
    match failed {
        Err(Error::Python(e)) => assert_eq!(e.python_type, "ValueError"),
        other => panic!("the body's error comes back, got {other:?}"),
    }
    let seen: String = ok(sp.attr(&recorder, "exit_type")).await;
    assert_eq!(seen, "ValueError");
    let message: String = ok(sp.attr(&recorder, "exit_message")).await;
    assert!(message.contains("math domain error"), "{message}");

    // A host-side failure arrives as HostError; a suppressing __exit__ wins.
    let suppressing = obj(sp
        .call_helper("contexts.recorder", (), [("suppress", true)])
        .await
        .unwrap());
    let out: Option<()> = sp
        .with_python(&suppressing, |_| async {
            Err(Error::Config("host-side failure".into()))
        })
        .await
        .unwrap();
    assert_eq!(out, None);
    let seen: String = ok(sp.attr(&suppressing, "exit_type")).await;
    assert_eq!(seen, "HostError");

    // The caller gives up mid-body: the context is exited all the same.
    let abandoned: ObjectRef = ok(sp.call_helper("contexts.recorder", (), ())).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        sp.with_python(&abandoned, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }),
    )
    .await;
    assert!(gave_up.is_err(), "the caller stopped waiting");
    let mut exited = Value::Null;
    for _ in 0..100 {
        exited = sp.attr(&abandoned, "exit_type").await.unwrap();
        if !exited.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exited, Value::from("HostError"));
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_run_on_the_host_and_nest() {
    let sp = start(ffi_pool(1)).await;
    let session = sp.new_session().await.unwrap();
    let double = session
        .callback(1, |_ctx, args| async move {
            let x: i64 = args[0].clone().extract()?;
            Ok(Value::Int(x * 2))
        })
        .await
        .unwrap();
    let four = session
        .call_helper("callbacks.apply_twice", [double.clone(), Value::Int(1)], ())
        .await
        .unwrap();
    assert_eq!(four, Value::Int(4));

    // A callback that calls back into Python, which calls another callback:
    // outer(x) = apply(double, x + 1), from inside the Python call that
    // invoked outer. Nothing deadlocks, even with a single process worker.
    let inner = double.clone();
    let outer = session
        .callback(1, move |ctx, args| {
            let inner = inner.clone();
            async move {
                let x: i64 = args[0].clone().extract()?;
                ctx.call_helper("callbacks.apply", [inner, Value::Int(x + 1)], ())
                    .await
            }
        })
        .await
        .unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        session.call_helper("callbacks.apply", [outer, Value::Int(5)], ()),
    )
    .await
    .expect("nested callbacks finish")
    .unwrap();
    assert_eq!(got, Value::Int(12));

    // Arity is checked in Python, before the host is asked.
    match session
        .call_helper("callbacks.wrong_arity", [double], ())
        .await
    {
        Err(Error::Python(e)) => assert_eq!(e.python_type, "TypeError", "{}", e.message),
        other => panic!("expected TypeError, got {other:?}"),
    }
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_carrying_a_ref_go_to_the_worker_holding_it() {
    let sp = start(ffi_pool(2)).await;
    let session = sp.new_session().await.unwrap();
    let made = session
        .call_helper("fidelity.made_here", (), ())
        .await
        .unwrap();
    let (home, handle) = match made {
        Value::Tuple(items) if items.len() == 2 => {
            (items[0].clone().extract::<i64>().unwrap(), items[1].clone())
        }
        other => panic!("expected (pid, ref), got {other:?}"),
    };
    // Keep the holder busy (a slow call pinned by the same ref), so that the
    // other worker is the free one: anything not pinned would go there.
    let holding = {
        let (session, handle) = (session.clone(), handle.clone());
        tokio::spawn(async move {
            session
                .call_helper("fidelity.hold", [handle, Value::Float(0.5)], ())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut pinned = Vec::new();
    for mode in [
        Affinity::Hint,
        Affinity::StrictQueue,
        Affinity::StrictFailFast,
    ] {
        for _ in 0..2 {
            let call = Call::new(snakepit::ffi::ops::HELPER)
                .arg("fidelity.pid_of")
                .arg(handle.clone())
                .affinity(mode);
            pinned.push(session.run(call).await.unwrap());
        }
    }
    assert!(
        pinned.iter().all(|p| *p == Value::Int(home)),
        "{pinned:?} vs {home}"
    );
    assert_eq!(holding.await.unwrap().unwrap(), Value::Int(home));
    // The same kind of call without a ref runs on the other worker while
    // the holder is busy.
    let holding = {
        let (session, handle) = (session.clone(), handle.clone());
        tokio::spawn(async move {
            session
                .call_helper("fidelity.hold", [handle, Value::Float(0.5)], ())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let elsewhere: i64 = ok(session.call_helper("fidelity.pid", (), ())).await;
    assert_ne!(elsewhere, home, "an unpinned call goes to the free worker");
    holding.await.unwrap().unwrap();

    // The holder dies: its refs are gone, and saying so beats running elsewhere.
    unsafe { libc::kill(home as i32, libc::SIGKILL) };
    let obj: ObjectRef = handle.extract().unwrap();
    let mut outcome = None;
    for _ in 0..100 {
        match session.repr(&obj).await {
            Err(Error::RefNotFound { ref_id, reason, .. }) => {
                assert_eq!(ref_id, obj.id);
                outcome = Some(reason);
                break;
            }
            Err(Error::WorkerCrashed { .. }) | Ok(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let reason = outcome.expect("RefNotFound once the holder is gone");
    assert!(reason.contains("gone"), "{reason}");
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_keep_at_most_max_refs_and_expire_unused_ones() {
    let mut cfg = ffi_pool(1);
    cfg.ffi.max_refs = 3;
    cfg.ffi.ref_ttl = Some(std::time::Duration::from_millis(300));
    let sp = start(cfg).await;
    let mut events = sp.subscribe();
    let session = sp.new_session().await.unwrap();
    let mut refs = Vec::new();
    for i in 0..4 {
        let p = obj(session
            .call("pathlib", "Path", [format!("/tmp/{i}")], ())
            .await
            .unwrap());
        refs.push(p);
    }
    // The least recently used one made room for the fourth.
    match session.repr(&refs[0]).await {
        Err(Error::RefNotFound { ref_id, .. }) => assert_eq!(ref_id, refs[0].id),
        other => panic!("expected the oldest ref evicted, got {other:?}"),
    }
    assert_eq!(session.repr(&refs[3]).await.unwrap(), "PosixPath('/tmp/3')");
    // The host hears of the eviction: a Python event, counted in Prometheus.
    let dropped = common::wait_event(
        &mut events,
        Duration::from_secs(5),
        |e| matches!(e, snakepit::Event::PythonEvent(p) if p.name == "snakepit.ffi.refs.dropped"),
    )
    .await;
    match dropped {
        snakepit::Event::PythonEvent(p) => assert!(
            p.measurements.contains(&("evicted".to_string(), 1.0)),
            "{:?}",
            p.measurements
        ),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    match session.repr(&refs[3]).await {
        Err(Error::RefNotFound { .. }) => {}
        other => panic!("expected the ref expired, got {other:?}"),
    }
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helpers_obey_the_allowlist_and_ml_errors_are_typed() {
    let mut cfg = ffi_pool(1);
    cfg.ffi.helper_allowlist = Some(vec!["fidelity.*".into()]);
    let sp = start(cfg).await;
    let ok = sp.call_helper("fidelity.identity", [1], ()).await.unwrap();
    assert_eq!(ok, Value::Int(1));
    for denied in ["callbacks.apply", "fidelity.nope", "../etc.passwd"] {
        match sp.call_helper(denied, [1], ()).await {
            Err(Error::Python(_)) | Err(Error::BadArguments { .. }) => {}
            other => panic!("helper {denied} must be refused, got {other:?}"),
        }
    }
    match sp.call_helper("fidelity.broadcast_fail", (), ()).await {
        Err(Error::ShapeMismatch {
            operation,
            shape_a,
            shape_b,
            exception,
        }) => {
            assert_eq!(operation, "broadcast");
            assert_eq!((shape_a, shape_b), (vec![2, 3], vec![4, 5]));
            assert_eq!(exception.python_type, "ValueError");
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let counted: BTreeMap<String, i64> = sp
        .call("collections", "Counter", ["abca"], ())
        .await
        .map(|v| match v {
            // A Counter is a dict subclass: it crosses as a dict.
            Value::Map(_) => v.extract().unwrap(),
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(counted.get("a"), Some(&2));
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_with_the_ffi_off_refuses_it() {
    let mut cfg = ffi_pool(1);
    cfg.ffi.enabled = false;
    let sp = start(cfg).await;
    match sp.call("math", "sqrt", [16], ()).await {
        Err(Error::UnknownTool { tool, .. }) => assert_eq!(tool, "snakepit.ffi.call"),
        other => panic!("expected UnknownTool, got {other:?}"),
    }
    // The adapter's own tools still run.
    let sum = sp
        .execute("add", serde_json::json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(sum, Value::Int(5));
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_that_give_up_huge_payloads_and_dying_workers_are_typed() {
    let mut cfg = ffi_pool(1);
    cfg.max_frame_bytes = 64 * 1024;
    // The frame limit alone: large bytes would otherwise cross in shared
    // memory (tests/shared_memory.rs).
    cfg.max_shared_bytes = 0;
    let sp = start(cfg).await;
    let session = sp.new_session().await.unwrap();

    // A caller that stops waiting: Timeout, the Python call is cancelled, and
    // the worker serves the next call at once.
    let slow = Call::new(snakepit::ffi::ops::CALL)
        .arg("time")
        .arg("sleep")
        .arg(5)
        .timeout(Duration::from_millis(200));
    match session.run(slow).await {
        Err(Error::Timeout { tool, .. }) => assert_eq!(tool, snakepit::ffi::ops::CALL),
        other => panic!("expected Timeout, got {other:?}"),
    }
    let t = std::time::Instant::now();
    let root: f64 = ok(session.call("math", "sqrt", [4], ())).await;
    assert_eq!(root, 2.0);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Too large either way: refused before sending, or replaced by the worker.
    let huge = Value::bytes(vec![7u8; 128 * 1024]);
    match session.call("builtins", "len", [huge], ()).await {
        Err(Error::PayloadTooLarge { limit, .. }) => assert_eq!(limit, 64 * 1024),
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    match session.call("os", "urandom", [128 * 1024], ()).await {
        Err(Error::PayloadTooLarge { .. }) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    // Wrong argument types for the operation itself are refused by name.
    let bad = Call::new(snakepit::ffi::ops::CALL).arg(42).arg("sqrt");
    match session.run(bad).await {
        Err(Error::BadArguments { .. }) => {}
        other => panic!("expected BadArguments, got {other:?}"),
    }
    let unknown = Call::new("snakepit.ffi.no_such_op");
    match session.run(unknown).await {
        Err(Error::UnknownTool { .. }) => {}
        other => panic!("expected UnknownTool, got {other:?}"),
    }

    // The worker dies in the middle of an FFI call: WorkerCrashed, and the
    // pool serves FFI calls again once it has replaced the worker.
    let pid: i64 = ok(session.call("os", "getpid", (), ())).await;
    let dying = session.call("os", "kill", [pid, i64::from(libc::SIGKILL)], ());
    match dying.await {
        Err(Error::WorkerCrashed { .. }) => {}
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    let mut again = None;
    for _ in 0..100 {
        match session.call("math", "sqrt", [9], ()).await {
            Ok(v) => {
                again = Some(v);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(again, Some(Value::Float(3.0)));
    sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thread_profile_worker_serves_refs_to_concurrent_calls() {
    let mut cfg = ffi_pool(1);
    cfg.profile = snakepit::Profile::Thread;
    cfg.threads_per_worker = 8;
    let sp = start(cfg).await;
    let session = sp.new_session().await.unwrap();
    let calls = (0..64).map(|i| {
        let session = session.clone();
        async move {
            let path: ObjectRef =
                ok(session.call("pathlib", "PurePosixPath", [format!("/data/{i}.txt")], ())).await;
            let name: String = ok(session.attr(&path, "name")).await;
            session.release_ref(&path).await.unwrap();
            (path.id, name)
        }
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<_> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 64, "every object got its own ref");
    for (i, (_, name)) in results.iter().enumerate() {
        assert_eq!(name, &format!("{i}.txt"));
    }
    sp.shutdown().await;
}
