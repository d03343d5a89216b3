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
//!
//! This file holds the types, sources and errors; `constraints.rs` reads and
//! checks [`Constraints`], `validate.rs` checks and normalizes a value, and
//! `store.rs` is the [`VariableStore`] itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

mod constraints;
mod store;
mod validate;

pub use constraints::Constraints;
pub use store::{Variable, VariableStore, VariableUpdate};

#[cfg(test)]
mod tests;
