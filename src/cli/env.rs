//! `snakepit env`: the environments pools run in. `list` shows the built
//! ones and which configured pools use them, `build` builds what a
//! configuration needs, `prune` removes what it does not, and `python`
//! prints the interpreter of a pool's environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use snakepit::PoolConfig;
use snakepit::config::Config;
use snakepit::envs::{self, EnvSpec};
use snakepit::python_env::{self, PythonEnvConfig};

use crate::RuntimeOpts;

/// Exit code for an environment that cannot be found, trusted or built.
pub const EXIT_ENVIRONMENT: u8 = 3;

#[derive(Args, Debug)]
pub struct EnvArgs {
    #[command(subcommand)]
    command: EnvCommand,
}

#[derive(Subcommand, Debug)]
enum EnvCommand {
    /// Each built environment: its hash, Python, requirements, size, and
    /// the pools of the configuration that use it.
    List {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Build the environments the configuration's pools need.
    Build {
        /// Only this pool's.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Remove environments the configuration's pools do not use (with
    /// --older-than: only those also unused for that many days).
    Prune {
        /// Keep environments used within this many days.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u64>,
    },
    /// Print the interpreter of a pool's environment (building it if needed).
    Python {
        /// The pool [default: the pool named `default`, else the first].
        #[arg(long)]
        pool: Option<String>,
    },
}

pub async fn run(args: EnvArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let result = tokio::task::spawn_blocking(move || match args.command {
        EnvCommand::List { json } => list(&runtime, json),
        EnvCommand::Build { pool } => build(&runtime, pool.as_deref()),
        EnvCommand::Prune { older_than } => prune(&runtime, older_than),
        EnvCommand::Python { pool } => python(&runtime, pool.as_deref()),
    })
    .await?;
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Failure::Environment(err)) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(EXIT_ENVIRONMENT))
        }
        Err(Failure::Other(err)) => Err(err),
    }
}

/// Why an `env` command failed: the environment (exit code 3), or anything
/// else (a bad configuration or pool name).
enum Failure {
    Environment(snakepit::Error),
    Other(anyhow::Error),
}

