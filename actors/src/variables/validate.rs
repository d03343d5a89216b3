//! Whether a value fits a variable's type and constraints, and its
//! normalized form (ints as floats for `float`, whole floats as ints for
//! `integer`, lists of floats for `embedding`); also the short renderings of
//! values that error messages use.

use std::cmp::Ordering;

use snakepit_proto::{NdArray, Value};

use super::{
    CHOICES, Constraints, DIMENSION, MAX, MAX_LENGTH, MIN, MIN_LENGTH, SHAPE, TYPE, VarType,
    VariableError,
};

/// Checks `value` against the type and constraints, and normalizes it.
pub(super) fn validate(
    variable: &str,
    var_type: VarType,
    c: &Constraints,
    value: Value,
) -> Result<Value, VariableError> {
    let fail = |constraint: &str, message: String| VariableError::Constraint {
        variable: variable.to_string(),
        constraint: constraint.to_string(),
        message,
    };
    // Watchers in Python receive the value: it must be one they can decode.
    if let Some(err) = value.wire_depth_error() {
        return Err(fail("nesting", err.to_string()));
    }
    let wrong_type = |expected: &str, value: &Value| {
        fail(
            TYPE,
            format!("expected {expected}, got {}", described(value)),
        )
    };
    match var_type {
        VarType::Float => {
            let f = match &value {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::BigInt(_) => match as_f64(&value) {
                    Some(f) if f.is_finite() => f,
                    _ => {
                        return Err(fail(
                            TYPE,
                            format!("{} is too large for a float", brief(&value)),
                        ));
                    }
                },
                _ => return Err(wrong_type("a float (or an int)", &value)),
            };
            check_bounds(c, |bound| f.partial_cmp(&bound), &value).map_err(|(k, m)| fail(k, m))?;
            Ok(Value::Float(f))
        }
        VarType::Integer => {
            let value = match value {
                Value::Int(_) => value,
                Value::BigInt(ref b) => match i64::try_from(b) {
                    Ok(i) => Value::Int(i),
                    Err(_) => value,
                },
                Value::Float(f) => match whole_i64(f) {
                    Some(i) => Value::Int(i),
                    None => {
                        return Err(fail(
                            TYPE,
                            format!(
                                "expected an int, got the float {} (not a whole 64-bit number)",
                                brief(&value)
                            ),
                        ));
                    }
                },
                _ => return Err(wrong_type("an int", &value)),
            };
            let cmp = |bound: f64| match &value {
                Value::Int(i) => cmp_int_float(*i, bound),
                _ => as_f64(&value).and_then(|f| f.partial_cmp(&bound)),
            };
            check_bounds(c, cmp, &value).map_err(|(k, m)| fail(k, m))?;
            Ok(value)
        }
        VarType::String => {
            let Value::Str(s) = &value else {
                return Err(wrong_type("a str", &value));
            };
            let chars = s.chars().count();
            if let Some(min) = c.min_length
                && chars < min
            {
                return Err(fail(
                    MIN_LENGTH,
                    format!(
                        "{} is {chars} characters, shorter than the min_length {min}",
                        brief(&value)
                    ),
                ));
            }
            if let Some(max) = c.max_length
                && chars > max
            {
                return Err(fail(
                    MAX_LENGTH,
                    format!(
                        "{} is {chars} characters, longer than the max_length {max}",
                        brief(&value)
                    ),
                ));
            }
            Ok(value)
        }
        VarType::Boolean => match value {
            Value::Bool(_) => Ok(value),
            _ => Err(wrong_type("a bool", &value)),
        },
        VarType::Choice => {
            let Value::Str(s) = &value else {
                return Err(wrong_type("a str", &value));
            };
            let choices = c.choices.as_deref().unwrap_or_default();
            if !choices.contains(s) {
                return Err(fail(
                    CHOICES,
                    format!(
                        "{} is not one of the choices {}",
                        brief(&value),
                        quoted_list(choices)
                    ),
                ));
            }
            Ok(value)
        }
        VarType::Embedding => {
            let (len, value) = match value {
                Value::List(items) | Value::Tuple(items) => {
                    let floats = items.iter().map(as_f64).collect::<Option<Vec<_>>>();
                    let Some(floats) = floats else {
                        return Err(fail(
                            TYPE,
                            "an embedding's elements must all be ints or floats".to_string(),
                        ));
                    };
                    (
                        floats.len(),
                        Value::List(floats.into_iter().map(Value::Float).collect()),
                    )
                }
                Value::NdArray(ref a) => {
                    if a.shape.len() != 1 || !numeric_dtype(&a.dtype) {
                        return Err(fail(
                            TYPE,
                            format!(
                                "an embedding must be a one-dimensional int or float array, got {}",
                                brief(&value)
                            ),
                        ));
                    }
                    (a.shape[0] as usize, value)
                }
                _ => return Err(wrong_type("a list of numbers or a 1-D array", &value)),
            };
            if let Some(dimension) = c.dimension
                && len != dimension
            {
                return Err(fail(
                    DIMENSION,
                    format!("the embedding has {len} elements, the dimension is {dimension}"),
                ));
            }
            Ok(value)
        }
        VarType::Tensor => {
            let shape: Vec<u64> = match &value {
                Value::NdArray(a) => a.shape.clone(),
                Value::List(_) | Value::Tuple(_) => {
                    nested_shape(&value).map_err(|m| fail(TYPE, m))?
                }
                _ => return Err(wrong_type("an array or nested lists of numbers", &value)),
            };
            if let Some(expected) = &c.shape
                && !shape.iter().copied().eq(expected.iter().map(|d| *d as u64))
            {
                return Err(fail(
                    SHAPE,
                    format!("the tensor's shape is {shape:?}, the shape required is {expected:?}"),
                ));
            }
            Ok(value)
        }
    }
}

