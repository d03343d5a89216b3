//! The remote section of `snakepit bench` (`--remote`, `--only remote`): a
//! host in this process with the core section's pool (`bench`, local
//! workers) and a remote pool of as many workers (`remote`), served by
//! `snakepit agent` child processes of this executable dialing it on
//! loopback. Measured in the same run: the trivial call (`noop`) through
//! the local pool and through an agent, one caller (p50/p90/p99) and with
//! `--in-flight` calls in flight; then, several times, an agent is
//! SIGKILLed (its link closes at once) or SIGSTOPped (it hangs: only the
//! liveness timeout ends its link) with calls in flight, and the time
//! until every one of them has its answer (a typed error) is taken,
//! against the link's liveness timeout. Agents are killed at the end
//! whatever happens (and die with this process: `PR_SET_PDEATHSIG`); their
//! Python workers die with them, which the section checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use snakepit::{AttachConfig, Call, Event, PoolConfig, Snakepit};
use tokio::sync::broadcast::error::RecvError;

use super::{Row, TempDir, noop_row, round2, verdict};

/// Goals of the section (issue 14).
const GOAL_P50_US: f64 = 150.0;
const GOAL_PER_S: f64 = 20_000.0;
/// Kill → every in-flight call answered, beyond the liveness timeout.
const GOAL_KILL_MARGIN: Duration = Duration::from_millis(100);

/// The pool the agents serve.
const POOL: &str = "remote";
/// How long an agent may take to attach and have its workers ready.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long the killed agent's calls may take to be answered before the
/// measurement gives up on them.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// How long the killed agent's Python workers may outlive it.
const GONE_LIMIT: Duration = Duration::from_secs(2);
/// The call kept in flight when an agent is killed: longer than any
/// measurement, so none ends by itself.
const KILL_SLEEP_MS: i64 = 10_000;

/// Options of the section.
#[derive(Args, Debug, Clone)]
pub(super) struct RemoteArgs {
    /// Add the remote workers section: agents spawned as child processes on
    /// loopback, measured against the local pool in the same run.
    #[arg(long)]
    pub(super) remote: bool,
    /// Times an agent is killed (SIGKILL) with calls in flight.
    #[arg(long, default_value_t = 5)]
    remote_kills: usize,
    /// Times an agent hangs (SIGSTOP) with calls in flight.
    #[arg(long, default_value_t = 3)]
    remote_hangs: usize,
    /// Calls in flight when an agent is killed.
    #[arg(long, default_value_t = 64)]
    remote_kill_in_flight: usize,
    /// The host's liveness timeout for agent links, in milliseconds (the
    /// heartbeat is a fifth of it).
    #[arg(long, default_value_t = 1000)]
    remote_liveness_ms: u64,
}

/// What the section measured.
#[derive(Debug, Serialize)]
pub(super) struct RemoteReport {
    workers: usize,
    in_flight: usize,
    tool: &'static str,
    heartbeat_ms: u64,
    liveness_timeout_ms: u64,
    /// The local pool, in the same runtime.
    local: Row,
    /// The remote pool, through one agent on loopback.
    pub(super) remote: Row,
    /// remote p50 over local p50.
    p50_ratio: f64,
    /// remote throughput over local throughput.
    throughput_ratio: f64,
    kills: Vec<Kill>,
    /// Every agent and every Python worker of theirs is gone at the end.
    all_gone_at_end: bool,
    pub(super) goals: Goals,
}

/// What is done to an agent with calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Fault {
    /// SIGKILL: its connection closes at once.
    Kill,
    /// SIGSTOP: it is silent, its connection stays open (then SIGKILL).
    Hang,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Self::Kill => "SIGKILL",
            Self::Hang => "SIGSTOP",
        }
    }
}

/// One agent SIGKILLed or SIGSTOPped with calls in flight.
#[derive(Debug, Serialize)]
struct Kill {
    agent: String,
    fault: Fault,
    in_flight: usize,
    /// Of those, sent to its workers when it was killed.
    on_agent: usize,
    /// Fault → the host saw the link end (`AgentDetached`).
    link_ended_ms: Option<f64>,
    /// Fault → the last in-flight call answered.
    last_answered_ms: f64,
    /// How the calls ended, by outcome (`worker_crashed`, `pool_degraded`, `ok`...).
    outcomes: std::collections::BTreeMap<&'static str, usize>,
    /// Its SIGKILL → its last Python worker gone; `None` if one outlived `GONE_LIMIT`.
    workers_gone_ms: Option<f64>,
}

