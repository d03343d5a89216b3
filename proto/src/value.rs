//! The typed [`Value`] that crosses between Rust and Python.
//!
//! Every Python value the bridge understands has a variant here, so ints stay
//! ints (beyond 64 bits too), bytes stay bytes, tuples stay tuples and maps keep
//! non-string keys. Conversions: to and from the generated `v1::Value`, from
//! plain Rust types (`From`), into them (`TryFrom`), to and from
//! `serde_json::Value`, and to and from a tagged JSON form that keeps every
//! type ([`Value::to_json_tagged`], [`Value::from_json_tagged`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash};

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

/// Wire levels a list, tuple or set adds ([`Value::wire_depth`]).
const LIST_LEVELS: u32 = 2;
/// Wire levels a map adds ([`Value::wire_depth`]).
const MAP_LEVELS: u32 = 3;

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
        let mut deepest = 0;
        let mut stack: Vec<(&Value, u32)> = vec![(self, 0)];
        while let Some((value, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            match value {
                Value::List(items)
                | Value::Tuple(items)
                | Value::Set(items)
                | Value::FrozenSet(items) => {
                    stack.extend(items.iter().map(|item| (item, depth + LIST_LEVELS)));
                }
                Value::Map(entries) => {
                    for (k, v) in entries {
                        stack.push((k, depth + MAP_LEVELS));
                        stack.push((v, depth + MAP_LEVELS));
                    }
                }
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
        self.wire_depth() <= crate::VALUE_WIRE_DEPTH
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

    /// A JSON rendering that never fails: types JSON lacks become tagged
    /// objects (`{"__type__": "bytes", "base64": ...}`), for display and CLIs.
    ///
    /// A `dict` becomes a plain JSON object when its keys are distinct strings
    /// other than `"__type__"`, and `{"__type__": "dict", "entries": [[k, v],
    /// ...]}` otherwise. Non-finite floats (also inside `complex`) are written
    /// as the text `"NaN"`, `"inf"` or `"-inf"`. [`Value::from_json_tagged`]
    /// reads it all back.
    pub fn to_json_tagged(&self) -> serde_json::Value {
        use serde_json::{Value as J, json};
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::BigInt(b) => json!({TAG: "int", "value": b.to_string()}),
            Value::Float(f) if f.is_finite() => J::from(*f),
            Value::Float(f) => json!({TAG: "float", "value": f.to_string()}),
            Value::Str(s) => J::String(s.clone()),
            Value::Bytes(b) => json!({TAG: "bytes", "base64": b64(b)}),
            Value::List(items) => J::Array(items.iter().map(Value::to_json_tagged).collect()),
            Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => json!({
                TAG: self.type_name(),
                "items": items.iter().map(Value::to_json_tagged).collect::<Vec<_>>(),
            }),
            Value::Map(entries) => map_to_json(entries),
            Value::NdArray(a) => json!({
                TAG: "ndarray", "dtype": a.dtype, "shape": a.shape, "base64": b64(&a.data),
            }),
            Value::Ref(r) => {
                let mut j = json!({
                    TAG: "ref", "id": r.id, "session_id": r.session_id,
                    "python_type": r.type_name,
                });
                if !r.repr.is_empty() {
                    j["repr"] = J::String(r.repr.clone());
                }
                j
            }
            Value::StreamRef(r) => json!({
                TAG: "stream_ref", "id": r.id, "session_id": r.session_id,
                "python_type": r.type_name,
            }),
            Value::Callback(c) => json!({TAG: "callback", "id": c.id, "arity": c.arity}),
            Value::Temporal(t) => json!({TAG: self.type_name(), "value": t.text}),
            Value::Complex { re, im } => {
                json!({TAG: "complex", "real": float_to_json(*re), "imag": float_to_json(*im)})
            }
        }
    }

    /// The inverse of [`Value::to_json_tagged`]:
    /// `from_json_tagged(v.to_json_tagged())` is `v` again, for every
    /// variant. Plain JSON converts as
    /// `From<serde_json::Value>` does (objects become string-keyed `dict`s,
    /// arrays `list`s); an object with a `"__type__"` key must be one of the
    /// tagged forms, or this fails.
    ///
    /// Two things do not come back as they were: an `int` tagged although it
    /// fits in 64 bits comes back as [`Value::Int`] (as it does from the wire),
    /// and a string-keyed `dict` comes back in the key order of
    /// `serde_json::Map` (sorted, unless serde_json's `preserve_order` feature
    /// is on). A `ref` or `stream_ref` without `session_id`, or a `ref`
    /// without `repr`, reads it as empty.
    pub fn from_json_tagged(json: serde_json::Value) -> Result<Value, ConversionError> {
        use serde_json::Value as J;
        match json {
            J::Array(items) => json_items(items).map(Value::List),
            J::Object(mut obj) => match obj.remove(TAG) {
                None => obj
                    .into_iter()
                    .map(|(k, v)| Ok((Value::Str(k), Value::from_json_tagged(v)?)))
                    .collect::<Result<_, _>>()
                    .map(Value::Map),
                Some(J::String(tag)) => from_tagged(&tag, obj),
                Some(other) => Err(ConversionError::custom(
                    KNOWN_TAG,
                    format!("__type__ as {}", json_kind(&other)),
                )),
            },
            scalar => Ok(Value::from(scalar)),
        }
    }
}

// ----------------------------------------------------------- tagged JSON

/// The key that marks a tagged JSON object.
const TAG: &str = "__type__";

/// What an unknown tag was expected to be.
const KNOWN_TAG: &str = "a known __type__ tag";

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A `dict` as a plain object when its keys allow (distinct strings, none of
/// them [`TAG`]), else as tagged entries.
fn map_to_json(entries: &[(Value, Value)]) -> serde_json::Value {
    use serde_json::{Value as J, json};
    let tagged = || {
        json!({TAG: "dict", "entries": entries
            .iter()
            .map(|(k, v)| json!([k.to_json_tagged(), v.to_json_tagged()]))
            .collect::<Vec<_>>()})
    };
    if !entries
        .iter()
        .all(|(k, _)| matches!(k, Value::Str(k) if k != TAG))
    {
        return tagged();
    }
    let mut obj = JsonMap::new();
    for (k, v) in entries {
        let Value::Str(k) = k else {
            unreachable!("checked above")
        };
        if obj.contains_key(k) {
            return tagged();
        }
        obj.insert(k.clone(), v.to_json_tagged());
    }
    J::Object(obj)
}

/// A float as a JSON number, or as its text when JSON has no number for it.
fn float_to_json(f: f64) -> serde_json::Value {
    if f.is_finite() {
        serde_json::Value::from(f)
    } else {
        serde_json::Value::String(f.to_string())
    }
}

/// The JSON type of `j`, for error messages.
fn json_kind(j: &serde_json::Value) -> &'static str {
    use serde_json::Value as J;
    match j {
        J::Null => "null",
        J::Bool(_) => "bool",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

/// The error for field `key` of a tagged object being missing or mistyped.
fn bad_field(
    expected: &'static str,
    key: &str,
    found: Option<&serde_json::Value>,
) -> ConversionError {
    match found {
        None => ConversionError::custom(expected, format!("no `{key}`")),
        Some(j) => ConversionError::custom(expected, format!("`{key}` as {}", json_kind(j))),
    }
}

fn take_str(
    obj: &mut JsonMap,
    key: &str,
    expected: &'static str,
) -> Result<String, ConversionError> {
    match obj.remove(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        other => Err(bad_field(expected, key, other.as_ref())),
    }
}

/// Like [`take_str`], but a missing field reads as empty.
fn take_opt_str(
    obj: &mut JsonMap,
    key: &str,
    expected: &'static str,
) -> Result<String, ConversionError> {
    match obj.remove(key) {
        None => Ok(String::new()),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => Err(bad_field(expected, key, Some(&other))),
    }
}

/// A float written as a number, or as text (`"NaN"`, `"inf"`, `"-inf"`).
fn take_float(
    obj: &mut JsonMap,
    key: &str,
    expected: &'static str,
) -> Result<f64, ConversionError> {
    use serde_json::Value as J;
    match obj.remove(key) {
        Some(J::Number(n)) => n
            .as_f64()
            .ok_or_else(|| ConversionError::custom(expected, format!("`{key}` {n}"))),
        Some(J::String(s)) => s
            .parse()
            .map_err(|_| ConversionError::custom(expected, format!("`{key}` {s:?}"))),
        other => Err(bad_field(expected, key, other.as_ref())),
    }
}

fn take_u64(obj: &mut JsonMap, key: &str, expected: &'static str) -> Result<u64, ConversionError> {
    match obj.remove(key) {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| ConversionError::custom(expected, format!("`{key}` {n}"))),
        other => Err(bad_field(expected, key, other.as_ref())),
    }
}

fn take_base64(
    obj: &mut JsonMap,
    key: &str,
    expected: &'static str,
) -> Result<Bytes, ConversionError> {
    let text = take_str(obj, key, expected)?;
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map(Bytes::from)
        .map_err(|e| ConversionError::custom(expected, format!("`{key}` not base64 ({e})")))
}

fn take_array(
    obj: &mut JsonMap,
    key: &str,
    expected: &'static str,
) -> Result<Vec<serde_json::Value>, ConversionError> {
    match obj.remove(key) {
        Some(serde_json::Value::Array(items)) => Ok(items),
        other => Err(bad_field(expected, key, other.as_ref())),
    }
}

fn json_items(items: Vec<serde_json::Value>) -> Result<Vec<Value>, ConversionError> {
    items.into_iter().map(Value::from_json_tagged).collect()
}

/// The value of a tagged object, its tag already removed.
fn from_tagged(tag: &str, mut obj: JsonMap) -> Result<Value, ConversionError> {
    use serde_json::Value as J;
    let obj = &mut obj;
    Ok(match tag {
        "int" => {
            const EXPECTED: &str = "tagged int with decimal text `value`";
            let text = take_str(obj, "value", EXPECTED)?;
            match text.parse::<BigInt>() {
                Ok(b) => Value::from(b),
                Err(_) => {
                    return Err(ConversionError::custom(
                        EXPECTED,
                        format!("`value` {text:?}"),
                    ));
                }
            }
        }
        "float" => Value::Float(take_float(
            obj,
            "value",
            "tagged float with a float `value`",
        )?),
        "bytes" => Value::Bytes(take_base64(
            obj,
            "base64",
            "tagged bytes with base64 text `base64`",
        )?),
        "tuple" => Value::Tuple(json_items(take_array(
            obj,
            "items",
            "tagged tuple with array `items`",
        )?)?),
        "set" => Value::Set(json_items(take_array(
            obj,
            "items",
            "tagged set with array `items`",
        )?)?),
        "frozenset" => Value::FrozenSet(json_items(take_array(
            obj,
            "items",
            "tagged frozenset with array `items`",
        )?)?),
        "dict" => {
            const EXPECTED: &str = "tagged dict with `entries` of [key, value] pairs";
            take_array(obj, "entries", EXPECTED)?
                .into_iter()
                .map(|entry| match entry {
                    J::Array(pair) if pair.len() == 2 => {
                        let mut pair = pair.into_iter();
                        let (Some(k), Some(v)) = (pair.next(), pair.next()) else {
                            unreachable!("length checked")
                        };
                        Ok((Value::from_json_tagged(k)?, Value::from_json_tagged(v)?))
                    }
                    J::Array(pair) => Err(ConversionError::custom(
                        EXPECTED,
                        format!("an entry of {} items", pair.len()),
                    )),
                    other => Err(ConversionError::custom(
                        EXPECTED,
                        format!("an entry as {}", json_kind(&other)),
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Value::Map)?
        }
        "ndarray" => {
            const EXPECTED: &str = "tagged ndarray with `dtype`, `shape` and `base64`";
            let dtype = take_str(obj, "dtype", EXPECTED)?;
            let shape = take_array(obj, "shape", EXPECTED)?
                .into_iter()
                .map(|n| {
                    n.as_u64().ok_or_else(|| {
                        ConversionError::custom(EXPECTED, format!("a `shape` item {n}"))
                    })
                })
                .collect::<Result<_, _>>()?;
            let data = take_base64(obj, "base64", EXPECTED)?;
            Value::NdArray(NdArray { dtype, shape, data })
        }
        "ref" => {
            const EXPECTED: &str =
                "tagged ref with string `id`, `session_id`, `python_type`, `repr`";
            Value::Ref(ObjectRef {
                id: take_str(obj, "id", EXPECTED)?,
                session_id: take_opt_str(obj, "session_id", EXPECTED)?,
                type_name: take_str(obj, "python_type", EXPECTED)?,
                repr: take_opt_str(obj, "repr", EXPECTED)?,
            })
        }
        "stream_ref" => {
            const EXPECTED: &str =
                "tagged stream_ref with string `id`, `session_id`, `python_type`";
            Value::StreamRef(StreamRefValue {
                id: take_str(obj, "id", EXPECTED)?,
                session_id: take_opt_str(obj, "session_id", EXPECTED)?,
                type_name: take_str(obj, "python_type", EXPECTED)?,
            })
        }
        "callback" => {
            const EXPECTED: &str = "tagged callback with string `id` and 32-bit `arity`";
            let id = take_str(obj, "id", EXPECTED)?;
            let arity = take_u64(obj, "arity", EXPECTED)?;
            let arity = u32::try_from(arity)
                .map_err(|_| ConversionError::custom(EXPECTED, format!("`arity` {arity}")))?;
            Value::Callback(CallbackRef { id, arity })
        }
        "datetime" | "date" | "time" | "timedelta" => {
            let kind = match tag {
                "datetime" => TemporalKind::DateTime,
                "date" => TemporalKind::Date,
                "time" => TemporalKind::Time,
                _ => TemporalKind::TimeDelta,
            };
            let text = take_str(obj, "value", "tagged date or time with string `value`")?;
            Value::Temporal(Temporal { kind, text })
        }
        "complex" => {
            const EXPECTED: &str = "tagged complex with float `real` and `imag`";
            Value::Complex {
                re: take_float(obj, "real", EXPECTED)?,
                im: take_float(obj, "imag", EXPECTED)?,
            }
        }
        _ => {
            return Err(ConversionError::custom(
                KNOWN_TAG,
                format!("__type__ {tag:?}"),
            ));
        }
    })
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

impl From<StreamRefValue> for Value {
    fn from(v: StreamRefValue) -> Self {
        Value::StreamRef(v)
    }
}

/// A stream ref is an object ref too: its methods and attributes can be
/// used (`close()` on a generator, say).
impl From<StreamRefValue> for ObjectRef {
    fn from(v: StreamRefValue) -> Self {
        ObjectRef {
            id: v.id,
            session_id: v.session_id,
            type_name: v.type_name,
            repr: String::new(),
        }
    }
}

impl From<CallbackRef> for Value {
    fn from(v: CallbackRef) -> Self {
        Value::Callback(v)
    }
}

impl From<Temporal> for Value {
    fn from(v: Temporal) -> Self {
        Value::Temporal(v)
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

/// A `HashSet` becomes a `set`, in the set's iteration order.
impl<T: Into<Value>, S> From<HashSet<T, S>> for Value {
    fn from(v: HashSet<T, S>) -> Self {
        Value::Set(v.into_iter().map(Into::into).collect())
    }
}

/// A `BTreeSet` becomes a `set`, in sorted order.
impl<T: Into<Value>> From<BTreeSet<T>> for Value {
    fn from(v: BTreeSet<T>) -> Self {
        Value::Set(v.into_iter().map(Into::into).collect())
    }
}

impl<K: Into<Value>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    fn from(v: HashMap<K, V, S>) -> Self {
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

macro_rules! try_from_int {
    ($($t:ty => $expected:literal),* $(,)?) => {$(
        /// Accepts an `int` in range: out of range or another type is an
        #[doc = concat!("error expecting \"", $expected, "\".")]
        impl TryFrom<Value> for $t {
            type Error = ConversionError;
            fn try_from(v: Value) -> Result<Self, Self::Error> {
                match v {
                    Value::Int(i) => <$t>::try_from(i)
                        .map_err(|_| ConversionError::custom($expected, format!("int {i}"))),
                    Value::BigInt(b) => <$t>::try_from(&b)
                        .map_err(|_| ConversionError::custom($expected, format!("int {b}"))),
                    other => Err(ConversionError::new($expected, &other)),
                }
            }
        }
    )*};
}
try_from_int!(
    i8 => "int fitting i8",
    i16 => "int fitting i16",
    i32 => "int fitting i32",
    i64 => "int fitting i64",
    i128 => "int fitting i128",
    isize => "int fitting isize",
    u8 => "int fitting u8",
    u16 => "int fitting u16",
    u32 => "int fitting u32",
    u64 => "int fitting u64",
    u128 => "int fitting u128",
    usize => "int fitting usize",
);

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

impl TryFrom<Value> for f32 {
    type Error = ConversionError;
    /// Accepts `float` and `int`, rounding to the nearest `f32`; a finite
    /// float beyond the `f32` range is an error, not an infinity.
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        const EXPECTED: &str = "float fitting f32";
        match v {
            Value::Float(f) => {
                let narrow = f as f32;
                if narrow.is_infinite() && f.is_finite() {
                    Err(ConversionError::custom(EXPECTED, format!("float {f:?}")))
                } else {
                    Ok(narrow)
                }
            }
            Value::Int(i) => Ok(i as f32),
            other => Err(ConversionError::new(EXPECTED, &other)),
        }
    }
}

/// `TryFrom<Value>` for a type that is exactly one variant's payload.
macro_rules! try_from_variant {
    ($($t:ty => $variant:ident, $expected:literal;)+) => {
        $(
            impl TryFrom<Value> for $t {
                type Error = ConversionError;
                fn try_from(v: Value) -> Result<Self, Self::Error> {
                    match v {
                        Value::$variant(x) => Ok(x),
                        other => Err(ConversionError::new($expected, &other)),
                    }
                }
            }
        )+
    };
}
try_from_variant! {
    bool => Bool, "bool";
    String => Str, "str";
    Bytes => Bytes, "bytes";
    NdArray => NdArray, "ndarray";
    ObjectRef => Ref, "ref";
    StreamRefValue => StreamRef, "stream_ref";
    CallbackRef => Callback, "callback";
    Temporal => Temporal, "datetime, date, time or timedelta";
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

impl<T: TryFrom<Value, Error = ConversionError>> TryFrom<Value> for Option<T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Null => Ok(None),
            other => T::try_from(other).map(Some),
        }
    }
}

/// The items of a `list`, `tuple`, `set` or `frozenset`.
fn sequence_items(v: Value, expected: &'static str) -> Result<Vec<Value>, ConversionError> {
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            Ok(items)
        }
        other => Err(ConversionError::new(expected, &other)),
    }
}

/// Accepts `list`, `tuple`, `set` and `frozenset`. A `Vec<u8>` is a list of
/// ints too; `bytes` converts into [`Bytes`].
impl<T: TryFrom<Value, Error = ConversionError>> TryFrom<Value> for Vec<T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        sequence_items(v, "list")?
            .into_iter()
            .map(T::try_from)
            .collect()
    }
}

/// Accepts `set`, `frozenset`, `list` and `tuple`; equal items collapse.
impl<T, S> TryFrom<Value> for HashSet<T, S>
where
    T: TryFrom<Value, Error = ConversionError> + Hash + Eq,
    S: BuildHasher + Default,
{
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        sequence_items(v, "set")?
            .into_iter()
            .map(T::try_from)
            .collect()
    }
}

/// Accepts `set`, `frozenset`, `list` and `tuple`; equal items collapse.
impl<T: TryFrom<Value, Error = ConversionError> + Ord> TryFrom<Value> for BTreeSet<T> {
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        sequence_items(v, "set")?
            .into_iter()
            .map(T::try_from)
            .collect()
    }
}

