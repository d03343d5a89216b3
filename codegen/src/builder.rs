//! The `build.rs` helper: wrappers for a list of modules, generated into a
//! directory (`OUT_DIR` by default) and reused while the installed versions
//! match the ones their headers record.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     snakepit_codegen::Builder::new()
//!         .modules(["numpy:mean,std,array", "math:sqrt,floor", "pathlib:Path"])
//!         .generate()?;
//!     Ok(())
//! }
//! // src/lib.rs:
//! // include!(concat!(env!("OUT_DIR"), "/snakepit_wrappers.rs"));
//! ```
//!
//! In check mode (`.check(true)`, or `SNAKEPIT_CODEGEN_CHECK=1` in the
//! environment) nothing is written: the build fails when a module's
//! installed version differs from the one its wrappers were generated from,
//! or when generating them again would give different code (the
//! reference's lockfile verification, with the headers as the lock). Point
//! `out_dir` at checked-in files (`src/generated`) and run the check in CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::describe::{Description, MethodScope, Mode, Settings};
use crate::header::{GENERATOR, Header};
use crate::names;
use crate::render::{RenderError, RenderOptions, render};
use crate::report::Report;

/// The environment variable that turns check mode on (`1`, `true`).
pub const CHECK_ENV: &str = "SNAKEPIT_CODEGEN_CHECK";
/// The environment variable naming the interpreter, when the builder is not
/// given one.
pub const PYTHON_ENV: &str = "SNAKEPIT_CODEGEN_PYTHON";
/// The file that mounts every generated module.
pub const INDEX_FILE: &str = "snakepit_wrappers.rs";

/// One entry of the list: `module`, or `module:name,Name` for some of its
/// functions and classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The Python module.
    pub module: String,
    /// The names asked for (`None`: by mode).
    pub names: Option<Vec<String>>,
}

impl Spec {
    /// The Rust module the wrappers are mounted as (`os.path` → `os_path`).
    pub fn rust_module(&self) -> String {
        names::snake(&self.module.replace('.', "_"))
    }
}

impl FromStr for Spec {
    type Err = CodegenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| CodegenError::Spec(format!("{s:?}: {why}"));
        let (module, names) = match s.split_once(':') {
            Some((module, names)) => {
                let names: Vec<String> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    return Err(bad("no names after ':'"));
                }
                (module.trim(), Some(names))
            }
            None => (s.trim(), None),
        };
        let dotted = |n: &str| {
            !n.is_empty()
                && n.split('.').all(|p| {
                    !p.is_empty()
                        && !p.starts_with(|c: char| c.is_ascii_digit())
                        && p.chars().all(|c| c.is_alphanumeric() || c == '_')
                })
        };
        if !dotted(module) {
            return Err(bad("not a module name"));
        }
        if let Some(bad_name) = names
            .iter()
            .flatten()
            .find(|n| !dotted(n) || n.contains('.'))
        {
            return Err(bad(&format!("{bad_name:?} is not a name")));
        }
        Ok(Spec {
            module: module.to_string(),
            names,
        })
    }
}

/// Why generation failed, or a check found drift.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// A list entry that is not `module` or `module:name,...`.
    #[error("bad module spec {0}")]
    Spec(String),
    /// The interpreter could not be run, or its introspection failed.
    #[error("{command}: {message}")]
    Python {
        /// What was run.
        command: String,
        /// What went wrong (its stderr, when it ran).
        message: String,
    },
    /// The interpreter's answer was not a description.
    #[error("the description of {module} cannot be read: {message}")]
    Description {
        /// The module.
        module: String,
        /// Why.
        message: String,
    },
    /// The description could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Check mode found generated code that no longer matches.
    #[error("{}", drift_message(.0))]
    Drift(Vec<Drift>),
}

fn drift_message(drift: &[Drift]) -> String {
    let lines: Vec<String> = drift.iter().map(|d| format!("  {d}")).collect();
    format!(
        "generated wrappers no longer match the installed Python libraries:\n{}\n\
         generate them again (without {CHECK_ENV})",
        lines.join("\n")
    )
}

/// One way generated code no longer matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Drift {
    /// No generated file (or one without a header).
    #[error("{module}: no generated wrappers at {}", path.display())]
    Missing {
        /// The module.
        module: String,
        /// Where they should be.
        path: PathBuf,
    },
    /// The module's version changed.
    #[error("{module}: generated from version {recorded}, {installed} is installed")]
    Version {
        /// The module.
        module: String,
        /// The version the header records.
        recorded: String,
        /// The version installed now.
        installed: String,
    },
    /// The file was generated by another Python (stubs and signatures
    /// differ between versions).
    #[error("{module}: generated with Python {recorded}, the interpreter is {installed}")]
    Python {
        /// The module.
        module: String,
        /// The interpreter version the header records.
        recorded: String,
        /// The interpreter's version now.
        installed: String,
    },
    /// The file was generated with other settings or another generator.
    #[error("{module}: generated with other settings or generator version ({detail})")]
    Settings {
        /// The module.
        module: String,
        /// What differs.
        detail: String,
    },
    /// Generating again gives other code (a hand edit, or a change the
    /// version does not show).
    #[error("{module}: {} differs from what generating it again gives", path.display())]
    Content {
        /// The module.
        module: String,
        /// The file.
        path: PathBuf,
    },
}

