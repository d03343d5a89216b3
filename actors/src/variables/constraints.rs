//! [`Constraints`]: read from and written as the `dict` Python sends, and
//! checked against the type and each other when a variable is registered.

use snakepit_proto::Value;

use super::validate::{as_f64, brief, count, items};
use super::{
    CHOICES, DIMENSION, KNOWN_KEYS, MAX, MAX_LENGTH, MIN, MIN_LENGTH, SHAPE, VarType, VariableError,
};

/// What a variable's values must satisfy beyond their type. Each field
/// applies to some types only (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Smallest value allowed, inclusive (`float`, `integer`).
    pub min: Option<f64>,
    /// Largest value allowed, inclusive (`float`, `integer`).
    pub max: Option<f64>,
    /// The allowed strings (`choice`, where it is required).
    pub choices: Option<Vec<String>>,
    /// The required length (`embedding`).
    pub dimension: Option<usize>,
    /// The required shape (`tensor`).
    pub shape: Option<Vec<usize>>,
    /// Fewest characters allowed (`string`).
    pub min_length: Option<usize>,
    /// Most characters allowed (`string`).
    pub max_length: Option<usize>,
}

impl Constraints {
    /// Reads constraints from a `dict` with string keys, as Python sends them;
    /// `None` means no constraints, and a key whose value is `None` is unset.
    /// Unknown keys, and values of the wrong kind, are an
    /// [`VariableError::InvalidDefinition`] of `variable`.
    pub fn from_value(variable: &str, value: &Value) -> Result<Self, VariableError> {
        let invalid = |message: String| VariableError::InvalidDefinition {
            name: variable.to_string(),
            message,
        };
        let entries = match value {
            Value::Null => return Ok(Self::default()),
            Value::Map(entries) => entries,
            other => {
                return Err(invalid(format!(
                    "constraints must be a dict, got a {}",
                    other.type_name()
                )));
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut c = Self::default();
        for (key, v) in entries {
            let Value::Str(key) = key else {
                return Err(invalid(format!(
                    "constraint keys must be strings, got {}",
                    brief(key)
                )));
            };
            if seen.contains(&key.as_str()) {
                return Err(invalid(format!("constraint `{key}` is given twice")));
            }
            seen.push(key);
            if v.is_null() && KNOWN_KEYS.contains(&key.as_str()) {
                continue;
            }
            let bad = |kind: &str| {
                invalid(format!(
                    "constraint `{key}` must be {kind}, got {}",
                    brief(v)
                ))
            };
            match key.as_str() {
                MIN => c.min = Some(as_f64(v).ok_or_else(|| bad("a number"))?),
                MAX => c.max = Some(as_f64(v).ok_or_else(|| bad("a number"))?),
                DIMENSION => c.dimension = Some(count(v).ok_or_else(|| bad("a non-negative int"))?),
                MIN_LENGTH => {
                    c.min_length = Some(count(v).ok_or_else(|| bad("a non-negative int"))?)
                }
                MAX_LENGTH => {
                    c.max_length = Some(count(v).ok_or_else(|| bad("a non-negative int"))?)
                }
                CHOICES => {
                    let strings = items(v)
                        .and_then(|items| {
                            items
                                .iter()
                                .map(|i| match i {
                                    Value::Str(s) => Some(s.clone()),
                                    _ => None,
                                })
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| bad("a list of strings"))?;
                    c.choices = Some(strings);
                }
                SHAPE => {
                    let dims = items(v)
                        .and_then(|items| items.iter().map(count).collect::<Option<Vec<_>>>())
                        .ok_or_else(|| bad("a list of non-negative ints"))?;
                    c.shape = Some(dims);
                }
                _ => unknown.push(key),
            }
        }
        if !unknown.is_empty() {
            let unknown: Vec<String> = unknown.iter().map(|k| format!("`{k}`")).collect();
            return Err(invalid(format!(
                "unknown constraint {} {} (known: {})",
                if unknown.len() == 1 { "key" } else { "keys" },
                unknown.join(", "),
                KNOWN_KEYS.join(", ")
            )));
        }
        Ok(c)
    }

    /// The constraints as a `dict` holding the keys that are set, in a fixed
    /// order; [`Constraints::from_value`] reads it back unchanged.
    pub fn to_value(&self) -> Value {
        let mut entries: Vec<(&str, Value)> = Vec::new();
        if let Some(min) = self.min {
            entries.push((MIN, Value::Float(min)));
        }
        if let Some(max) = self.max {
            entries.push((MAX, Value::Float(max)));
        }
        if let Some(choices) = &self.choices {
            entries.push((
                CHOICES,
                Value::List(choices.iter().map(|s| Value::Str(s.clone())).collect()),
            ));
        }
        if let Some(dimension) = self.dimension {
            entries.push((DIMENSION, Value::from(dimension)));
        }
        if let Some(shape) = &self.shape {
            entries.push((
                SHAPE,
                Value::List(shape.iter().map(|d| Value::from(*d)).collect()),
            ));
        }
        if let Some(min_length) = self.min_length {
            entries.push((MIN_LENGTH, Value::from(min_length)));
        }
        if let Some(max_length) = self.max_length {
            entries.push((MAX_LENGTH, Value::from(max_length)));
        }
        Value::map(entries)
    }

    /// The keys that are set.
    fn keys(&self) -> Vec<&'static str> {
        let set = [
            (MIN, self.min.is_some()),
            (MAX, self.max.is_some()),
            (CHOICES, self.choices.is_some()),
            (DIMENSION, self.dimension.is_some()),
            (SHAPE, self.shape.is_some()),
            (MIN_LENGTH, self.min_length.is_some()),
            (MAX_LENGTH, self.max_length.is_some()),
        ];
        set.into_iter()
            .filter(|(_, is_set)| *is_set)
            .map(|(k, _)| k)
            .collect()
    }

    /// Checks that the constraints fit the type and each other.
    pub(super) fn check(&self, name: &str, var_type: VarType) -> Result<(), VariableError> {
        let invalid = |message: String| {
            Err(VariableError::InvalidDefinition {
                name: name.to_string(),
                message,
            })
        };
        let misplaced: Vec<String> = self
            .keys()
            .into_iter()
            .filter(|k| !var_type.applicable().contains(k))
            .map(|k| format!("`{k}`"))
            .collect();
        if !misplaced.is_empty() {
            return invalid(format!(
                "{} {} not apply to a {var_type} variable",
                misplaced.join(", "),
                if misplaced.len() == 1 { "does" } else { "do" }
            ));
        }
        for (key, bound) in [(MIN, self.min), (MAX, self.max)] {
            if bound.is_some_and(f64::is_nan) {
                return invalid(format!("constraint `{key}` is NaN"));
            }
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return invalid(format!("min {min:?} is above max {max:?}"));
        }
        if let (Some(min), Some(max)) = (self.min_length, self.max_length)
            && min > max
        {
            return invalid(format!("min_length {min} is above max_length {max}"));
        }
        if var_type == VarType::Choice && self.choices.as_ref().is_none_or(Vec::is_empty) {
            return invalid("a choice variable needs a non-empty `choices` list".to_string());
        }
        Ok(())
    }
}
