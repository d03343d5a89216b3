//! [`Value`] as JSON: the tagged form that keeps every type
//! ([`Value::to_json_tagged`], [`Value::from_json_tagged`], also its
//! `Display`), and the plain `serde_json::Value` conversions both ways (plain
//! JSON in always converts; out is strict and refuses what JSON cannot say).

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use num_bigint::BigInt;

use super::{
    CallbackRef, ConversionError, NdArray, ObjectRef, StreamRefValue, Temporal, TemporalKind, Value,
};

impl Value {
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
    /// tagged forms, or this fails, unless it is an unserializable marker
    /// (`"__ffi_unserializable__": true`), which is a plain `dict`.
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
            J::Object(obj) if obj.get(super::UNSERIALIZABLE_KEY) == Some(&J::Bool(true)) => {
                // An unserializable marker: a plain dict whose `__type__` is
                // the object's type, not a tag.
                obj.into_iter()
                    .map(|(k, v)| Ok((Value::Str(k), Value::from_json_tagged(v)?)))
                    .collect::<Result<_, _>>()
                    .map(Value::Map)
            }
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
    // A marker's `__type__` is its own (the object's type), and its
    // `__ffi_unserializable__` key, which no tagged form has, says so.
    let marker = || {
        entries
            .iter()
            .any(|(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(true)) if k == super::UNSERIALIZABLE_KEY))
    };
    let plain_keys = entries
        .iter()
        .all(|(k, _)| matches!(k, Value::Str(k) if k != TAG));
    let string_keys = entries.iter().all(|(k, _)| matches!(k, Value::Str(_)));
    if !(plain_keys || string_keys && marker()) {
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