/// The entries of a `dict`, each converted.
fn dict_entries<K, V, C>(v: Value) -> Result<C, ConversionError>
where
    K: TryFrom<Value, Error = ConversionError>,
    V: TryFrom<Value, Error = ConversionError>,
    C: FromIterator<(K, V)>,
{
    match v {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| Ok((K::try_from(k)?, V::try_from(v)?)))
            .collect(),
        other => Err(ConversionError::new("dict", &other)),
    }
}

/// Accepts a `dict` whose keys and values convert (string keys into `String`,
/// tuple keys into tuples, ...); keys that become equal collapse, the last wins.
impl<K, V, S> TryFrom<Value> for HashMap<K, V, S>
where
    K: TryFrom<Value, Error = ConversionError> + Hash + Eq,
    V: TryFrom<Value, Error = ConversionError>,
    S: BuildHasher + Default,
{
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        dict_entries(v)
    }
}

/// Accepts a `dict` whose keys and values convert; keys that become equal
/// collapse, the last wins.
impl<K, V> TryFrom<Value> for BTreeMap<K, V>
where
    K: TryFrom<Value, Error = ConversionError> + Ord,
    V: TryFrom<Value, Error = ConversionError>,
{
    type Error = ConversionError;
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        dict_entries(v)
    }
}