/// Each goal and whether it is met.
#[derive(Debug, Serialize)]
pub(super) struct Goals {
    p50_us_max: f64,
    throughput_per_s_min: f64,
    /// For both faults: the liveness timeout plus `GOAL_KILL_MARGIN`.
    answered_ms_max: f64,
    p50_met: bool,
    throughput_met: bool,
    /// `None` when no agent was SIGKILLed.
    kill_answered_met: Option<bool>,
    /// `None` when no agent was SIGSTOPped.
    hang_answered_met: Option<bool>,
}

/// Runs the section: `python` runs the workers (here and on the agents),
/// `pool` is the core section's pool.
pub(super) async fn run(
    args: &RemoteArgs,
    python: &Path,
    pool: PoolConfig,
    (latency_calls, throughput_calls, in_flight): (usize, usize, usize),
    quiet: bool,
) -> anyhow::Result<RemoteReport> {
    let say = |what: &str| {
        if !quiet {
            eprintln!("{what}");
        }
    };
    let liveness = Duration::from_millis(args.remote_liveness_ms.max(2));
    let heartbeat = liveness / 5;
    let workers = pool.size;
    let dir = TempDir::new()?;
    let config = dir.0.join("agent.toml");
    std::fs::write(&config, agent_toml(python, &pool)?)?;

    let mut remote = pool.clone();
    remote.name = POOL.into();
    remote.remote = true;
    // Each kill ends every worker; the pool must not count that against it.
    remote.restart.max_restarts = u32::MAX;
    let sp = Snakepit::builder()
        .python(python)
        .pool(pool.clone())
        .pool(remote)
        .attach(AttachConfig::new("127.0.0.1:0".parse()?).liveness(heartbeat, liveness))
        .start()
        .await?;
    let mut agents = Agents {
        exe: std::env::current_exe().context("cannot find this executable")?,
        connect: String::new(),
        config,
        dir: dir.0.clone(),
        workers,
        spawned: 0,
        live: None,
    };
    let measured = async {
        agents.connect = format!(
            "http://{}",
            sp.attach_addr()
                .await
                .context("the runtime does not listen for agents")?
        );
        say(&format!(
            "measuring remote workers: 1 agent ({workers} workers) on loopback, against the local pool..."
        ));
        agents.spawn(&sp).await?;
        let rows = {
            let (sp, pool) = (sp.clone(), pool.name.clone());
            tokio::spawn(async move {
                let row = |name: &'static str, pool: String| {
                    let handle = sp.pool(&pool).cloned();
                    async move {
                        let handle = handle?;
                        let noop = move || {
                            let handle = handle.clone();
                            async move { handle.execute(Call::new("noop")).await.map(drop) }
                        };
                        noop_row(name, noop, latency_calls, throughput_calls, in_flight).await
                    }
                };
                let local = row("snakepit, local pool", pool).await?;
                let remote = row("snakepit, via agent", POOL.into()).await?;
                anyhow::Ok((local, remote))
            })
            .await?
        }?;
        let mut kills = Vec::new();
        let faults = std::iter::repeat_n(Fault::Kill, args.remote_kills)
            .chain(std::iter::repeat_n(Fault::Hang, args.remote_hangs));
        let total = args.remote_kills + args.remote_hangs;
        for (i, fault) in faults.enumerate() {
            say(&format!(
                "{} to an agent with {} calls in flight ({} of {total})...",
                fault.label(),
                args.remote_kill_in_flight,
                i + 1,
            ));
            if agents.live.is_none() {
                agents.spawn(&sp).await?;
            }
            let in_flight = args.remote_kill_in_flight;
            kills.push(kill(&sp, &mut agents, fault, in_flight, pool.pipeline_depth).await?);
        }
        anyhow::Ok((rows, kills))
    }
    .await;
    sp.shutdown().await;
    let all_gone_at_end = agents.stop().await;
    drop(dir);
    let ((local, remote), kills) = measured?;

    let kill_limit = liveness + GOAL_KILL_MARGIN;
    let goals = Goals {
        p50_us_max: GOAL_P50_US,
        throughput_per_s_min: GOAL_PER_S,
        answered_ms_max: ms(kill_limit),
        p50_met: remote.latency_p50_us <= GOAL_P50_US,
        throughput_met: remote.throughput_per_s >= GOAL_PER_S,
        kill_answered_met: answered_within(&kills, Fault::Kill, kill_limit),
        hang_answered_met: answered_within(&kills, Fault::Hang, kill_limit),
    };
    Ok(RemoteReport {
        workers,
        in_flight,
        tool: "noop",
        heartbeat_ms: heartbeat.as_millis() as u64,
        liveness_timeout_ms: liveness.as_millis() as u64,
        p50_ratio: round2(remote.latency_p50_us / local.latency_p50_us),
        throughput_ratio: round2(remote.throughput_per_s / local.throughput_per_s),
        local,
        remote,
        kills,
        all_gone_at_end,
        goals,
    })
}

