//! The `snakepit` command: `demo`, `exec`, `call`, `shell`, `serve`,
//! `agent`, `doctor`, `env`, `status`, `bench`, `chaos`, `new`, `completions`
//! and `man`.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "snakepit",
    version,
    about = "Supervised pools of Python workers",
    after_help = cli::EXIT_CODES_HELP
)]
struct Cli {
    /// Export traces over OTLP/gRPC to this endpoint (http://HOST:4317)
    /// [default: $OTEL_EXPORTER_OTLP_ENDPOINT; unset: no export].
    #[arg(long, global = true, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Log filter, as `SNAKEPIT_LOG` takes it (`debug`,
    /// `warn,snakepit=info`) [default: $SNAKEPIT_LOG, else $RUST_LOG, else
    /// warn].
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(flatten)]
    runtime: RuntimeOpts,
    #[command(subcommand)]
    command: Command,
}

/// Options of every command that starts pools; accepted before or after
/// the subcommand, ignored by the commands that start none.
#[derive(Args, Clone, Debug, Default)]
struct RuntimeOpts {
    /// Configuration file (TOML) [default: $SNAKEPIT_CONFIG, else the
    /// embedded default].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address while the command runs.
    #[arg(long, global = true, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
}

/// The configuration file named when `--config` is absent.
const CONFIG_ENV: &str = "SNAKEPIT_CONFIG";

impl RuntimeOpts {
    /// `--config`, else `SNAKEPIT_CONFIG` (when set and not empty).
    fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Show what snakepit does, on the embedded default pool.
    Demo {
        /// Keep the runtime (and its metrics endpoint) up this many seconds afterwards.
        #[arg(long, default_value_t = 0)]
        linger: u64,
    },
    /// Run one tool and print its result as JSON (streams: one line per chunk).
    Exec(cli::exec::ExecArgs),
    /// Call `MODULE.FUNCTION(ARG...)` through the universal FFI and print the
    /// result as one line of tagged JSON.
    Call(cli::ffi::CallArgs),
    /// A JSON-lines FFI session on stdin/stdout: call, keep refs, stream
    /// (protocol: README, "snakepit shell").
    Shell(cli::ffi::ShellArgs),
    /// Serve the pools over gRPC (`snakepit.v1.Snakepit`, with health and
    /// reflection) until SIGINT or SIGTERM; prints `snakepit: serving on ADDR`
    /// to stderr once clients can connect.
    Serve(cli::serve::ServeArgs),
    /// Run Python workers of a remote pool for a host: dial its `[remote]
    /// listen` address, register, and serve until drained by SIGTERM.
    Agent(cli::agent::AgentArgs),
    /// Check Python, each pool's environment (building it when missing) and
    /// that its adapter imports, then start the workers (exit code 3 when
    /// something is wrong).
    Doctor(cli::doctor::DoctorArgs),
    /// Manage the environments pools run in: `list`, `build`, `prune`,
    /// `python`.
    Env(cli::env::EnvArgs),
    /// The pools, their workers and tools: of a running `snakepit serve`
    /// (`--server`), or of the configuration, started for the look.
    Status(cli::status::StatusArgs),
    /// Measure latency and throughput against Python's own process pools.
    Bench(cli::bench::BenchArgs),
    /// Kill workers of a busy pool at random; report lost, hung and wrong
    /// requests, recovery times and leftover processes (exit code 1 when a
    /// goal is not met).
    Chaos(cli::chaos::ChaosArgs),
    /// Write a new project from a template: `snakepit new adapter NAME`.
    New(cli::new::NewArgs),
    /// Generate code from a Python module: `snakepit gen rust MODULE` writes
    /// typed Rust wrappers of it, introspected in a worker.
    Gen(cli::generate::GenArgs),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) to stdout.
    Completions(cli::completions::CompletionsArgs),
    /// Print the manual page (roff) to stdout: `snakepit man | man -l -`.
    Man(cli::completions::ManArgs),
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        // The exporter's gRPC channel lives on this runtime.
        let mut otel_config = snakepit::otel::OtelConfig::from_env();
        if let Some(endpoint) = args.otlp_endpoint {
            otel_config = otel_config.endpoint(endpoint);
        }
        let otel = match snakepit::otel::Otel::start(&otel_config) {
            Ok(otel) => otel,
            Err(err) => {
                eprintln!("warning: traces are not exported: {err}");
                None
            }
        };
        cli::init_tracing(args.log_level.as_deref(), otel.as_ref())?;
        let result = run(args.command, args.runtime).await;
        if let Some(otel) = otel {
            // Flush what is batched; the export needs this runtime running.
            let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
        }
        result
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(cli::exit_code_of(&err))
        }
    }
}

async fn run(command: Command, runtime: RuntimeOpts) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Demo { linger } => cli::demo::run(runtime, linger).await,
        Command::Exec(args) => cli::exec::run(args, runtime).await,
        Command::Call(args) => cli::ffi::call(args, runtime).await,
        Command::Shell(args) => cli::ffi::shell(args, runtime).await,
        Command::Serve(args) => cli::serve::run(args, runtime).await,
        // On a worker thread: the link's messages are then handled where
        // tokio runs the relay, not handed over from the main thread.
        Command::Agent(args) => match tokio::spawn(cli::agent::run(args, runtime.config)).await {
            Ok(done) => done,
            Err(err) => Err(anyhow::anyhow!("the agent task failed: {err}")),
        },
        Command::Doctor(args) => cli::doctor::run(args, runtime).await,
        Command::Env(args) => cli::env::run(args, runtime).await,
        Command::Status(args) => cli::status::run(args, runtime).await,
        Command::Bench(args) => cli::bench::run(args).await,
        Command::Chaos(args) => cli::chaos::run(args).await,
        Command::New(args) => cli::new::run(args).await,
        Command::Gen(args) => cli::generate::run(args, runtime).await,
        Command::Completions(args) => cli::completions::completions(args, Cli::command()),
        Command::Man(args) => cli::completions::man(args, Cli::command()),
    }
}
