//! One constructor per [`Frame`] kind: the only place a frame is assembled.
//!
//! Host → worker: [`execute`], [`cancel`], [`credit`], [`ping`],
//! [`release_session`], [`release_ref`], [`shutdown`], [`host_call_result`]
//! (and [`host_call_error`]), [`variable_update`]; both ways:
//! [`release_shared`].
//! Worker → host: [`hello`], [`result`], [`chunk`], [`error`], [`host_call`],
//! [`pong`], [`telemetry`] (the Python worker builds these with the functions
//! of the same names in `snakepit_bridge`; the host uses them in tests and
//! fake workers).
//!
//! Every frame carries the id of the exchange it belongs to; frames outside
//! any exchange (`Hello`, `Shutdown`, a watch's `VariableUpdate`) use id 0.
//!
//! ```
//! use snakepit_proto::frames;
//! use snakepit_proto::v1::frame::Kind;
//! let frame = frames::cancel(7, "caller gave up");
//! assert_eq!(frame.id, 7);
//! assert!(matches!(frame.kind, Some(Kind::Cancel(c)) if c.reason == "caller gave up"));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::v1::{self, Frame, frame::Kind, host_call_result::Outcome};

fn frame(id: u64, kind: Kind) -> Frame {
    Frame {
        id,
        kind: Some(kind),
    }
}

/// Nanoseconds since the Unix epoch of `at` (0 before the epoch).
fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// ---- host → worker ----

/// Request `id`: run a tool.
pub fn execute(id: u64, execute: v1::Execute) -> Frame {
    frame(id, Kind::Execute(execute))
}

/// Stop running request `id`, for `reason`.
pub fn cancel(id: u64, reason: impl Into<String>) -> Frame {
    frame(
        id,
        Kind::Cancel(v1::Cancel {
            reason: reason.into(),
        }),
    )
}

/// Stream `id` may send `chunks` more chunks.
pub fn credit(id: u64, chunks: u32) -> Frame {
    frame(id, Kind::Credit(v1::Credit { chunks }))
}

/// Heartbeat `seq`, stamped with the time it was `sent`.
pub fn ping(seq: u64, sent: SystemTime) -> Frame {
    frame(
        seq,
        Kind::Ping(v1::Ping {
            sent_unix_nanos: unix_nanos(sent),
        }),
    )
}

/// Exchange `id`: drop everything held for `session_id`.
pub fn release_session(id: u64, session_id: impl Into<String>) -> Frame {
    frame(
        id,
        Kind::ReleaseSession(v1::ReleaseSession {
            session_id: session_id.into(),
        }),
    )
}

/// Exchange `id`: drop object `ref_id` of `session_id`.
pub fn release_ref(id: u64, session_id: impl Into<String>, ref_id: impl Into<String>) -> Frame {
    frame(
        id,
        Kind::ReleaseRef(v1::ReleaseRef {
            session_id: session_id.into(),
            ref_id: ref_id.into(),
        }),
    )
}

/// Finish what runs within `grace`, then exit (id 0).
pub fn shutdown(grace: Duration) -> Frame {
    frame(
        0,
        Kind::Shutdown(v1::Shutdown {
            grace_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
        }),
    )
}

/// The answer to host call `id`.
pub fn host_call_result(id: u64, result: v1::HostCallResult) -> Frame {
    frame(id, Kind::HostCallResult(result))
}

/// Host call `id` failed (or was refused) with `error`.
pub fn host_call_error(id: u64, error: v1::Error) -> Frame {
    host_call_result(
        id,
        v1::HostCallResult {
            outcome: Some(Outcome::Error(error)),
        },
    )
}

/// A watched variable changed (id 0: it answers no exchange).
pub fn variable_update(update: v1::VariableUpdate) -> Frame {
    frame(0, Kind::VariableUpdate(update))
}

// ---- worker → host ----

/// The worker's first frame (id 0).
pub fn hello(hello: v1::Hello) -> Frame {
    frame(0, Kind::Hello(hello))
}

/// Request `id` returned `value`.
pub fn result(id: u64, value: v1::Value) -> Frame {
    frame(
        id,
        Kind::Result(v1::Result {
            value: Some(value),
            ..Default::default()
        }),
    )
}

/// Item `seq` of stream `id`; the last one has `is_final` (and may carry no
/// value).
pub fn chunk(id: u64, seq: u64, value: Option<v1::Value>, is_final: bool) -> Frame {
    frame(
        id,
        Kind::Chunk(v1::Chunk {
            seq,
            value,
            is_final,
            metadata: Default::default(),
            run: Vec::new(),
        }),
    )
}

/// Request `id` failed (id 0: the adapter could not start).
pub fn error(id: u64, error: v1::Error) -> Frame {
    frame(id, Kind::Error(error))
}

