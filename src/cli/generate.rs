//! `snakepit gen rust MODULE`: typed Rust wrappers of a Python module,
//! introspected in a worker of the configured environment (the module's
//! own interpreter and packages) and rendered by `snakepit::codegen`.
//!
//! The worker runs `snakepit_bridge.codegen.describe` through the universal
//! FFI; the description comes back as a value, is read as
//! [`Description`] and rendered here. `--report` prints the coverage: what
//! was generated, how much is typed, what was skipped and why.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Subcommand, ValueEnum};
use snakepit::codegen::{Description, MethodScope, Mode, RenderOptions, Report, render};
use snakepit::{Ffi, FfiTarget, Snakepit, Value};

use crate::RuntimeOpts;

/// The Python function that describes a module, as JSON text (a
/// description nests deeper than the wire carries values).
const DESCRIBE: (&str, &str) = ("snakepit_bridge.codegen", "describe_json");

/// `snakepit gen TARGET`.
#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Subcommand, Debug)]
enum Target {
    /// Typed Rust wrappers of a Python module: one `async fn` per function,
    /// one struct per class, doc comments from the docstrings.
    Rust(RustArgs),
}

/// How `--report` prints the coverage.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReportFormat {
    /// A table for people.
    Text,
    /// One JSON object.
    Json,
}

/// `snakepit gen rust MODULE [...]`.
#[derive(Args, Debug)]
pub struct RustArgs {
    /// The Python module, e.g. `math`, `numpy` or `os.path`.
    module: String,
    /// Only these functions (comma-separated; with `--classes`, these
    /// functions and those classes). A name that does not exist is an error.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    functions: Option<Vec<String>>,
    /// Only these classes (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    classes: Option<Vec<String>>,
    /// Which modules and names, without `--functions`/`--classes`: `root`
    /// (the module alone), `exports` (and the submodules it exports),
    /// `public` (and every public submodule), `explicit` (only modules
    /// with `__all__`, only its names).
    #[arg(
        long,
        default_value = "root",
        value_parser = PossibleValuesParser::new(["root", "exports", "public", "explicit"])
            .map(|s| s.parse::<Mode>().expect("a listed mode"))
    )]
    mode: Mode,
    /// A class with more public methods keeps only the ones it declares
    /// itself, and at most this many (the rest are reported as skipped).
    #[arg(long, value_name = "N")]
    max_class_methods: Option<u32>,
    /// Which methods of a class count: `all` (inherited too) or `defined`
    /// (declared on the class itself).
    #[arg(
        long,
        default_value = "all",
        value_name = "SCOPE",
        value_parser = PossibleValuesParser::new(["all", "defined"])
            .map(|s| s.parse::<MethodScope>().expect("a listed scope"))
    )]
    class_method_scope: MethodScope,
    /// Write the Rust source here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the coverage report (to stdout with `--out`, else stderr).
    #[arg(long, num_args = 0..=1, default_missing_value = "text", value_name = "FORMAT")]
    report: Option<ReportFormat>,
    /// Preview: print how much code would be written and the coverage
    /// report, and write nothing (to weigh the guardrails first).
    #[arg(long, conflicts_with = "out")]
    plan: bool,
    /// Introspect in a worker of this pool (default: the default pool).
    #[arg(long, value_name = "POOL")]
    pool: Option<String>,
    /// How the generated code names the snakepit crate.
    #[arg(long, default_value = "::snakepit", value_name = "PATH")]
    crate_path: String,
}

impl RustArgs {
    /// The command line that generates the same code again (without
    /// `--out`: the header does not depend on where the file goes).
    fn command_line(&self) -> String {
        let mut line = format!("snakepit gen rust {}", self.module);
        if let Some(f) = &self.functions {
            line.push_str(&format!(" --functions {}", f.join(",")));
        }
        if let Some(c) = &self.classes {
            line.push_str(&format!(" --classes {}", c.join(",")));
        }
        if self.mode != Mode::Root {
            line.push_str(&format!(" --mode {}", self.mode.as_str()));
        }
        if let Some(n) = self.max_class_methods {
            line.push_str(&format!(" --max-class-methods {n}"));
        }
        if self.class_method_scope != MethodScope::All {
            line.push_str(" --class-method-scope defined");
        }
        if let Some(pool) = &self.pool {
            line.push_str(&format!(" --pool {pool}"));
        }
        line
    }