macro_rules! try_from_tuple {
    ($len:literal, $expected:literal; $($name:ident),+) => {
        /// Accepts a `tuple` or `list` of exactly
        #[doc = concat!($len, " items, each converted.")]
        impl<$($name: TryFrom<Value, Error = ConversionError>),+> TryFrom<Value> for ($($name,)+) {
            type Error = ConversionError;
            fn try_from(v: Value) -> Result<Self, Self::Error> {
                match v {
                    Value::Tuple(items) | Value::List(items) if items.len() == $len => {
                        let mut items = items.into_iter();
                        Ok(($($name::try_from(items.next().expect("length checked"))?,)+))
                    }
                    Value::Tuple(items) => Err(ConversionError::custom(
                        $expected,
                        format!("tuple of length {}", items.len()),
                    )),
                    Value::List(items) => Err(ConversionError::custom(
                        $expected,
                        format!("list of length {}", items.len()),
                    )),
                    other => Err(ConversionError::new($expected, &other)),
                }
            }
        }
    };
}
try_from_tuple!(1, "tuple of length 1"; A);
try_from_tuple!(2, "tuple of length 2"; A, B);
try_from_tuple!(3, "tuple of length 3"; A, B, C);
try_from_tuple!(4, "tuple of length 4"; A, B, C, D);

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