/// Exchange `id`: Python calls a host tool.
pub fn host_call(id: u64, call: v1::HostCall) -> Frame {
    frame(id, Kind::HostCall(call))
}

/// The answer to heartbeat `seq`, echoing its stamp.
pub fn pong(seq: u64, sent_unix_nanos: u64, in_flight: u32) -> Frame {
    frame(
        seq,
        Kind::Pong(v1::Pong {
            sent_unix_nanos,
            in_flight,
        }),
    )
}

/// An event Python emitted, during request `id` (0 if none).
pub fn telemetry(id: u64, event: v1::TelemetryEvent) -> Frame {
    frame(id, Kind::Telemetry(event))
}

// ---- both ways ----

/// The sender is done with these regions of the receiver's shared-memory
/// arena (one offset per reference it was given).
pub fn release_shared(offsets: Vec<u64>) -> Frame {
    frame(0, Kind::ReleaseShared(v1::ReleaseShared { offsets }))
}

/// Calls `f` on every value `frame` carries, containers before what they
/// hold; stops at the first error. Frames that carry no value cost nothing.
pub fn visit_values<E>(
    frame: &mut Frame,
    f: &mut impl FnMut(&mut v1::Value) -> Result<(), E>,
) -> Result<(), E> {
    let mut each = |values: &mut dyn Iterator<Item = &mut v1::Value>| {
        for v in values {
            visit_value(v, &mut *f)?;
        }
        Ok(())
    };
    match frame.kind.as_mut() {
        Some(Kind::Execute(e)) => each(
            &mut e.args.iter_mut().chain(e.kwargs.values_mut()).chain(
                e.batch
                    .iter_mut()
                    .flat_map(|c| c.args.iter_mut().chain(c.kwargs.values_mut())),
            ),
        ),
        Some(Kind::HostCall(c)) => each(&mut c.args.iter_mut().chain(c.kwargs.values_mut())),
        Some(Kind::Result(r)) => each(
            &mut r
                .value
                .iter_mut()
                .chain(
                    r.items
                        .iter_mut()
                        .filter_map(|item| match item.outcome.as_mut() {
                            Some(v1::batch_outcome::Outcome::Value(v)) => Some(v),
                            _ => None,
                        }),
                ),
        ),
        Some(Kind::Chunk(c)) => each(
            &mut c
                .value
                .iter_mut()
                .chain(c.metadata.values_mut())
                .chain(c.run.iter_mut()),
        ),
        Some(Kind::HostCallResult(r)) => match r.outcome.as_mut() {
            Some(Outcome::Value(v)) => each(&mut std::iter::once(v)),
            _ => Ok(()),
        },
        Some(Kind::VariableUpdate(u)) => {
            each(&mut u.old_value.iter_mut().chain(u.new_value.iter_mut()))
        }
        Some(Kind::Telemetry(t)) => each(&mut t.metadata.values_mut()),
        _ => Ok(()),
    }
}

