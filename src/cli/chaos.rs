//! `snakepit chaos`: drives a steady load against a pool while SIGKILLing a
//! random worker at an interval (and, if asked, SIGSTOPping one once), then
//! reports what callers saw — requests lost, hung or answered wrongly, typed
//! errors by kind — how long the pool took to get back to full strength, how
//! long replacement workers took to start, every telemetry event by name, and
//! whether any Python process outlived the shutdown. Prints a table (`--json`
//! for machines); the exit code says whether every goal was met.
//!
//! With `--remote` the pool is a remote one: its workers run under node
//! agents that are child processes of chaos, attached to the embedded host
//! on 127.0.0.1 (`chaos/remote.rs`). Besides the workers, an agent is
//! SIGKILLed at an interval (and replaced) — or frozen with SIGSTOP, as a
//! partition looks, and thawed to reconnect (`--agent-fault`) — and the
//! report adds how fast the calls it ran were answered, a goal too.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use snakepit::python_env::{self, PythonEnvConfig};
use snakepit::{AttachConfig, PoolConfig, Profile, RestartPolicy, Snakepit, Telemetry};
use snakepit_actors::processes_with_run_id;
use tokio::sync::{oneshot, watch};

mod events;
mod faults;
mod load;
mod remote;
mod report;
mod table;

use events::watch_events;
use faults::{Owned, kill_loop, settle, signal, stop_one};
use load::{Stats, caller};
use remote::{AgentFault, Fleet, agent_kill_loop};
use report::{Marks, RemoteInput, ReportInput, build_report};
use table::print_table;

