use std::path::PathBuf;
use std::time::Duration;

use snakepit_actors::reaper::{Untrusted, UntrustedPath};
use snakepit_actors::variables::VariableError;
use tonic::Code;
use tonic_types::StatusExt;

use super::*;
use crate::{ConversionError, ExitStatus, HostToolError, PythonException};

fn exception(traceback: &str) -> PythonException {
    PythonException {
        python_type: "ValueError".into(),
        message: "bad value".into(),
        traceback: traceback.into(),
        module: Some("builtins".into()),
    }
}

/// One error of every variant, with the code it must map to.
fn every_variant() -> Vec<(Error, Code)> {
    let boxed = || Box::new(exception("Traceback ..."));
    let s = String::from;
    vec![
        (Error::Python(exception("Traceback ...")), Code::Unknown),
        (
            Error::ShapeMismatch {
                operation: s("matmul"),
                shape_a: vec![2, 3],
                shape_b: vec![4, 5],
                exception: boxed(),
            },
            Code::Unknown,
        ),
        (
            Error::OutOfMemory {
                device: s("cuda:0"),
                requested_mib: Some(1.0),
                free_mib: None,
                exception: boxed(),
            },
            Code::ResourceExhausted,
        ),
        (
            Error::DtypeMismatch {
                expected: s("float32"),
                got: s("int8"),
                exception: boxed(),
            },
            Code::Unknown,
        ),
        (
            Error::RefNotFound {
                ref_id: s("w/1"),
                session: s("s"),
                reason: s("released"),
            },
            Code::NotFound,
        ),
        (
            Error::SessionMismatch {
                ref_id: s("w/1"),
                ref_session: s("a"),
                call_session: s("b"),
            },
            Code::InvalidArgument,
        ),
        (
            Error::UnknownTool {
                pool: s("p"),
                tool: s("t"),
                message: s("no such tool"),
            },
            Code::NotFound,
        ),
        (
            Error::BadArguments {
                tool: s("t"),
                parameter: Some(s("a")),
                message: s("missing"),
            },
            Code::InvalidArgument,
        ),
        (
            Error::PoolSaturated {
                pool: s("p"),
                capacity: 1,
            },
            Code::ResourceExhausted,
        ),
        (
            Error::PoolDegraded {
                pool: s("p"),
                restarts: 3,
                window: Duration::from_secs(1),
                last_error: None,
            },
            Code::Unavailable,
        ),
        (
            Error::WorkerBusy {
                pool: s("p"),
                worker: s("w"),
                session: s("s"),
            },
            Code::Unavailable,
        ),
        (
            Error::SessionWorkerUnavailable {
                pool: s("p"),
                worker: s("w"),
                session: s("s"),
            },
            Code::Aborted,
        ),
        (
            Error::SessionQuotaExceeded { max: 1 },
            Code::ResourceExhausted,
        ),
        (Error::SessionNotFound(s("s")), Code::NotFound),
        (
            Error::Variable(VariableError::NotFound { identifier: s("x") }),
            Code::NotFound,
        ),
        (
            Error::Variable(VariableError::Constraint {
                variable: s("x"),
                constraint: s("max"),
                message: s("above max"),
            }),
            Code::InvalidArgument,
        ),
        (
            Error::Variable(VariableError::InvalidDefinition {
                name: s("x"),
                message: s("bad"),
            }),
            Code::InvalidArgument,
        ),
        (
            Error::Variable(VariableError::UnknownType { given: s("colour") }),
            Code::InvalidArgument,
        ),
        (
            Error::Variable(VariableError::AlreadyExists { name: s("x") }),
            Code::AlreadyExists,
        ),
        (
            Error::Variable(VariableError::TooMany { limit: 1 }),
            Code::ResourceExhausted,
        ),
        (
            Error::HostTool(HostToolError::Failed { message: s("no") }),
            Code::Internal,
        ),
        (
            Error::SessionCleanupFailed {
                session: s("s"),
                reason: s("gone"),
            },
            Code::Internal,
        ),
        (
            Error::MissingVariables {
                tool: s("t"),
                missing: vec![s("x")],
            },
            Code::FailedPrecondition,
        ),
        (
            Error::QueueTimeout {
                pool: s("p"),
                waited: Duration::from_secs(1),
            },
            Code::DeadlineExceeded,
        ),
        (
            Error::Timeout {
                tool: s("t"),
                after: Duration::from_secs(1),
            },
            Code::DeadlineExceeded,
        ),
        (
            Error::WorkerCrashed {
                pool: s("p"),
                worker: s("w"),
                status: ExitStatus::Signal(9),
                detail: None,
            },
            Code::Aborted,
        ),
        (
            Error::PayloadTooLarge { size: 2, limit: 1 },
            Code::ResourceExhausted,
        ),
        (
            Error::Encoding {
                message: s("not encodable"),
            },
            Code::InvalidArgument,
        ),
        (
            Error::Conversion(ConversionError {
                expected: "int",
                found: s("str"),
            }),
            Code::InvalidArgument,
        ),
        (Error::UnknownPool(s("p")), Code::NotFound),
        (Error::ShuttingDown, Code::Unavailable),
        (Error::Cancelled, Code::Cancelled),
        (
            Error::WorkerStartFailed {
                pool: s("p"),
                reason: s("import failed"),
                python: None,
            },
            Code::Unavailable,
        ),
        (Error::Protocol(s("bad frame")), Code::Internal),
        (Error::Config(s("bad")), Code::Internal),
        (Error::Environment(s("no python")), Code::Internal),
        (
            Error::UntrustedPath(UntrustedPath {
                path: PathBuf::from("/x"),
                reason: Untrusted::WrongType,
            }),
            Code::Internal,
        ),
    ]
}

