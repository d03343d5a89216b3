//! `snakepit agent`: a node agent that runs Python workers of one remote
//! pool for a host it dials (see `snakepit::agent`). Prints
//! `snakepit: agent attached to URL` to stderr each time it attaches; exits
//! 0 once drained after SIGTERM or SIGINT, non-zero when the host refuses
//! it for good (a wrong token, a pool the host does not run remotely).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use snakepit::PoolConfig;
use snakepit::agent::AgentOptions;
use snakepit::config::Config;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The host's `[remote] listen` address: http://HOST:PORT (https:// for TLS).
    #[arg(long)]
    connect: String,
    /// File holding the token the host's `[remote]` section asks for.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the host's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This agent's certificate (PEM), for mTLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// This agent's private key (PEM), for mTLS.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The remote pool it serves.
    #[arg(long)]
    pool: String,
    /// Workers it runs at most.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// A label to register with, KEY=VALUE; repeatable.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Its id on the host [default: the hostname and the process id].
    #[arg(long)]
    agent_id: Option<String>,
    /// Serve /healthz, /readyz and /metrics over HTTP on this address.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// How long a drain (SIGTERM) lets in-flight calls finish.
    #[arg(long, default_value_t = 30_000)]
    drain_grace_ms: u64,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Runs the agent; `config` (the global `--config`) is a TOML with the
/// pool's adapter, profile, env and limits (a `[[pools]]` entry named as
/// `--pool`, and `[python]`); without it, the showcase adapter.
pub async fn run(args: AgentArgs, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let pool = match (
        config.pools.iter().find(|p| p.name == args.pool),
        &config_path,
    ) {
        (Some(pool), _) => pool.clone(),
        (None, Some(path)) => bail!(
            "{} has no [[pools]] entry named `{}`",
            path.display(),
            args.pool
        ),
        (None, None) => PoolConfig::named(&args.pool),
    };
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                bail!("the token file {} is empty", path.display());
            }
            Some(token)
        }
        None => None,
    };
    // The agent runs the pool's workers here: its environment is built here.
    let remote = pool.remote;
    let mut pool = pool;
    pool.remote = false;
    let mut local = [pool];
    snakepit::envs::prepare_pools(&mut local).await?;
    let [mut pool] = local;
    pool.remote = remote;
    let python = match &pool.python {
        Some(python) => python.clone(),
        None => snakepit::resolve_python(None, None, &config.python, false).await?,
    };
    let options = AgentOptions {
        connect: args.connect,
        token,
        ca: args.ca,
        identity: args.cert.zip(args.key),
        pool,
        python,
        workers: args.workers,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        agent_id: args.agent_id,
        health_addr: args.health_addr,
        drain_grace: Duration::from_millis(args.drain_grace_ms),
        registry_dir: None,
    };
    snakepit::agent::run(options).await?;
    eprintln!("snakepit: agent drained");
    Ok(ExitCode::SUCCESS)
}