/// Checks `min` and `max` with `cmp`, which orders the value against a bound
/// (`None` when they do not compare, as with NaN).
fn check_bounds(
    c: &Constraints,
    cmp: impl Fn(f64) -> Option<Ordering>,
    value: &Value,
) -> Result<(), (&'static str, String)> {
    let value = brief(value);
    let bounds = [
        (MIN, c.min, Ordering::Less, "below", "minimum"),
        (MAX, c.max, Ordering::Greater, "above", "maximum"),
    ];
    for (constraint, bound, beyond, side, name) in bounds {
        let Some(bound) = bound else { continue };
        match cmp(bound) {
            Some(order) if order == beyond => {
                return Err((
                    constraint,
                    format!("{value} is {side} the {name} {bound:?}"),
                ));
            }
            Some(_) => {}
            None => {
                return Err((
                    constraint,
                    format!("{value} cannot be compared with the {name} {bound:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Orders an int against a float exactly (no rounding of the int).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    Some(i.cmp(&(whole as i64)).then_with(|| {
        // Same whole part: the fraction decides.
        0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal)
    }))
}

/// A float without a fractional part within the 64-bit range, as an int.
fn whole_i64(f: f64) -> Option<i64> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f))
        .then_some(f as i64)
}

/// An int or float as a float (a `BigInt` through its decimal text, which
/// rounds to the nearest float); `None` for anything else, bools included.
pub(super) fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::BigInt(b) => b.to_string().parse().ok(),
        _ => None,
    }
}

/// A constraint's count: a non-negative int.
pub(super) fn count(value: &Value) -> Option<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// The items of a list or tuple.
pub(super) fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::List(items) | Value::Tuple(items) => Some(items),
        _ => None,
    }
}

/// Whether a numpy dtype holds ints or floats.
fn numeric_dtype(dtype: &str) -> bool {
    ["float", "int", "uint"]
        .iter()
        .any(|p| dtype.starts_with(p))
}

/// The shape of rectangular nested lists (or tuples) of numbers.
fn nested_shape(value: &Value) -> Result<Vec<u64>, String> {
    match value {
        Value::List(items) | Value::Tuple(items) => {
            let mut inner: Option<Vec<u64>> = None;
            for (i, item) in items.iter().enumerate() {
                let shape = nested_shape(item)?;
                match &inner {
                    None => inner = Some(shape),
                    Some(first) if *first != shape => {
                        return Err(format!(
                            "the nested lists are ragged: item {i} has shape {shape:?}, item 0 has {first:?}"
                        ));
                    }
                    Some(_) => {}
                }
            }
            let mut shape = vec![items.len() as u64];
            shape.extend(inner.unwrap_or_default());
            Ok(shape)
        }
        Value::Int(_) | Value::BigInt(_) | Value::Float(_) => Ok(Vec::new()),
        other => Err(format!(
            "a tensor's elements must be ints or floats, got {}",
            described(other)
        )),
    }
}

/// A value's type and a short rendering, e.g. `a bool (true)`.
fn described(value: &Value) -> String {
    match value {
        Value::NdArray(_) => brief(value),
        _ => {
            let type_name = value.type_name();
            let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {type_name} ({})", brief(value))
        }
    }
}

/// A short rendering of a value for messages.
pub(super) fn brief(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    match value {
        Value::NdArray(NdArray { dtype, shape, .. }) => {
            format!("a {dtype} array of shape {shape:?}")
        }
        Value::Float(f) => format!("{f:?}"),
        _ => {
            let text = value.to_string();
            if text.chars().count() <= MAX_CHARS {
                text
            } else {
                let cut: String = text.chars().take(MAX_CHARS).collect();
                format!("{cut}…")
            }
        }
    }
}

/// `["a", "b"]`, for choices in messages.
fn quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}
