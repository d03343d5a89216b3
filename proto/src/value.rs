//! The typed [`Value`] that crosses between Rust and Python.
//!
//! Every Python value the bridge understands has a variant here, so ints stay
//! ints (beyond 64 bits too), bytes stay bytes, tuples stay tuples and maps keep
//! non-string keys. Conversions: to and from the generated `v1::Value`, from
//! plain Rust types (`From`), into them (`TryFrom`), and to and from
//! `serde_json::Value`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use num_bigint::BigInt;

use crate::v1;

/// A value that crosses the Rust/Python boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python `None`.
    Null,
    /// `bool`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// An `int` beyond 64 bits.
    BigInt(BigInt),
    /// `float`, including inf, -inf and nan.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Bytes),
    /// `list`.
    List(Vec<Value>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `set`.
    Set(Vec<Value>),
    /// `frozenset`.
    FrozenSet(Vec<Value>),
    /// `dict`, in insertion order, with keys of any hashable type.
    Map(Vec<(Value, Value)>),
    /// A numpy array.
    NdArray(NdArray),
    /// A Python object kept in the worker.
    Ref(ObjectRef),
    /// A Python iterator kept in the worker.
    StreamRef(StreamRefValue),
    /// A host function handed to Python.
    Callback(CallbackRef),
    /// `datetime`, `date`, `time` or `timedelta`.
    Temporal(Temporal),
    /// `complex`.
    Complex {
        /// Real part.
        re: f64,
        /// Imaginary part.
        im: f64,
    },
}

/// A numpy array: dtype name, shape, and C-order little-endian element bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// numpy dtype name, e.g. `float64`.
    pub dtype: String,
    /// Extent of each axis.
    pub shape: Vec<u64>,
    /// Raw element bytes.
    pub data: Bytes,
}

/// A Python object that lives in a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Ref id, unique within its worker.
    pub id: String,
    /// Session owning the ref.
    pub session_id: String,
    /// Python type name.
    pub type_name: String,
    /// `repr()` when asked for.
    pub repr: String,
}

/// A Python iterator that lives in a worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamRefValue {
    /// Ref id.
    pub id: String,
    /// Session owning the ref.
    pub session_id: String,
    /// Python type name.
    pub type_name: String,
}

/// A host callback reachable from Python.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallbackRef {
    /// Registry id.
    pub id: String,
    /// Number of positional arguments it takes.
    pub arity: u32,
}

/// Which `datetime` type a [`Temporal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemporalKind {
    /// `datetime.datetime`.
    DateTime,
    /// `datetime.date`.
    Date,
    /// `datetime.time`.
    Time,
    /// `datetime.timedelta` (text is total microseconds).
    TimeDelta,
}

/// A date or time as ISO 8601 text (timedelta: total microseconds).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Temporal {
    /// Which type.
    pub kind: TemporalKind,
    /// ISO 8601 text, or microseconds for a timedelta.
    pub text: String,
}

/// A [`Value`] was not of the type asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ConversionError {
    /// What the conversion wanted.
    pub expected: &'static str,
    /// What the value was.
    pub found: String,
}

impl ConversionError {
    fn new(expected: &'static str, found: &Value) -> Self {
        Self {
            expected,
            found: found.type_name().to_string(),
        }
    }
}

