//! What the Python side says of a module (`snakepit_bridge.codegen.describe`,
//! schema 1): its functions and classes, their signatures with parameter kinds,
//! defaults and normalized types, their docstrings, and what it left out.
//!
//! These types only read that description; [`crate::render`] turns it into Rust.

use serde::{Deserialize, Serialize};

/// The schema version this crate reads.
pub const SCHEMA: u32 = 1;

/// A module and what was found in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// Schema version ([`SCHEMA`]).
    pub schema: u32,
    /// The module asked for, e.g. `numpy` or `os.path`.
    pub module: String,
    /// Its version: the package's, or Python's for the standard library.
    pub version: String,
    /// Whether it is part of Python's standard library.
    #[serde(default)]
    pub stdlib: bool,
    /// The interpreter's version.
    pub python: String,
    /// Which stub sources supplied types (`typeshed`, `inline`, `stubs-package`).
    #[serde(default)]
    pub stubs: Vec<String>,
    /// The settings it was described with.
    pub settings: Settings,
    /// The root module first, then submodules (per [`Mode`]).
    pub modules: Vec<Module>,
    /// What was left out, and why.
    #[serde(default)]
    pub skipped: Vec<Skip>,
}

/// Which modules and names a description covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The module alone: its `__all__`, else its public names.
    #[default]
    Root,
    /// The module and the submodules it exports.
    Exports,
    /// The module and every public submodule.
    Public,
    /// Only modules that define `__all__`, and only the names in it.
    Explicit,
}

impl Mode {
    /// Its name, as the command line and the header spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Exports => "exports",
            Mode::Public => "public",
            Mode::Explicit => "explicit",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "root" => Ok(Mode::Root),
            "exports" => Ok(Mode::Exports),
            "public" => Ok(Mode::Public),
            "explicit" => Ok(Mode::Explicit),
            other => Err(format!(
                "unknown mode {other:?}: expected root, exports, public or explicit"
            )),
        }
    }
}

/// Which methods of a class count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodScope {
    /// Every public method, inherited ones too.
    #[default]
    All,
    /// Only the methods the class declares itself.
    Defined,
}

impl MethodScope {
    /// Its name, as the command line and the header spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodScope::All => "all",
            MethodScope::Defined => "defined",
        }
    }
}

impl std::str::FromStr for MethodScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(MethodScope::All),
            "defined" => Ok(MethodScope::Defined),
            other => Err(format!(
                "unknown class method scope {other:?}: expected all or defined"
            )),
        }
    }
}

/// The generator's settings, recorded in the generated file's header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Module discovery mode.
    #[serde(default)]
    pub mode: Mode,
    /// The functions asked for by name (`None`: by mode).
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// The classes asked for by name (`None`: by mode).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Names asked for without saying function or class (`module:a,B`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// The most methods a class may have before only its declared ones are
    /// kept.
    #[serde(default)]
    pub max_class_methods: Option<u32>,
    /// Which methods of a class count.
    #[serde(default)]
    pub class_method_scope: MethodScope,
}

impl Settings {
    /// Whether names were asked for (the declared-only scope), so the mode
    /// does not apply.
    pub fn by_name(&self) -> bool {
        self.functions.is_some() || self.classes.is_some() || self.names.is_some()
    }
}

/// A module's functions and classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    /// Dotted name.
    pub name: String,
    /// Its docstring.
    #[serde(default)]
    pub doc: Option<String>,
    /// Module-level functions.
    #[serde(default)]
    pub functions: Vec<Function>,
    /// Classes.
    #[serde(default)]
    pub classes: Vec<Class>,
}

/// How a function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// A module-level function.
    #[default]
    Function,
    /// A method called on an instance.
    Instance,
    /// A static method, called on the class.
    Static,
    /// A class method, called on the class.
    Class,
}

