//! Session variables: the typed, validated values a session holds, as a plain
//! synchronous store the session's actor owns. Nothing here spawns, locks or
//! awaits; watching is the owner's job, fed by the [`VariableUpdate`] that
//! every successful [`VariableStore::set`] returns.
//!
//! A variable has a name and an id (`var_<n>`, unique within its store, never
//! reused), a [`VarType`], a value, [`Constraints`], a version (0 when
//! registered, one more on every set, also when the value is unchanged), a
//! description and string metadata (each set merges its metadata in).
//! Lookups take either the id or the name, the id first; names of the form
//! `var_<digits>` are kept for ids so that a lookup is never ambiguous.
//!
//! # Values each type accepts, and how they are normalized
//!
//! - `float`: an `int` or a `float`; ints (also beyond 64 bits, when finite as
//!   a float) become `Float`. NaN and the infinities are floats, but NaN fails
//!   any `min` or `max`.
//! - `integer`: an `int` (a `BigInt` that fits in 64 bits becomes `Int`, a
//!   larger one is kept), or a `float` without a fractional part within the
//!   64-bit range, which becomes `Int`.
//! - `string`: a `str`; `min_length` and `max_length` count characters.
//! - `boolean`: a `bool` only.
//! - `choice`: a `str` that is one of `choices` (required for the type).
//! - `embedding`: a one-dimensional vector of numbers: a list or tuple of
//!   ints and floats, normalized to a list of floats, or a one-dimensional
//!   numpy array of an int or float dtype, kept as it is. `dimension` is the
//!   required length.
//! - `tensor`: a numpy array of any dtype, or nested lists (or tuples) of
//!   numbers with a rectangular shape, both kept as they are. `shape` is the
//!   required shape.
//!
//! A `bool` is never a number. `min` and `max` are inclusive bounds for
//! `float` and `integer` (an integer is compared exactly, a `BigInt` through
//! its nearest float). A constraint that does not apply to the type, such as
//! `choices` on a `float`, makes the definition invalid, as do `min > max`,
//! `min_length > max_length`, a NaN bound and a `choice` without choices.
//!
//! A value that breaks its type or a constraint, the initial value included,
//! is a [`VariableError::Constraint`] naming the constraint: `type`, `min`,
//! `max`, `choices`, `dimension`, `shape`, `min_length` or `max_length`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use snakepit_proto::{NdArray, Value};

/// How many variables a store holds unless told otherwise.
pub const DEFAULT_MAX_VARIABLES: usize = 1000;

/// The longest variable name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The type of a session variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarType {
    /// A float; ints are accepted and become floats.
    Float,
    /// An int; whole floats are accepted and become ints.
    #[serde(alias = "int")]
    Integer,
    /// A string.
    #[serde(alias = "str")]
    String,
    /// A bool.
    #[serde(alias = "bool")]
    Boolean,
    /// A string out of a fixed set of choices.
    Choice,
    /// A one-dimensional vector of numbers.
    Embedding,
    /// A numpy array, or rectangular nested lists of numbers.
    Tensor,
}

impl VarType {
    /// Every type, in a stable order.
    pub const ALL: [VarType; 7] = [
        VarType::Float,
        VarType::Integer,
        VarType::String,
        VarType::Boolean,
        VarType::Choice,
        VarType::Embedding,
        VarType::Tensor,
    ];

    /// The name Python uses for the type (`float`, `integer`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::Float => "float",
            VarType::Integer => "integer",
            VarType::String => "string",
            VarType::Boolean => "boolean",
            VarType::Choice => "choice",
            VarType::Embedding => "embedding",
            VarType::Tensor => "tensor",
        }
    }

    /// The constraint keys that apply to the type.
    fn applicable(self) -> &'static [&'static str] {
        match self {
            VarType::Float | VarType::Integer => &[MIN, MAX],
            VarType::String => &[MIN_LENGTH, MAX_LENGTH],
            VarType::Boolean => &[],
            VarType::Choice => &[CHOICES],
            VarType::Embedding => &[DIMENSION],
            VarType::Tensor => &[SHAPE],
        }
    }
}

impl fmt::Display for VarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VarType {
    type Err = VariableError;