impl Value {
    /// The Python type name of this value (`int`, `str`, `dict`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Map(_) => "dict",
            Value::NdArray(_) => "ndarray",
            Value::Ref(_) => "ref",
            Value::StreamRef(_) => "stream_ref",
            Value::Callback(_) => "callback",
            Value::Temporal(t) => match t.kind {
                TemporalKind::DateTime => "datetime",
                TemporalKind::Date => "date",
                TemporalKind::Time => "time",
                TemporalKind::TimeDelta => "timedelta",
            },
            Value::Complex { .. } => "complex",
        }
    }

    /// `bytes` from anything byte-like.
    pub fn bytes(data: impl Into<Bytes>) -> Self {
        Value::Bytes(data.into())
    }

    /// A `dict` with string keys, in the given order.
    pub fn map<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.into()), v.into()))
                .collect(),
        )
    }

    /// Looks up a string key in a `dict`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is `None`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Converts into any type that implements `TryFrom<Value>`.
    pub fn extract<T: TryFrom<Value, Error = ConversionError>>(self) -> Result<T, ConversionError> {
        T::try_from(self)
    }

    /// A JSON rendering that never fails: types JSON lacks become tagged
    /// objects (`{"__type__": "bytes", "base64": ...}`), for display and CLIs.
    pub fn to_json_tagged(&self) -> serde_json::Value {
        use serde_json::{Value as J, json};
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::BigInt(b) => json!({"__type__": "int", "value": b.to_string()}),
            Value::Float(f) if f.is_finite() => J::from(*f),
            Value::Float(f) => json!({"__type__": "float", "value": f.to_string()}),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => json!({"__type__": "bytes", "base64": b64(b)}),
            Value::List(items) => J::Array(items.iter().map(Value::to_json_tagged).collect()),
            Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => json!({
                "__type__": self.type_name(),
                "items": items.iter().map(Value::to_json_tagged).collect::<Vec<_>>(),
            }),
            Value::Map(entries) => {
                if entries.iter().all(|(k, _)| matches!(k, Value::Str(_))) {
                    J::Object(
                        entries
                            .iter()
                            .map(|(k, v)| match k {
                                Value::Str(k) => (k.clone(), v.to_json_tagged()),
                                _ => unreachable!("checked above"),
                            })
                            .collect(),
                    )
                } else {
                    json!({"__type__": "dict", "entries": entries
                        .iter()
                        .map(|(k, v)| json!([k.to_json_tagged(), v.to_json_tagged()]))
                        .collect::<Vec<_>>()})
                }
            }
            Value::NdArray(a) => json!({
                "__type__": "ndarray", "dtype": a.dtype, "shape": a.shape, "base64": b64(&a.data),
            }),
            Value::Ref(r) => json!({
                "__type__": "ref", "id": r.id, "session_id": r.session_id,
                "python_type": r.type_name,
            }),
            Value::StreamRef(r) => json!({
                "__type__": "stream_ref", "id": r.id, "session_id": r.session_id,
                "python_type": r.type_name,
            }),
            Value::Callback(c) => json!({"__type__": "callback", "id": c.id, "arity": c.arity}),
            Value::Temporal(t) => json!({"__type__": self.type_name(), "value": t.text}),
            Value::Complex { re, im } => json!({"__type__": "complex", "real": re, "imag": im}),
        }
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json_tagged())
    }
}

// ------------------------------------------------------------ wire form

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
            }),
            Value::Ref(r) => Kind::Ref(v1::ObjectRef {
                id: r.id,
                session_id: r.session_id,
                type_name: r.type_name,
                repr: r.repr,
            }),
            Value::StreamRef(r) => Kind::StreamRef(v1::StreamRef {
                id: r.id,
                session_id: r.session_id,
                type_name: r.type_name,
            }),
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
            Some(Kind::Ref(r)) => Value::Ref(ObjectRef {
                id: r.id,
                session_id: r.session_id,
                type_name: r.type_name,
                repr: r.repr,
            }),
            Some(Kind::StreamRef(r)) => Value::StreamRef(StreamRefValue {
                id: r.id,
                session_id: r.session_id,
                type_name: r.type_name,
            }),
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

// ------------------------------------------------------- from Rust types

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(v as i64) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, isize);

macro_rules! from_wide_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::BigInt(BigInt::from(v)),
                }
            }
        }
    )*};
}
from_wide_int!(u64, usize, i128, u128);