/// Whether every call of every `fault` was answered within `limit`; `None`
/// when there was no such fault.
fn answered_within(kills: &[Kill], fault: Fault, limit: Duration) -> Option<bool> {
    let mut of = kills.iter().filter(|k| k.fault == fault).peekable();
    of.peek()?;
    Some(of.all(|k| k.last_answered_ms <= ms(limit)))
}

/// The agents' `--config`: this Python, and a pool named `remote` of the
/// core section's adapter, busy poll and pipeline depth.
fn agent_toml(python: &Path, pool: &PoolConfig) -> anyhow::Result<String> {
    let mut entry = toml::Table::new();
    entry.insert("name".into(), POOL.into());
    entry.insert("adapter".into(), pool.adapter.clone().into());
    entry.insert("busy_poll_us".into(), i64::from(pool.busy_poll_us).into());
    entry.insert(
        "pipeline_depth".into(),
        i64::from(pool.pipeline_depth).into(),
    );
    let mut section = toml::Table::new();
    section.insert(
        "interpreter".into(),
        python
            .to_str()
            .context("the Python path is not UTF-8")?
            .into(),
    );
    let mut doc = toml::Table::new();
    doc.insert("python".into(), section.into());
    doc.insert("pools".into(), vec![toml::Value::from(entry)].into());
    Ok(toml::to_string(&doc)?)
}

/// Starts `in_flight` calls that sleep on the live agent, SIGKILLs or
/// SIGSTOPs it once its workers hold their share, and times the answers;
/// a stopped agent is SIGKILLed once they are all in.
async fn kill(
    sp: &Snakepit,
    agents: &mut Agents,
    fault: Fault,
    in_flight: usize,
    pipeline_depth: u32,
) -> anyhow::Result<Kill> {
    let agent = agents.live.as_ref().context("no agent runs")?;
    let (pid, name, suffix) = (agent.pid, agent.id.clone(), format!("@{}", agent.id));
    let id = name.clone();
    let pythons = agent.workers();
    let pool = sp.pool(POOL)?.clone();
    let mut events = sp.subscribe();
    let calls: Vec<_> = (0..in_flight)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let call = Call::new("sleep")
                    .kwarg("ms", KILL_SLEEP_MS)
                    .timeout(ANSWER_LIMIT);
                let outcome = match pool.execute(call).await {
                    Ok(_) => "ok",
                    Err(err) => err.outcome(),
                };
                (Instant::now(), outcome)
            })
        })
        .collect();
    // Each worker runs one and has `pipeline_depth` more sent ahead.
    let expected = in_flight.min(agents.workers * (1 + pipeline_depth as usize));
    let mut on_agent = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while on_agent < expected {
            match events.recv().await {
                Ok(Event::RequestStarted(r)) if r.worker.ends_with(&suffix) => on_agent += 1,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    })
    .await;
    let detached = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::AgentDetached(d)) if d.detached.agent == id => {
                    return Some(Instant::now());
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });

    let killed = Instant::now();
    let mut sigkill = killed;
    let agent = match fault {
        Fault::Kill => agents.kill().await?,
        Fault::Hang => {
            // SAFETY: kill(2) has no memory-safety preconditions; `pid` is
            // our child, not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
            name
        }
    };
    let mut last = killed;
    let mut outcomes = std::collections::BTreeMap::new();
    for call in calls {
        let (at, outcome) = call.await?;
        last = last.max(at);
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    let link_ended = tokio::time::timeout(Duration::from_secs(1), detached)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    if fault == Fault::Hang {
        sigkill = Instant::now();
        agents.kill().await?;
    }
    let gone = wait_gone(&pythons, sigkill).await;
    Ok(Kill {
        agent,
        fault,
        in_flight,
        on_agent,
        link_ended_ms: link_ended.map(|at| ms(at.saturating_duration_since(killed))),
        last_answered_ms: ms(last - killed),
        outcomes,
        workers_gone_ms: gone.map(ms),
    })
}