/// An interpreter with `snakepit_bridge` installed, asked about modules.
#[derive(Debug, Clone)]
pub struct Python {
    path: PathBuf,
}

impl Python {
    /// The interpreter at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The interpreter `SNAKEPIT_CODEGEN_PYTHON` names, else `python3`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(PYTHON_ENV).map_or_else(|| PathBuf::from("python3"), PathBuf::from),
        )
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The introspector's command `args` (`describe ...`, `versions ...`):
    /// its stdout.
    fn run(&self, args: &[String]) -> Result<String, CodegenError> {
        let mut full = vec!["-m".to_string(), "snakepit_bridge.codegen".to_string()];
        full.extend(args.iter().cloned());
        self.output(&full)
    }

    /// The interpreter run with `args`: its stdout, or what it said failing.
    fn output(&self, args: &[String]) -> Result<String, CodegenError> {
        let command = format!("{} {}", self.path.display(), args.join(" "));
        let output =
            Command::new(&self.path)
                .args(args)
                .output()
                .map_err(|e| CodegenError::Python {
                    command: command.clone(),
                    message: e.to_string(),
                })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(CodegenError::Python {
                command,
                message: format!("{} ({})", stderr.trim(), output.status),
            });
        }
        String::from_utf8(output.stdout).map_err(|e| CodegenError::Python {
            command,
            message: format!("output is not UTF-8: {e}"),
        })
    }

    /// The interpreter's version (`3.11.7`), as a description records it.
    pub fn python_version(&self) -> Result<String, CodegenError> {
        let script = "import platform; print(platform.python_version())";
        let out = self.output(&["-c".to_string(), script.to_string()])?;
        Ok(out.trim().to_string())
    }

    /// The installed version of each module (as a description records it).
    pub fn versions(&self, modules: &[String]) -> Result<BTreeMap<String, String>, CodegenError> {
        let mut args = vec!["versions".to_string()];
        args.extend(modules.iter().cloned());
        let out = self.run(&args)?;
        serde_json::from_str(&out).map_err(|e| CodegenError::Description {
            module: modules.join(", "),
            message: e.to_string(),
        })
    }

    /// Describes `module` with `settings`.
    pub fn describe(&self, module: &str, settings: &Settings) -> Result<Description, CodegenError> {
        let out = self.run(&describe_args(module, settings))?;
        serde_json::from_str(&out).map_err(|e| CodegenError::Description {
            module: module.to_string(),
            message: e.to_string(),
        })
    }
}

/// The introspector's command line for `module` with `settings`.
pub(crate) fn describe_args(module: &str, settings: &Settings) -> Vec<String> {
    let mut args = vec!["describe".to_string(), module.to_string()];
    let mut list = |flag: &str, names: &Option<Vec<String>>| {
        if let Some(names) = names {
            args.push(flag.to_string());
            args.push(names.join(","));
        }
    };
    list("--functions", &settings.functions);
    list("--classes", &settings.classes);
    list("--names", &settings.names);
    if settings.mode != Mode::Root {
        args.extend(["--mode".to_string(), settings.mode.as_str().to_string()]);
    }
    if let Some(n) = settings.max_class_methods {
        args.extend(["--max-class-methods".to_string(), n.to_string()]);
    }
    if settings.class_method_scope != MethodScope::All {
        args.extend([
            "--class-method-scope".to_string(),
            settings.class_method_scope.as_str().to_string(),
        ]);
    }
    args
}

/// Generates wrappers for a list of modules (see the module docs).
#[derive(Debug, Clone)]
pub struct Builder {
    specs: Vec<String>,
    python: Option<Python>,
    out_dir: Option<PathBuf>,
    mode: Mode,
    max_class_methods: Option<u32>,
    class_method_scope: MethodScope,
    check: Option<bool>,
    crate_path: String,
    cargo: Option<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// No modules yet.
    pub fn new() -> Self {
        Self {
            specs: Vec::new(),
            python: None,
            out_dir: None,
            mode: Mode::Root,
            max_class_methods: None,
            class_method_scope: MethodScope::All,
            check: None,
            crate_path: "::snakepit".into(),
            cargo: None,
        }
    }

    /// Adds `module` or `module:name,Name`.
    pub fn module(mut self, spec: impl Into<String>) -> Self {
        self.specs.push(spec.into());
        self
    }