/// Calls `f` on `value` and every value inside it, containers first.
pub fn visit_value<E>(
    value: &mut v1::Value,
    f: &mut impl FnMut(&mut v1::Value) -> Result<(), E>,
) -> Result<(), E> {
    use v1::value::Kind as V;
    f(value)?;
    match value.kind.as_mut() {
        Some(V::List(l) | V::Tuple(l) | V::Set(l) | V::Frozenset(l)) => {
            for item in &mut l.items {
                visit_value(item, f)?;
            }
        }
        Some(V::Map(m)) => {
            for entry in &mut m.entries {
                for v in entry.key.iter_mut().chain(entry.value.iter_mut()) {
                    visit_value(v, f)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing;
    use bytes::BytesMut;

    /// Encodes and decodes `f`, as the other end would see it.
    fn through_the_wire(f: Frame) -> Frame {
        let mut buf = BytesMut::new();
        framing::encode(&f, &mut buf, 1 << 20).unwrap();
        framing::decode(&mut buf, 1 << 20).unwrap().unwrap()
    }

    fn kind(f: Frame) -> Kind {
        through_the_wire(f).kind.expect("a kind")
    }

    #[test]
    fn host_frames_carry_their_id_and_content() {
        let exec = v1::Execute {
            tool: "add".into(),
            session_id: "s".into(),
            ..Default::default()
        };
        let f = execute(3, exec.clone());
        assert_eq!(f.id, 3);
        assert_eq!(kind(f), Kind::Execute(exec));
        assert_eq!(
            kind(cancel(4, "why")),
            Kind::Cancel(v1::Cancel {
                reason: "why".into()
            })
        );
        assert_eq!(kind(credit(5, 8)), Kind::Credit(v1::Credit { chunks: 8 }));
        assert_eq!(
            kind(release_session(6, "s")),
            Kind::ReleaseSession(v1::ReleaseSession {
                session_id: "s".into()
            })
        );
        assert_eq!(
            kind(release_ref(7, "s", "w/1")),
            Kind::ReleaseRef(v1::ReleaseRef {
                session_id: "s".into(),
                ref_id: "w/1".into()
            })
        );
    }

    #[test]
    fn ping_is_stamped_with_its_send_time() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_234);
        let f = ping(9, at);
        assert_eq!(f.id, 9);
        assert_eq!(
            kind(f),
            Kind::Ping(v1::Ping {
                sent_unix_nanos: 1_234
            })
        );
        assert_eq!(
            kind(ping(1, UNIX_EPOCH - Duration::from_secs(1))),
            Kind::Ping(v1::Ping { sent_unix_nanos: 0 })
        );
    }

    #[test]
    fn shutdown_is_exchange_zero_in_whole_milliseconds() {
        let f = shutdown(Duration::from_micros(2_500_900));
        assert_eq!(f.id, 0);
        assert_eq!(kind(f), Kind::Shutdown(v1::Shutdown { grace_ms: 2_500 }));
        assert_eq!(
            kind(shutdown(Duration::MAX)),
            Kind::Shutdown(v1::Shutdown { grace_ms: u32::MAX })
        );
    }

    #[test]
    fn host_call_answers_hold_a_value_or_an_error() {
        let value = v1::HostCallResult {
            outcome: Some(Outcome::Value(crate::Value::from(2).into())),
        };
        assert_eq!(
            kind(host_call_result(11, value.clone())),
            Kind::HostCallResult(value)
        );
        let err = v1::Error {
            kind: v1::ErrorKind::Busy as i32,
            message: "later".into(),
            ..Default::default()
        };
        let f = host_call_error(12, err.clone());
        assert_eq!(f.id, 12);
        assert_eq!(
            kind(f),
            Kind::HostCallResult(v1::HostCallResult {
                outcome: Some(Outcome::Error(err))
            })
        );
    }

    #[test]
    fn variable_update_answers_no_exchange() {
        let update = v1::VariableUpdate {
            session_id: "s".into(),
            watch_id: "w".into(),
            version: 2,
            ..Default::default()
        };
        let f = variable_update(update.clone());
        assert_eq!(f.id, 0);
        assert_eq!(kind(f), Kind::VariableUpdate(update));
    }

    #[test]
    fn worker_frames_carry_their_id_and_content() {
        let h = v1::Hello {
            protocol_version: crate::PROTOCOL_VERSION,
            pid: 42,
            ..Default::default()
        };
        let f = hello(h.clone());
        assert_eq!(f.id, 0);
        assert_eq!(kind(f), Kind::Hello(h));
        let one: v1::Value = crate::Value::from(1).into();
        assert_eq!(
            kind(result(2, one.clone())),
            Kind::Result(v1::Result {
                value: Some(one.clone()),
                ..Default::default()
            })
        );
        assert_eq!(
            kind(chunk(3, 4, None, true)),
            Kind::Chunk(v1::Chunk {
                seq: 4,
                value: None,
                is_final: true,
                metadata: Default::default(),
                run: Vec::new(),
            })
        );
        let err = v1::Error {
            message: "boom".into(),
            ..Default::default()
        };
        assert_eq!(kind(error(5, err.clone())), Kind::Error(err));
        let call = v1::HostCall {
            tool: "t".into(),
            parent_request_id: 5,
            ..Default::default()
        };
        assert_eq!(kind(host_call(6, call.clone())), Kind::HostCall(call));
        assert_eq!(
            kind(pong(7, 99, 2)),
            Kind::Pong(v1::Pong {
                sent_unix_nanos: 99,
                in_flight: 2
            })
        );
        let event = v1::TelemetryEvent {
            name: "e".into(),
            ..Default::default()
        };
        assert_eq!(kind(telemetry(8, event.clone())), Kind::Telemetry(event));
    }

    #[test]
    fn the_values_of_a_batch_are_visited() {
        let v = |n: i64| -> v1::Value { crate::Value::from(n).into() };
        let mut execute = execute(
            1,
            v1::Execute {
                batch: vec![
                    v1::BatchCall {
                        kwargs: [("x".to_string(), v(1))].into(),
                        ..Default::default()
                    },
                    v1::BatchCall {
                        args: vec![v(2)],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        );
        let mut result = frame(
            1,
            Kind::Result(v1::Result {
                items: vec![
                    v1::BatchOutcome {
                        outcome: Some(v1::batch_outcome::Outcome::Value(v(3))),
                    },
                    v1::BatchOutcome {
                        outcome: Some(v1::batch_outcome::Outcome::Error(v1::Error::default())),
                    },
                ],
                ..Default::default()
            }),
        );
        for (frame, expected) in [(&mut execute, 2), (&mut result, 1)] {
            let mut seen = 0;
            visit_values(frame, &mut |_: &mut v1::Value| {
                seen += 1;
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(seen, expected);
        }
    }
}
