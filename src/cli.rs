//! Subcommands of the `snakepit` binary, one module each, and what they share.

pub mod agent;
pub mod bench;
pub mod chaos;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod env;
pub mod exec;
pub mod ffi;
pub mod generate;
pub mod new;
pub mod remote;
pub mod serve;
pub mod status;

use snakepit::config::Config;
use snakepit::{Snakepit, SnakepitBuilder};

use crate::RuntimeOpts;

/// Exit code when the call, tool or check a command ran failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a command line that cannot be run as written (clap's own
/// code for a usage error).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the environment prevents starting: the configuration, the
/// Python environment, the state directory or the workers' start-up.
pub const EXIT_ENVIRONMENT: u8 = 3;

/// The exit codes, as `--help` shows them after the options.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0        success
  1        the call, tool or check failed
  2        usage: the command line cannot be run as written
  3        environment: the configuration, Python environment or workers
           prevent starting
  128+N    ended by signal N (130 after SIGINT, 143 after SIGTERM)";

/// A command line that parses but cannot run as written; exits
/// [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code `main` gives an error no command turned into one:
/// [`EXIT_USAGE`] for a [`UsageError`], [`EXIT_ENVIRONMENT`] for what keeps
/// the runtime from starting (configuration, Python environment, state
/// directory, a runtime that does not start), else [`EXIT_FAILED`].
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    use snakepit::Error;
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return EXIT_USAGE;
        }
        if cause.is::<StartError>() {
            return EXIT_ENVIRONMENT;
        }
        if let Some(
            Error::Config(_)
            | Error::Environment(_)
            | Error::UntrustedPath(_)
            | Error::WorkerStartFailed { .. },
        ) = cause.downcast_ref::<Error>()
        {
            return EXIT_ENVIRONMENT;
        }
    }
    EXIT_FAILED
}

/// A signal that ends a command gracefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
        }
    }

    /// `128 + N`, as a shell reports a command ended by signal N.
    pub fn exit_code(self) -> std::process::ExitCode {
        std::process::ExitCode::from(128 + self.number() as u8)
    }
}

/// Whether stderr may carry colours and redrawn lines: it is a terminal
/// and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn stderr_is_styled() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs to stderr, filtered by `level` (`--log-level`), else `SNAKEPIT_LOG`
/// (or `RUST_LOG`; `warn` without either). `SNAKEPIT_LOG_FORMAT=json`
/// writes one JSON object a line, for log shippers, with the current span
/// and its parents; the text format has ANSI colours only when
/// [`stderr_is_styled`]. With an exporter, the runtime's own spans
/// (targets `snakepit*`, at info) also go to it, whatever the log filter
/// says.
pub fn init_tracing(
    level: Option<&str>,
    otel: Option<&snakepit::otel::Otel>,
) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    if let Some(level) = level {
        EnvFilter::try_new(level).map_err(|e| UsageError(format!("--log-level `{level}`: {e}")))?;
    }
    let filter = || match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_env("SNAKEPIT_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let json = std::env::var("SNAKEPIT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (json_logs, text_logs) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter());
        (Some(layer), None)
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(stderr_is_styled())
            .with_writer(std::io::stderr)
            .with_filter(filter());
        (None, Some(layer))
    };
    let spans = otel.map(|otel| {
        otel.layer()
            .with_filter(Targets::new().with_target("snakepit", tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(json_logs)
        .with(text_logs)
        .with(spans)
        .init();
    Ok(())
}

/// The configuration `--config` (or `SNAKEPIT_CONFIG`) names, or the
/// embedded default.
pub fn load_config(opts: &RuntimeOpts) -> anyhow::Result<Config> {
    Ok(match &opts.config_path() {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    })
}

/// A builder from `--config` (or the embedded default) and `--metrics-addr`.
pub fn builder(opts: &RuntimeOpts) -> anyhow::Result<SnakepitBuilder> {
    let mut builder = Snakepit::builder().config(load_config(opts)?);
    if let Some(addr) = opts.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    Ok(builder)
}

/// Resolves with the first SIGINT or SIGTERM.
pub async fn shutdown_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// Runs `work` unless a signal arrives first (then `Err` with it); either
/// way shuts down gracefully.
pub async fn run_until_signal<T>(
    snakepit: &Snakepit,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Result<T, Signal>> {
    let result = tokio::select! {
        r = work => Ok(r),
        signal = shutdown_signal() => {
            eprintln!("\nsnakepit: signal received, shutting down gracefully");
            Err(signal)
        }
    };
    snakepit.shutdown().await;
    match result {
        Ok(r) => r.map(Ok),
        Err(signal) => Ok(Err(signal)),
    }
}

/// Starts the runtime `builder` describes; a failure to start is an
/// environment error ([`EXIT_ENVIRONMENT`]) whatever its cause.
pub async fn start(builder: SnakepitBuilder) -> anyhow::Result<Snakepit> {
    Ok(builder.start().await.map_err(StartError::new)?)
}

/// The runtime could not start as configured (the message is the cause's).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StartError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl StartError {
    /// Wraps the reason the runtime could not start.
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(cause))
    }
}

/// A failed call on stderr, as `exec` and `call` print it (local or
/// remote): `error: MESSAGE`, then Python's traceback when there is one.
pub fn print_failure(err: &dyn std::fmt::Display, traceback: Option<&str>) {
    eprintln!("error: {err}");
    if let Some(traceback) = traceback.filter(|t| !t.is_empty()) {
        eprintln!("{}", traceback.trim_end());
    }
}

/// Percentile of sorted samples.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
