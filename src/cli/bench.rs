//! `snakepit bench`: latency with one caller and throughput with many calls in
//! flight, for snakepit and — in the same run, on the same machine — Python's
//! own `ProcessPoolExecutor` and `multiprocessing.Pool`; then a tool that
//! sleeps 10 ms on the thread profile against the process profile, and the
//! rate at which a Rust consumer drains a stream of small chunks; the
//! universal FFI (`bench/ffi.rs`); and `snakepit serve` over gRPC, from Rust
//! and from the Python client against a plain grpcio server (`bench/grpc.rs`);
//! with `--remote`, workers on `snakepit agent` child processes against the
//! local pool, and how soon a killed agent's calls are answered
//! (`bench/remote.rs`); float64 ndarrays of 1 to 64 MiB both ways through
//! shared memory against a `multiprocessing.Pipe` (`bench/arrays.rs`); a
//! batched tool against the same tool called one by one, and a burst on an
//! autoscaled pool against fixed ones (`bench/scaling.rs`).
//! Prints tables and the ratios (`--json` for machines).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use snakepit::python_env::{self, PythonEnvConfig};
use snakepit::{Call, PoolConfig, PoolHandle, Profile, Snakepit};

use self::ffi::ffi_report;

mod arrays;
mod ffi;
mod grpc;
mod remote;
mod scaling;

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
    /// Skip the thread-profile measurement (a tool sleeping 10 ms).
    #[arg(long)]
    no_thread: bool,
    /// Skip the streaming measurement.
    #[arg(long)]
    no_stream: bool,
    /// Skip the universal FFI measurement.
    #[arg(long)]
    no_ffi: bool,
    /// Skip the arrays measurement (1, 16 and 64 MiB ndarrays both ways).
    #[arg(long)]
    no_arrays: bool,
    /// Skip the batching measurement (a batched tool against the same tool
    /// called one by one).
    #[arg(long)]
    no_batching: bool,
    /// Seconds each side of the batching measurement runs.
    #[arg(long, default_value_t = 3.0)]
    batch_seconds: f64,
    /// Skip the autoscaling measurement (a burst on an autoscaled pool and
    /// on fixed pools).
    #[arg(long)]
    no_autoscale: bool,
    /// Seconds of the autoscaling burst.
    #[arg(long, default_value_t = 10.0)]
    burst_seconds: f64,
    /// Calls of each kind in the FFI overhead measurement.
    #[arg(long, default_value_t = 20_000)]
    ffi_calls: usize,
    /// Items of the FFI generator streaming measurement.
    #[arg(long, default_value_t = 100_000)]
    ffi_stream_items: u64,
    /// Chunks of the streaming measurement.
    #[arg(long, default_value_t = 200_000)]
    stream_chunks: u64,
    /// Chunks a stream may run ahead of its consumer (see `PoolConfig::stream_window`).
    #[arg(long, default_value_t = PoolConfig::default().stream_window)]
    stream_window: u32,
    /// Run only this section.
    #[arg(long, value_enum)]
    only: Option<Only>,
    #[command(flatten)]
    grpc: grpc::GrpcArgs,
    #[command(flatten)]
    remote: remote::RemoteArgs,
}

/// `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    /// `snakepit serve` from the Rust and the Python client, and the grpcio peer.
    Grpc,
    /// Workers on `snakepit agent` child processes against the local pool,
    /// and agent kills.
    Remote,
    /// ndarrays of 1, 16 and 64 MiB both ways, and the `multiprocessing.Pipe` peer.
    Arrays,
    /// A batched tool against the same tool called one by one.
    Batching,
    /// A burst on an autoscaled pool (min 1 / max 4) and on fixed pools.
    Autoscale,
}

/// What the thread-profile measurement runs: `SLEEP_IN_FLIGHT` calls of a
/// tool sleeping `SLEEP_MS` kept in flight for `SLEEP_WINDOW`, against one
/// worker of `SLEEP_THREADS` threads and one worker of the process profile.
const SLEEP_MS: u64 = 10;
const SLEEP_THREADS: u32 = 8;
const SLEEP_IN_FLIGHT: usize = 32;
const SLEEP_WINDOW: Duration = Duration::from_secs(2);

