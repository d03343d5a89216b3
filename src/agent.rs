//! The node agent (`snakepit agent`): runs Python workers of one remote
//! pool on this machine for a host it dials (`snakepit.v1.Agents/Attach`,
//! `proto/snakepit/v1/agent.proto`).
//!
//! Nothing listens on the agent but its optional health port. It dials the
//! host with the token (and TLS, mTLS), registers, and then starts, relays
//! and ends the workers the host asks for ([`AgentWorkers`]). It keeps the
//! link alive with HTTP/2 keepalive and its own heartbeat; when nothing
//! came from the host within the liveness timeout, or the link failed, it
//! kills its workers (their state is not to be trusted across a partition)
//! and dials again with backoff and jitter, registering fresh.
//!
//! SIGTERM (Kubernetes' preStop, systemd's stop) drains it: it tells the
//! host, which gives its workers no new work and lets them finish what they
//! run; once they have exited, or the drain grace is over, it exits.
//!
//! The health port answers `GET /healthz` (200 while the agent's loop runs
//! and its workers are not crash-looping), `GET /readyz` (200 while it is
//! attached, not draining, and at least one worker said Hello) and
//! `GET /metrics` (Prometheus).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use snakepit_actors::PoolConfig;
use snakepit_actors::agent::{AgentRun, AgentWorkers};
use snakepit_proto::v1::agents_client::AgentsClient;
use snakepit_proto::v1::{self, agent_message, host_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Error;

/// How long dialing and registering may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// First and largest pause between two attempts to dial the host.
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The agent loop must have turned within this for `/healthz`.
const LOOP_STALE: Duration = Duration::from_secs(30);

/// What the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The host's `[remote] listen` address as a URL: `http://HOST:PORT`,
    /// or `https://` for TLS.
    pub connect: String,
    /// The token the host's `[remote]` section asks for.
    pub token: Option<String>,
    /// The CA that signed the host's certificate (TLS).
    pub ca: Option<PathBuf>,
    /// The agent's certificate and key (mTLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The pool it serves, as configured on this machine (adapter,
    /// profile, environment, limits).
    pub pool: PoolConfig,
    /// The interpreter its workers run.
    pub python: PathBuf,
    /// Workers it runs at most.
    pub workers: u32,
    /// Labels to register with.
    pub labels: BTreeMap<String, String>,
    /// Its id (default: the hostname and the process id).
    pub agent_id: Option<String>,
    /// Where to answer health checks and serve metrics.
    pub health_addr: Option<SocketAddr>,
    /// How long a drain lets the workers finish.
    pub drain_grace: Duration,
    /// The run registry directory (the reaper's; default as for a host).
    pub registry_dir: Option<PathBuf>,
}

/// Why the agent stopped.
#[derive(Debug)]
pub enum AgentExit {
    /// It drained after SIGTERM or SIGINT.
    Drained,
}

/// What the health port reports.
#[derive(Default)]
struct Health {
    attached: AtomicBool,
    draining: AtomicBool,
    ready_workers: AtomicU64,
    crash_looping: AtomicBool,
    /// Milliseconds since the epoch when the loop last turned.
    last_turn_ms: AtomicU64,
}

impl Health {
    fn turn(&self, workers: Option<&AgentWorkers>) {
        use crate::telemetry::metric;
        self.last_turn_ms.store(now_ms(), Ordering::Relaxed);
        let attached = self.attached.load(Ordering::Relaxed);
        metrics::gauge!(metric::AGENT_LINK_UP).set(if attached { 1.0 } else { 0.0 });
        let (running, ready) = workers.map_or((0, 0), |w| (w.running(), w.ready()));
        metrics::gauge!(metric::AGENT_LOCAL_WORKERS, "state" => "running").set(running as f64);
        metrics::gauge!(metric::AGENT_LOCAL_WORKERS, "state" => "ready").set(ready as f64);
        if let Some(w) = workers {
            self.ready_workers.store(ready as u64, Ordering::Relaxed);
            self.crash_looping
                .store(w.crash_looping(), Ordering::Relaxed);
        }
    }

    fn live(&self) -> bool {
        let stale = now_ms().saturating_sub(self.last_turn_ms.load(Ordering::Relaxed));
        stale < LOOP_STALE.as_millis() as u64 && !self.crash_looping.load(Ordering::Relaxed)
    }