    /// Reads the Python names, and the short `int`, `str` and `bool`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "float" => VarType::Float,
            "integer" | "int" => VarType::Integer,
            "string" | "str" => VarType::String,
            "boolean" | "bool" => VarType::Boolean,
            "choice" => VarType::Choice,
            "embedding" => VarType::Embedding,
            "tensor" => VarType::Tensor,
            _ => {
                return Err(VariableError::UnknownType {
                    given: s.to_string(),
                });
            }
        })
    }
}

/// Reads a type name as Python spells it (see [`VarType`]'s `FromStr`).
pub fn parse_var_type(s: &str) -> Result<VarType, VariableError> {
    s.parse()
}

/// Where a change to a variable came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateSource {
    /// Rust code on the host.
    Host,
    /// A Python worker.
    Python,
    /// Not a change: the current value, sent when a watch starts.
    Initial,
}

impl UpdateSource {
    /// The name carried in `VariableUpdate.source`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UpdateSource::Host => "host",
            UpdateSource::Python => "python",
            UpdateSource::Initial => "initial",
        }
    }
}

impl fmt::Display for UpdateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong with a session's variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// No variable has this id or name.
    #[error("no variable `{identifier}` in the session")]
    NotFound {
        /// The id or name asked for.
        identifier: String,
    },
    /// A variable of this name is already registered.
    #[error("a variable named `{name}` already exists in the session")]
    AlreadyExists {
        /// The name asked for.
        name: String,
    },
    /// The value does not fit the type or a constraint; names the constraint
    /// (`type`, `min`, `max`, `choices`, `dimension`, `shape`, `min_length`,
    /// `max_length`, or `nesting` past the wire's limit).
    #[error("variable `{variable}`: {message}")]
    Constraint {
        /// Name of the variable.
        variable: String,
        /// The constraint broken.
        constraint: String,
        /// What was wrong with the value.
        message: String,
    },
    /// The definition cannot make a variable: a bad name, constraints that do
    /// not fit the type or each other, or constraints that do not parse.
    #[error("invalid definition of variable `{name}`: {message}")]
    InvalidDefinition {
        /// Name of the variable.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The type name is none of the known ones.
    #[error(
        "unknown variable type `{given}` (expected float, integer, string, boolean, choice, embedding or tensor)"
    )]
    UnknownType {
        /// The name given.
        given: String,
    },
    /// The store holds as many variables as it may.
    #[error("the session already holds its limit of {limit} variables")]
    TooMany {
        /// The limit.
        limit: usize,
    },
}

impl VariableError {
    /// The constraint a value broke, for [`VariableError::Constraint`].
    pub fn constraint(&self) -> Option<&str> {
        match self {
            VariableError::Constraint { constraint, .. } => Some(constraint),
            _ => None,
        }
    }
}

const TYPE: &str = "type";
const MIN: &str = "min";
const MAX: &str = "max";
const CHOICES: &str = "choices";
const DIMENSION: &str = "dimension";
const SHAPE: &str = "shape";
const MIN_LENGTH: &str = "min_length";
const MAX_LENGTH: &str = "max_length";
const KNOWN_KEYS: [&str; 7] = [MIN, MAX, CHOICES, DIMENSION, SHAPE, MIN_LENGTH, MAX_LENGTH];

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
    fn check(&self, name: &str, var_type: VarType) -> Result<(), VariableError> {
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

/// A session variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// `var_<n>`, unique within its store.
    pub id: String,
    /// Unique within its store.
    pub name: String,
    /// What its values are.
    pub var_type: VarType,
    /// The current value, normalized for the type.
    pub value: Value,
    /// What its values must satisfy.
    pub constraints: Constraints,
    /// 0 when registered, one more on every set.
    pub version: u64,
    /// Free text from the registration.
    pub description: String,
    /// String metadata; every set merges its metadata in.
    pub metadata: Vec<(String, String)>,
    /// When it was registered.
    pub created: SystemTime,
    /// When it was last set (its registration, before any set).
    pub updated: SystemTime,
}

