//! [`Value`] to and from the generated `v1::Value` that travels in frames;
//! an `int` that fits in 64 bits always crosses as `Int`, whatever its variant.

use num_bigint::BigInt;

use super::{CallbackRef, NdArray, ObjectRef, StreamRefValue, Temporal, TemporalKind, Value};
use crate::v1;

impl From<Value> for v1::Value {
    fn from(value: Value) -> Self {
        use v1::value::Kind;
        let list = |items: Vec<Value>| v1::ValueList {
            items: items.into_iter().map(Into::into).collect(),
        };
        let kind = match value {
            Value::Null => Kind::Null(v1::Null::Value as i32),
            Value::Bool(b) => Kind::Bool(b),
            Value::Int(i) => Kind::Int(i),
            Value::BigInt(b) => match i64::try_from(&b) {
                Ok(i) => Kind::Int(i),
                Err(_) => Kind::BigInt(b.to_signed_bytes_be()),
            },
            Value::Float(f) => Kind::Float(f),
            Value::Str(s) => Kind::Str(s),
            Value::Bytes(b) => Kind::Bytes(b),
            Value::List(items) => Kind::List(list(items)),
            Value::Tuple(items) => Kind::Tuple(list(items)),
            Value::Set(items) => Kind::Set(list(items)),
            Value::FrozenSet(items) => Kind::Frozenset(list(items)),
            Value::Map(entries) => Kind::Map(v1::ValueMap {
                entries: entries
                    .into_iter()
                    .map(|(k, v)| v1::MapEntry {
                        key: Some(k.into()),
                        value: Some(v.into()),
                    })
                    .collect(),
            }),
            Value::NdArray(a) => Kind::Ndarray(v1::NdArray {
                dtype: a.dtype,
                shape: a.shape,
                data: a.data,
                shared: None,
            }),
            Value::Ref(r) => Kind::Ref(r.into()),
            Value::StreamRef(r) => Kind::StreamRef(r.into()),
            Value::Callback(c) => Kind::Callback(v1::Callback {
                id: c.id,
                arity: c.arity,
            }),
            Value::Temporal(t) => Kind::Temporal(v1::Temporal {
                kind: match t.kind {
                    TemporalKind::DateTime => v1::TemporalKind::Datetime,
                    TemporalKind::Date => v1::TemporalKind::Date,
                    TemporalKind::Time => v1::TemporalKind::Time,
                    TemporalKind::TimeDelta => v1::TemporalKind::Timedelta,
                } as i32,
                text: t.text,
            }),
            Value::Complex { re, im } => Kind::Complex(v1::Complex { real: re, imag: im }),
        };
        v1::Value { kind: Some(kind) }
    }
}

impl From<v1::Value> for Value {
    /// A value whose kind is missing (an empty message) reads as `None`.
    fn from(value: v1::Value) -> Self {
        use v1::value::Kind;
        let list = |l: v1::ValueList| l.items.into_iter().map(Value::from).collect();
        match value.kind {
            None | Some(Kind::Null(_)) => Value::Null,
            Some(Kind::Bool(b)) => Value::Bool(b),
            Some(Kind::Int(i)) => Value::Int(i),
            Some(Kind::BigInt(b)) => {
                let big = BigInt::from_signed_bytes_be(&b);
                match i64::try_from(&big) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::BigInt(big),
                }
            }
            Some(Kind::Float(f)) => Value::Float(f),
            Some(Kind::Str(s)) => Value::Str(s),
            Some(Kind::Bytes(b)) => Value::Bytes(b),
            // A region of shared memory becomes bytes where the frame was
            // read (the worker connection maps it); anywhere else it names
            // nothing this process can read.
            Some(Kind::SharedBytes(_)) => Value::Bytes(bytes::Bytes::new()),
            Some(Kind::List(l)) => Value::List(list(l)),
            Some(Kind::Tuple(l)) => Value::Tuple(list(l)),
            Some(Kind::Set(l)) => Value::Set(list(l)),
            Some(Kind::Frozenset(l)) => Value::FrozenSet(list(l)),
            Some(Kind::Map(m)) => Value::Map(
                m.entries
                    .into_iter()
                    .map(|e| {
                        (
                            e.key.map(Value::from).unwrap_or(Value::Null),
                            e.value.map(Value::from).unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            ),
            Some(Kind::Ndarray(a)) => Value::NdArray(NdArray {
                dtype: a.dtype,
                shape: a.shape,
                data: a.data,
            }),
            Some(Kind::Ref(r)) => Value::Ref(r.into()),
            Some(Kind::StreamRef(r)) => Value::StreamRef(r.into()),
            Some(Kind::Callback(c)) => Value::Callback(CallbackRef {
                id: c.id,
                arity: c.arity,
            }),
            Some(Kind::Temporal(t)) => Value::Temporal(Temporal {
                kind: match v1::TemporalKind::try_from(t.kind) {
                    Ok(v1::TemporalKind::Date) => TemporalKind::Date,
                    Ok(v1::TemporalKind::Time) => TemporalKind::Time,
                    Ok(v1::TemporalKind::Timedelta) => TemporalKind::TimeDelta,
                    _ => TemporalKind::DateTime,
                },
                text: t.text,
            }),
            Some(Kind::Complex(c)) => Value::Complex {
                re: c.real,
                im: c.imag,
            },
        }
    }
}

// Refs on their own (the gRPC API names them as the targets of FFI calls),
// the same mapping a `Value` of their kind uses.

impl From<ObjectRef> for v1::ObjectRef {
    fn from(r: ObjectRef) -> Self {
        v1::ObjectRef {
            id: r.id,
            session_id: r.session_id,
            type_name: r.type_name,
            repr: r.repr,
        }
    }
}

impl From<v1::ObjectRef> for ObjectRef {
    fn from(r: v1::ObjectRef) -> Self {
        ObjectRef {
            id: r.id,
            session_id: r.session_id,
            type_name: r.type_name,
            repr: r.repr,
        }
    }
}

impl From<StreamRefValue> for v1::StreamRef {
    fn from(r: StreamRefValue) -> Self {
        v1::StreamRef {
            id: r.id,
            session_id: r.session_id,
            type_name: r.type_name,
        }
    }
}

impl From<v1::StreamRef> for StreamRefValue {
    fn from(r: v1::StreamRef) -> Self {
        StreamRefValue {
            id: r.id,
            session_id: r.session_id,
            type_name: r.type_name,
        }
    }
}