    fn ready(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.ready_workers.load(Ordering::Relaxed) > 0
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// How one link ended.
enum Ended {
    /// Drained: the agent is done.
    Drained,
    /// Lost: dial again.
    Lost(String),
}

/// Runs the agent until it has drained after SIGTERM or SIGINT. A host
/// that refuses it for good (a wrong token, a pool it does not run
/// remotely) is an error.
pub async fn run(options: AgentOptions) -> Result<AgentExit, Error> {
    let mut term = Box::pin(terminate()?);
    let telemetry = crate::Telemetry::default();
    let run = AgentRun::start(crate::new_run_id(), options.registry_dir.clone(), telemetry).await?;
    let health = Arc::new(Health::default());
    health.turn(None);
    if let Some(addr) = options.health_addr {
        let metrics = crate::metrics::install()?;
        serve_health(addr, health.clone(), metrics)?;
    }
    let register = register_message(&options).await;
    let mut reconnects = 0u32;
    let mut backoff = BACKOFF_INITIAL;
    let result = loop {
        let mut register = register.clone();
        register.reconnects = reconnects;
        match link(&options, register, &run, &health, &mut term).await {
            Ok(Ended::Drained) => break Ok(AgentExit::Drained),
            Ok(Ended::Lost(why)) => {
                tracing::warn!(reason = %why, "Lost the link to the host; dialing again.");
                metrics::counter!(crate::telemetry::metric::AGENT_LINK_LOSSES_TOTAL).increment(1);
            }
            Err(err) => break Err(err),
        }
        if health.draining.load(Ordering::Relaxed) {
            break Ok(AgentExit::Drained);
        }
        let pause = backoff.mul_f64(0.5 + rand::rng().random::<f64>() * 0.5);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        reconnects += 1;
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut term => break Ok(AgentExit::Drained),
        }
    };
    run.finish().await;
    result
}

async fn register_message(options: &AgentOptions) -> v1::Register {
    let hostname = hostname();
    let agent_id = options.agent_id.clone().unwrap_or_else(|| {
        let clean: String = hostname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(48)
            .collect();
        format!("{clean}-{}", std::process::id())
    });
    v1::Register {
        agent_id,
        hostname,
        pools: vec![options.pool.name.clone()],
        workers: options.workers,
        capacity: match options.pool.profile {
            snakepit_actors::Profile::Thread => options.pool.threads_per_worker.max(1),
            _ => 1,
        },
        python_version: python_version(&options.python).await,
        gpus: gpu_count(),
        labels: options.labels.clone().into_iter().collect(),
        protocol_version: snakepit_proto::PROTOCOL_VERSION,
        reconnects: 0,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Dials the host, registers and runs one link to its end.
async fn link(
    options: &AgentOptions,
    register: v1::Register,
    run: &AgentRun,
    health: &Health,
    term: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Ended, Error> {
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, channel(options)).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(err)) => return Ok(Ended::Lost(err)),
        Err(_) => return Ok(Ended::Lost("dialing the host timed out".into())),
    };
    let token = match &options.token {
        Some(t) => Some(
            MetadataValue::try_from(format!("Bearer {t}"))
                .map_err(|_| Error::Config("the token is not a valid header value".into()))?,
        ),
        None => None,
    };
    let mut client = AgentsClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(token) = &token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        Ok(req)
    })
    .max_decoding_message_size(4 << 20)
    .max_encoding_message_size(4 << 20);
    let (to_host, outbound) = mpsc::unbounded_channel();
    let _ = to_host.send(agent(agent_message::Kind::Register(register)));
    let call = client.attach(UnboundedReceiverStream::new(outbound));
    let mut inbound = match tokio::time::timeout(CONNECT_TIMEOUT, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return refused(status),
        Err(_) => return Ok(Ended::Lost("the host did not answer Register".into())),
    };
    let registered = match tokio::time::timeout(CONNECT_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(v1::HostMessage {
            kind: Some(host_message::Kind::Registered(r)),
        }))) => r,
        Ok(Err(status)) => return refused(status),
        Ok(Ok(_)) => return Ok(Ended::Lost("the host did not send Registered first".into())),
        Err(_) => return Ok(Ended::Lost("no Registered from the host".into())),
    };
    let heartbeat = Duration::from_millis(registered.heartbeat_ms.max(50));
    let liveness = Duration::from_millis(registered.liveness_timeout_ms.max(100));
    let workers = AgentWorkers::new(
        Arc::new(options.pool.clone()),
        options.python.clone(),
        run,
        to_host.clone(),
        registered.window_bytes,
    );
    health.attached.store(true, Ordering::Relaxed);
    tracing::info!(host = %options.connect, run = %registered.run_id, "Attached to the host.");
    eprintln!("snakepit: agent attached to {}", options.connect);
    let mut tick = tokio::time::interval(heartbeat.min(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let silence = tokio::time::sleep(liveness);
    tokio::pin!(silence);
    let mut last_beat = Instant::now();
    let mut seq = 0;
    let mut drain_by: Option<Instant> = None;
    let ended = loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    last_heard = Instant::now();
                    if let Err(violation) = workers.handle(message) {
                        break Ended::Lost(violation);
                    }
                }
                Ok(None) => break Ended::Lost("the host closed the link".into()),
                Err(status) => break Ended::Lost(format!("the link failed: {}", status.message())),
            },
            () = &mut silence => {
                if last_heard.elapsed() >= liveness {
                    break Ended::Lost(format!(
                        "nothing from the host for {} ms (liveness timeout {} ms)",
                        last_heard.elapsed().as_millis(), liveness.as_millis()
                    ));
                }
                silence.as_mut().reset((last_heard + liveness).into());
            }
            _ = tick.tick() => {
                health.turn(Some(&workers));
                if last_beat.elapsed() >= heartbeat {
                    last_beat = Instant::now();
                    seq += 1;
                    let _ = to_host.send(workers.heartbeat(seq));
                }
                if let Some(by) = drain_by
                    && (workers.running() == 0 || Instant::now() >= by)
                {
                    break Ended::Drained;
                }
            }
            _ = &mut *term, if drain_by.is_none() => {
                eprintln!("snakepit: agent draining ({} ms grace)", options.drain_grace.as_millis());
                health.draining.store(true, Ordering::Relaxed);
                drain_by = Some(Instant::now() + options.drain_grace);
                let draining = v1::Draining { grace_ms: options.drain_grace.as_millis() as u64 };
                let _ = to_host.send(agent(agent_message::Kind::Draining(draining)));
            }
        }
    };
    health.attached.store(false, Ordering::Relaxed);
    health.ready_workers.store(0, Ordering::Relaxed);
    health.turn(None);
    // Across a partition the workers' state is not to be trusted; after a
    // drain none should be left.
    workers.kill_all().await;
    Ok(ended)
}