impl Variable {
    /// The variable as Python receives it: a `dict` with `id`, `name`,
    /// `type`, `value`, `constraints`, `version`, `description` and
    /// `metadata` (a `dict` of strings).
    pub fn to_value(&self) -> Value {
        Value::map([
            ("id", Value::from(self.id.as_str())),
            ("name", Value::from(self.name.as_str())),
            ("type", Value::from(self.var_type.as_str())),
            ("value", self.value.clone()),
            ("constraints", self.constraints.to_value()),
            ("version", Value::from(self.version)),
            ("description", Value::from(self.description.as_str())),
            (
                "metadata",
                Value::map(self.metadata.iter().map(|(k, v)| (k.clone(), v.as_str()))),
            ),
        ])
    }

    /// The update a watch sends first when it asks for current values: no old
    /// value, the current value and version, and [`UpdateSource::Initial`].
    pub fn initial_update(&self) -> VariableUpdate {
        VariableUpdate {
            variable_id: self.id.clone(),
            name: self.name.clone(),
            old_value: Value::Null,
            new_value: self.value.clone(),
            version: self.version,
            source: UpdateSource::Initial,
            metadata: Vec::new(),
        }
    }
}

/// One change to a variable, as watchers receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableUpdate {
    /// Id of the variable.
    pub variable_id: String,
    /// Name of the variable.
    pub name: String,
    /// The value before the change.
    pub old_value: Value,
    /// The value after the change, normalized.
    pub new_value: Value,
    /// The version after the change.
    pub version: u64,
    /// Who made the change.
    pub source: UpdateSource,
    /// The metadata given with the change.
    pub metadata: Vec<(String, String)>,
}

/// A session's variables, in registration order.
#[derive(Debug, Clone)]
pub struct VariableStore {
    /// Keyed by the number in the id, so iteration is registration order.
    variables: BTreeMap<u64, Variable>,
    by_name: HashMap<String, u64>,
    next_id: u64,
    max_variables: usize,
}

impl Default for VariableStore {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_VARIABLES)
    }
}

impl VariableStore {
    /// An empty store that holds at most `max_variables`.
    pub fn with_limit(max_variables: usize) -> Self {
        Self {
            variables: BTreeMap::new(),
            by_name: HashMap::new(),
            next_id: 1,
            max_variables,
        }
    }

    /// The most variables the store holds.
    pub fn limit(&self) -> usize {
        self.max_variables
    }

