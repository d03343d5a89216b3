//! The gRPC section of `snakepit bench`: `snakepit serve` (started in this
//! process through `SnakepitBuilder::serve`, a pool of the showcase adapter,
//! tool `noop`) called by the Rust client ([`RemoteClient`]) and by the
//! Python client package, against a plain grpcio Python server answering the
//! same method itself (the peer, `snakepit_client._bench peer`), measured by
//! the same Python harness (`snakepit_client._bench measure`) over the same
//! transports, loopback TCP and a Unix socket, in the same run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use snakepit::python_env::{self, PythonEnvConfig};
use snakepit::remote::{RemoteClient, RemoteOptions};
use snakepit::{Call, PoolConfig, ServeConfig, Snakepit};
use tokio::io::AsyncBufReadExt as _;

use super::{Row, TempDir, noop_row, round2, verdict};

/// Goals of the section (issue 13).
const GOAL_RUST_P50_US: f64 = 150.0;
const GOAL_RUST_PER_S: f64 = 20_000.0;
/// The Python client's p50 through snakepit over the peer's, at most.
const GOAL_PYTHON_P50_RATIO: f64 = 1.3;
/// The Python client's throughput through snakepit over the peer's, at least.
const GOAL_PYTHON_THROUGHPUT_RATIO: f64 = 1.0;

/// How long a helper process may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Options of the section.
#[derive(Args, Debug, Clone)]
pub(super) struct GrpcArgs {
    /// Skip the gRPC measurement (`snakepit serve` against a grpcio server).
    #[arg(long)]
    pub(super) no_grpc: bool,
    /// Sequential calls of the Rust client (latency).
    #[arg(long, default_value_t = 20_000)]
    grpc_latency_calls: usize,
    /// Calls of the Rust client with `--in-flight` in flight (throughput).
    #[arg(long, default_value_t = 200_000)]
    grpc_throughput_calls: usize,
    /// Sequential calls of each Python client latency measurement.
    #[arg(long, default_value_t = 5_000)]
    grpc_python_latency_calls: usize,
    /// Calls of each Python client throughput measurement.
    #[arg(long, default_value_t = 30_000)]
    grpc_python_throughput_calls: usize,
    /// How the Python harness keeps calls in flight: one asyncio loop of
    /// `AsyncClient` calls, or threads calling `Client`.
    #[arg(long, value_enum, default_value_t = Concurrency::Aio)]
    grpc_python_concurrency: Concurrency,
    /// The peer: grpcio's thread-pool server (`sync`) or its asyncio server.
    #[arg(long, value_enum, default_value_t = PeerKind::Sync)]
    grpc_peer: PeerKind,
}

/// `--grpc-python-concurrency`.
#[derive(ValueEnum, Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Concurrency {
    Aio,
    Threads,
}

/// `--grpc-peer`.
#[derive(ValueEnum, Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum PeerKind {
    Sync,
    Aio,
}

impl Concurrency {
    fn arg(self) -> &'static str {
        match self {
            Self::Aio => "aio",
            Self::Threads => "threads",
        }
    }
}

impl PeerKind {
    fn arg(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Aio => "aio",
        }
    }
}

/// What the section measured.
#[derive(Debug, Serialize)]
pub(super) struct GrpcReport {
    workers: usize,
    in_flight: usize,
    tool: &'static str,
    /// The Rust client over loopback TCP.
    rust: Row,
    /// The Python client through snakepit and to the peer, per transport.
    python: Vec<Transport>,
    /// Why the Python measurements did not run, when they did not.
    python_skipped: Option<String>,
    peer: PeerKind,
    python_concurrency: Concurrency,
    pub(super) goals: Goals,
}

/// The Python client over one transport.
#[derive(Debug, Serialize)]
struct Transport {
    transport: &'static str,
    snakepit: Row,
    peer: Row,
    /// snakepit's p50 over the peer's (lower is better).
    p50_ratio: f64,
    /// snakepit's throughput over the peer's (higher is better).
    throughput_ratio: f64,
}

/// Each goal: met, not met, or `None` when not measured.
#[derive(Debug, Serialize)]
pub(super) struct Goals {
    rust_p50_us_max: f64,
    rust_throughput_per_s_min: f64,
    python_p50_ratio_max: f64,
    python_throughput_ratio_min: f64,
    rust_p50_met: bool,
    rust_throughput_met: bool,
    python_p50_tcp_met: Option<bool>,
    python_p50_uds_met: Option<bool>,
    python_throughput_tcp_met: Option<bool>,
    python_throughput_uds_met: Option<bool>,
}

/// The harness's JSON.
#[derive(Debug, Deserialize)]
struct Measured {
    latency_p50_us: f64,
    latency_p99_us: f64,
    throughput_per_s: f64,
}

