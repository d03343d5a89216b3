//! Tests of the callback registry: registration, lookup, invocation and the
//! wire form of its errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::*;

const LONG: Duration = Duration::from_secs(30);

fn echo() -> HostTool<()> {
    HostTool::new(
        "echo",
        |(), args: HostArgs| async move { Ok(args.into_value()) },
    )
}

fn constant(name: &str, value: &'static str) -> HostTool<()> {
    HostTool::new(name, move |(), _args| async move { Ok(Value::from(value)) })
}

async fn call(
    registry: &HostToolRegistry<()>,
    session: Option<&str>,
    name: &str,
    args: HostArgs,
) -> Result<Value, HostToolError> {
    registry.invoke(session, name, (), args, true, LONG).await
}

#[tokio::test]
async fn invoke_returns_the_value_and_values_round_trip() {
    let registry = HostToolRegistry::new();
    registry.register(echo()).unwrap();
    let big = Value::from(-(1i128 << 100));
    assert!(matches!(big, Value::BigInt(_)));
    let nested = Value::Map(vec![
        (
            Value::Str("inner".into()),
            Value::List(vec![Value::Int(1), Value::Null]),
        ),
        (
            Value::Int(7),
            Value::Tuple(vec![Value::Bool(true), Value::Float(1.5)]),
        ),
    ]);
    let args = HostArgs::new()
        .kwarg("text", Value::Str("héllo".into()))
        .kwarg("nested", nested.clone())
        .kwarg("raw", Value::Bytes(Bytes::from_static(b"\x00\xffbytes")))
        .kwarg("big", big.clone());
    let out = call(&registry, None, "echo", args).await.unwrap();
    assert_eq!(
        out,
        Value::Map(vec![
            (Value::Str("text".into()), Value::Str("héllo".into())),
            (Value::Str("nested".into()), nested),
            (
                Value::Str("raw".into()),
                Value::Bytes(Bytes::from_static(b"\x00\xffbytes"))
            ),
            (Value::Str("big".into()), big),
        ])
    );
}

#[tokio::test]
async fn duplicate_and_reserved_names_are_refused() {
    let registry = HostToolRegistry::new();
    registry.register(echo()).unwrap();
    assert_eq!(
        registry.register(echo()),
        Err(HostToolError::Duplicate {
            name: "echo".into()
        })
    );
    assert_eq!(
        registry.register(constant("snakepit.variables.get", "x")),
        Err(HostToolError::Reserved {
            name: "snakepit.variables.get".into()
        })
    );
    assert_eq!(
        registry.register_for_session("s", constant("snakepit.tools", "x")),
        Err(HostToolError::Reserved {
            name: "snakepit.tools".into()
        })
    );
    assert!(matches!(
        registry.register(constant("", "x")),
        Err(HostToolError::BadArguments { .. })
    ));
    // A session may shadow a global name once, not twice.
    registry.register_for_session("s", echo()).unwrap();
    assert_eq!(
        registry.register_for_session("s", echo()),
        Err(HostToolError::Duplicate {
            name: "echo".into()
        })
    );
}

#[tokio::test]
async fn unknown_tool_lists_the_exposed_ones() {
    let registry = HostToolRegistry::new();
    registry.register(constant("zeta", "z")).unwrap();
    registry.register(constant("alpha", "a")).unwrap();
    registry
        .register(constant("hidden", "h").exposed_to_python(false))
        .unwrap();
    registry
        .register_for_session("s1", constant("mine", "m"))
        .unwrap();
    let err = call(&registry, None, "nope", HostArgs::new())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostToolError::UnknownTool {
            name: "nope".into(),
            available: vec!["alpha".into(), "zeta".into()],
        }
    );
    let err = call(&registry, Some("s1"), "nope", HostArgs::new())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostToolError::UnknownTool {
            name: "nope".into(),
            available: vec!["alpha".into(), "mine".into(), "zeta".into()],
        }
    );
}

#[tokio::test]
async fn a_tool_not_exposed_is_refused_to_python_but_runs_from_rust() {
    let registry = HostToolRegistry::new();
    registry
        .register(constant("internal", "ran").exposed_to_python(false))
        .unwrap();
    let err = registry
        .invoke(None, "internal", (), HostArgs::new(), true, LONG)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostToolError::NotExposed {
            name: "internal".into()
        }
    );
    let out = registry
        .invoke(None, "internal", (), HostArgs::new(), false, LONG)
        .await
        .unwrap();
    assert_eq!(out, Value::from("ran"));
}

