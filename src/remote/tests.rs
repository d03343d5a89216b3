//! Unit tests of the remote client's pure parts: reading statuses back into
//! [`RemoteError`], and making endpoints from targets.

use std::collections::HashMap;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

use super::error::ERROR_DOMAIN;
use super::*;

fn status(code: Code, message: &str, reason: &str, meta: &[(&str, &str)]) -> tonic::Status {
    let meta: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tonic::Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, meta),
    )
}

#[test]
fn a_python_exception_keeps_its_kind_type_traceback_and_message() {
    let err = RemoteError::from(status(
        Code::Unknown,
        "python raised ValueError: bad",
        "PYTHON_EXCEPTION",
        &[
            ("kind", "python_exception"),
            ("message", "bad"),
            ("python_type", "ValueError"),
            ("traceback", "Traceback (most recent call last):\n..."),
        ],
    ));
    assert_eq!(err.code(), Some(Code::Unknown));
    assert_eq!(err.kind(), Some("python_exception"));
    assert_eq!(err.python_type(), Some("ValueError"));
    assert_eq!(
        err.traceback(),
        Some("Traceback (most recent call last):\n...")
    );
    assert_eq!(err.status().unwrap().parameter, None);
    // Python's own text in the details; the summary, as the local error
    // reads, is what it displays.
    assert_eq!(err.status().unwrap().message, "bad");
    assert_eq!(
        err.status().unwrap().summary,
        "python raised ValueError: bad"
    );
    assert_eq!(err.to_string(), "python raised ValueError: bad");
}

#[test]
fn the_parameter_at_fault_and_the_status_codes_come_through() {
    let err = RemoteError::from(status(
        Code::InvalidArgument,
        "bad arguments for `add`: missing b",
        "BAD_ARGUMENTS",
        &[
            ("kind", "bad_arguments"),
            ("message", "bad arguments for `add`: missing b"),
            ("parameter", "b"),
            ("python_type", ""),
        ],
    ));
    let status = err.status().unwrap();
    assert_eq!(status.code, Code::InvalidArgument);
    assert_eq!(status.kind.as_deref(), Some("bad_arguments"));
    assert_eq!(status.parameter.as_deref(), Some("b"));
    // Empty metadata reads as absent.
    assert_eq!(status.python_type, None);

    let err = RemoteError::from(status_unauthenticated());
    assert_eq!(err.code(), Some(Code::Unauthenticated));
    assert_eq!(err.kind(), Some("unauthenticated"));
}

fn status_unauthenticated() -> tonic::Status {
    status(
        Code::Unauthenticated,
        "missing or wrong token",
        "UNAUTHENTICATED",
        &[
            ("kind", "unauthenticated"),
            ("message", "missing or wrong token"),
        ],
    )
}

#[test]
fn without_kind_metadata_the_reason_names_the_kind_and_the_status_message_is_used() {
    let err = RemoteError::from(status(Code::DeadlineExceeded, "too slow", "TIMEOUT", &[]));
    assert_eq!(err.kind(), Some("timeout"));
    assert_eq!(err.status().unwrap().message, "too slow");
    assert_eq!(err.to_string(), "too slow");

    // Without a status message, the details' message is shown.
    let err = RemoteError::from(status(
        Code::NotFound,
        "",
        "UNKNOWN_TOOL",
        &[("kind", "unknown_tool"), ("message", "no tool `x`")],
    ));
    assert_eq!(err.to_string(), "no tool `x`");
}

#[test]
fn a_status_without_snakepit_details_has_no_kind_and_says_its_code() {
    let err = RemoteError::from(tonic::Status::unavailable("connection refused"));
    assert_eq!(err.code(), Some(Code::Unavailable));
    assert_eq!(err.kind(), None);
    assert_eq!(err.python_type(), None);
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");

    // Another domain's ErrorInfo is not taken for ours.
    let foreign = tonic::Status::with_error_details(
        Code::NotFound,
        "nope",
        ErrorDetails::with_error_info("UNKNOWN_TOOL", "example.com", HashMap::new()),
    );
    let err = RemoteError::from(foreign);
    assert_eq!(err.kind(), None);
    assert_eq!(err.code(), Some(Code::NotFound));

    let empty = RemoteError::from(tonic::Status::internal(""));
    assert_eq!(empty.to_string(), Code::Internal.description());
}

#[test]
fn targets_become_endpoints_and_bad_ones_are_refused_before_connecting() {
    let plain = RemoteOptions::default();
    let tls = RemoteOptions {
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        ..RemoteOptions::default()
    };
    for target in ["127.0.0.1:50051", "http://localhost:1", "unix:/tmp/x.sock"] {
        endpoint(target, &plain).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
    let uri = endpoint("127.0.0.1:50051", &plain)
        .unwrap()
        .uri()
        .to_string();
    assert_eq!(uri, "http://127.0.0.1:50051/");
    for (target, options, says) in [
        ("https://h:1", &plain, "CA"),
        ("http://h:1", &tls, "http://"),
        ("unix:/tmp/x.sock", &tls, "Unix"),
        ("ftp://h:1", &plain, "scheme"),
        ("not a uri", &plain, ""),
    ] {
        match endpoint(target, options) {
            Err(RemoteError::Target { target: t, reason }) => {
                assert_eq!(t, target);
                assert!(reason.contains(says), "{target}: {reason}");
            }
            other => panic!("{target}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn calls_become_requests_with_the_clients_pool_and_session() {
    // The request is built without a connection; an endpoint that is never
    // dialled stands in for it.
    let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let client = RemoteClient {
        grpc: SnakepitClient::with_interceptor(channel, Auth { header: None }),
        target: "t".into(),
        pool: String::new(),
        session: String::new(),
        timeout: None,
    }
    .on_pool("p")
    .in_session("s");
    let mut call = Call::new("add").kwarg("a", 2).arg(Value::from("x"));
    call.idempotent = true;
    call.affinity = Some(Affinity::StrictQueue);
    let request = client.execute_request(call);
    assert_eq!(request.tool, "add");
    assert_eq!(request.pool, "p");
    assert_eq!(request.session_id, "s");
    assert!(request.idempotent);
    assert_eq!(request.affinity, v1::Affinity::StrictQueue as i32);
    assert_eq!(request.args.len(), 1);
    assert_eq!(Value::from(request.kwargs["a"].clone()), Value::Int(2));

    let mut own = Call::new("t");
    own.session_id = Some("mine".into());
    assert_eq!(client.execute_request(own).session_id, "mine");
}