    /// Adds several.
    pub fn modules<S: Into<String>>(mut self, specs: impl IntoIterator<Item = S>) -> Self {
        self.specs.extend(specs.into_iter().map(Into::into));
        self
    }

    /// The interpreter to introspect with (default: `SNAKEPIT_CODEGEN_PYTHON`, else
    /// `python3`). It needs `snakepit_bridge` and the modules installed.
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = Some(Python::new(python));
        self
    }

    /// Where the files go (default: `OUT_DIR`).
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Module discovery for entries without names (default: root).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Classes with more public methods keep only the ones they declare.
    pub fn max_class_methods(mut self, n: u32) -> Self {
        self.max_class_methods = Some(n);
        self
    }

    /// Which methods of a class count (default: all, inherited too).
    pub fn class_method_scope(mut self, scope: MethodScope) -> Self {
        self.class_method_scope = scope;
        self
    }

    /// Check instead of generating (default: `SNAKEPIT_CODEGEN_CHECK`).
    pub fn check(mut self, check: bool) -> Self {
        self.check = Some(check);
        self
    }

    /// The path of the `snakepit` crate in generated code (default
    /// `::snakepit`).
    pub fn crate_path(mut self, path: impl Into<String>) -> Self {
        self.crate_path = path.into();
        self
    }

    /// Whether to print `cargo:` directives (default: when run by cargo as
    /// a build script, i.e. `OUT_DIR` is set).
    pub fn cargo_directives(mut self, yes: bool) -> Self {
        self.cargo = Some(yes);
        self
    }

    fn settings(&self, spec: &Spec) -> Settings {
        Settings {
            mode: if spec.names.is_some() {
                Mode::Root
            } else {
                self.mode
            },
            functions: None,
            classes: None,
            names: spec.names.clone(),
            max_class_methods: self.max_class_methods,
            class_method_scope: self.class_method_scope,
        }
    }

    /// Generates (or, in check mode, checks) every module.
    pub fn generate(&self) -> Result<Generated, CodegenError> {
        let specs = self
            .specs
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Spec>, _>>()?;
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    CodegenError::Spec(
                        "no out_dir given and OUT_DIR is not set (not a build script?)".into(),
                    )
                })?,
        };
        let check = self.check.unwrap_or_else(|| {
            std::env::var(CHECK_ENV).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"))
        });
        let cargo = self
            .cargo
            .unwrap_or_else(|| std::env::var_os("OUT_DIR").is_some());
        let python = self.python.clone().unwrap_or_else(Python::from_env);
        if cargo {
            println!("cargo:rerun-if-env-changed={CHECK_ENV}");
            println!("cargo:rerun-if-env-changed={PYTHON_ENV}");
            println!("cargo:rerun-if-changed={}", python.path().display());
        }
        let modules: Vec<String> = specs.iter().map(|s| s.module.clone()).collect();
        let installed = python.versions(&modules)?;
        let python_version = python.python_version()?;
        if !check {
            std::fs::create_dir_all(&out_dir).map_err(|source| CodegenError::Io {
                path: out_dir.clone(),
                source,
            })?;
        }
        let mut generated = Vec::new();
        let mut drift = Vec::new();
        for spec in &specs {
            let path = out_dir.join(format!("{}.rs", names::bare(&spec.rust_module())));
            let settings = self.settings(spec);
            let version = installed.get(&spec.module).cloned().unwrap_or_default();
            let existing = std::fs::read_to_string(&path).ok();
            let current =
                self.is_current(existing.as_deref(), &version, &python_version, &settings);
            let mut module = GeneratedModule {
                spec: spec.clone(),
                version,
                path,
                cached: true,
                report: None,
            };
            if check {
                drift.extend(self.check_one(
                    &python,
                    &module,
                    &python_version,
                    &settings,
                    existing.as_deref(),
                    current,
                )?);
            } else if !current {
                let rendered = self.render(&python, spec, &settings)?;
                write(&module.path, &rendered.source)?;
                module.version = rendered.report.version.clone();
                module.cached = false;
                module.report = Some(rendered.report);
            }
            generated.push(module);
        }
        if !drift.is_empty() {
            return Err(CodegenError::Drift(drift));
        }
        let index = out_dir.join(INDEX_FILE);
        if !check {
            write(&index, &index_source(&generated))?;
        }
        Ok(Generated {
            modules: generated,
            index,
        })
    }

    /// Whether `existing` (a generated file's text) is what generating it
    /// now would give: same generator, module version, interpreter version,
    /// settings and crate path (the crate path is no setting of the description; the file shows
    /// it in its one `use`).
    fn is_current(
        &self,
        existing: Option<&str>,
        version: &str,
        python_version: &str,
        settings: &Settings,
    ) -> bool {
        let Some(text) = existing else {
            return false;
        };
        let same_crate = text.contains(&format!("use {}::codegen::rt as _rt;", self.crate_path));
        same_crate
            && Header::parse(text).is_some_and(|h| {
                h.generator == GENERATOR
                    && h.version == version
                    && h.python == python_version
                    && &h.settings == settings
            })
    }

    /// How `module`'s file has drifted, if it has: in that order, it is
    /// missing, its version is not the installed one, another Python made
    /// it, it was made otherwise, or generating it again gives other code.
    fn check_one(
        &self,
        python: &Python,
        module: &GeneratedModule,
        python_version: &str,
        settings: &Settings,
        existing: Option<&str>,
        current: bool,
    ) -> Result<Option<Drift>, CodegenError> {
        let name = module.spec.module.clone();
        let Some(header) = existing.and_then(Header::parse) else {
            return Ok(Some(Drift::Missing {
                module: name,
                path: module.path.clone(),
            }));
        };
        if header.version != module.version {
            return Ok(Some(Drift::Version {
                module: name,
                recorded: header.version,
                installed: module.version.clone(),
            }));
        }
        if header.python != python_version {
            return Ok(Some(Drift::Python {
                module: name,
                recorded: header.python,
                installed: python_version.to_string(),
            }));
        }
        if !current {
            return Ok(Some(Drift::Settings {
                module: name,
                detail: format!(
                    "recorded generator {} with {:?}; now {GENERATOR} with {:?} and crate path {}",
                    header.generator, header.settings, settings, self.crate_path
                ),
            }));
        }
        let rendered = self.render(python, &module.spec, settings)?;
        Ok(
            (existing != Some(rendered.source.as_str())).then(|| Drift::Content {
                module: name,
                path: module.path.clone(),
            }),
        )
    }

    fn render(
        &self,
        python: &Python,
        spec: &Spec,
        settings: &Settings,
    ) -> Result<crate::render::Rendered, CodegenError> {
        let desc = python.describe(&spec.module, settings)?;
        let spec_text = match &spec.names {
            Some(names) => format!("{}:{}", spec.module, names.join(",")),
            None => spec.module.clone(),
        };
        let opts = RenderOptions {
            crate_path: self.crate_path.clone(),
            regenerate: format!("snakepit_codegen::Builder (build.rs), entry {spec_text:?}"),
        };
        Ok(render(&desc, &opts)?)
    }
}