/// A status from the host: permanent refusals end the agent, the rest
/// are a lost link.
fn refused(status: tonic::Status) -> Result<Ended, Error> {
    use tonic::Code;
    match status.code() {
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::InvalidArgument => Err(Error::Config(format!(
            "the host refused this agent ({:?}): {}",
            status.code(),
            status.message()
        ))),
        _ => Ok(Ended::Lost(format!(
            "the host answered {:?}: {}",
            status.code(),
            status.message()
        ))),
    }
}

async fn channel(options: &AgentOptions) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(options.connect.clone())
        .map_err(|e| format!("bad --connect URL `{}`: {e}", options.connect))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    let tls = options.connect.starts_with("https://");
    if tls || options.ca.is_some() || options.identity.is_some() {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &options.ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &options.identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the host at {}: {e}", options.connect))
}

/// Resolves when SIGTERM or SIGINT arrives. The handlers are installed
/// here, before the future is first polled: a signal that comes while the
/// agent starts is a drain too, not the default death.
fn terminate() -> Result<impl Future<Output = ()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let installed =
        |kind| signal(kind).map_err(|e| Error::Config(format!("cannot handle signals: {e}")));
    let mut term = installed(SignalKind::terminate())?;
    let mut int = installed(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn agent(kind: agent_message::Kind) -> v1::AgentMessage {
    v1::AgentMessage { kind: Some(kind) }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn gpu_count() -> u32 {
    std::fs::read_dir("/dev")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("nvidia")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u32
        })
        .unwrap_or(0)
}

async fn python_version(python: &std::path::Path) -> String {
    let out = tokio::process::Command::new(python)
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => String::new(),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `addr`, through the
/// endpoint the host uses too.
fn serve_health(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<(), Error> {
    let live_health = health.clone();
    let live: crate::metrics::Check = Arc::new(move || {
        let live = live_health.live();
        Box::pin(async move {
            live.then_some(()).ok_or_else(|| {
                "the agent's workers are crash-looping or its loop is stuck\n".to_string()
            })
        })
    });
    let ready: crate::metrics::Check = Arc::new(move || {
        let ready = health.ready();
        Box::pin(async move {
            ready
                .then_some(())
                .ok_or_else(|| "not attached, draining, or no worker ready\n".to_string())
        })
    });
    crate::metrics::serve_endpoint(addr, metrics, crate::metrics::Probes { live, ready })?;
    Ok(())
}