/// Kill → every process of `pids` gone, or `None` past `GONE_LIMIT`.
async fn wait_gone(pids: &[u32], killed: Instant) -> Option<Duration> {
    while pids.iter().any(|&pid| alive(pid)) {
        if killed.elapsed() > GONE_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(killed.elapsed())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The agent child processes: one at a time, each with its own id.
struct Agents {
    exe: PathBuf,
    connect: String,
    config: PathBuf,
    /// Where their stderr goes (`<id>.log`).
    dir: PathBuf,
    workers: usize,
    spawned: usize,
    live: Option<Agent>,
}

/// A `snakepit agent` child process; SIGKILLed when dropped.
struct Agent {
    id: String,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl Agents {
    /// Starts the next agent and waits until the host has its workers ready.
    async fn spawn(&mut self, sp: &Snakepit) -> anyhow::Result<()> {
        anyhow::ensure!(self.live.is_none(), "an agent already runs");
        let id = format!("bench-agent-{}", self.spawned);
        self.spawned += 1;
        let log = self.dir.join(format!("{id}.log"));
        let mut events = sp.subscribe();
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("agent")
            .args(["--connect", &self.connect, "--pool", POOL])
            .args(["--workers", &self.workers.to_string()])
            .arg("--config")
            .arg(&self.config)
            .args(["--agent-id", &id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id();
            // SAFETY: only async-signal-safe calls (prctl, getppid) between
            // fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() as u32 != parent {
                        return Err(std::io::Error::other("the bench exited while spawning"));
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("cannot start `snakepit agent`")?;
        let pid = child.id().context("the agent has no pid")?;
        let mut agent = Agent {
            id,
            child,
            pid,
            log,
        };
        let suffix = format!("@{}", agent.id);
        let mut ready = 0;
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while ready < self.workers {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::WorkerReady(w)) if w.pool == POOL && w.worker.ends_with(&suffix) => {
                        ready += 1;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => anyhow::bail!("the runtime stopped"),
                },
                _ = tick.tick() => {
                    if let Some(status) = agent.child.try_wait()? {
                        anyhow::bail!("`snakepit agent` exited ({status}): {}", agent.log_tail());
                    }
                    if tokio::time::Instant::now() > deadline {
                        anyhow::bail!(
                            "{ready} of {} agent workers ready after {START_LIMIT:?}: {}",
                            self.workers,
                            agent.log_tail()
                        );
                    }
                }
            }
        }
        drop(events);
        self.live = Some(agent);
        Ok(())
    }

    /// SIGKILLs the live agent (stopped or not) and reaps it; its id.
    async fn kill(&mut self) -> anyhow::Result<String> {
        let mut agent = self.live.take().context("no agent runs")?;
        agent.child.start_kill()?;
        agent.child.wait().await?;
        Ok(agent.id.clone())
    }

    /// Kills the live agent, if any; whether every agent and every Python
    /// worker of theirs is gone.
    async fn stop(&mut self) -> bool {
        let Some(mut agent) = self.live.take() else {
            return true;
        };
        let pythons = agent.workers();
        let killed = Instant::now();
        let _ = agent.child.start_kill();
        let _ = agent.child.wait().await;
        wait_gone(&pythons, killed).await.is_some()
    }
}

impl Agent {
    /// Its live child processes: its Python workers.
    fn workers(&self) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let parent = self.pid.to_string();
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| stat_field(pid, 1).is_some_and(|ppid| ppid == parent))
            .filter(|&pid| alive(pid))
            .collect()
    }

    /// The end of its stderr, for errors.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().rev().take(10).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// Field `n` after the state (0) of `/proc/PID/stat`: 1 is the parent pid.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
}

impl RemoteReport {
    /// The section's table, the kills and the goals.
    pub(super) fn print(&self) {
        println!(
            "\nRemote workers: a host in this process, {} local workers and {} remote ones \
             on 1 `snakepit agent` child process on loopback; tool `{}`; throughput with {} \
             calls in flight\n",
            self.workers, self.workers, self.tool, self.in_flight
        );
        println!(
            "{:<36} {:>14} {:>14} {:>14} {:>16}",
            "", "latency p50", "latency p90", "latency p99", "throughput"
        );
        for row in [&self.local, &self.remote] {
            println!(
                "{:<36} {:>11.1} us {:>11.1} us {:>11.1} us {:>13.0} /s",
                row.name,
                row.latency_p50_us,
                row.latency_p90_us.unwrap_or(f64::NAN),
                row.latency_p99_us,
                row.throughput_per_s
            );
        }
        println!(
            "\nremote vs local: p50 {:.2}x (+{:.1} us), throughput {:.2}x",
            self.p50_ratio,
            self.remote.latency_p50_us - self.local.latency_p50_us,
            self.throughput_ratio
        );
        if let Some(first) = self.kills.first() {
            let count = |f: Fault| self.kills.iter().filter(|k| k.fault == f).count();
            println!(
                "\nAn agent with {} `sleep` calls in flight SIGKILLed {} times (its connection \
                 closes), SIGSTOPped {} times (it hangs; SIGKILLed once all are answered); \
                 liveness: heartbeat {} ms, timeout {} ms; times from the signal\n",
                first.in_flight,
                count(Fault::Kill),
                count(Fault::Hang),
                self.heartbeat_ms,
                self.liveness_timeout_ms
            );
            println!(
                "{:<16} {:<8} {:>9} {:>11} {:>14} {:>14}  how they ended",
                "", "", "on agent", "link ended", "all answered", "workers gone"
            );
            for k in &self.kills {
                let outcomes = k
                    .outcomes
                    .iter()
                    .map(|(o, n)| format!("{o} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let opt = |v: Option<f64>| match v {
                    Some(v) => format!("{v:.1} ms"),
                    None => "-".into(),
                };
                println!(
                    "{:<16} {:<8} {:>9} {:>11} {:>11.1} ms {:>14}  {outcomes}",
                    k.agent,
                    k.fault.label(),
                    k.on_agent,
                    opt(k.link_ended_ms),
                    k.last_answered_ms,
                    opt(k.workers_gone_ms),
                );
            }
            for fault in [Fault::Kill, Fault::Hang] {
                let worst = self
                    .kills
                    .iter()
                    .filter(|k| k.fault == fault)
                    .map(|k| k.last_answered_ms)
                    .reduce(f64::max);
                if let Some(worst) = worst {
                    println!(
                        "{} -> every in-flight call answered: {worst:.1} ms at worst",
                        fault.label()
                    );
                }
            }
        }
        println!(
            "agents and their Python workers gone at the end: {}",
            if self.all_gone_at_end { "yes" } else { "NO" }
        );
        let g = &self.goals;
        println!(
            "\nremote goals: p50 through an agent <= {:.0} us: {}; {} remote workers >= {:.0} calls/s: {}; \
             in-flight calls answered <= {:.0} ms (liveness timeout + {} ms) after SIGKILL: {}, \
             after SIGSTOP: {}",
            g.p50_us_max,
            verdict(Some(g.p50_met)),
            self.workers,
            g.throughput_per_s_min,
            verdict(Some(g.throughput_met)),
            g.answered_ms_max,
            GOAL_KILL_MARGIN.as_millis(),
            verdict(g.kill_answered_met),
            verdict(g.hang_answered_met),
        );
    }
}