/// Writes `text` to `path` unless it already holds it (an unchanged file
/// keeps its time, so cargo does not rebuild for nothing).
fn write(path: &Path, text: &str) -> Result<(), CodegenError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(|source| CodegenError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `pub mod numpy { include!("/…/numpy.rs"); }` for each module.
fn index_source(modules: &[GeneratedModule]) -> String {
    let mut out = String::from(
        "// @generated by snakepit-codegen: the wrappers of each module, mounted as a module.\n",
    );
    for m in modules {
        out.push_str(&format!(
            "pub mod {} {{\n    include!({:?});\n}}\n",
            m.spec.rust_module(),
            m.path.display().to_string()
        ));
    }
    out
}

/// What [`Builder::generate`] did.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Each module, in list order.
    pub modules: Vec<GeneratedModule>,
    /// The file mounting them all ([`INDEX_FILE`]).
    pub index: PathBuf,
}

/// One module's wrappers.
#[derive(Debug, Clone)]
pub struct GeneratedModule {
    /// The list entry.
    pub spec: Spec,
    /// The installed version they match.
    pub version: String,
    /// The file.
    pub path: PathBuf,
    /// Whether the file was already current (no introspection ran).
    pub cached: bool,
    /// The coverage, when they were generated now.
    pub report: Option<Report>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_module_and_maybe_names() {
        let spec: Spec = "math:sqrt, floor".parse().unwrap();
        assert_eq!(spec.module, "math");
        assert_eq!(
            spec.names,
            Some(vec!["sqrt".to_string(), "floor".to_string()])
        );
        let spec: Spec = "os.path".parse().unwrap();
        assert_eq!(spec.names, None);
        assert_eq!(spec.rust_module(), "os_path");
        assert!("math:".parse::<Spec>().is_err());
        assert!("ma th".parse::<Spec>().is_err());
        assert!("math:a.b".parse::<Spec>().is_err());
        assert!("".parse::<Spec>().is_err());
    }

    #[test]
    fn the_introspector_gets_only_the_settings_that_differ_from_its_defaults() {
        let settings = Settings {
            names: Some(vec!["Path".into()]),
            max_class_methods: Some(50),
            ..Settings::default()
        };
        assert_eq!(
            describe_args("pathlib", &settings),
            [
                "describe",
                "pathlib",
                "--names",
                "Path",
                "--max-class-methods",
                "50"
            ]
        );
    }
}