impl From<BigInt> for Value {
    fn from(v: BigInt) -> Self {
        match i64::try_from(&v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::BigInt(v),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(v as f64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<Bytes> for Value {
    fn from(v: Bytes) -> Self {
        Value::Bytes(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(v))
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Self {
        Value::Null
    }
}

impl From<NdArray> for Value {
    fn from(v: NdArray) -> Self {
        Value::NdArray(v)
    }
}

impl From<ObjectRef> for Value {
    fn from(v: ObjectRef) -> Self {
        Value::Ref(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A `Vec` becomes a `list`. For `bytes`, use [`Value::bytes`] or [`Bytes`].
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

impl<K: Into<Value>, V: Into<Value>> From<HashMap<K, V>> for Value {
    fn from(v: HashMap<K, V>) -> Self {
        Value::Map(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(v: BTreeMap<K, V>) -> Self {
        Value::Map(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

macro_rules! from_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> From<($($name,)+)> for Value {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Value::Tuple(vec![$($name.into()),+])
            }
        }
    };
}
from_tuple!(A);
from_tuple!(A, B);
from_tuple!(A, B, C);
from_tuple!(A, B, C, D);

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => Value::Str(s),
            J::Array(items) => Value::List(items.into_iter().map(Value::from).collect()),
            J::Object(map) => Value::Map(
                map.into_iter()
                    .map(|(k, v)| (Value::Str(k), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

// --------------------------------------------------------- into Rust types

impl TryFrom<Value> for i64 {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(ConversionError::new("int (64-bit)", &other)),
        }
    }
}

impl TryFrom<Value> for BigInt {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Int(i) => Ok(BigInt::from(i)),
            Value::BigInt(b) => Ok(b),
            other => Err(ConversionError::new("int", &other)),
        }
    }
}

impl TryFrom<Value> for f64 {
    type Error = ConversionError;
    /// Accepts `float` and `int` (as Python would in arithmetic).
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Float(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(ConversionError::new("float", &other)),
        }
    }
}

impl TryFrom<Value> for bool {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Bool(b) => Ok(b),
            other => Err(ConversionError::new("bool", &other)),
        }
    }
}

impl TryFrom<Value> for String {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Str(s) => Ok(s),
            other => Err(ConversionError::new("str", &other)),
        }
    }
}

impl TryFrom<Value> for Bytes {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(ConversionError::new("bytes", &other)),
        }
    }
}

impl TryFrom<Value> for () {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Null => Ok(()),
            other => Err(ConversionError::new("None", &other)),
        }
    }
}

impl TryFrom<Value> for NdArray {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::NdArray(a) => Ok(a),
            other => Err(ConversionError::new("ndarray", &other)),
        }
    }
}

impl<T: TryFrom<Value, Error = ConversionError>> TryFrom<Value> for Option<T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Null => Ok(None),
            other => T::try_from(other).map(Some),
        }
    }
}

/// Accepts `list`, `tuple`, `set` and `frozenset`.
impl<T: TryFrom<Value, Error = ConversionError>> TryFrom<Value> for Vec<T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => items.into_iter().map(T::try_from).collect(),
            other => Err(ConversionError::new("list", &other)),
        }
    }
}

impl<T: TryFrom<Value, Error = ConversionError>> TryFrom<Value> for HashMap<String, T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| Ok((String::try_from(k)?, T::try_from(v)?)))
                .collect(),
            other => Err(ConversionError::new("dict", &other)),
        }
    }
}

impl TryFrom<Value> for serde_json::Value {
    type Error = ConversionError;
    /// Strict: fails for anything JSON cannot say exactly (bytes, ndarrays,
    /// non-string keys, nan, refs...). See [`Value::to_json_tagged`] for a
    /// rendering that never fails.
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        use serde_json::Value as J;
        Ok(match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(b),
            Value::Int(i) => J::from(i),
            Value::Float(f) => serde_json::Number::from_f64(f)
                .map(J::Number)
                .ok_or_else(|| ConversionError::new("finite float", &Value::Float(f)))?,
            Value::Str(s) => J::String(s),
            Value::List(items) | Value::Tuple(items) => J::Array(
                items
                    .into_iter()
                    .map(J::try_from)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => J::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::Str(k) => Ok((k, J::try_from(v)?)),
                        other => Err(ConversionError::new("string key", &other)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(ConversionError::new("a JSON-representable value", &other)),
        })
    }
}

#[cfg(test)]
mod tests;
