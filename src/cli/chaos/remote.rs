//! `snakepit chaos --remote`: the node agents the run's remote pool lives
//! on. They are child processes of chaos (`snakepit agent`, this very
//! executable) dialing the embedded host on 127.0.0.1; the agent kill loop
//! SIGKILLs one at random at an interval and starts a replacement under a
//! new id at once, as a Deployment would — or, with `--agent-fault freeze`,
//! SIGSTOPs it and SIGCONTs it once the host should have detached it, as a
//! partition that heals. Every agent and every Python
//! worker it spawns carries [`MARKER_ENV`] in its environment, which is how
//! the leftover check finds them (an agent's own run id, the one its
//! workers carry, is not known outside it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use snakepit::config::Config;
use snakepit::{PoolConfig, PoolHandle};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::faults::signal;

/// The variable every process of a remote run carries, set to the host's
/// run id.
pub(super) const MARKER_ENV: &str = "SNAKEPIT_CHAOS_RUN";

/// How long an agent's drain may take at the end of the run (SIGTERM).
const DRAIN_GRACE: Duration = Duration::from_millis(2000);
/// How long agents get to exit after SIGTERM before they count as left.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// How long the first `--workers` workers may take to be ready.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// One agent child process.
struct Agent {
    id: String,
    pid: u32,
    child: Child,
}

/// The agents of the run, and how to start another.
pub(super) struct Fleet {
    exe: PathBuf,
    connect: String,
    config: PathBuf,
    dir: PathBuf,
    marker: String,
    seats: u32,
    next: usize,
    live: Vec<Agent>,
}

/// How an agent is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum AgentFault {
    /// SIGKILL: its connection resets at once.
    Kill,
    /// SIGSTOP, as a partition or a hung node looks: the host sees it go
    /// silent and must detach it by the liveness timeout. It is SIGCONTed
    /// [`FROZEN_FOR`] after its liveness timeout (the partition heals) and
    /// must attach again, as a reconnect; it is not replaced.
    Freeze,
    /// SIGKILL and SIGSTOP in turn, SIGKILL first.
    Both,
}

impl AgentFault {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AgentFault::Kill => "kill",
            AgentFault::Freeze => "freeze",
            AgentFault::Both => "both",
        }
    }

    /// The signal of the `n`th fault (from 0).
    fn nth(self, n: usize) -> libc::c_int {
        match self {
            AgentFault::Kill => libc::SIGKILL,
            AgentFault::Freeze => libc::SIGSTOP,
            AgentFault::Both if n.is_multiple_of(2) => libc::SIGKILL,
            AgentFault::Both => libc::SIGSTOP,
        }
    }
}

/// No freeze this close to the end of the run, on top of the liveness
/// timeout.
const FREEZE_TAIL: Duration = Duration::from_millis(500);

/// How long a frozen agent stays frozen after its liveness timeout before
/// it is SIGCONTed.
const FROZEN_FOR: Duration = Duration::from_secs(1);

/// An agent fault: a SIGKILL or a SIGSTOP sent.
#[derive(Debug, Clone)]
pub(super) struct AgentKill {
    pub(super) agent: String,
    pub(super) pid: u32,
    pub(super) at: Instant,
    /// `sigkill` or `sigstop`.
    pub(super) fault: &'static str,
}

#[derive(Debug, Default)]
pub(super) struct AgentKillLog {
    /// SIGKILLs and SIGSTOPs, in order.
    pub(super) kills: Vec<AgentKill>,
    /// Ticks when no agent was alive to be killed, or too late for a freeze.
    pub(super) skipped: u64,
    /// Replacements started after a kill.
    pub(super) restarts: u64,
    /// Frozen agents SIGCONTed (they should reconnect).
    pub(super) thawed: u64,
    /// Agents that exited without being killed (each was replaced too).
    pub(super) exited_on_their_own: Vec<String>,
    /// Replacements that could not be started.
    pub(super) spawn_failures: u64,
}

/// What was left when the run ended.
#[derive(Debug, Default)]
pub(super) struct FleetEnd {
    /// Agents still running `EXIT_WAIT` after SIGTERM (then SIGKILLed).
    pub(super) agents_left: usize,
    /// Python processes of the agents still running after every agent
    /// exited (then SIGKILLed).
    pub(super) python_left: usize,
    /// The agents' log directory, kept when something was left.
    pub(super) logs: Option<PathBuf>,
}