#[tokio::test]
async fn a_missing_required_parameter_is_named() {
    let registry = HostToolRegistry::new();
    registry
        .register(
            echo()
                .param("data", "map", true)
                .param("schema_name", "str", true)
                .param("strict", "bool", false),
        )
        .unwrap();
    let err = call(&registry, None, "echo", HostArgs::new().kwarg("data", 1))
        .await
        .unwrap_err();
    match err {
        HostToolError::BadArguments { parameter, message } => {
            assert_eq!(parameter.as_deref(), Some("schema_name"));
            assert!(message.contains("schema_name"), "{message}");
        }
        other => panic!("expected BadArguments, got {other:?}"),
    }
    // Given by keyword, with an unknown keyword forwarded.
    let out = call(
        &registry,
        None,
        "echo",
        HostArgs::new()
            .kwarg("schema_name", "user")
            .kwarg("data", 1)
            .kwarg("extra", true),
    )
    .await
    .unwrap();
    assert_eq!(out.get("extra"), Some(&Value::Bool(true)));
    // The first positional argument covers `data`, the keyword `schema_name`.
    call(
        &registry,
        None,
        "echo",
        HostArgs::new().arg(1).kwarg("schema_name", "user"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn require_names_the_argument() {
    let args = HostArgs::new().kwarg("a", 1);
    assert_eq!(args.require("a"), Ok(&Value::Int(1)));
    assert_eq!(
        args.require("b"),
        Err(HostToolError::BadArguments {
            parameter: Some("b".into()),
            message: "missing required argument `b`".into(),
        })
    );
}

#[tokio::test]
async fn a_tool_error_is_failed() {
    let registry = HostToolRegistry::new();
    registry
        .register(HostTool::new("fails", |(), args: HostArgs| async move {
            let n = args.require("n")?;
            Err(HostToolError::failed(format!("cannot handle {n:?}")))
        }))
        .unwrap();
    let err = call(&registry, None, "fails", HostArgs::new().kwarg("n", 3))
        .await
        .unwrap_err();
    assert_eq!(err, HostToolError::failed("cannot handle Int(3)"));
    // An error from `require` inside the tool keeps its kind.
    let err = call(&registry, None, "fails", HostArgs::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostToolError::BadArguments { parameter: Some(p), .. } if p == "n"));
}

#[tokio::test]
async fn a_panic_is_caught_and_the_registry_keeps_working() {
    let registry = HostToolRegistry::new();
    registry
        .register(HostTool::new("boom", |(), _| async move {
            if true {
                panic!("boom at {}", 42);
            }
            Ok(Value::Null)
        }))
        .unwrap();
    registry
        .register(HostTool::new("static_boom", |(), _| async move {
            if true {
                panic!("static message");
            }
            Ok(Value::Null)
        }))
        .unwrap();
    registry
        .register(HostTool::new("odd_boom", |(), _| async move {
            if true {
                std::panic::panic_any(17u32);
            }
            Ok(Value::Null)
        }))
        .unwrap();
    // Panics while building the future (before any await) are caught too.
    registry
        .register(HostTool::new(
            "eager_boom",
            |(), _| -> futures::future::Ready<Result<Value, HostToolError>> { panic!("eager") },
        ))
        .unwrap();
    registry.register(echo()).unwrap();

    for (tool, message) in [
        ("boom", "boom at 42"),
        ("static_boom", "static message"),
        ("odd_boom", "a host tool panicked"),
        ("eager_boom", "eager"),
    ] {
        let err = call(&registry, None, tool, HostArgs::new())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HostToolError::Panicked {
                message: message.into()
            },
            "{tool}"
        );
    }
    let out = call(
        &registry,
        None,
        "echo",
        HostArgs::new().kwarg("still", "up"),
    )
    .await
    .unwrap();
    assert_eq!(out, Value::map([("still", "up")]));
}

/// Sets its flag when dropped, i.e. when the tool's future is dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn sleeper(dropped: Arc<AtomicBool>) -> HostTool<()> {
    HostTool::new("sleeper", move |(), _| {
        let guard = DropFlag(Arc::clone(&dropped));
        async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(guard);
            Ok(Value::from("woke"))
        }
    })
}

