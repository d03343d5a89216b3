//! `snakepit exec TOOL`: run one tool, print its result as JSON on stdout.
//! Streaming tools print one JSON line per chunk. A failed tool goes to
//! stderr and exits 1 (`super::EXIT_FAILED`). With `--server` the tool runs on a serving host's
//! pools (`super::remote`), printed alike.
//!
//! The tool runs in a session, as calls from a service do: `--session ID`,
//! or a new one with a generated id, released (its release hooks run) when
//! the tool returns. So `session_context.session_id` is never empty.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use snakepit::{Error, PoolConfig, Value};

use super::remote::ServerOpts;
use crate::RuntimeOpts;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Tool to run.
    tool: String,
    /// Adapter class, `module.Class` (default: the showcase adapter).
    #[arg(long, conflicts_with = "server")]
    adapter: Option<String>,
    /// Directory added to the worker's `sys.path` (repeatable).
    #[arg(long = "python-path", conflicts_with = "server")]
    python_path: Vec<PathBuf>,
    /// Keyword arguments as a JSON object (or positional ones as a JSON array).
    #[arg(long, default_value = "{}")]
    args: String,
    /// Pool to run on, when the configuration has several.
    #[arg(long)]
    pool: Option<String>,
    /// Session to run in (created if needed, kept afterwards); default: a
    /// new session with a generated id, released when the tool returns.
    #[arg(long)]
    session: Option<String>,
    /// How the one-worker pool runs requests (with --adapter / --python-path).
    #[arg(long, value_enum, default_value_t = ProfileArg::Process)]
    profile: ProfileArg,
    /// Threads of that worker in the thread profile.
    #[arg(long, default_value_t = 8)]
    threads: u32,
    #[command(flatten)]
    server: ServerOpts,
}

/// Runs `snakepit exec`: the result on stdout, exit 0; a failed tool on
/// stderr, exit [`super::EXIT_FAILED`].
pub async fn run(opts: ExecArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let args: serde_json::Value = serde_json::from_str(&opts.args)
        .map_err(|e| super::UsageError(format!("--args is not valid JSON: {e}")))?;
    if opts.server.is_remote() {
        let client = opts.server.connect(&runtime).await?;
        return super::remote::exec(
            client,
            &opts.tool,
            opts.pool.as_deref(),
            opts.session.as_deref(),
            Value::from(args),
        )
        .await;
    }
    let mut builder = super::builder(&runtime)?;
    if opts.adapter.is_some() || !opts.python_path.is_empty() || runtime.config_path().is_none() {
        // A one-worker pool of the requested adapter.
        let mut pool = PoolConfig::named("exec");
        pool.size = 1;
        if let Some(adapter) = &opts.adapter {
            pool.adapter = adapter.clone();
        }
        pool.profile = match opts.profile {
            ProfileArg::Process => snakepit::Profile::Process,
            ProfileArg::Thread => snakepit::Profile::Thread,
        };
        pool.threads_per_worker = opts.threads;
        pool.python_path = opts
            .python_path
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        builder = builder
            .config(snakepit::config::Config::default())
            .pool(pool);
    }
    let snakepit = super::start(builder).await?;
    let outcome = super::run_until_signal(&snakepit, async {
        let pool = match &opts.pool {
            Some(name) => snakepit.pool(name)?.clone(),
            None => snakepit.default_pool().clone(),
        };
        let streaming = pool
            .status()
            .await?
            .tools
            .iter()
            .any(|t| t.name == opts.tool && t.supports_streaming);
        let session = match &opts.session {
            Some(id) => snakepit.session(id).await?,
            None => snakepit.new_session().await?,
        };
        let call = snakepit::call(&opts.tool, Value::from(args))?;
        let result: Result<(), Error> = if streaming {
            match session.run_stream_on(Some(pool.name()), call).await {
                Ok(mut stream) => {
                    let mut result = Ok(());
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(chunk) => println!("{}", chunk.value.to_json_tagged()),
                            Err(err) => {
                                result = Err(err);
                                break;
                            }
                        }
                    }
                    result
                }
                Err(err) => Err(err),
            }
        } else {
            session
                .run_on(Some(pool.name()), call)
                .await
                .map(|value| println!("{}", value.to_json_tagged()))
        };
        if opts.session.is_none()
            && let Err(err) = session.release().await
        {
            eprintln!("warning: releasing session {}: {err}", session.id());
        }
        Ok(result)
    })
    .await?;
    match outcome {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(err)) => {
            report(&err);
            Ok(ExitCode::from(super::EXIT_FAILED))
        }
        Err(signal) => Ok(signal.exit_code()),
    }
}

/// `--profile`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProfileArg {
    Process,
    Thread,
}

fn report(err: &Error) {
    let traceback = match err {
        Error::Python(exc) => Some(exc.traceback.as_str()),
        _ => None,
    };
    super::print_failure(err, traceback);
}