impl Fleet {
    /// Writes the agents' configuration (the host's `interpreter`, and
    /// `pool` as a local pool) into a fresh directory and starts `agents`
    /// agents with `seats` workers each, dialing `addr`.
    pub(super) fn start(
        addr: &str,
        python: &Path,
        pool: &PoolConfig,
        marker: &str,
        agents: usize,
        seats: u32,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("snakepit-chaos-{marker}"));
        std::fs::create_dir_all(&dir)?;
        let mut agent_pool = pool.clone();
        agent_pool.remote = false;
        agent_pool.size = seats as usize;
        agent_pool.env.insert(MARKER_ENV.into(), marker.into());
        let mut config = Config::default();
        config.python.interpreter = Some(python.to_path_buf());
        config.pools = vec![agent_pool];
        let path = dir.join("agent.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let mut fleet = Self {
            exe: std::env::current_exe()?,
            connect: format!("http://{addr}"),
            config: path,
            dir,
            marker: marker.to_string(),
            seats,
            next: 1,
            live: Vec::new(),
        };
        for _ in 0..agents {
            fleet.spawn()?;
        }
        Ok(fleet)
    }

    /// Starts one more agent, under a new id.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let id = format!("chaos-agent-{}", self.next);
        self.next += 1;
        let log = std::fs::File::create(self.dir.join(format!("{id}.log")))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("agent")
            .arg("--connect")
            .arg(&self.connect)
            .arg("--pool")
            .arg("chaos")
            .arg("--workers")
            .arg(self.seats.to_string())
            .arg("--agent-id")
            .arg(&id)
            .arg("--config")
            .arg(&self.config)
            .arg("--drain-grace-ms")
            .arg(DRAIN_GRACE.as_millis().to_string())
            .env(MARKER_ENV, &self.marker)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Out of chaos' process group: a Ctrl-C meant for chaos must not
            // drain the agents before chaos ends them.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only prctl, which is async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Agents must not outlive chaos, whatever becomes of it.
                #[cfg(target_os = "linux")]
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("agent {id} exited at once"))?;
        self.live.push(Agent { id, pid, child });
        Ok(())
    }

    /// Forgets the agents that exited on their own, noting their ids; how
    /// many there were.
    fn reap_exited(&mut self, log: &mut AgentKillLog) -> usize {
        let before = self.live.len();
        let mut i = 0;
        while i < self.live.len() {
            if matches!(self.live[i].child.try_wait(), Ok(Some(_))) {
                let gone = self.live.swap_remove(i);
                log.exited_on_their_own.push(gone.id);
            } else {
                i += 1;
            }
        }
        before - self.live.len()
    }

    /// Replaces the agents that exited on their own.
    fn replace_exited(&mut self, log: &mut AgentKillLog) {
        for _ in 0..self.reap_exited(log) {
            if self.spawn().is_err() {
                log.spawn_failures += 1;
            }
        }
    }

    /// Waits until the pool has `size` workers ready; an error naming the
    /// agents' logs if they are not within `BOOT_TIMEOUT` or an agent exits.
    pub(super) async fn wait_ready(
        &mut self,
        pool: &PoolHandle,
        size: usize,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            for agent in &mut self.live {
                if let Ok(Some(status)) = agent.child.try_wait() {
                    anyhow::bail!(
                        "agent {} exited ({status}) before the pool was ready; see {}",
                        agent.id,
                        self.dir.join(format!("{}.log", agent.id)).display()
                    );
                }
            }
            let status = pool.status().await?;
            if status.workers_up >= size {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {size} remote workers were ready after {} s; agents' logs in {}",
                    status.workers_up,
                    BOOT_TIMEOUT.as_secs(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the agents (SIGTERM, then SIGKILL for those still running after
    /// `EXIT_WAIT`), then every Python process still carrying the marker.
    /// Keeps the agents' logs when asked, or when something was left.
    pub(super) async fn stop(mut self, keep_logs: bool) -> FleetEnd {
        let mut end = FleetEnd::default();
        for agent in &self.live {
            let _ = signal(agent.pid, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + EXIT_WAIT;
        for agent in &mut self.live {
            if tokio::time::timeout_at(deadline, agent.child.wait())
                .await
                .is_err()
            {
                end.agents_left += 1;
                let _ = agent.child.kill().await;
            }
        }
        // What the agents' own ends (drain, parent-death signal) left.
        let left = marked_processes(&self.marker);
        for pid in &left {
            let _ = signal(*pid, libc::SIGKILL);
        }
        end.python_left = left.len();
        if keep_logs || end.agents_left + end.python_left > 0 {
            end.logs = Some(self.dir.clone());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        end
    }
}

/// Every `interval`, SIGKILLs a random agent and starts a replacement under
/// a new id, or (as `fault` says) SIGSTOPs it and SIGCONTs it
/// `FROZEN_FOR` after the liveness timeout (no freeze after `ends` less
/// the liveness timeout and `FREEZE_TAIL`). Hands the fleet back when the
/// run stops.
pub(super) async fn agent_kill_loop(
    mut fleet: Fleet,
    interval: Duration,
    fault: AgentFault,
    liveness_timeout: Duration,
    ends: Instant,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
) -> (Fleet, AgentKillLog) {
    let mut log = AgentKillLog::default();
    let mut frozen: Vec<(Agent, tokio::time::Instant)> = Vec::new();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let thaw = frozen.iter().map(|(_, until)| *until).min();
        let thawing = tokio::select! {
            _ = ticker.tick() => false,
            _ = sleep_until(thaw) => true,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        if thawing {
            let now = tokio::time::Instant::now();
            for (agent, _) in extract(&mut frozen, |(_, until)| *until <= now) {
                let _ = signal(agent.pid, libc::SIGCONT);
                log.thawed += 1;
                fleet.live.push(agent);
            }
            continue;
        }
        fleet.replace_exited(&mut log);
        if fleet.live.is_empty() {
            log.skipped += 1;
            continue;
        }
        if *stop.borrow() {
            break;
        }
        let mut agent = fleet
            .live
            .swap_remove(rng.random_range(0..fleet.live.len()));
        let sig = fault.nth(log.kills.len());
        let at = Instant::now();
        // A freeze is noticed by the liveness timeout only: none so late
        // that the run would end before it could be.
        if sig == libc::SIGSTOP && at + liveness_timeout + FREEZE_TAIL > ends {
            fleet.live.push(agent);
            log.skipped += 1;
            continue;
        }
        // The child is still ours (not reaped), so its pid is too.
        if signal(agent.pid, sig).is_err() {
            // It died on its own just now.
            log.exited_on_their_own.push(agent.id.clone());
            let _ = agent.child.wait().await;
        } else {
            log.kills.push(AgentKill {
                agent: agent.id.clone(),
                pid: agent.pid,
                at,
                fault: if sig == libc::SIGKILL {
                    "sigkill"
                } else {
                    "sigstop"
                },
            });
            if sig == libc::SIGSTOP {
                let until = tokio::time::Instant::from_std(at + liveness_timeout + FROZEN_FOR);
                frozen.push((agent, until));
                continue;
            }
            let _ = agent.child.wait().await;
        }
        match fleet.spawn() {
            Ok(()) => log.restarts += 1,
            Err(_) => log.spawn_failures += 1,
        }
    }
    // Thawed, a frozen agent can drain at the end like the others.
    for (agent, _) in frozen {
        let _ = signal(agent.pid, libc::SIGCONT);
        log.thawed += 1;
        fleet.live.push(agent);
    }
    fleet.reap_exited(&mut log);
    (fleet, log)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Removes and returns the items of `items` that `pred` picks.
fn extract<T>(items: &mut Vec<T>, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
    let mut picked = Vec::new();
    let mut i = 0;
    while i < items.len() {
        if pred(&items[i]) {
            picked.push(items.swap_remove(i));
        } else {
            i += 1;
        }
    }
    picked
}

/// The agent a remote worker id (`{pool}-{slot}.{gen}@{agent}`) names.
pub(super) fn agent_of(worker: &str) -> Option<&str> {
    worker.rsplit_once('@').map(|(_, agent)| agent)
}

/// The live processes (but this one) whose environment has
/// `MARKER_ENV=marker`.
pub(super) fn marked_processes(marker: &str) -> Vec<u32> {
    let entry = format!("{MARKER_ENV}={marker}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect();
    pids.sort_unstable();
    pids
}