/// Runs the section: `python` runs the workers, `pool` is the core
/// section's pool settings (size, busy poll, pipeline depth).
pub(super) async fn run(
    args: &GrpcArgs,
    python: &Path,
    pool: PoolConfig,
    in_flight: usize,
    quiet: bool,
) -> anyhow::Result<GrpcReport> {
    let say = |what: &str| {
        if !quiet {
            eprintln!("{what}");
        }
    };
    let workers = pool.size;
    let dir = TempDir::new()?;
    say(&format!(
        "measuring snakepit serve ({workers} workers) with the Rust client..."
    ));
    let (sp, tcp) = serve(python, pool.clone(), "127.0.0.1:0").await?;
    let rust = {
        let (target, latency_calls, throughput_calls) = (
            tcp.clone(),
            args.grpc_latency_calls,
            args.grpc_throughput_calls,
        );
        tokio::spawn(async move {
            rust_client(&target, latency_calls, throughput_calls, in_flight).await
        })
        .await?
    };
    let rust = match rust {
        Ok(rust) => rust,
        Err(err) => {
            sp.shutdown().await;
            return Err(err);
        }
    };

    let mut python_rows = Vec::new();
    let mut python_skipped = None;
    say("preparing the Python client's venv...");
    match tokio::task::spawn_blocking(|| python_env::ensure_client(&PythonEnvConfig::client()))
        .await?
    {
        Err(err) => python_skipped = Some(format!("no Python client: {err}")),
        Ok(env) => {
            let harness = Harness {
                python: env.python,
                args: args.clone(),
                in_flight,
            };
            let uds = format!("unix:{}", dir.0.join("snakepit.sock").display());
            let peer_uds = format!("unix:{}", dir.0.join("peer.sock").display());
            let measured = async {
                say("measuring the Python client against snakepit serve and grpcio, over TCP...");
                let tcp_row = harness.transport("tcp", &tcp, "127.0.0.1:0").await?;
                say("... and over a Unix socket...");
                let (sp_uds, uds) = serve(python, pool.clone(), &uds).await?;
                let uds_row = harness.transport("uds", &uds, &peer_uds).await;
                sp_uds.shutdown().await;
                anyhow::Ok(vec![tcp_row, uds_row?])
            };
            match measured.await {
                Ok(rows) => python_rows = rows,
                Err(err) => python_skipped = Some(format!("{err:#}")),
            }
        }
    }
    sp.shutdown().await;
    drop(dir);

    let transport = |name: &str| python_rows.iter().find(|t| t.transport == name);
    let p50_met = |name| transport(name).map(|t| t.p50_ratio <= GOAL_PYTHON_P50_RATIO);
    let rate_met =
        |name| transport(name).map(|t| t.throughput_ratio >= GOAL_PYTHON_THROUGHPUT_RATIO);
    let goals = Goals {
        rust_p50_us_max: GOAL_RUST_P50_US,
        rust_throughput_per_s_min: GOAL_RUST_PER_S,
        python_p50_ratio_max: GOAL_PYTHON_P50_RATIO,
        python_throughput_ratio_min: GOAL_PYTHON_THROUGHPUT_RATIO,
        rust_p50_met: rust.latency_p50_us <= GOAL_RUST_P50_US,
        rust_throughput_met: rust.throughput_per_s >= GOAL_RUST_PER_S,
        python_p50_tcp_met: p50_met("tcp"),
        python_p50_uds_met: p50_met("uds"),
        python_throughput_tcp_met: rate_met("tcp"),
        python_throughput_uds_met: rate_met("uds"),
    };
    Ok(GrpcReport {
        workers,
        in_flight,
        tool: "noop",
        rust,
        python: python_rows,
        python_skipped,
        peer: args.grpc_peer,
        python_concurrency: args.grpc_python_concurrency,
        goals,
    })
}

/// A runtime with `pool` (the showcase adapter), serving on `listen`; the
/// address it serves on.
async fn serve(
    python: &Path,
    pool: PoolConfig,
    listen: &str,
) -> anyhow::Result<(Snakepit, String)> {
    let sp = Snakepit::builder()
        .python(python)
        .pool(pool)
        .serve(ServeConfig::new(listen.parse()?))
        .start()
        .await?;
    let addr = sp
        .server_addr()
        .context("the runtime started without its server")?
        .to_string();
    Ok((sp, addr))
}

/// p50/p99 of `noop` with one caller, then calls/s with `in_flight` calls
/// in flight, through one connection.
async fn rust_client(
    target: &str,
    latency_calls: usize,
    throughput_calls: usize,
    in_flight: usize,
) -> anyhow::Result<Row> {
    let client = RemoteClient::connect(target, RemoteOptions::default()).await?;
    let noop = move || {
        let client = client.clone();
        async move { client.execute(Call::new("noop")).await.map(drop) }
    };
    let name = "Rust client -> snakepit serve (TCP)";
    let row = noop_row(name, noop, latency_calls, throughput_calls, in_flight).await?;
    Ok(Row {
        latency_p50_us: round1(row.latency_p50_us),
        latency_p99_us: round1(row.latency_p99_us),
        throughput_per_s: round1(row.throughput_per_s),
        ..row
    })
}

/// Runs `snakepit_client._bench` in the client's venv.
struct Harness {
    python: PathBuf,
    args: GrpcArgs,
    in_flight: usize,
}