async fn wait_for(flag: &AtomicBool) -> bool {
    for _ in 0..100 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::task::yield_now().await;
    }
    flag.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn a_slow_tool_times_out_and_is_aborted() {
    let registry = HostToolRegistry::new();
    let dropped = Arc::new(AtomicBool::new(false));
    registry
        .register(sleeper(Arc::clone(&dropped)).timeout(Duration::from_secs(2)))
        .unwrap();
    let start = tokio::time::Instant::now();
    let err = call(&registry, None, "sleeper", HostArgs::new())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostToolError::TimedOut {
            after: Duration::from_secs(2)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(wait_for(&dropped).await, "the tool's task was not aborted");
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_applies_to_a_tool_without_one() {
    let registry = HostToolRegistry::new();
    let dropped = Arc::new(AtomicBool::new(false));
    registry.register(sleeper(Arc::clone(&dropped))).unwrap();
    let err = registry
        .invoke(
            None,
            "sleeper",
            (),
            HostArgs::new(),
            true,
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HostToolError::TimedOut {
            after: Duration::from_millis(500)
        }
    );
    assert!(wait_for(&dropped).await);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_invocation_aborts_the_tool() {
    let registry = HostToolRegistry::new();
    let dropped = Arc::new(AtomicBool::new(false));
    registry.register(sleeper(Arc::clone(&dropped))).unwrap();
    let invocation = call(&registry, None, "sleeper", HostArgs::new());
    let gave_up = tokio::time::timeout(Duration::from_secs(1), invocation).await;
    assert!(gave_up.is_err());
    assert!(wait_for(&dropped).await, "the tool outlived its caller");
}

#[tokio::test]
async fn a_session_tool_shadows_the_global_one_until_the_session_is_dropped() {
    let registry = HostToolRegistry::new();
    registry.register(constant("greet", "global")).unwrap();
    registry
        .register_for_session("s1", constant("greet", "session"))
        .unwrap();
    registry
        .register_for_session("s1", constant("only_s1", "x"))
        .unwrap();

    let greet = |session| call(&registry, session, "greet", HostArgs::new());
    assert_eq!(greet(Some("s1")).await.unwrap(), Value::from("session"));
    assert_eq!(greet(Some("s2")).await.unwrap(), Value::from("global"));
    assert_eq!(greet(None).await.unwrap(), Value::from("global"));
    assert!(registry.lookup(Some("s2"), "only_s1").is_none());
    assert_eq!(
        registry.lookup(Some("s1"), "only_s1").unwrap().name(),
        "only_s1"
    );

    registry.drop_session("s1");
    assert_eq!(greet(Some("s1")).await.unwrap(), Value::from("global"));
    assert!(registry.lookup(Some("s1"), "only_s1").is_none());

    assert!(registry.unregister("greet"));
    assert!(!registry.unregister("greet"));
    assert!(registry.lookup(None, "greet").is_none());
}

#[tokio::test]
async fn exposed_specs_lists_what_python_may_call() {
    let registry = HostToolRegistry::new();
    registry
        .register(
            constant("validate_schema", "ok")
                .description("Validate data against schema")
                .param("data", "map", true)
                .param_described("schema_name", "str", false, "Which schema"),
        )
        .unwrap();
    registry
        .register(constant("hidden", "h").exposed_to_python(false))
        .unwrap();
    registry.register(constant("b_tool", "b")).unwrap();
    registry
        .register_for_session("s1", constant("a_tool", "a").description("session's own"))
        .unwrap();

    let specs = registry.exposed_specs(None);
    let Value::Map(entries) = &specs else {
        panic!("not a map: {specs:?}")
    };
    let names: Vec<&Value> = entries.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [&Value::from("b_tool"), &Value::from("validate_schema")]
    );
    assert_eq!(
        specs.get("validate_schema").unwrap(),
        &Value::map([
            ("name", Value::from("validate_schema")),
            ("description", Value::from("Validate data against schema")),
            (
                "parameters",
                Value::List(vec![
                    Value::map([
                        ("name", Value::from("data")),
                        ("type", Value::from("map")),
                        ("required", Value::from(true)),
                        ("description", Value::from("")),
                    ]),
                    Value::map([
                        ("name", Value::from("schema_name")),
                        ("type", Value::from("str")),
                        ("required", Value::from(false)),
                        ("description", Value::from("Which schema")),
                    ]),
                ])
            ),
            ("exposed_to_python", Value::from(true)),
        ])
    );

    let session_specs = registry.exposed_specs(Some("s1"));
    let Value::Map(entries) = &session_specs else {
        panic!("not a map: {session_specs:?}")
    };
    let names: Vec<&Value> = entries.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            &Value::from("a_tool"),
            &Value::from("b_tool"),
            &Value::from("validate_schema")
        ]
    );
    assert_eq!(
        session_specs.get("a_tool").unwrap().get("description"),
        Some(&Value::from("session's own"))
    );
}

fn wire_kind(err: &v1::Error) -> v1::ErrorKind {
    v1::ErrorKind::try_from(err.kind).unwrap()
}