    /// The keyword arguments of `describe`.
    fn describe_kwargs(&self) -> Vec<(String, Value)> {
        let names = |n: &Option<Vec<String>>| n.clone().map_or(Value::Null, Value::from);
        vec![
            ("functions".into(), names(&self.functions)),
            ("classes".into(), names(&self.classes)),
            ("mode".into(), Value::from(self.mode.as_str())),
            (
                "max_class_methods".into(),
                self.max_class_methods.map_or(Value::Null, Value::from),
            ),
            (
                "class_method_scope".into(),
                Value::from(self.class_method_scope.as_str()),
            ),
        ]
    }
}

/// Runs `snakepit gen`.
pub async fn run(args: GenArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let Target::Rust(args) = args.target;
    let snakepit = super::ffi::start(&runtime).await?;
    let outcome = super::run_until_signal(&snakepit, async {
        let described = describe(&snakepit, &args).await;
        if let Err(err) = snakepit.release_session().await {
            tracing::warn!(error = %err, "Releasing the FFI session failed.");
        }
        Ok(described)
    })
    .await?;
    let desc = match outcome {
        Ok(Ok(desc)) => desc,
        Ok(Err(err)) => {
            let traceback = err.python_exception().map(|e| e.traceback.as_str());
            super::print_failure(&err, traceback);
            return Ok(ExitCode::from(super::EXIT_FAILED));
        }
        Err(signal) => return Ok(signal.exit_code()),
    };
    let desc: Description = serde_json::from_value(desc)
        .with_context(|| format!("the description of {} cannot be read", args.module))?;
    let opts = RenderOptions {
        crate_path: args.crate_path.clone(),
        regenerate: args.command_line(),
    };
    let rendered = render(&desc, &opts)?;
    if args.plan {
        // What it would write, and nothing written: the size first, then
        // the coverage (as `--report` asks, text by default).
        println!(
            "snakepit: would write {} lines ({} bytes): {}",
            rendered.source.lines().count(),
            rendered.source.len(),
            rendered.report.summary()
        );
        print!(
            "{}",
            report_text(&rendered.report, args.report.unwrap_or(ReportFormat::Text))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, &rendered.source)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "snakepit: wrote {}: {}",
                path.display(),
                rendered.report.summary()
            );
        }
        None => std::io::stdout().write_all(rendered.source.as_bytes())?,
    }
    if let Some(format) = args.report {
        let text = report_text(&rendered.report, format)?;
        if args.out.is_some() {
            print!("{text}");
        } else {
            eprint!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The coverage report in `format`.
fn report_text(report: &Report, format: ReportFormat) -> anyhow::Result<String> {
    Ok(match format {
        ReportFormat::Text => report.to_text(),
        ReportFormat::Json => serde_json::to_string_pretty(report)? + "\n",
    })
}

/// Describes the module in a worker: the description as JSON.
async fn describe(
    snakepit: &Snakepit,
    args: &RustArgs,
) -> Result<serde_json::Value, snakepit::Error> {
    let target: FfiTarget = match &args.pool {
        Some(pool) => {
            snakepit.pool(pool)?;
            snakepit.auto_session().await?.on_pool(pool.clone())
        }
        None => snakepit.ffi_target().await?,
    };
    let (module, function) = DESCRIBE;
    let value = target
        .call(
            module,
            function,
            [args.module.as_str()],
            args.describe_kwargs(),
        )
        .await?;
    let text: String = value.extract()?;
    serde_json::from_str(&text).map_err(|e| {
        snakepit::Error::Protocol(format!("{module}.{function} answered no JSON: {e}"))
    })
}