impl Harness {
    /// snakepit (at `target`) and then the peer (started on `peer_listen`),
    /// measured alike.
    async fn transport(
        &self,
        transport: &'static str,
        target: &str,
        peer_listen: &str,
    ) -> anyhow::Result<Transport> {
        let label = match transport {
            "tcp" => "TCP",
            _ => "Unix socket",
        };
        let snakepit = self
            .measure(target)
            .await
            .with_context(|| format!("the Python client against snakepit serve over {label}"))?
            .row(format!("Python client -> snakepit serve ({label})"));
        let peer = Peer::start(&self.python, peer_listen, self.args.grpc_peer).await?;
        let measured = self.measure(&peer.target).await;
        peer.stop().await;
        let peer = measured
            .with_context(|| format!("the Python client against the grpcio peer over {label}"))?
            .row(format!("Python client -> grpcio server ({label})"));
        Ok(Transport {
            transport,
            p50_ratio: round2(snakepit.latency_p50_us / peer.latency_p50_us),
            throughput_ratio: round2(snakepit.throughput_per_s / peer.throughput_per_s),
            snakepit,
            peer,
        })
    }

    async fn measure(&self, target: &str) -> anyhow::Result<Measured> {
        let out = tokio::process::Command::new(&self.python)
            .args([
                "-m",
                "snakepit_client._bench",
                "measure",
                "--target",
                target,
            ])
            .arg("--latency-calls")
            .arg(self.args.grpc_python_latency_calls.to_string())
            .arg("--throughput-calls")
            .arg(self.args.grpc_python_throughput_calls.to_string())
            .arg("--in-flight")
            .arg(self.in_flight.to_string())
            .arg("--concurrency")
            .arg(self.args.grpc_python_concurrency.arg())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run the Python harness")?;
        super::peer_report(out)
    }
}

impl Measured {
    fn row(self, name: String) -> Row {
        Row {
            name,
            latency_p50_us: self.latency_p50_us,
            latency_p90_us: None,
            latency_p99_us: self.latency_p99_us,
            throughput_per_s: self.throughput_per_s,
        }
    }
}

/// The grpcio peer server, a child process stopped by closing its stdin.
struct Peer {
    child: tokio::process::Child,
    target: String,
}

impl Peer {
    async fn start(python: &Path, listen: &str, kind: PeerKind) -> anyhow::Result<Peer> {
        let mut child = tokio::process::Command::new(python)
            .args(["-m", "snakepit_client._bench", "peer", "--listen", listen])
            .args(["--kind", kind.arg()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the grpcio peer")?;
        let stdout = child.stdout.take().context("the peer's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_LIMIT, lines.next_line())
            .await
            .context("the grpcio peer did not start listening in time")??
            .context("the grpcio peer ended before listening")?;
        #[derive(Deserialize)]
        struct Listening {
            listening: String,
        }
        let Listening { listening } = serde_json::from_str(&line)
            .with_context(|| format!("the grpcio peer said {line:?}"))?;
        Ok(Peer {
            child,
            target: listening,
        })
    }

    /// Closes its stdin (it stops serving), then waits a little for it.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl GrpcReport {
    /// The section's table, ratios and goals.
    pub(super) fn print(&self) {
        println!(
            "\ngRPC: `snakepit serve` in this process, {} workers, tool `{}`; \
             throughput with {} calls in flight\n",
            self.workers, self.tool, self.in_flight
        );
        println!(
            "{:<44} {:>14} {:>14} {:>16}",
            "", "latency p50", "latency p99", "throughput"
        );
        let rows = std::iter::once(&self.rust)
            .chain(self.python.iter().flat_map(|t| [&t.snakepit, &t.peer]));
        for row in rows {
            println!(
                "{:<44} {:>11.1} us {:>11.1} us {:>13.0} /s",
                row.name, row.latency_p50_us, row.latency_p99_us, row.throughput_per_s
            );
        }
        if let Some(why) = &self.python_skipped {
            println!("Python client measurements skipped: {why}");
        }
        println!();
        for t in &self.python {
            println!(
                "snakepit serve vs grpcio server ({}): p50 {:.2}x the peer's (goal <= {:.1}x), \
                 throughput {:.2}x (goal >= {:.1}x)",
                t.transport,
                t.p50_ratio,
                GOAL_PYTHON_P50_RATIO,
                t.throughput_ratio,
                GOAL_PYTHON_THROUGHPUT_RATIO
            );
        }
        let g = &self.goals;
        println!(
            "\ngRPC goals: Rust client p50 <= {:.0} us: {}; Rust client >= {:.0} calls/s: {}; \
             Python client p50 <= {:.1}x grpcio (TCP): {}, (UDS): {}; \
             Python client throughput >= grpcio (TCP): {}, (UDS): {}",
            GOAL_RUST_P50_US,
            verdict(Some(g.rust_p50_met)),
            GOAL_RUST_PER_S,
            verdict(Some(g.rust_throughput_met)),
            GOAL_PYTHON_P50_RATIO,
            verdict(g.python_p50_tcp_met),
            verdict(g.python_p50_uds_met),
            verdict(g.python_throughput_tcp_met),
            verdict(g.python_throughput_uds_met),
        );
    }
}
