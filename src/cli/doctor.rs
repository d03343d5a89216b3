//! `snakepit doctor`: what Python we found, each pool's environment (built
//! when missing) and whether its adapter imports there, then whether the
//! workers start. Every problem is named per pool; any makes the exit code
//! 3. `--json` prints the same report as one JSON object.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Args;
use serde::Serialize;
use snakepit::PoolConfig;
use snakepit::config::Config;
use snakepit::envs::{self, EnvSpec};
use snakepit::python_env::{self, PythonEnvConfig};

use super::env::EXIT_ENVIRONMENT;
use crate::RuntimeOpts;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    version: &'static str,
    ok: bool,
    base_python: Option<Interpreter>,
    data_dir: PathBuf,
    default_env: Option<DefaultEnv>,
    pools: Vec<PoolReport>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Interpreter {
    executable: String,
    implementation: String,
    version: String,
    gil_enabled: bool,
    free_threaded_build: bool,
}

#[derive(Debug, Serialize)]
struct DefaultEnv {
    path: PathBuf,
    python: PathBuf,
    installed_now: bool,
    packages: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize)]
struct PoolReport {
    name: String,
    adapter: String,
    remote: bool,
    /// `default` (the managed venv), `own` (built for the pool), `as_is`
    /// (a configured interpreter) or `remote`.
    env_kind: &'static str,
    env_hash: Option<String>,
    env_path: Option<PathBuf>,
    python: Option<PathBuf>,
    python_version: Option<String>,
    requirements: Vec<String>,
    requirements_file: Option<PathBuf>,
    /// `ready`, `built` (by this run), `as is` or `failed`.
    env_state: &'static str,
    adapter_imports: Option<bool>,
    workers_up: Option<usize>,
    size: usize,
    tools: Vec<String>,
    error: Option<String>,
}

pub async fn run(args: DoctorArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&runtime)?;
    let mut report = tokio::task::spawn_blocking(move || check_environments(&config)).await?;
    if report.errors.is_empty() {
        start_workers(&runtime, &mut report).await?;
    }
    report.ok = report.errors.is_empty();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ENVIRONMENT)
    })
}

fn check_environments(config: &Config) -> Report {
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        data_dir: python_env::data_dir(),
        ..Report::default()
    };
    let mut env_config = PythonEnvConfig::default();
    if let Some(base) = config.python.base.clone() {
        env_config.base_python = base;
    }
    if let Some(venv) = config.python.venv.clone() {
        env_config.venv = venv;
    }
    match python_env::probe(&env_config.base_python) {
        Ok(info) => report.base_python = Some(interpreter(info)),
        Err(err) => {
            report.errors.push(format!("base python: {err}"));
            return report;
        }
    }
    let uses_default = config
        .pools
        .iter()
        .any(|p| !p.remote && p.python.is_none() && !envs::has_own_env(p));
    if uses_default && config.python.interpreter.is_none() {
        match python_env::ensure(&env_config) {
            Ok(env) => {
                report.default_env = Some(DefaultEnv {
                    packages: python_env::packages(&env.python).into_iter().collect(),
                    path: env.venv,
                    python: env.python,
                    installed_now: env.installed,
                })
            }
            Err(err) => {
                report.errors.push(format!("managed venv: {err}"));
                return report;
            }
        }
    }
    for pool in &config.pools {
        let mut row = PoolReport {
            name: pool.name.clone(),
            adapter: pool.adapter.clone(),
            remote: pool.remote,
            size: pool.size,
            requirements: pool.requirements.clone(),
            requirements_file: pool.requirements_file.clone(),
            ..PoolReport::default()
        };
        if let Err(err) = check_pool(config, pool, &report, &mut row) {
            row.env_state = if row.env_state.is_empty() {
                "failed"
            } else {
                row.env_state
            };
            report.errors.push(format!("pool `{}`: {err}", pool.name));
            row.error = Some(err);
        }
        report.pools.push(row);
    }
    report
}