    /// Registers a variable with a validated, normalized initial value, at
    /// version 0. The name must be non-empty, at most [`MAX_NAME_BYTES`],
    /// free, and not of the form `var_<digits>` (kept for ids).
    pub fn register(
        &mut self,
        name: &str,
        var_type: VarType,
        initial: Value,
        constraints: Constraints,
        description: &str,
    ) -> Result<&Variable, VariableError> {
        let invalid = |message: String| {
            Err(VariableError::InvalidDefinition {
                name: name.to_string(),
                message,
            })
        };
        if name.is_empty() {
            return invalid("the name is empty".to_string());
        }
        if name.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "the name is {} bytes, more than {MAX_NAME_BYTES}",
                name.len()
            ));
        }
        if id_number(name).is_some() {
            return invalid("names of the form `var_<digits>` are kept for ids".to_string());
        }
        if self.by_name.contains_key(name) {
            return Err(VariableError::AlreadyExists {
                name: name.to_string(),
            });
        }
        if self.variables.len() >= self.max_variables {
            return Err(VariableError::TooMany {
                limit: self.max_variables,
            });
        }
        constraints.check(name, var_type)?;
        let value = validate(name, var_type, &constraints, initial)?;

        let n = self.next_id;
        self.next_id += 1;
        let now = SystemTime::now();
        let variable = Variable {
            id: format!("var_{n}"),
            name: name.to_string(),
            var_type,
            value,
            constraints,
            version: 0,
            description: description.to_string(),
            metadata: Vec::new(),
            created: now,
            updated: now,
        };
        self.by_name.insert(name.to_string(), n);
        Ok(self.variables.entry(n).or_insert(variable))
    }

    /// The variable with this id or, failing that, this name.
    pub fn get(&self, identifier: &str) -> Result<&Variable, VariableError> {
        self.key(identifier)
            .and_then(|n| self.variables.get(&n))
            .ok_or_else(|| not_found(identifier))
    }

    /// Validates and normalizes `value`, stores it with the next version and
    /// merges `metadata` into the variable's. Setting an equal value is still
    /// a change: it gets a new version and an update.
    pub fn set(
        &mut self,
        identifier: &str,
        value: Value,
        source: UpdateSource,
        metadata: Vec<(String, String)>,
    ) -> Result<VariableUpdate, VariableError> {
        let variable = self
            .key(identifier)
            .and_then(|n| self.variables.get_mut(&n))
            .ok_or_else(|| not_found(identifier))?;
        let value = validate(
            &variable.name,
            variable.var_type,
            &variable.constraints,
            value,
        )?;
        let old_value = std::mem::replace(&mut variable.value, value.clone());
        variable.version += 1;
        variable.updated = SystemTime::now();
        for (key, v) in &metadata {
            match variable.metadata.iter_mut().find(|(k, _)| k == key) {
                Some((_, existing)) => existing.clone_from(v),
                None => variable.metadata.push((key.clone(), v.clone())),
            }
        }
        Ok(VariableUpdate {
            variable_id: variable.id.clone(),
            name: variable.name.clone(),
            old_value,
            new_value: value,
            version: variable.version,
            source,
            metadata,
        })
    }

    /// Removes the variable with this id or name; its name is free again, its
    /// id is never given out again.
    pub fn delete(&mut self, identifier: &str) -> Result<Variable, VariableError> {
        let n = self.key(identifier).ok_or_else(|| not_found(identifier))?;
        let variable = self
            .variables
            .remove(&n)
            .ok_or_else(|| not_found(identifier))?;
        self.by_name.remove(&variable.name);
        Ok(variable)
    }

    /// The variables in registration order.
    pub fn list(&self) -> impl Iterator<Item = &Variable> {
        self.variables.values()
    }

    /// How many variables the store holds.
    pub fn len(&self) -> usize {
        self.variables.len()
    }

    /// Whether the store holds no variable.
    pub fn is_empty(&self) -> bool {
        self.variables.is_empty()
    }

    /// The names among `names` that no variable has, in their order (what a
    /// tool's required variables lack).
    pub fn missing<'a>(&self, names: &'a [String]) -> Vec<&'a str> {
        names
            .iter()
            .filter(|name| !self.by_name.contains_key(name.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The key of the variable with this id, else this name.
    fn key(&self, identifier: &str) -> Option<u64> {
        if let Some(n) = id_number(identifier)
            && self.variables.get(&n).is_some_and(|v| v.id == identifier)
        {
            return Some(n);
        }
        self.by_name.get(identifier).copied()
    }
}

fn not_found(identifier: &str) -> VariableError {
    VariableError::NotFound {
        identifier: identifier.to_string(),
    }
}

/// The number in `var_<digits>`.
fn id_number(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("var_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for a u64 still looks like an id.
    Some(digits.parse().unwrap_or(u64::MAX))
}

// ------------------------------------------------------------ validation

/// Checks `value` against the type and constraints, and normalizes it.
fn validate(
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
    if !value.fits_wire_depth() {
        return Err(fail(
            "nesting",
            format!(
                "nested {} protobuf levels deep; the wire carries at most {} (LIMIT_VALUE_WIRE_DEPTH)",
                value.wire_depth(),
                snakepit_proto::VALUE_WIRE_DEPTH
            ),
        ));
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
    if let Some(min) = c.min {
        match cmp(min) {
            Some(Ordering::Greater | Ordering::Equal) => {}
            Some(Ordering::Less) => {
                return Err((MIN, format!("{value} is below the minimum {min:?}")));
            }
            None => {
                return Err((
                    MIN,
                    format!("{value} cannot be compared with the minimum {min:?}"),
                ));
            }
        }
    }
    if let Some(max) = c.max {
        match cmp(max) {
            Some(Ordering::Less | Ordering::Equal) => {}
            Some(Ordering::Greater) => {
                return Err((MAX, format!("{value} is above the maximum {max:?}")));
            }
            None => {
                return Err((
                    MAX,
                    format!("{value} cannot be compared with the maximum {max:?}"),
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
fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::BigInt(b) => b.to_string().parse().ok(),
        _ => None,
    }
}

/// A constraint's count: a non-negative int.
fn count(value: &Value) -> Option<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// The items of a list or tuple.
fn items(value: &Value) -> Option<&[Value]> {
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
fn brief(value: &Value) -> String {
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

#[cfg(test)]
mod tests;
