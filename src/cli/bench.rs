//! `snakepit bench`: latency with one caller and throughput with many calls in
//! flight, for snakepit and — in the same run, on the same machine — Python's
//! own `ProcessPoolExecutor` and `multiprocessing.Pool`. Prints a table and
//! the ratios (`--json` for machines).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use snakepit::python_env::{self, PythonEnvConfig};
use snakepit::{Call, PoolConfig, Snakepit};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Workers in each pool (snakepit and the peers).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Sequential calls for the latency measurement.
    #[arg(long, default_value_t = 20_000)]
    latency_calls: usize,
    /// Calls for the throughput measurement.
    #[arg(long, default_value_t = 200_000)]
    throughput_calls: usize,
    /// Calls kept in flight for the throughput measurement.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Busy-poll window of the snakepit pool, in microseconds (see `PoolConfig::busy_poll_us`).
    #[arg(long, default_value_t = 100)]
    busy_poll_us: u32,
    /// Requests pipelined to a worker beyond its capacity.
    #[arg(long, default_value_t = 2)]
    pipeline_depth: u32,
    /// Skip the Python peers.
    #[arg(long)]
    no_peers: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    name: String,
    latency_p50_us: f64,
    latency_p99_us: f64,
    throughput_per_s: f64,
}

#[derive(Debug, Deserialize)]
struct PeerReport {
    peers: Vec<Row>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let env =
        tokio::task::spawn_blocking(|| python_env::ensure(&PythonEnvConfig::default())).await??;
    let mut pool = PoolConfig::named("bench");
    pool.size = args.workers;
    pool.queue_capacity = args.in_flight.max(1000);
    pool.busy_poll_us = args.busy_poll_us;
    pool.pipeline_depth = args.pipeline_depth;
    let sp = Snakepit::builder()
        .python(&env.python)
        .pool(pool)
        .start()
        .await?;
    if !args.json {
        eprintln!("measuring snakepit ({} workers)...", args.workers);
    }
    // Measure from a runtime task, as a service handling requests would; the
    // main thread is outside the runtime and every wake-up to it crosses threads.
    let ours = {
        let (sp, latency_calls, throughput_calls, in_flight) = (
            sp.clone(),
            args.latency_calls,
            args.throughput_calls,
            args.in_flight,
        );
        tokio::spawn(async move { measure(&sp, latency_calls, throughput_calls, in_flight).await })
            .await?
    };
    sp.shutdown().await;
    let ours = ours?;

    let mut peers = Vec::new();
    if !args.no_peers {
        if !args.json {
            eprintln!("measuring ProcessPoolExecutor and multiprocessing.Pool...");
        }
        let out = tokio::process::Command::new(&env.python)
            .args(["-m", "snakepit_bridge._bench_peers", "--json"])
            .arg("--workers")
            .arg(args.workers.to_string())
            .arg("--latency-calls")
            .arg((args.latency_calls / 4).max(100).to_string())
            .arg("--throughput-calls")
            .arg((args.throughput_calls / 4).max(1000).to_string())
            .arg("--in-flight")
            .arg(args.in_flight.to_string())
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "peer benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: PeerReport = serde_json::from_slice(&out.stdout)?;
        peers = report.peers;
    }

    let ratio = |f: &dyn Fn(&Row) -> f64, better_low: bool| -> serde_json::Value {
        peers
            .iter()
            .map(|p| {
                let r = if better_low {
                    f(p) / f(&ours)
                } else {
                    f(&ours) / f(p)
                };
                (
                    p.name.clone(),
                    serde_json::json!((r * 100.0).round() / 100.0),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let report = serde_json::json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)},
        "workers": args.workers,
        "in_flight": args.in_flight,
        "tool": "noop",
        "snakepit": ours,
        "peers": peers,
        "speedup": {
            "latency_p50": ratio(&|r: &Row| r.latency_p50_us, true),
            "throughput": ratio(&|r: &Row| r.throughput_per_s, false),
        },
        "goals": {"latency_p50_us_max": 60, "throughput_per_s_min": 25000,
                  "latency_p50_met": ours.latency_p50_us <= 60.0,
                  "throughput_met": ours.throughput_per_s >= 25000.0},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "\nTrivial tool (`noop`), {} workers, this machine ({} cores)\n",
            args.workers, report["machine"]["cores"]
        );
        println!(
            "{:<24} {:>14} {:>14} {:>18}",
            "", "latency p50", "latency p99", "throughput"
        );
        for row in std::iter::once(&ours).chain(&peers) {
            println!(
                "{:<24} {:>11.1} us {:>11.1} us {:>13.0} /s",
                row.name, row.latency_p50_us, row.latency_p99_us, row.throughput_per_s
            );
        }
        println!();
        for p in &peers {
            println!(
                "snakepit vs {:<22} latency {:>5.2}x lower, throughput {:>5.2}x higher",
                p.name,
                p.latency_p50_us / ours.latency_p50_us,
                ours.throughput_per_s / p.throughput_per_s
            );
        }
        println!(
            "\ngoals: latency p50 <= 60 us: {}; throughput >= 25,000/s: {}",
            if ours.latency_p50_us <= 60.0 {
                "met"
            } else {
                "NOT met"
            },
            if ours.throughput_per_s >= 25_000.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    sp: &Snakepit,
    latency_calls: usize,
    throughput_calls: usize,
    in_flight: usize,
) -> anyhow::Result<Row> {
    let pool = sp.default_pool().clone();
    // Warm up both workers and every code path.
    for _ in 0..2_000 {
        pool.execute(Call::new("noop")).await?;
    }
    let mut samples = Vec::with_capacity(latency_calls);
    for _ in 0..latency_calls {
        let t = Instant::now();
        pool.execute(Call::new("noop")).await?;
        samples.push(t.elapsed());
    }
    samples.sort();

    let remaining = Arc::new(AtomicUsize::new(throughput_calls));
    let t = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let pool = pool.clone();
            let remaining = remaining.clone();
            tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    pool.execute(Call::new("noop")).await?;
                }
                Ok::<_, snakepit::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = t.elapsed();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(Row {
        name: "snakepit".into(),
        latency_p50_us: us(super::percentile(&samples, 50.0)),
        latency_p99_us: us(super::percentile(&samples, 99.0)),
        throughput_per_s: throughput_calls as f64 / elapsed.as_secs_f64(),
    })
}