#[test]
fn to_wire_kinds() {
    use v1::ErrorKind as K;

    let w = HostToolError::failed("disk full").to_wire("store");
    assert_eq!(wire_kind(&w), K::HostTool);
    assert_eq!(w.details["kind"], "failed");
    assert_eq!(w.details["tool"], "store");
    assert_eq!(w.python_type, "HostToolError");
    assert!(w.message.contains("store") && w.message.contains("disk full"));

    let w = HostToolError::Panicked {
        message: "oops".into(),
    }
    .to_wire("store");
    assert_eq!(wire_kind(&w), K::HostTool);
    assert_eq!(w.details["kind"], "panicked");
    assert!(w.message.contains("store") && w.message.contains("oops"));

    let w = HostToolError::BadArguments {
        parameter: Some("data".into()),
        message: "missing".into(),
    }
    .to_wire("validate");
    assert_eq!(wire_kind(&w), K::BadArguments);
    assert_eq!(w.parameter, "data");
    assert!(w.message.contains("validate"));

    let w = HostToolError::UnknownTool {
        name: "nope".into(),
        available: vec!["a".into(), "b".into()],
    }
    .to_wire("nope");
    assert_eq!(wire_kind(&w), K::NotFound);
    assert_eq!(w.details["what"], "host_tool");
    assert_eq!(w.details["available"], "a,b");
    assert!(w.message.contains("nope"));

    let w = HostToolError::NotExposed {
        name: "internal".into(),
    }
    .to_wire("internal");
    assert_eq!(wire_kind(&w), K::NotFound);
    assert_eq!(w.details["what"], "host_tool");
    assert_eq!(w.details["reason"], "not_exposed");

    let w = HostToolError::TimedOut {
        after: Duration::from_millis(1500),
    }
    .to_wire("slow");
    assert_eq!(wire_kind(&w), K::Timeout);
    assert_eq!(w.details["timeout_ms"], "1500");
    assert!(w.message.contains("slow"));

    let w = HostToolError::Cancelled.to_wire("slow");
    assert_eq!(wire_kind(&w), K::Cancelled);
    assert!(w.message.contains("slow"));

    let w = HostToolError::Duplicate { name: "x".into() }.to_wire("x");
    assert_eq!(wire_kind(&w), K::HostTool);
    assert_eq!(w.details["kind"], "duplicate");

    let w = HostToolError::Reserved {
        name: "snakepit.x".into(),
    }
    .to_wire("snakepit.x");
    assert_eq!(wire_kind(&w), K::HostTool);
    assert_eq!(w.details["kind"], "reserved");

    for w in [
        HostToolError::failed("x").to_wire("t"),
        HostToolError::Cancelled.to_wire("t"),
    ] {
        assert!(!w.python_type.is_empty());
        assert!(w.parameter.is_empty());
    }
}

#[test]
fn host_call_result_carries_the_value_or_the_error() {
    use v1::host_call_result::Outcome;
    let ok = host_call_result("t", Ok(Value::from(3)));
    assert!(
        matches!(ok.outcome, Some(Outcome::Value(v)) if Value::from(v.clone()) == Value::Int(3))
    );
    let err = host_call_result("t", Err(HostToolError::Cancelled));
    assert!(
        matches!(err.outcome, Some(Outcome::Error(e)) if e.kind == v1::ErrorKind::Cancelled as i32)
    );
}

#[test]
fn args_from_the_wire_sort_keywords() {
    let kwargs = HashMap::from([
        ("b".to_string(), v1::Value::from(Value::from(2))),
        ("a".to_string(), v1::Value::from(Value::from("x"))),
    ]);
    let args = HostArgs::from_wire(vec![Value::from(true).into()], kwargs);
    assert_eq!(args.args, vec![Value::Bool(true)]);
    assert_eq!(
        args.kwargs,
        vec![
            ("a".to_string(), Value::from("x")),
            ("b".to_string(), Value::from(2))
        ]
    );
}

/// A context that gives tools the registry itself, so they can call host
/// tools in turn (as a tool calling back into Python would).
#[derive(Clone)]
struct Nested {
    registry: HostToolRegistry<Nested>,
}

#[tokio::test]
async fn a_tool_can_invoke_the_registry_again() {
    let registry: HostToolRegistry<Nested> = HostToolRegistry::new();
    registry
        .register(
            HostTool::new("descend", |ctx: Nested, args: HostArgs| async move {
                let depth = i64::try_from(args.require("depth")?.clone())
                    .map_err(|e| HostToolError::failed(e.to_string()))?;
                if depth == 0 {
                    return Ok(Value::from("bottom"));
                }
                let inner = ctx
                    .registry
                    .invoke(
                        Some("s"),
                        "descend",
                        ctx.clone(),
                        HostArgs::new().kwarg("depth", depth - 1),
                        true,
                        LONG,
                    )
                    .await?;
                Ok(Value::List(vec![Value::from(depth), inner]))
            })
            .param("depth", "int", true),
        )
        .unwrap();
    let ctx = Nested {
        registry: registry.clone(),
    };
    let out = registry
        .invoke(
            Some("s"),
            "descend",
            ctx,
            HostArgs::new().kwarg("depth", 3),
            true,
            LONG,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        Value::List(vec![
            Value::Int(3),
            Value::List(vec![
                Value::Int(2),
                Value::List(vec![Value::Int(1), Value::from("bottom")]),
            ]),
        ])
    );
}
