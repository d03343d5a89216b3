//! Subcommands of the `snakepit` binary, one module each, and what they share.

pub mod agent;
pub mod bench;
pub mod chaos;
pub mod demo;
pub mod doctor;
pub mod env;
pub mod exec;
pub mod ffi;
pub mod new;
pub mod remote;
pub mod serve;

use snakepit::config::Config;
use snakepit::{Snakepit, SnakepitBuilder};

use crate::RuntimeOpts;

/// Exit code after SIGINT/SIGTERM.
pub const EXIT_SIGNAL: u8 = 130;

/// Logs to stderr, filtered by `SNAKEPIT_LOG` (or `RUST_LOG`; `warn`
/// without either). `SNAKEPIT_LOG_FORMAT=json` writes one JSON object a
/// line, for log shippers, with the current span and its parents; the
/// text format has ANSI colours only when stderr is a terminal. With an
/// exporter, the runtime's own spans (targets `snakepit*`, at info) also go
/// to it, whatever the log filter says.
pub fn init_tracing(otel: Option<&snakepit::otel::Otel>) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = || {
        EnvFilter::try_from_env("SNAKEPIT_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| EnvFilter::new("warn"))
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
            .with_ansi(std::io::stderr().is_terminal())
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
}

/// The configuration `--config` names, or the embedded default.
pub fn load_config(opts: &RuntimeOpts) -> anyhow::Result<Config> {
    Ok(match &opts.config {
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

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs `work` unless a signal arrives first; either way shuts down gracefully.
pub async fn run_until_signal<T>(
    snakepit: &Snakepit,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    let result = tokio::select! {
        r = work => Some(r),
        _ = shutdown_signal() => {
            eprintln!("\nsnakepit: signal received, shutting down gracefully");
            None
        }
    };
    snakepit.shutdown().await;
    result.transpose()
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