#[test]
fn every_kind_maps_to_its_code_and_names_itself_in_the_details() {
    for (err, code) in every_variant() {
        let status = status(&err);
        assert_eq!(status.code(), code, "{err:?}");
        let info = status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("no ErrorInfo for {err:?}"));
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(info.reason, err.outcome().to_ascii_uppercase());
        assert_eq!(info.metadata["kind"], err.outcome(), "{err:?}");
        // Python's own text in the details when Python raised; the error's
        // sentence otherwise, and always in the status message.
        let message = err
            .python_exception()
            .map_or_else(|| err.to_string(), |exc| exc.message.clone());
        assert_eq!(info.metadata["message"], message, "{err:?}");
        assert_eq!(status.message(), err.to_string());
        assert_eq!(
            info.metadata.contains_key("python_type"),
            err.python_exception().is_some(),
            "{err:?}"
        );
    }
}

#[test]
fn python_failures_carry_type_traceback_and_parameters() {
    let status = status(&Error::Python(exception(
        "Traceback (most recent call last): ...",
    )));
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "PYTHON_EXCEPTION");
    assert_eq!(info.metadata["python_type"], "ValueError");
    assert!(info.metadata["traceback"].starts_with("Traceback"));

    let status = super::status(&Error::BadArguments {
        tool: "add".into(),
        parameter: Some("b".into()),
        message: "missing".into(),
    });
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata["parameter"], "b");

    let status = super::status(&Error::Variable(VariableError::Constraint {
        variable: "x".into(),
        constraint: "max".into(),
        message: "above".into(),
    }));
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata["constraint"], "max");
}

#[test]
fn a_refused_token_is_unauthenticated_with_its_kind() {
    let status = unauthenticated("missing bearer token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "UNAUTHENTICATED");
    assert_eq!(info.metadata["kind"], "unauthenticated");
    assert_eq!(code_label(status.code()), "UNAUTHENTICATED");
}

#[test]
fn huge_messages_and_tracebacks_fit_the_trailers() {
    let long_line = "é".repeat(5_000);
    let traceback = format!("Traceback (most recent call last):\n{long_line}\nValueError: the end");
    let mut exc = exception(&traceback);
    exc.message = "ü%\n".repeat(2_000);
    let status = status(&Error::Python(exc));
    assert!(status.message().len() <= MESSAGE_MAX);
    let size = percent_encoded_len(status.message()) + base64_len(status.details().len());
    assert!(size <= TRAILER_BUDGET, "{size} bytes of trailers");
    let info = status.get_details_error_info().unwrap();
    let kept = &info.metadata["traceback"];
    assert!(kept.ends_with("ValueError: the end"), "the end is kept");
    assert!(kept.len() <= TRACEBACK_MAX);

    // A short message leaves the traceback its whole 4 KiB.
    let status = super::status(&Error::Python(exception(&"x".repeat(10_000))));
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata["traceback"].len(), TRACEBACK_MAX);
}

#[test]
fn cuts_fall_on_character_boundaries() {
    assert_eq!(head("abc", 10), "abc");
    let cut = head(&"é".repeat(10), 8);
    assert!(cut.ends_with('…') && cut.len() <= 8, "{cut}");
    let end = tail(&"é".repeat(10), 7);
    assert_eq!(end, "ééé");
}
