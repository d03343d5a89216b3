//! [`Value`] from plain Rust types (`From`) and into them (`TryFrom`, each
//! refusal a [`ConversionError`] saying what was expected and what was found).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use bytes::Bytes;
use num_bigint::BigInt;

use super::{CallbackRef, ConversionError, NdArray, ObjectRef, StreamRefValue, Temporal, Value};

// ------------------------------------------------------- from Rust types

/// Anything that becomes a [`Value`]: every `T: Into<Value>`. Generated
/// wrappers (`snakepit gen rust`) take `impl IntoValue` where Python's type
/// has no Rust form; their class wrappers convert into a `Value` too, so an
/// object passes where Python expects it.
pub trait IntoValue {
    /// The value.
    fn into_value(self) -> Value;
}

impl<T: Into<Value>> IntoValue for T {
    fn into_value(self) -> Value {
        self.into()
    }
}

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

/// `From` for a type that is exactly one variant's payload.
macro_rules! from_variant {
    ($($t:ty => $variant:ident),+ $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v)
            }
        }
    )+};
}
from_variant!(
    bool => Bool,
    f64 => Float,
    String => Str,
    Bytes => Bytes,
    NdArray => NdArray,
    ObjectRef => Ref,
    StreamRefValue => StreamRef,
    CallbackRef => Callback,
    Temporal => Temporal,
);

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