impl From<snakepit::Error> for Failure {
    fn from(err: snakepit::Error) -> Self {
        match err {
            snakepit::Error::Config(_) => Failure::Other(err.into()),
            other => Failure::Environment(other),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Other(err)
    }
}

/// The configuration's local pools, by the hash of the environment each
/// uses (`None`: the managed venv).
fn pools_by_env(config: &Config) -> BTreeMap<Option<String>, Vec<String>> {
    let mut map: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for pool in config.pools.iter().filter(|p| !p.remote) {
        let key = match EnvSpec::for_pool(pool) {
            Ok(Some(spec)) => Some(spec.hash()),
            Ok(None) if pool.python.is_some() => continue,
            Ok(None) => None,
            Err(err) => {
                eprintln!("warning: pool `{}`: {err}", pool.name);
                continue;
            }
        };
        map.entry(key).or_default().push(pool.name.clone());
    }
    map
}

fn list(runtime: &RuntimeOpts, json: bool) -> Result<(), Failure> {
    let config = super::load_config(runtime)?;
    let users = pools_by_env(&config);
    let default = PythonEnvConfig::default().venv;
    let default_built = default.join("bin").join("python").exists();
    let default_pools = users.get(&None).cloned().unwrap_or_default();
    let found = envs::list()?;
    if json {
        let rows: Vec<serde_json::Value> = found
            .iter()
            .map(|env| {
                let r = &env.record;
                serde_json::json!({
                    "hash": r.hash,
                    "path": env.dir,
                    "python": env.dir.join("bin").join("python"),
                    "base_python": r.base_python,
                    "python_version": r.python_version,
                    "requirements": r.requirements,
                    "requirements_file": r.requirements_file,
                    "installer": r.installer,
                    "size_bytes": env.size_bytes,
                    "created_unix": r.created_unix,
                    "last_used_unix": unix_secs(env.last_used),
                    "pools": users.get(&Some(r.hash.clone())).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let out = serde_json::json!({
            "envs_dir": envs::envs_dir(),
            "default": {
                "path": default,
                "python": default.join("bin").join("python"),
                "built": default_built,
                "pools": default_pools,
            },
            "envs": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "default  {}{}  pools: {}",
        default.display(),
        if default_built { "" } else { " (not built)" },
        names(&default_pools)
    );
    if found.is_empty() {
        println!("no pool environments in {}", envs::envs_dir().display());
    }
    for env in &found {
        let r = &env.record;
        let pools = users
            .get(&Some(r.hash.clone()))
            .cloned()
            .unwrap_or_default();
        println!(
            "{}  Python {}  {}  {}  last used {}  pools: {}",
            r.hash,
            r.python_version,
            human_size(env.size_bytes),
            describe_requirements(&r.requirements, r.requirements_file.as_ref()),
            ago(env.last_used),
            names(&pools)
        );
        println!("    {}", env.dir.display());
    }
    Ok(())
}

fn build(runtime: &RuntimeOpts, only: Option<&str>) -> Result<(), Failure> {
    let config = super::load_config(runtime)?;
    let pools = selected(&config, only)?;
    for pool in pools {
        let (path, state) = pool_python(&config, pool).map_err(|failure| match failure {
            Failure::Environment(snakepit::Error::Environment(msg)) => Failure::Environment(
                snakepit::Error::Environment(format!("pool `{}`: {msg}", pool.name)),
            ),
            other => other,
        })?;
        println!("pool {}: {} ({state})", pool.name, path.display());
    }
    Ok(())
}

fn python(runtime: &RuntimeOpts, only: Option<&str>) -> Result<(), Failure> {
    let config = super::load_config(runtime)?;
    let pool = match only {
        Some(_) => selected(&config, only)?[0],
        None => config
            .pools
            .iter()
            .find(|p| p.name == "default")
            .or(config.pools.first())
            .ok_or_else(|| anyhow::anyhow!("the configuration has no pools"))?,
    };
    let (path, _) = pool_python(&config, pool)?;
    println!("{}", path.display());
    Ok(())
}

/// The pools `only` names (all local ones when `None`).
fn selected<'a>(config: &'a Config, only: Option<&str>) -> Result<Vec<&'a PoolConfig>, Failure> {
    let pools: Vec<&PoolConfig> = config
        .pools
        .iter()
        .filter(|p| only.is_none_or(|name| p.name == name))
        .collect();
    match (only, pools.first()) {
        (Some(name), None) => Err(anyhow::anyhow!("no pool named `{name}`").into()),
        (Some(name), Some(p)) if p.remote => {
            Err(anyhow::anyhow!("pool `{name}` is remote: its environment is its agents'").into())
        }
        _ => Ok(pools.into_iter().filter(|p| !p.remote).collect()),
    }
}

/// The interpreter `pool`'s workers run, built if needed, and whether it
/// was (`built`), was already (`ready`), or is used as configured (`as is`).
fn pool_python(config: &Config, pool: &PoolConfig) -> Result<(PathBuf, &'static str), Failure> {
    if let Some(spec) = EnvSpec::for_pool(pool)? {
        let env = envs::ensure(&spec)?;
        return Ok((env.python, if env.built { "built" } else { "ready" }));
    }
    if let Some(python) = pool.python.clone().or(config.python.interpreter.clone()) {
        return Ok((python, "as is"));
    }
    let mut env_config = PythonEnvConfig::default();
    if let Some(base) = config.python.base.clone() {
        env_config.base_python = base;
    }
    if let Some(venv) = config.python.venv.clone() {
        env_config.venv = venv;
    }
    let env = python_env::ensure(&env_config)?;
    Ok((env.python, if env.installed { "built" } else { "ready" }))
}

fn prune(runtime: &RuntimeOpts, older_than_days: Option<u64>) -> Result<(), Failure> {
    let config = super::load_config(runtime)?;
    let users = pools_by_env(&config);
    let cutoff = older_than_days.map(|days| {
        SystemTime::now()
            .checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    let mut removed = 0;
    for env in envs::list()? {
        let hash = &env.record.hash;
        if users.contains_key(&Some(hash.clone())) {
            continue;
        }
        if cutoff.is_some_and(|cutoff| env.last_used > cutoff) {
            continue;
        }
        if envs::remove(hash)? {
            removed += 1;
            println!(
                "removed {hash}  Python {}  {}  {}  last used {}",
                env.record.python_version,
                human_size(env.size_bytes),
                describe_requirements(
                    &env.record.requirements,
                    env.record.requirements_file.as_ref()
                ),
                ago(env.last_used)
            );
        }
    }
    if removed == 0 {
        println!("nothing to remove");
    }
    Ok(())
}

fn names(pools: &[String]) -> String {
    if pools.is_empty() {
        "-".into()
    } else {
        pools.join(", ")
    }
}

pub fn describe_requirements(requirements: &[String], file: Option<&PathBuf>) -> String {
    let mut parts: Vec<String> = requirements.to_vec();
    if let Some(file) = file {
        parts.push(format!("-r {}", file.display()));
    }
    if parts.is_empty() {
        "no requirements".into()
    } else {
        parts.join(" ")
    }
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
