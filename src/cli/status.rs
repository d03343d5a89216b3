//! `snakepit status`: the pools, their workers and their tools. With
//! `--server` the pools of a running `snakepit serve`; otherwise the pools of
//! the configuration, started for the look and shut down after it. A table
//! on stdout, or one JSON object with `--json`.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use snakepit::PoolStatus;
use snakepit::remote::PoolState;

use super::remote::ServerOpts;
use crate::RuntimeOpts;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Print one JSON object (`{"pools": [...]}`) instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerOpts,
}

/// One pool as `status` shows it, from a local runtime or a server alike.
#[derive(Debug, Serialize)]
struct Pool {
    name: String,
    /// The workers it aims for (an autoscaled pool's target).
    size: usize,
    /// `[min_size, max_size]` of an autoscaled pool.
    autoscale: Option<[usize; 2]>,
    workers_up: usize,
    in_flight: usize,
    queued: usize,
    degraded: bool,
    workers: Vec<Worker>,
    tools: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Worker {
    id: String,
    pid: Option<u32>,
    ready: bool,
    draining: bool,
    in_flight: u32,
    completed: u64,
    capacity: u32,
    python_version: Option<String>,
    gil_enabled: Option<bool>,
}

impl From<PoolStatus> for Pool {
    fn from(p: PoolStatus) -> Self {
        Self {
            name: p.name,
            size: p.size,
            autoscale: p.min_size.zip(p.max_size).map(|(min, max)| [min, max]),
            workers_up: p.workers_up,
            in_flight: p.in_flight,
            queued: p.queued,
            degraded: p.degraded,
            workers: p
                .workers
                .into_iter()
                .map(|w| Worker {
                    id: w.id,
                    pid: w.pid,
                    ready: w.ready,
                    draining: w.draining,
                    in_flight: w.in_flight,
                    completed: w.completed,
                    capacity: w.capacity,
                    python_version: w.python_version,
                    gil_enabled: w.gil_enabled,
                })
                .collect(),
            tools: p.tools.into_iter().map(|t| t.name).collect(),
        }
    }
}

impl From<PoolState> for Pool {
    fn from(p: PoolState) -> Self {
        Self {
            name: p.name,
            size: p.size as usize,
            autoscale: (p.max_size > 0).then_some([p.min_size as usize, p.max_size as usize]),
            workers_up: p.workers_up as usize,
            in_flight: p.in_flight as usize,
            queued: p.queued as usize,
            degraded: p.degraded,
            workers: p
                .workers
                .into_iter()
                .map(|w| {
                    // A worker that has not said Hello yet has no Python.
                    let known = !w.python_version.is_empty();
                    Worker {
                        id: w.id,
                        pid: (w.pid != 0).then_some(w.pid),
                        ready: w.ready,
                        draining: w.draining,
                        in_flight: w.in_flight,
                        completed: w.completed,
                        capacity: w.capacity,
                        python_version: known.then_some(w.python_version),
                        gil_enabled: known.then_some(w.gil_enabled),
                    }
                })
                .collect(),
            tools: p.tools.into_iter().map(|t| t.name).collect(),
        }
    }
}

/// Runs `snakepit status`.
pub async fn run(args: StatusArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let pools: Vec<Pool> = if args.server.is_remote() {
        let client = args.server.connect(&runtime).await?;
        client
            .pool_status(args.pool.as_deref())
            .await?
            .into_iter()
            .map(Pool::from)
            .collect()
    } else {
        let snakepit = super::start(super::builder(&runtime)?).await?;
        let looked = async {
            let mut pools = Vec::new();
            for pool in snakepit.pools() {
                if args.pool.as_deref().is_some_and(|p| p != pool.name()) {
                    continue;
                }
                pools.push(Pool::from(pool.status().await?));
            }
            if let Some(name) = &args.pool
                && pools.is_empty()
            {
                anyhow::bail!("no pool named `{name}`");
            }
            Ok(pools)
        };
        match super::run_until_signal(&snakepit, looked).await? {
            Ok(pools) => pools,
            Err(signal) => return Ok(signal.exit_code()),
        }
    };
    if args.json {
        println!("{}", serde_json::json!({ "pools": pools }));
    } else {
        print_table(&pools);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(pools: &[Pool]) {
    for p in pools {
        let scaling = match p.autoscale {
            Some([min, max]) => format!(" (target {}, autoscaled {min}..{max})", p.size),
            None => String::new(),
        };
        println!(
            "pool {}: {}/{} workers up{scaling}, {} in flight, {} queued{}",
            p.name,
            p.workers_up,
            p.size,
            p.in_flight,
            p.queued,
            if p.degraded { ", DEGRADED" } else { "" }
        );
        for w in &p.workers {
            println!(
                "  {:<24} pid {:<8} {:<8} {}/{} busy, {} done, Python {}{}",
                w.id,
                w.pid.map_or("-".to_string(), |p| p.to_string()),
                if w.draining {
                    "draining"
                } else if w.ready {
                    "ready"
                } else {
                    "starting"
                },
                w.in_flight,
                w.capacity,
                w.completed,
                w.python_version.as_deref().unwrap_or("?"),
                match w.gil_enabled {
                    Some(false) => " (free-threaded)",
                    _ => "",
                }
            );
        }
        println!("  tools: {}", p.tools.join(", "));
    }
}