/// Streams measured (snakepit's and the pipe peer's); the best counts.
const STREAM_RUNS: usize = 3;

/// Goals the summary checks.
const GOAL_LATENCY_P50_US: f64 = 60.0;
const GOAL_THROUGHPUT_PER_S: f64 = 25_000.0;
const GOAL_THREAD_CALLS_PER_S: f64 = 700.0;
const GOAL_STREAM_CHUNKS_PER_S: f64 = 100_000.0;
/// The stream's chunks/s over `multiprocessing.Pipe` sending one item per
/// `send()`, measured in the same run.
const GOAL_STREAM_VS_PIPE: f64 = 1.5;
/// An FFI call (`operator.add(1, 2)`) may cost this much more than a plain
/// adapter tool call doing the same (p50).
const GOAL_FFI_OVERHEAD: f64 = 1.3;
/// Items per second streamed from a Python generator through the FFI.
const GOAL_FFI_STREAM_ITEMS_PER_S: f64 = 100_000.0;

/// The adapter of the thread-profile and streaming measurements, written to a
/// temporary directory at run time. Its `sleep` is one plain `time.sleep` (the
/// showcase's wakes every 5 ms to check for cancellation) and its stream
/// yields bare ints (the showcase's `progress` builds a dict per chunk).
const FIXTURE_MODULE: &str = "snakepit_bench_fixture";
const FIXTURE_PY: &str = r#""""The adapter `snakepit bench` measures the thread profile and streaming with."""

import time

from snakepit_bridge import BaseAdapter, tool


class BenchAdapter(BaseAdapter):
    """A sleep that releases the GIL, and a stream of small ints."""

    __thread_safe__ = True

    @tool
    def sleep(self, ms: int) -> int:
        """Sleep ms milliseconds; return ms."""
        time.sleep(ms / 1000.0)
        return ms

    @tool(supports_streaming=True)
    def ints(self, n: int):
        """Stream 0, 1, ..., n - 1, one chunk each."""
        yield from range(n)
"#;

/// Python's own ways of doing what the new sections measure: threads running
/// the same sleep in-process (the ceiling without any IPC), and a child
/// process sending small ints through a `multiprocessing.Pipe`.
const PEERS_PY: &str = r#""""Peers of the thread-profile and streaming measurements of `snakepit bench`."""

import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait


def sleep_threads(threads, in_flight, ms, seconds):
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(time.sleep, [0.001] * threads))
        outstanding, done = set(), 0
        t0 = time.perf_counter()
        stop = t0 + seconds
        while True:
            while len(outstanding) < in_flight and time.perf_counter() < stop:
                outstanding.add(ex.submit(time.sleep, ms / 1000.0))
            if not outstanding:
                break
            finished, outstanding = wait(outstanding, return_when=FIRST_COMPLETED)
            done += len(finished)
        return done, done / (time.perf_counter() - t0)


def _produce(conn, n):
    conn.send("ready")
    for i in range(n):
        conn.send(i)
    conn.send(None)
    conn.close()


def stream_pipe(n, runs):
    best = (0, 0.0)
    for _ in range(runs):
        count, rate = stream_pipe_once(n)
        if rate > best[1]:
            best = (count, rate)
    return best


def stream_pipe_once(n):
    rx, tx = mp.Pipe(duplex=False)
    child = mp.Process(target=_produce, args=(tx, n))
    child.start()
    tx.close()
    rx.recv()
    t0 = time.perf_counter()
    count = 0
    while rx.recv() is not None:
        count += 1
    elapsed = time.perf_counter() - t0
    child.join()
    return count, count / elapsed


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    out = {}
    if args["thread"]:
        calls, rate = sleep_threads(args["threads"], args["in_flight"], args["ms"], args["seconds"])
        out["sleep_threads"] = {"count": calls, "per_s": round(rate, 1)}
    if args["stream"]:
        chunks, rate = stream_pipe(args["chunks"], args["runs"])
        out["stream_pipe"] = {"count": chunks, "per_s": round(rate, 1)}
    print(json.dumps(out))
