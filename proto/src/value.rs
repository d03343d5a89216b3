//! The typed [`Value`] that crosses between Rust and Python.
//!
//! Every Python value the bridge understands has a variant here, so ints stay
//! ints (beyond 64 bits too), bytes stay bytes, tuples stay tuples and maps keep
//! non-string keys. Conversions: to and from the generated `v1::Value`, from
//! plain Rust types (`From`), into them (`TryFrom`), to and from
//! `serde_json::Value`, and to and from a tagged JSON form that keeps every
//! type ([`Value::to_json_tagged`], [`Value::from_json_tagged`]).
//!
//! This file holds the types and what a value says about itself; the
//! conversions live by form: `wire` (the generated `v1::Value`), `convert`
//! (plain Rust types) and `json` (tagged and plain JSON).

use std::hash::Hash;

use bytes::Bytes;
use num_bigint::BigInt;

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
    /// An error whose `found` is a free description (a value out of range, a
    /// wrong length, a missing field...) rather than a type name.
    pub fn custom(expected: &'static str, found: impl Into<String>) -> Self {
        Self {
            expected,
            found: found.into(),
        }
    }

    fn new(expected: &'static str, found: &Value) -> Self {
        Self::custom(expected, found.type_name())
    }
}

/// A value nested deeper than the wire carries ([`Value::wire_depth_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// Its [`Value::wire_depth`].
    pub depth: u32,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = crate::VALUE_WIRE_DEPTH;
        write!(
            f,
            "nested {} protobuf levels deep; the wire carries at most {limit} \
             (LIMIT_VALUE_WIRE_DEPTH: lists, tuples and sets nest at most {} deep, maps {})",
            self.depth,
            limit / LIST_LEVELS,
            limit / MAP_LEVELS,
        )
    }
}

/// Wire levels a list, tuple or set adds ([`Value::wire_depth`]).
const LIST_LEVELS: u32 = 2;
/// Wire levels a map adds ([`Value::wire_depth`]).
const MAP_LEVELS: u32 = 3;

/// The key that marks a map as standing in for a Python object with no
/// wire form (its value is `true`).
pub const UNSERIALIZABLE_KEY: &str = "__ffi_unserializable__";
/// The marker's key for the object's type, `module.QualName`.
pub const TYPE_KEY: &str = "__type__";
/// The marker's key for the object's repr (present only when the worker's
/// `SNAKEPIT_UNSERIALIZABLE_DETAIL` asks for it; redacted and truncated).
pub const REPR_KEY: &str = "__repr__";

/// What a marker says of the object it stands in for
/// ([`Value::unserializable_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnserializableInfo<'a> {
    /// The object's type, `module.QualName` (`builtins.object`, `mymod.Model`).
    pub type_name: &'a str,
    /// Its repr, when the worker sent one.
    pub repr: Option<&'a str>,
}

impl Value {
    /// Whether this is the marker map a worker sends in place of a Python
    /// object that had no wire form and no conversion method (pool option
    /// `unserializable = "marker"`, the default): `__ffi_unserializable__`
    /// is `true` and `__type__` a string.
    pub fn is_unserializable_marker(&self) -> bool {
        self.unserializable_info().is_some()
    }

    /// The type (and repr, when sent) of the object a marker stands in for;
    /// `None` when this is not a marker.
    pub fn unserializable_info(&self) -> Option<UnserializableInfo<'_>> {
        let Value::Map(entries) = self else {
            return None;
        };
        let get = |key: &str| {
            entries.iter().find_map(|(k, v)| match k {
                Value::Str(k) if k == key => Some(v),
                _ => None,
            })
        };
        if get(UNSERIALIZABLE_KEY) != Some(&Value::Bool(true)) {
            return None;
        }
        let Some(Value::Str(type_name)) = get(TYPE_KEY) else {
            return None;
        };
        let repr = match get(REPR_KEY) {
            Some(Value::Str(r)) => Some(r.as_str()),
            _ => None,
        };
        Some(UnserializableInfo { type_name, repr })
    }

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

    /// Protobuf message levels this value takes on the wire below its own
    /// `Value` message: a list, tuple or set adds two (`ValueList` and the
    /// item's `Value`), a map three (`ValueMap`, `MapEntry`, `Value`), a
    /// leaf none. A value may be sent only while this is at most
    /// [`crate::VALUE_WIRE_DEPTH`]; past it the peer's decoder could not read
    /// the frame. Walks without recursion, so any depth is safe to measure.
    pub fn wire_depth(&self) -> u32 {
        if !self.is_container() {
            return 0;
        }
        // Only containers are pushed: a leaf adds nothing, so a flat list of
        // a million floats costs one pass and no allocation per item.
        fn visit<'a>(
            children: impl Iterator<Item = &'a Value>,
            depth: u32,
            deepest: &mut u32,
            stack: &mut Vec<(&'a Value, u32)>,
        ) {
            let mut children = children.peekable();
            if children.peek().is_some() {
                *deepest = (*deepest).max(depth);
            }
            stack.extend(children.filter(|c| c.is_container()).map(|c| (c, depth)));
        }
        let mut deepest = 0;
        let mut stack: Vec<(&Value, u32)> = vec![(self, 0)];
        while let Some((value, depth)) = stack.pop() {
            match value {
                Value::List(items)
                | Value::Tuple(items)
                | Value::Set(items)
                | Value::FrozenSet(items) => {
                    visit(items.iter(), depth + LIST_LEVELS, &mut deepest, &mut stack)
                }
                Value::Map(entries) => visit(
                    entries.iter().flat_map(|(k, v)| [k, v]),
                    depth + MAP_LEVELS,
                    &mut deepest,
                    &mut stack,
                ),
                _ => {}
            }
        }
        deepest
    }

    fn is_container(&self) -> bool {
        matches!(
            self,
            Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::FrozenSet(_) | Value::Map(_)
        )
    }

    /// Whether this value nests no deeper than the wire carries
    /// ([`crate::VALUE_WIRE_DEPTH`]); see [`Value::wire_depth`].
    pub fn fits_wire_depth(&self) -> bool {
        self.wire_depth_error().is_none()
    }

    /// Why this value cannot be sent, when it nests deeper than the wire
    /// carries; its `Display` names the limit.
    pub fn wire_depth_error(&self) -> Option<TooDeep> {
        let depth = self.wire_depth();
        (depth > crate::VALUE_WIRE_DEPTH).then_some(TooDeep { depth })
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

    /// A `tuple` of the given items.
    pub fn tuple<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Self {
        Value::Tuple(items.into_iter().map(Into::into).collect())
    }

    /// A `set` of the given items, in the given order (duplicates are not
    /// removed here; Python removes them on arrival).
    pub fn set<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Self {
        Value::Set(items.into_iter().map(Into::into).collect())
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
}

mod convert;
pub use convert::IntoValue;
mod json;
mod wire;

#[cfg(test)]
mod tests;