fn check_pool(
    config: &Config,
    pool: &PoolConfig,
    report: &Report,
    row: &mut PoolReport,
) -> Result<(), String> {
    if pool.remote {
        row.env_kind = "remote";
        row.env_state = "on its agents";
        return Ok(());
    }
    let python = if let Some(spec) = EnvSpec::for_pool(pool).map_err(|e| e.to_string())? {
        row.env_kind = "own";
        row.env_hash = Some(spec.hash());
        row.env_path = Some(spec.dir());
        row.python_version = Some(spec.python_version.clone());
        let env = envs::ensure(&spec).map_err(|e| e.to_string())?;
        row.env_state = if env.built { "built" } else { "ready" };
        env.python
    } else if let Some(python) = pool.python.clone().or(config.python.interpreter.clone()) {
        row.env_kind = "as_is";
        row.env_state = "as is";
        let info = python_env::probe(&python).map_err(|e| e.to_string())?;
        row.python_version = Some(info.version);
        python
    } else {
        let default = report
            .default_env
            .as_ref()
            .ok_or("the managed venv is missing")?;
        row.env_kind = "default";
        row.env_path = Some(default.path.clone());
        row.env_state = if default.installed_now {
            "built"
        } else {
            "ready"
        };
        row.python_version = python_env::probe(&default.python).ok().map(|i| i.version);
        default.python.clone()
    };
    row.python = Some(python.clone());
    let imported = adapter_imports(&python, pool);
    row.adapter_imports = Some(imported.is_ok());
    imported
}

/// Imports the adapter's module in `python` (with the pool's `python_path`)
/// and looks its class up.
fn adapter_imports(python: &Path, pool: &PoolConfig) -> Result<(), String> {
    let (module, class) = pool
        .adapter
        .rsplit_once('.')
        .ok_or_else(|| format!("adapter `{}` is not `module.Class`", pool.adapter))?;
    let mut paths: Vec<PathBuf> = pool.python_path.clone();
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import importlib, sys\nm = importlib.import_module(sys.argv[1])\ngetattr(m, sys.argv[2])",
        module,
        class,
    ]);
    if !paths.is_empty() {
        cmd.env(
            "PYTHONPATH",
            std::env::join_paths(paths).map_err(|e| e.to_string())?,
        );
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or("no output");
    Err(format!(
        "adapter `{}` does not import with {}: {last}",
        pool.adapter,
        python.display()
    ))
}

async fn start_workers(runtime: &RuntimeOpts, report: &mut Report) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let snakepit = match super::builder(runtime)?.start().await {
        Ok(s) => s,
        Err(err) => {
            report.errors.push(format!("worker start: {err}"));
            return Ok(());
        }
    };
    for pool in snakepit.pools() {
        let status = pool.status().await?;
        if let Some(row) = report.pools.iter_mut().find(|r| r.name == status.name) {
            row.workers_up = Some(status.workers_up);
            row.tools = status.tools.iter().map(|t| t.name.clone()).collect();
        }
    }
    let elapsed = started.elapsed();
    snakepit.shutdown().await;
    tracing::debug!(?elapsed, "doctor started the pools");
    Ok(())
}

fn interpreter(info: python_env::PythonInfo) -> Interpreter {
    Interpreter {
        executable: info.executable,
        implementation: info.implementation,
        version: info.version,
        gil_enabled: info.gil_enabled,
        free_threaded_build: info.free_threaded_build,
    }
}

fn print_human(report: &Report) {
    println!("snakepit {}", report.version);
    println!("  data dir      : {}", report.data_dir.display());
    match &report.base_python {
        Some(base) => {
            println!(
                "  base python   : {} ({} {})",
                base.executable, base.implementation, base.version
            );
            println!(
                "  GIL           : {}{}",
                if base.gil_enabled { "on" } else { "off" },
                if base.free_threaded_build {
                    " (free-threaded build)"
                } else {
                    ""
                }
            );
        }
        None => println!("  base python   : MISSING"),
    }
    if let Some(env) = &report.default_env {
        println!(
            "  venv          : {}{}",
            env.path.display(),
            if env.installed_now {
                " (just installed)"
            } else {
                ""
            }
        );
        for (name, version) in &env.packages {
            println!("  {name:<14}: {version}");
        }
    }
    for pool in &report.pools {
        println!("  pool {}: adapter {}", pool.name, pool.adapter);
        if pool.remote {
            println!("    environment : on its agents (remote pool)");
            continue;
        }
        if let Some(path) = pool.env_path.as_ref().or(pool.python.as_ref()) {
            println!("    environment : {} ({})", path.display(), pool.env_state);
        }
        if let Some(version) = &pool.python_version {
            println!("    python      : {version}");
        }
        println!(
            "    requirements: {}",
            super::env::describe_requirements(&pool.requirements, pool.requirements_file.as_ref())
        );
        if let Some(ok) = pool.adapter_imports {
            println!(
                "    adapter     : {}",
                if ok { "imports" } else { "DOES NOT IMPORT" }
            );
        }
        if let Some(up) = pool.workers_up {
            println!("    workers     : {up} of {} up", pool.size);
            println!("    tools       : {}", pool.tools.join(", "));
        }
    }
    for err in &report.errors {
        eprintln!("error: {err}");
    }
    println!("{}", if report.ok { "ok" } else { "FAILED" });
}