/// A function or method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// Python name.
    pub name: String,
    /// Docstring.
    #[serde(default)]
    pub doc: Option<String>,
    /// Parameters (without `self`/`cls`).
    #[serde(default)]
    pub params: Vec<Param>,
    /// What it returns.
    #[serde(default)]
    pub returns: Type,
    /// Where the signature came from: `runtime`, `stub` or `runtime+stub`.
    #[serde(default)]
    pub signature: String,
    /// Whether it is a coroutine function.
    #[serde(default)]
    pub is_async: bool,
    /// How it is called.
    #[serde(default)]
    pub kind: FunctionKind,
}

/// How a parameter is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Before `/`.
    PositionalOnly,
    /// Either way.
    PositionalOrKeyword,
    /// `*args`.
    VarPositional,
    /// After `*` or `*args`.
    KeywordOnly,
    /// `**kwargs`.
    VarKeyword,
}

/// A parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Python name.
    pub name: String,
    /// How it is passed.
    pub kind: ParamKind,
    /// The default's repr (`"..."` when unknown); `None`: required.
    #[serde(default)]
    pub default: Option<String>,
    /// Its type.
    #[serde(default, rename = "type")]
    pub ty: Type,
}

impl Param {
    /// Whether it has a default.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

/// A class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Class {
    /// The name it is reachable by in its module.
    pub name: String,
    /// The module the wrapper reaches it through.
    pub module: String,
    /// Docstring.
    #[serde(default)]
    pub doc: Option<String>,
    /// The constructor, when its signature is known.
    #[serde(default)]
    pub init: Option<Init>,
    /// Public methods.
    #[serde(default)]
    pub methods: Vec<Function>,
    /// Public properties and data descriptors.
    #[serde(default)]
    pub properties: Vec<Property>,
}

/// A constructor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Init {
    /// Parameters (without `self`/`cls`).
    #[serde(default)]
    pub params: Vec<Param>,
    /// Its docstring.
    #[serde(default)]
    pub doc: Option<String>,
    /// Where the signature came from.
    #[serde(default)]
    pub signature: String,
}

/// A property of a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Property {
    /// Python name.
    pub name: String,
    /// Docstring.
    #[serde(default)]
    pub doc: Option<String>,
    /// Its type.
    #[serde(default, rename = "type")]
    pub ty: Type,
    /// Whether it can be set.
    #[serde(default)]
    pub settable: bool,
}

/// Something left out of the wrappers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// The module it was found in.
    pub module: String,
    /// Its name (`Class.method` for a method).
    pub name: String,
    /// `function`, `class`, `method`, `property` or `module`.
    pub kind: String,
    /// Why.
    pub reason: String,
}

/// A Python type, normalized to what the wrappers can type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Type {
    /// Unknown, `Any`, `object` or a type variable.
    #[default]
    Any,
    /// `None`.
    None,
    /// `bool`.
    Bool,
    /// `int` (and `SupportsIndex`).
    Int,
    /// `float` (and numbers that convert to one).
    Float,
    /// `complex`.
    Complex,
    /// `str`.
    Str,
    /// `bytes`.
    Bytes,
    /// A numpy array.
    Ndarray,
    /// A list or other sequence.
    List {
        /// Item type.
        item: Box<Type>,
    },
    /// A set.
    Set {
        /// Item type.
        item: Box<Type>,
    },
    /// A fixed-length tuple.
    Tuple {
        /// Item types.
        items: Vec<Type>,
    },
    /// A dict or other mapping.
    Dict {
        /// Key type.
        key: Box<Type>,
        /// Value type.
        value: Box<Type>,
    },
    /// `X | None`.
    Optional {
        /// `X`.
        inner: Box<Type>,
    },
    /// Two or more types.
    Union {
        /// The types.
        options: Vec<Type>,
    },
    /// An instance of a class.
    Class {
        /// The module the class is reached through.
        module: String,
        /// Its name there.
        name: String,
    },
    /// An iterator or generator.
    Iterator {
        /// Item type.
        #[serde(default)]
        item: Box<Type>,
    },
    /// A callable.
    Callable,
}