/// After the load stops, requests get their call timeout plus this to answer
/// before they count as lost.
const LOST_GRACE: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// How long to drive load and kill workers, in seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Time between two SIGKILLs of a random ready worker, in milliseconds.
    #[arg(long, default_value_t = 500)]
    kill_interval: u64,
    /// Workers in the pool.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How the workers run requests.
    #[arg(long, value_enum, default_value_t = ProfileArg::Process)]
    profile: ProfileArg,
    /// Caller tasks, each with one request in flight at a time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Also SIGSTOP one random worker, once, a third of the way in. The pool
    /// should notice the frozen worker (heartbeats) and replace it; the report
    /// gives the time from SIGSTOP until the pool reported that pid gone.
    #[arg(long)]
    stop_one: bool,
    /// Timeout of every call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    call_timeout: u64,
    /// Seed of every random choice (default: a random one; the report shows it).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Restarts the pool may make within the run before it gives up on a slot.
    #[arg(
        long,
        long_help = "Restarts the pool may make within the run (the pool's \
            `restart.max_restarts`; the restart window is the run's duration). \
            By default it is enough for every planned kill: \
            2 * duration / kill-interval + 10, so that the run measures recovery \
            rather than the restart limit. To see how your production policy \
            copes with this rate of kills, pass its value (scaled to the run's \
            duration if your window is different). The report shows the policy used."
    )]
    max_restarts: Option<u32>,
    /// Run the pool as a remote one (`remote = true`) whose workers run
    /// under `--agents` node agents, child processes of chaos attached to
    /// an embedded host on 127.0.0.1; also SIGKILL an agent every
    /// `--agent-kill-interval` ms and start a replacement.
    #[arg(long)]
    remote: bool,
    /// Agents running at once (`--remote`); each has room for
    /// ceil(workers / agents) + 1 workers.
    #[arg(long, default_value_t = 2, requires = "remote")]
    agents: usize,
    /// Time between two SIGKILLs of a random agent, in milliseconds (`--remote`).
    #[arg(long, default_value_t = 3000, requires = "remote")]
    agent_kill_interval: u64,
    /// How an agent fails (`--remote`): `kill` (SIGKILL: its connection
    /// resets; a replacement starts), `freeze` (SIGSTOP, as a partition
    /// looks: only the liveness timeout finds it; SIGCONT 1 s after that
    /// timeout, and it must reconnect), or `both` in turn.
    #[arg(long, value_enum, default_value_t = AgentFault::Kill, requires = "remote")]
    agent_fault: AgentFault,
    /// The links' liveness timeout, in milliseconds (`--remote`); the
    /// heartbeat is a fifth of it. Calls on a killed agent must be answered
    /// within it + 100 ms.
    #[arg(long, default_value_t = 1500, requires = "remote")]
    liveness_timeout: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProfileArg {
    Process,
    Thread,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Process => Profile::Process,
            ProfileArg::Thread => Profile::Thread,
        }
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.duration > 0, "--duration must be at least 1 second");
    anyhow::ensure!(args.kill_interval > 0, "--kill-interval must be positive");
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.call_timeout > 0, "--call-timeout must be positive");
    anyhow::ensure!(args.agents > 0, "--agents must be at least 1");
    anyhow::ensure!(
        args.agent_kill_interval > 0,
        "--agent-kill-interval must be positive"
    );
    anyhow::ensure!(
        args.liveness_timeout >= 100,
        "--liveness-timeout must be at least 100 ms"
    );
    let duration = Duration::from_secs(args.duration);
    let kill_interval = Duration::from_millis(args.kill_interval);
    let call_timeout = Duration::from_millis(args.call_timeout);
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut seeds = StdRng::seed_from_u64(seed);

    let liveness = Duration::from_millis(args.liveness_timeout);
    let heartbeat = liveness / 5;
    let agent_kill_interval = Duration::from_millis(args.agent_kill_interval);
    let seats = u32::try_from(args.workers.div_ceil(args.agents) + 1)?;

    let duration_ms = duration.as_millis() as u64;
    // An agent kill ends every worker it runs.
    let agent_exits = if args.remote {
        2 * duration_ms / args.agent_kill_interval * u64::from(seats)
    } else {
        0
    };
    let mut restart = RestartPolicy::default();
    restart.max_restarts = args.max_restarts.unwrap_or_else(|| {
        u32::try_from(2 * duration_ms / args.kill_interval + agent_exits + 10).unwrap_or(u32::MAX)
    });
    restart.restart_window = std::time::Duration::from_millis(duration_ms);

    let env =
        tokio::task::spawn_blocking(|| python_env::ensure(&PythonEnvConfig::default())).await??;
    let mut pool = PoolConfig::named("chaos");
    pool.size = args.workers;
    pool.profile = args.profile.into();
    pool.call_timeout = std::time::Duration::from_millis(args.call_timeout);
    pool.stream_timeout = std::time::Duration::from_millis(args.call_timeout);
    pool.restart = restart.clone();
    pool.remote = args.remote;
    let agent_pool = pool.clone();

    // Subscribe before the first worker is spawned, so that the boot's
    // start-up times are seen too.
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let (watch_stop, watch_stop_rx) = oneshot::channel();
    let size = args.workers;
    let watcher = std::thread::Builder::new()
        .name("chaos-events".into())
        .spawn(move || watch_events(events, watch_stop_rx))?;

    if !args.json {
        eprintln!(
            "chaos: starting {} {} workers{} (seed {seed})...",
            args.workers,
            Profile::from(args.profile).as_str(),
            if args.remote {
                format!(" on {} agents", args.agents)
            } else {
                String::new()
            }
        );
    }
    let mut builder = Snakepit::builder()
        .python(&env.python)
        .telemetry(telemetry)
        .pool(pool);
    if args.remote {
        let listen = "127.0.0.1:0".parse().context("the attach address")?;
        builder = builder.attach(AttachConfig::new(listen).liveness(heartbeat, liveness));
    }
    let sp = builder.start().await?;
    let run_id = sp.run_id().to_string();
    let handle = sp.default_pool().clone();
    let owned = if args.remote {
        Owned::Marked(run_id.clone())
    } else {
        Owned::Run(run_id.clone())
    };
    let fleet = if args.remote {
        match start_fleet(&sp, &env.python, &agent_pool, &run_id, args.agents, seats).await {
            Ok(fleet) => Some(fleet),
            Err(err) => {
                sp.shutdown().await;
                return Err(err);
            }
        }
    } else {
        None
    };

    if !args.json {
        eprintln!(
            "chaos: {} callers for {} s, SIGKILL every {} ms{}{}...",
            args.concurrency,
            args.duration,
            args.kill_interval,
            if args.remote {
                format!(
                    ", an agent every {} ms ({})",
                    args.agent_kill_interval,
                    args.agent_fault.as_str()
                )
            } else {
                String::new()
            },
            if args.stop_one { ", one SIGSTOP" } else { "" }
        );
    }
    let load_started = Instant::now();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let (stop, stop_rx) = watch::channel(false);
    let callers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(caller(
                handle.clone(),
                stats.clone(),
                stop_rx.clone(),
                call_timeout,
                StdRng::seed_from_u64(seeds.random()),
            ))
        })
        .collect();
    let frozen = Arc::new(Mutex::new(None::<u32>));
    let killer = tokio::spawn(kill_loop(
        handle.clone(),
        owned.clone(),
        kill_interval,
        StdRng::seed_from_u64(seeds.random()),
        stop_rx.clone(),
        frozen.clone(),
    ));
    let stopper = args.stop_one.then(|| {
        tokio::spawn(stop_one(
            handle.clone(),
            owned.clone(),
            duration / 3,
            StdRng::seed_from_u64(seeds.random()),
            stop_rx.clone(),
            frozen.clone(),
        ))
    });
    let agent_killer = fleet.map(|fleet| {
        tokio::spawn(agent_kill_loop(
            fleet,
            agent_kill_interval,
            args.agent_fault,
            liveness,
            load_started + duration,
            StdRng::seed_from_u64(seeds.random()),
            stop_rx.clone(),
        ))
    });
    drop(stop_rx);

    let stopped_by = tokio::select! {
        _ = tokio::time::sleep(duration) => None,
        signal = super::shutdown_signal() => {
            eprintln!("\nchaos: signal received, stopping early");
            Some(signal)
        }
    };

    // Stop the kills and the SIGSTOP first, then the load.
    let _ = stop.send(true);
    let load_stopped = Instant::now();
    let kills = killer.await?;
    let agents = match agent_killer {
        Some(task) => Some(task.await?),
        None => None,
    };
    let sigstop = match stopper {
        Some(task) => task.await?,
        None => None,
    };
    let mut pending = Vec::new();
    for task in callers {
        pending.extend(task.await?);
    }
    // Requests still running get their timeout plus a grace period; the
    // library's own timeout is not trusted to end them.
    let lost_deadline = tokio::time::Instant::from_std(load_stopped + call_timeout + LOST_GRACE);
    let mut lost = 0u64;
    for mut p in pending {
        if tokio::time::timeout_at(lost_deadline, &mut p.task)
            .await
            .is_err()
        {
            p.task.abort();
            if !p.claimed.swap(true, Ordering::SeqCst) {
                lost += 1;
                let mut stats = stats.lock().expect("stats lock");
                stats.kind(p.kind).lost += 1;
            }
        }
    }
    let settled = settle(&handle).await;

    let shutdown_started = Instant::now();
    sp.shutdown().await;
    let shutdown_ended = Instant::now();
    // The agents outlive the host's shutdown (dialing again); end them.
    let remote = match agents {
        Some((fleet, kills)) => Some(RemoteInput {
            agents: args.agents,
            seats,
            heartbeat,
            liveness_timeout: liveness,
            kill_interval: agent_kill_interval,
            fault: args.agent_fault.as_str(),
            marker: run_id.clone(),
            kills,
            end: fleet.stop(false).await,
        }),
        None => None,
    };
    let left = processes_with_run_id(&run_id);
    // Leave no litter on the machine, whatever the count said.
    for pid in &left {
        let _ = signal(*pid, libc::SIGKILL);
    }
    let left = left.len() + remote.as_ref().map_or(0, |r| r.end.python_left);
    let _ = watch_stop.send(());
    let log = tokio::task::spawn_blocking(move || watcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the event watcher panicked"))?;

    let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
    let report = build_report(ReportInput {
        args: &args,
        seed,
        restart,
        interrupted: stopped_by.is_some(),
        stats,
        lost,
        kills,
        sigstop,
        log,
        size,
        marks: Marks {
            load_started,
            load_stopped,
            shutdown_started,
            shutdown_ended,
        },
        settled,
        left,
        remote,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(match stopped_by {
        Some(signal) => signal.exit_code(),
        None if report.goals.all_met => ExitCode::SUCCESS,
        None => ExitCode::from(super::EXIT_FAILED),
    })
}

/// Starts the agents of a `--remote` run, dialing `sp`'s attach address,
/// and waits until the pool has all its workers.
async fn start_fleet(
    sp: &Snakepit,
    python: &std::path::Path,
    pool: &PoolConfig,
    run_id: &str,
    agents: usize,
    seats: u32,
) -> anyhow::Result<Fleet> {
    let addr = sp
        .attach_addr()
        .await
        .context("the host does not listen for agents")?;
    let mut fleet = Fleet::start(&addr.to_string(), python, pool, run_id, agents, seats)?;
    let ready = fleet.wait_ready(sp.default_pool(), pool.size).await;
    match ready {
        Ok(()) => Ok(fleet),
        Err(err) => {
            // Keep the logs that explain the failure.
            fleet.stop(true).await;
            Err(err)
        }
    }
}
