//! The [`VariableStore`] a session's actor owns: registration, lookups by id
//! or name, sets that bump the version and return the [`VariableUpdate`] to
//! hand to watchers, deletes that never reuse an id, and the store's limit.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use snakepit_proto::Value;

use super::validate::validate;
use super::{
    Constraints, DEFAULT_MAX_VARIABLES, MAX_NAME_BYTES, UpdateSource, VarType, VariableError,
};

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