"#;

/// The thread-profile measurement.
#[derive(Debug, Clone, Serialize)]
struct ThreadReport {
    tool: String,
    sleep_ms: u64,
    in_flight: usize,
    seconds: f64,
    threads: u32,
    /// One worker, `threads` threads.
    thread: Rate,
    /// One worker of the process profile.
    process: Rate,
    /// `threads` Python threads running the same sleep in-process.
    python_threads: Option<Rate>,
    thread_vs_process: f64,
}

/// The streaming measurement.
#[derive(Debug, Clone, Serialize)]
struct StreamReport {
    tool: String,
    stream_window: u32,
    busy_poll_us: u32,
    snakepit: Rate,
    /// The same with the busy poll off (`busy_poll_us = 0`), measured when it is on.
    snakepit_busy_poll_off: Option<Rate>,
    /// A child process sending the same ints through a `multiprocessing.Pipe`.
    multiprocessing_pipe: Option<Rate>,
    /// `snakepit` over `multiprocessing_pipe` (chunks/s).
    vs_pipe: Option<f64>,
}

/// Calls or chunks, and how many per second.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Rate {
    count: u64,
    per_s: f64,
}

impl Rate {
    fn new(count: u64, elapsed: Duration) -> Self {
        let per_s = count as f64 / elapsed.as_secs_f64();
        Self {
            count,
            per_s: (per_s * 10.0).round() / 10.0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ExtraPeers {
    sleep_threads: Option<Rate>,
    stream_pipe: Option<Rate>,
}

/// A temporary directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir =
            std::env::temp_dir().join(format!("snakepit-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    name: String,
    latency_p50_us: f64,
    /// Measured by `noop_row`, not by the Python peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_p90_us: Option<f64>,
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
    let calls = (args.latency_calls, args.throughput_calls, args.in_flight);
    let (python, json) = (&env.python, args.json);
    match args.only {
        Some(Only::Grpc) => {
            let r = grpc::run(&args.grpc, python, pool, args.in_flight, json).await?;
            return section("grpc", &r, json, grpc::GrpcReport::print);
        }
        Some(Only::Arrays) => {
            let r = arrays::run(python, !args.no_peers, json).await?;
            return section("arrays", &r, json, arrays::ArraysReport::print);
        }
        Some(Only::Batching) => {
            let r = scaling::run_batching(python, args.batch_seconds, json).await?;
            return section("batching", &r, json, scaling::BatchingReport::print);
        }
        Some(Only::Autoscale) => {
            let r = scaling::run_autoscale(python, args.burst_seconds, json).await?;
            return section("autoscale", &r, json, scaling::AutoscaleReport::print);
        }
        Some(Only::Remote) => {
            let r = remote::run(&args.remote, python, pool, calls, json).await?;
            return section("remote", &r, json, remote::RemoteReport::print);
        }
        None => {}
    }
    let sp = Snakepit::builder()
        .python(&env.python)
        .pool(pool.clone())
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
    let ffi = if args.no_ffi {
        None
    } else {
        if !args.json {
            eprintln!("measuring the universal FFI...");
        }
        let (sp2, calls, items) = (sp.clone(), args.ffi_calls, args.ffi_stream_items);
        Some(tokio::spawn(async move { ffi_report(&sp2, calls, items).await }).await??)
    };
    sp.shutdown().await;
    let ours = ours?;

    let fixtures = TempDir::new()?;
    std::fs::write(fixtures.0.join(format!("{FIXTURE_MODULE}.py")), FIXTURE_PY)?;
    std::fs::write(fixtures.0.join("peers.py"), PEERS_PY)?;
    let (mut thread, mut stream) = (None, None);
    if !args.no_thread || !args.no_stream {
        let fixture_pool = |name: &str| {
            let mut pool = PoolConfig::named(name);
            pool.size = 1;
            pool.adapter = format!("{FIXTURE_MODULE}.BenchAdapter");
            pool.python_path = vec![fixtures.0.clone()];
            pool.busy_poll_us = args.busy_poll_us;
            pool.pipeline_depth = args.pipeline_depth;
            pool
        };
        let mut builder = Snakepit::builder().python(&env.python);
        if !args.no_thread {
            let mut threads = fixture_pool("sleep-thread");
            threads.profile = Profile::Thread;
            threads.threads_per_worker = SLEEP_THREADS;
            builder = builder.pool(threads).pool(fixture_pool("sleep-process"));
        }
        if !args.no_stream {
            let mut streams = fixture_pool("stream");
            streams.stream_window = args.stream_window;
            if streams.busy_poll_us != 0 {
                let mut no_poll = streams.clone();
                no_poll.name = "stream-no-poll".into();
                no_poll.busy_poll_us = 0;
                builder = builder.pool(no_poll);
            }
            builder = builder.pool(streams);
        }
        let sp = builder.start().await?;
        let measured = {
            let (sp, no_thread, no_stream, chunks, json) = (
                sp.clone(),
                args.no_thread,
                args.no_stream,
                args.stream_chunks,
                args.json,
            );
            tokio::spawn(async move {
                let mut thread = None;
                if !no_thread {
                    if !json {
                        eprintln!(
                            "measuring the thread profile ({SLEEP_THREADS} threads) against the process profile..."
                        );
                    }
                    let t = sleep_rate(sp.pool("sleep-thread")?).await?;
                    let p = sleep_rate(sp.pool("sleep-process")?).await?;
                    thread = Some((t, p));
                }
                let mut stream = None;
                if !no_stream {
                    if !json {
                        eprintln!("measuring streaming ({chunks} chunks)...");
                    }
                    let ours = stream_rate(sp.pool("stream")?, chunks).await?;
                    let no_poll = match sp.pool("stream-no-poll") {
                        Ok(pool) => Some(stream_rate(pool, chunks).await?),
                        Err(_) => None,
                    };
                    stream = Some((ours, no_poll));
                }
                anyhow::Ok((thread, stream))
            })
            .await?
        };
        sp.shutdown().await;
        let (t, s) = measured?;
        thread = t.map(|(thread, process)| ThreadReport {
            tool: "sleep".into(),
            sleep_ms: SLEEP_MS,
            in_flight: SLEEP_IN_FLIGHT,
            seconds: SLEEP_WINDOW.as_secs_f64(),
            threads: SLEEP_THREADS,
            thread,
            process,
            python_threads: None,
            thread_vs_process: round2(thread.per_s / process.per_s),
        });
        stream = s.map(|(snakepit, no_poll)| StreamReport {
            tool: "ints".into(),
            stream_window: args.stream_window,
            busy_poll_us: args.busy_poll_us,
            snakepit,
            snakepit_busy_poll_off: no_poll,
            multiprocessing_pipe: None,
            vs_pipe: None,
        });
    }

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
        let report: PeerReport = peer_report(out)?;
        peers = report.peers;

        if thread.is_some() || stream.is_some() {
            if !args.json {
                eprintln!("measuring Python threads and multiprocessing.Pipe...");
            }
            let request = serde_json::json!({
                "thread": thread.is_some(),
                "threads": SLEEP_THREADS,
                "in_flight": SLEEP_IN_FLIGHT,
                "ms": SLEEP_MS,
                "seconds": SLEEP_WINDOW.as_secs_f64(),
                "stream": stream.is_some(),
                "chunks": args.stream_chunks,
                "runs": STREAM_RUNS,
            });
            let out = tokio::process::Command::new(&env.python)
                .arg(fixtures.0.join("peers.py"))
                .arg(request.to_string())
                .output()
                .await?;
            let extra: ExtraPeers = peer_report(out)?;
            if let Some(t) = &mut thread {
                t.python_threads = extra.sleep_threads;
            }
            if let Some(s) = &mut stream {
                s.multiprocessing_pipe = extra.stream_pipe;
                s.vs_pipe = extra
                    .stream_pipe
                    .map(|py| round2(s.snakepit.per_s / py.per_s));
            }
        }
    }
    drop(fixtures);
    let arrays = match args.no_arrays {
        true => None,
        false => Some(arrays::run(&env.python, !args.no_peers, args.json).await?),
    };
    let batching = match args.no_batching {
        true => None,
        false => Some(scaling::run_batching(&env.python, args.batch_seconds, args.json).await?),
    };
    let autoscale = match args.no_autoscale {
        true => None,
        false => Some(scaling::run_autoscale(&env.python, args.burst_seconds, args.json).await?),
    };
    let grpc = match args.grpc.no_grpc {
        true => None,
        false => Some(
            grpc::run(
                &args.grpc,
                &env.python,
                pool.clone(),
                args.in_flight,
                args.json,
            )
            .await?,
        ),
    };
    let remote = match args.remote.remote {
        false => None,
        true => Some(remote::run(&args.remote, &env.python, pool, calls, args.json).await?),
    };

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
    let thread_met = thread
        .as_ref()
        .map(|t| t.thread.per_s >= GOAL_THREAD_CALLS_PER_S);
    let stream_met = stream
        .as_ref()
        .map(|s| s.snakepit.per_s >= GOAL_STREAM_CHUNKS_PER_S);
    // Null when the stream or the pipe was not measured (--no-stream, --no-peers).
    let stream_vs_pipe_met = stream
        .as_ref()
        .and_then(|s| s.vs_pipe)
        .map(|r| r >= GOAL_STREAM_VS_PIPE);
    let report = serde_json::json!({
        "machine": {"cores": cores()},
        "workers": args.workers,
        "in_flight": args.in_flight,
        "tool": "noop",
        "snakepit": ours,
        "peers": peers,
        "speedup": {
            "latency_p50": ratio(&|r: &Row| r.latency_p50_us, true),
            "throughput": ratio(&|r: &Row| r.throughput_per_s, false),
        },
        "thread_profile": thread,
        "streaming": stream,
        "ffi": ffi,
        "arrays": arrays,
        "batching": batching,
        "autoscale": autoscale,
        "grpc": grpc,
        "remote": remote,
        "goals": {"latency_p50_us_max": GOAL_LATENCY_P50_US as u64,
                  "throughput_per_s_min": GOAL_THROUGHPUT_PER_S as u64,
                  "thread_calls_per_s_min": GOAL_THREAD_CALLS_PER_S as u64,
                  "stream_chunks_per_s_min": GOAL_STREAM_CHUNKS_PER_S as u64,
                  "latency_p50_met": ours.latency_p50_us <= GOAL_LATENCY_P50_US,
                  "throughput_met": ours.throughput_per_s >= GOAL_THROUGHPUT_PER_S,
                  // Null when the section was skipped.
                  "thread_met": thread_met,
                  "stream_met": stream_met,
                  "stream_vs_pipe_min": GOAL_STREAM_VS_PIPE,
                  "stream_vs_pipe_met": stream_vs_pipe_met,
                  "ffi_overhead_max": GOAL_FFI_OVERHEAD,
                  "ffi_stream_items_per_s_min": GOAL_FFI_STREAM_ITEMS_PER_S as u64,
                  "ffi_overhead_met": ffi.as_ref().map(|f| f.overhead <= GOAL_FFI_OVERHEAD),
                  "ffi_stream_met": ffi.as_ref().map(|f| f.stream.per_s >= GOAL_FFI_STREAM_ITEMS_PER_S),
                  "arrays": arrays.as_ref().map(|a| &a.goals),
                  "batching": batching.as_ref().map(|b| &b.goals),
                  "autoscale": autoscale.as_ref().map(|a| &a.goals),
                  "grpc": grpc.as_ref().map(|g| &g.goals),
                  "remote": remote.as_ref().map(|r| &r.goals)},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\nTrivial tool (`noop`), {} workers, this machine ({} cores)\n",
        args.workers, report["machine"]["cores"]
    );
    println!(
        "{:<24} {:>14} {:>14} {:>18}",
        "", "latency p50", "latency p99", "throughput"
    );
    let remote_row = remote.as_ref().map(|r| &r.remote);
    for row in std::iter::once(&ours).chain(remote_row).chain(&peers) {
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
    if let Some(t) = &thread {
        println!(
            "\nA tool sleeping {} ms (`sleep`), {} calls in flight for {:.0} s\n",
            t.sleep_ms, t.in_flight, t.seconds
        );
        println!("{:<48} {:>12}", "", "throughput");
        let threads = format!("snakepit, 1 worker x {} threads (thread)", t.threads);
        println!("{threads:<48} {:>9.0} /s", t.thread.per_s);
        println!(
            "{:<48} {:>9.0} /s",
            "snakepit, 1 worker (process)", t.process.per_s
        );
        if let Some(py) = &t.python_threads {
            let name = format!("{} Python threads, in-process (no IPC)", t.threads);
            println!("{name:<48} {:>9.0} /s", py.per_s);
        }
        println!(
            "\nthread profile vs process profile: {:.2}x the calls/s (ideal {}x: {} calls of {} ms at once)",
            t.thread_vs_process, t.threads, t.threads, t.sleep_ms
        );
    }
    if let Some(s) = &stream {
        println!(
            "\nStreaming (`ints`): {} small-int chunks drained by a Rust consumer, window {}, best of {STREAM_RUNS} runs (the pipe too)\n",
            s.snakepit.count, s.stream_window
        );
        println!("{:<48} {:>12}", "", "chunks");
        let ours = format!("snakepit, 1 worker (busy poll {} us)", s.busy_poll_us);
        println!("{ours:<48} {:>9.0} /s", s.snakepit.per_s);
        if let Some(off) = &s.snakepit_busy_poll_off {
            println!(
                "{:<48} {:>9.0} /s",
                "snakepit, 1 worker (busy poll off)", off.per_s
            );
        }
        if let Some(py) = &s.multiprocessing_pipe {
            println!(
                "{:<48} {:>9.0} /s",
                "multiprocessing.Pipe, send() per item", py.per_s
            );
            println!(
                "\nsnakepit vs multiprocessing.Pipe: {:.2}x the chunks/s (goal >= {:.1}x: {})",
                s.snakepit.per_s / py.per_s,
                GOAL_STREAM_VS_PIPE,
                verdict(stream_vs_pipe_met)
            );
        }
    }
    if let Some(f) = &ffi {
        f.print(args.workers);
    }
    if let Some(a) = &arrays {
        a.print();
    }
    if let Some(b) = &batching {
        b.print();
    }
    if let Some(a) = &autoscale {
        a.print();
    }
    if let Some(g) = &grpc {
        g.print();
    }
    if let Some(r) = &remote {
        r.print();
    }
    println!(
        "\ngoals: latency p50 <= 60 us: {}; throughput >= 25,000/s: {}; \
         thread profile >= 700 calls/s: {}; streaming >= 100,000 chunks/s: {}; \
         streaming >= {:.1}x multiprocessing.Pipe: {}; \
         FFI overhead <= 1.3x: {}; FFI streaming >= 100,000 items/s: {}",
        verdict(Some(ours.latency_p50_us <= GOAL_LATENCY_P50_US)),
        verdict(Some(ours.throughput_per_s >= GOAL_THROUGHPUT_PER_S)),
        verdict(thread_met),
        verdict(stream_met),
        GOAL_STREAM_VS_PIPE,
        verdict(stream_vs_pipe_met),
        verdict(ffi.as_ref().map(|f| f.overhead <= GOAL_FFI_OVERHEAD)),
        verdict(
            ffi.as_ref()
                .map(|f| f.stream.per_s >= GOAL_FFI_STREAM_ITEMS_PER_S)
        ),
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints one section run alone (`--only`): its table, or with `--json`
/// the machine and the section's report under `key`.
fn section<T: serde::Serialize>(
    key: &str,
    report: &T,
    json: bool,
    table: impl FnOnce(&T),
) -> anyhow::Result<ExitCode> {
    if json {
        let mut out = serde_json::json!({"machine": {"cores": cores()}});
        out[key] = serde_json::to_value(report)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        table(report);
    }
    Ok(ExitCode::SUCCESS)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Calls of `sleep(SLEEP_MS)` per second with `SLEEP_IN_FLIGHT` in flight
/// for `SLEEP_WINDOW` (the calls still in flight then are counted as they end).
async fn sleep_rate(pool: &PoolHandle) -> anyhow::Result<Rate> {
    let call = || Call::new("sleep").kwarg("ms", SLEEP_MS as i64);
    // Warm up every thread of the worker.
    let warm: Vec<_> = (0..SLEEP_IN_FLIGHT).map(|_| pool.execute(call())).collect();
    for r in futures::future::join_all(warm).await {
        r?;
    }
    let t = Instant::now();
    let stop = t + SLEEP_WINDOW;
    let tasks: Vec<_> = (0..SLEEP_IN_FLIGHT)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < stop {
                    pool.execute(call()).await?;
                    done += 1;
                }
                Ok::<_, snakepit::Error>(done)
            })
        })
        .collect();
    let mut count = 0;
    for task in tasks {
        count += task.await??;
    }
    Ok(Rate::new(count, t.elapsed()))
}

/// Chunks per second of a stream of `chunks` small ints, consumed as they
/// arrive: the best of `STREAM_RUNS` streams (the pipe peer gets the same),
/// since one half-second run swings with whatever else the machine does.
async fn stream_rate(pool: &PoolHandle, chunks: u64) -> anyhow::Result<Rate> {
    let drain = |n: u64| async move {
        let mut stream = pool
            .execute_stream(Call::new("ints").kwarg("n", n as i64))
            .await?;
        let mut count = 0u64;
        while let Some(chunk) = stream.next().await {
            chunk?;
            count += 1;
        }
        anyhow::ensure!(count == n, "the stream ended after {count} of {n} chunks");
        anyhow::Ok(count)
    };
    drain(1_000).await?;
    let mut best: Option<Rate> = None;
    for _ in 0..STREAM_RUNS {
        let t = Instant::now();
        let rate = Rate::new(drain(chunks).await?, t.elapsed());
        if best.is_none_or(|b| rate.per_s > b.per_s) {
            best = Some(rate);
        }
    }
    Ok(best.expect("at least one run"))
}

async fn measure(
    sp: &Snakepit,
    latency_calls: usize,
    throughput_calls: usize,
    in_flight: usize,
) -> anyhow::Result<Row> {
    let pool = sp.default_pool().clone();
    let noop = move || {
        let pool = pool.clone();
        async move { pool.execute(Call::new("noop")).await.map(drop) }
    };
    noop_row("snakepit", noop, latency_calls, throughput_calls, in_flight).await
}

/// The row of a `noop` caller: after 2,000 warm-up calls (every worker and
/// code path), p50/p99 of `latency_calls` calls made one at a time, then
/// calls/s of `throughput_calls` calls with `in_flight` of them in flight.
async fn noop_row<F, Fut, E>(
    name: &str,
    noop: F,
    latency_calls: usize,
    throughput_calls: usize,
    in_flight: usize,
) -> anyhow::Result<Row>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    for _ in 0..2_000 {
        noop().await?;
    }
    let mut samples = Vec::with_capacity(latency_calls);
    for _ in 0..latency_calls {
        let t = Instant::now();
        noop().await?;
        samples.push(t.elapsed());
    }
    samples.sort();

    let remaining = Arc::new(AtomicUsize::new(throughput_calls));
    let t = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (noop, remaining) = (noop.clone(), remaining.clone());
            tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    noop().await?;
                }
                Ok::<_, E>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = t.elapsed();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(Row {
        name: name.into(),
        latency_p50_us: us(super::percentile(&samples, 50.0)),
        latency_p90_us: Some(us(super::percentile(&samples, 90.0))),
        latency_p99_us: us(super::percentile(&samples, 99.0)),
        throughput_per_s: throughput_calls as f64 / elapsed.as_secs_f64(),
    })
}

/// The JSON report a peer benchmark script printed, or its stderr as the error.
fn peer_report<T: serde::de::DeserializeOwned>(out: std::process::Output) -> anyhow::Result<T> {
    anyhow::ensure!(
        out.status.success(),
        "peer benchmark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A goal's verdict as the tables print it.
pub(super) fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "skipped",
    }
}
