//! `snakepit chaos`: drives a steady load against a pool while SIGKILLing a
//! random worker at an interval (and, if asked, SIGSTOPping one once), then
//! reports what callers saw — requests lost, hung or answered wrongly, typed
//! errors by kind — how long the pool took to get back to full strength, how
//! long replacement workers took to start, every telemetry event by name, and
//! whether any Python process outlived the shutdown. Prints a table (`--json`
//! for machines); the exit code says whether every goal was met.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use snakepit::python_env::{self, PythonEnvConfig};
use snakepit::{Call, Event, PoolConfig, PoolHandle, Profile, RestartPolicy, Snakepit, Telemetry};
use snakepit::{Error, Value};
use snakepit_actors::processes_with_run_id;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

/// An answer later than its deadline by more than this is "hung".
const HUNG_SLACK: Duration = Duration::from_secs(1);
/// After the load stops, requests get their call timeout plus this to answer
/// before they count as lost.
const LOST_GRACE: Duration = Duration::from_secs(5);
/// Goal for the worst time from a kill until the pool is at full strength.
const RECOVERY_GOAL: Duration = Duration::from_millis(1500);
/// How long to wait, after the kills stop, for the pool to be at full strength
/// again before shutting down (so that the last kill's recovery is measured).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Exit code when the run completed but a goal was not met.
const GOALS_NOT_MET: u8 = 2;
/// A caller pauses this long after an error before its next request, as a
/// client backing off would: a pool that refuses everything at once (degraded,
/// no worker up) is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Timeline entries kept from telemetry, at most.
const TIMELINE_MAX: usize = 5000;
/// Wrong answers described in the report, at most.
const WRONG_EXAMPLES: usize = 5;

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
    let duration = Duration::from_secs(args.duration);
    let kill_interval = Duration::from_millis(args.kill_interval);
    let call_timeout = Duration::from_millis(args.call_timeout);
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut seeds = StdRng::seed_from_u64(seed);

    let duration_ms = duration.as_millis() as u64;
    let restart = RestartPolicy {
        max_restarts: args.max_restarts.unwrap_or_else(|| {
            u32::try_from(2 * duration_ms / args.kill_interval + 10).unwrap_or(u32::MAX)
        }),
        restart_window_ms: duration_ms,
        ..RestartPolicy::default()
    };

    let env =
        tokio::task::spawn_blocking(|| python_env::ensure(&PythonEnvConfig::default())).await??;
    let mut pool = PoolConfig::named("chaos");
    pool.size = args.workers;
    pool.profile = args.profile.into();
    pool.call_timeout_ms = args.call_timeout;
    pool.stream_timeout_ms = args.call_timeout;
    pool.restart = restart.clone();

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
            "chaos: starting {} {} workers (seed {seed})...",
            args.workers,
            Profile::from(args.profile).as_str()
        );
    }
    let sp = Snakepit::builder()
        .python(&env.python)
        .telemetry(telemetry)
        .pool(pool)
        .start()
        .await?;
    let run_id = sp.run_id().to_string();
    let handle = sp.default_pool().clone();

    if !args.json {
        eprintln!(
            "chaos: {} callers for {} s, SIGKILL every {} ms{}...",
            args.concurrency,
            args.duration,
            args.kill_interval,
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
        run_id.clone(),
        kill_interval,
        StdRng::seed_from_u64(seeds.random()),
        stop_rx.clone(),
        frozen.clone(),
    ));
    let stopper = args.stop_one.then(|| {
        tokio::spawn(stop_one(
            handle.clone(),
            run_id.clone(),
            duration / 3,
            StdRng::seed_from_u64(seeds.random()),
            stop_rx.clone(),
            frozen.clone(),
        ))
    });
    drop(stop_rx);

    let interrupted = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = super::shutdown_signal() => {
            eprintln!("\nchaos: signal received, stopping early");
            true
        }
    };

    // Stop the kills and the SIGSTOP first, then the load.
    let _ = stop.send(true);
    let load_stopped = Instant::now();
    let kills = killer.await?;
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
    let left = processes_with_run_id(&run_id);
    // Leave no litter on the machine, whatever the count said.
    for pid in &left {
        let _ = signal(*pid, libc::SIGKILL);
    }
    let _ = watch_stop.send(());
    let log = tokio::task::spawn_blocking(move || watcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the event watcher panicked"))?;

    let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
    let report = build_report(ReportInput {
        args: &args,
        seed,
        restart,
        interrupted,
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
        left: left.len(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.goals.all_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(GOALS_NOT_MET)
    })
}

// ---------------------------------------------------------------------------
// Load.

/// What a request asks for, and so what its answer must be.
#[derive(Debug, Clone)]
enum Plan {
    Echo(String),
    Add(i64, i64),
    Progress { steps: u64, delay_ms: u64 },
    Sleep(u64),
}

impl Plan {
    /// About 70% short calls, 20% streams and 10% sleeps.
    fn random(rng: &mut StdRng) -> Self {
        match rng.random_range(0..100) {
            0..35 => Plan::Echo(format!("chaos-{:x}", rng.random::<u32>())),
            35..70 => Plan::Add(rng.random_range(-1000..1000), rng.random_range(-1000..1000)),
            70..90 => Plan::Progress {
                steps: rng.random_range(2..=8),
                delay_ms: rng.random_range(1..=3),
            },
            _ => Plan::Sleep(rng.random_range(5..=50)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Plan::Echo(_) => "echo",
            Plan::Add(..) => "add",
            Plan::Progress { .. } => "progress",
            Plan::Sleep(_) => "sleep",
        }
    }

    fn call(&self) -> Call {
        match self {
            Plan::Echo(message) => Call::new("echo").kwarg("message", message.as_str()),
            Plan::Add(a, b) => Call::new("add").kwarg("a", *a).kwarg("b", *b),
            Plan::Progress { steps, delay_ms } => Call::new("progress")
                .kwarg("steps", *steps as i64)
                .kwarg("delay_ms", *delay_ms as i64),
            Plan::Sleep(ms) => Call::new("sleep").kwarg("ms", *ms as i64),
        }
    }

    fn expected(&self) -> Value {
        match self {
            Plan::Echo(message) => Value::Str(message.clone()),
            Plan::Add(a, b) => Value::Int(a + b),
            Plan::Progress { steps, .. } => Value::Int(*steps as i64),
            Plan::Sleep(ms) => Value::Int(*ms as i64),
        }
    }
}

/// How a request ended.
enum Outcome {
    Ok,
    Wrong(String),
    Error(&'static str, String),
}

impl Outcome {
    fn of_error(err: &Error) -> Self {
        Outcome::Error(err.outcome(), err.to_string())
    }
}

/// A request a caller stopped waiting for when the load stopped.
struct Pending {
    kind: &'static str,
    task: JoinHandle<bool>,
    /// Set by whoever accounts for the request first: its task when it
    /// answers, or the lost-request sweep.
    claimed: Arc<AtomicBool>,
}

/// One caller: one request in flight at a time (and a short pause after an
/// error) until the load stops. Each request runs in its own task and records
/// itself when it finishes; the caller hands back the one it was waiting for
/// when the load stopped.
async fn caller(
    pool: PoolHandle,
    stats: Arc<Mutex<Stats>>,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
    mut rng: StdRng,
) -> Option<Pending> {
    loop {
        if *stop.borrow() {
            return None;
        }
        let plan = Plan::random(&mut rng);
        // Half of the short calls and sleeps may be retried; streams never.
        let idempotent = !matches!(plan, Plan::Progress { .. }) && rng.random_bool(0.5);
        let kind = plan.kind();
        let claimed = Arc::new(AtomicBool::new(false));
        {
            let mut stats = stats.lock().expect("stats lock");
            stats.sent += 1;
            stats.kind(kind).sent += 1;
            if idempotent {
                stats.idempotent.sent += 1;
            }
        }
        let started = Instant::now();
        let mut task = tokio::spawn({
            let (pool, stats, claimed) = (pool.clone(), stats.clone(), claimed.clone());
            async move {
                let outcome = run_plan(&pool, &plan, idempotent, timeout).await;
                let ended = Instant::now();
                let failed = matches!(outcome, Outcome::Error(..));
                if !claimed.swap(true, Ordering::SeqCst) {
                    let mut stats = stats.lock().expect("stats lock");
                    stats.record(
                        &plan,
                        idempotent,
                        started,
                        started + timeout,
                        ended,
                        outcome,
                    );
                }
                failed
            }
        });
        let failed = tokio::select! {
            biased;
            failed = &mut task => failed.unwrap_or(false),
            _ = stop.wait_for(|stopped| *stopped) => {
                return Some(Pending { kind, task, claimed });
            }
        };
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(ERROR_PAUSE) => {}
                _ = stop.wait_for(|stopped| *stopped) => return None,
            }
        }
    }
}

async fn run_plan(pool: &PoolHandle, plan: &Plan, idempotent: bool, timeout: Duration) -> Outcome {
    let call = plan.call().timeout(timeout).idempotent(idempotent);
    let Plan::Progress { steps, .. } = plan else {
        return match pool.execute(call).await {
            Ok(value) if value == plan.expected() => Outcome::Ok,
            Ok(value) => Outcome::Wrong(format!(
                "{}: expected {:?}, got {value:?}",
                plan.kind(),
                plan.expected()
            )),
            Err(err) => Outcome::of_error(&err),
        };
    };
    let mut stream = match pool.execute_stream(call).await {
        Ok(stream) => stream,
        Err(err) => return Outcome::of_error(&err),
    };
    // Chunks must come numbered 0, 1, 2... each carrying step seq + 1.
    let mut next = 0u64;
    let mut broken = None;
    while let Some(item) = stream.next().await {
        let chunk = match item {
            Ok(chunk) => chunk,
            Err(err) => return Outcome::of_error(&err),
        };
        let step = field(&chunk.value, "step");
        let total = field(&chunk.value, "total");
        if broken.is_none()
            && (chunk.seq != next
                || step != Some(&Value::Int(next as i64 + 1))
                || total != Some(&Value::Int(*steps as i64)))
        {
            broken = Some(format!(
                "progress({steps}): chunk {next} came as seq {} with {:?}",
                chunk.seq, chunk.value
            ));
        }
        next += 1;
    }
    match broken {
        Some(why) => Outcome::Wrong(why),
        None if next != *steps => Outcome::Wrong(format!(
            "progress({steps}): the stream ended after {next} chunks"
        )),
        None => Outcome::Ok,
    }
}

fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Counters of one kind of request.
#[derive(Debug, Default, Clone, Serialize)]
struct KindStats {
    sent: u64,
    ok: u64,
    wrong: u64,
    errors: u64,
    lost: u64,
    hung: u64,
}

/// Counters of the idempotent requests (a retry should turn their
/// `worker_crashed` errors into successes).
#[derive(Debug, Default, Clone, Serialize)]
struct IdempotentStats {
    sent: u64,
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
}

/// What callers saw, as counters: nothing per request is kept but its latency.
#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    ok: u64,
    wrong: u64,
    hung: u64,
    errors: BTreeMap<&'static str, u64>,
    by_kind: BTreeMap<&'static str, KindStats>,
    idempotent: IdempotentStats,
    /// Latency of every answered request, in microseconds.
    latencies_us: Vec<u32>,
    /// The first error message of each kind.
    error_examples: BTreeMap<&'static str, String>,
    wrong_examples: Vec<String>,
}

impl Stats {
    fn kind(&mut self, kind: &'static str) -> &mut KindStats {
        self.by_kind.entry(kind).or_default()
    }

    fn record(
        &mut self,
        plan: &Plan,
        idempotent: bool,
        started: Instant,
        deadline: Instant,
        ended: Instant,
        outcome: Outcome,
    ) {
        let latency = ended - started;
        self.latencies_us
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        let hung = ended > deadline + HUNG_SLACK;
        if hung {
            self.hung += 1;
            self.kind(plan.kind()).hung += 1;
        }
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.kind(plan.kind()).ok += 1;
                if idempotent {
                    self.idempotent.ok += 1;
                }
            }
            Outcome::Wrong(why) => {
                self.wrong += 1;
                self.kind(plan.kind()).wrong += 1;
                if self.wrong_examples.len() < WRONG_EXAMPLES {
                    self.wrong_examples.push(why);
                }
            }
            Outcome::Error(label, message) => {
                *self.errors.entry(label).or_default() += 1;
                self.kind(plan.kind()).errors += 1;
                if idempotent {
                    *self.idempotent.errors.entry(label).or_default() += 1;
                }
                self.error_examples.entry(label).or_insert(message);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kills and the SIGSTOP.

/// A SIGKILL sent.
#[derive(Debug, Clone, Copy)]
struct Kill {
    pid: u32,
    at: Instant,
}

#[derive(Debug, Default)]
struct KillLog {
    kills: Vec<Kill>,
    /// Ticks when no worker was ready to be killed.
    skipped: u64,
    /// Signals that could not be sent (the process was already gone).
    failed: u64,
}

/// Every `interval`, SIGKILLs a random ready worker (never the frozen one).
async fn kill_loop(
    pool: PoolHandle,
    run_id: String,
    interval: Duration,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
    frozen: Arc<Mutex<Option<u32>>>,
) -> KillLog {
    let mut log = KillLog::default();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        let frozen = *frozen.lock().expect("frozen lock");
        let Some(pid) = pick_ready(&pool, &run_id, frozen, &mut rng).await else {
            log.skipped += 1;
            continue;
        };
        if *stop.borrow() {
            break;
        }
        let at = Instant::now();
        match signal(pid, libc::SIGKILL) {
            Ok(()) => log.kills.push(Kill { pid, at }),
            Err(_) => log.failed += 1,
        }
    }
    log
}

/// The SIGSTOP sent.
#[derive(Debug, Clone, Copy)]
struct Frozen {
    pid: u32,
    at: Instant,
}

/// Once, `after` into the run, SIGSTOPs a random ready worker.
async fn stop_one(
    pool: PoolHandle,
    run_id: String,
    after: Duration,
    mut rng: StdRng,
    mut stop: watch::Receiver<bool>,
    frozen: Arc<Mutex<Option<u32>>>,
) -> Option<Frozen> {
    tokio::select! {
        _ = tokio::time::sleep(after) => {}
        _ = stop.wait_for(|stopped| *stopped) => return None,
    }
    let pid = pick_ready(&pool, &run_id, None, &mut rng).await?;
    // Spare it from the kills before it freezes, so that only the pool's own
    // detection can end it.
    *frozen.lock().expect("frozen lock") = Some(pid);
    let at = Instant::now();
    signal(pid, libc::SIGSTOP).ok()?;
    Some(Frozen { pid, at })
}

/// A random ready worker's pid, checked to still be one of this run's
/// processes (so that a recycled pid is never signalled).
async fn pick_ready(
    pool: &PoolHandle,
    run_id: &str,
    except: Option<u32>,
    rng: &mut StdRng,
) -> Option<u32> {
    let status = pool.status().await.ok()?;
    let pids: Vec<u32> = status
        .workers
        .iter()
        .filter(|w| w.ready)
        .filter_map(|w| w.pid)
        .filter(|pid| Some(*pid) != except)
        .collect();
    if pids.is_empty() {
        return None;
    }
    let pid = pids[rng.random_range(0..pids.len())];
    // Never signal a pid that was reused by a process not of this run.
    processes_with_run_id(run_id).contains(&pid).then_some(pid)
}

fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits (bounded) until every worker is ready again; whether it happened.
async fn settle(pool: &PoolHandle) -> bool {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match pool.status().await {
            Ok(st) if st.workers_up == st.size => return true,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => return false,
        }
    }
}

// ---------------------------------------------------------------------------
// Telemetry.

/// A worker exit, as the pool reported it.
#[derive(Debug, Clone, Copy)]
struct Exit {
    pid: u32,
    at: Instant,
    workers_up: usize,
    cause: &'static str,
}

/// A worker ready, as the pool reported it.
#[derive(Debug, Clone, Copy)]
struct Ready {
    at: Instant,
    startup: Duration,
    workers_up: usize,
}

/// What the telemetry said, with the instant each event arrived.
#[derive(Debug, Default)]
struct EventLog {
    counts: BTreeMap<&'static str, u64>,
    /// Events missed because the watcher fell behind.
    lagged: u64,
    exits: Vec<Exit>,
    readies: Vec<Ready>,
    /// Events other than request starts and stops, with their fields.
    timeline: Vec<(Instant, &'static str, String)>,
}

/// Records events until told to stop (then drains what is left). Runs on its
/// own thread so that a busy runtime does not make it fall behind.
fn watch_events(mut rx: broadcast::Receiver<Event>, mut stop: oneshot::Receiver<()>) -> EventLog {
    let mut log = EventLog::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("event watcher runtime");
    rt.block_on(async {
        loop {
            tokio::select! {
                biased;
                ev = rx.recv() => match ev {
                    Ok(ev) => log.add(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => log.lagged += n,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = &mut stop => {
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => log.add(ev),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => log.lagged += n,
                            Err(_) => break,
                        }
                    }
                    break;
                }
            }
        }
    });
    log
}

impl EventLog {
    fn add(&mut self, ev: Event) {
        let at = Instant::now();
        *self.counts.entry(ev.name()).or_default() += 1;
        if !matches!(ev, Event::RequestStarted(_) | Event::RequestStopped(_))
            && self.timeline.len() < TIMELINE_MAX
        {
            self.timeline.push((at, ev.name(), format!("{ev:?}")));
        }
        match ev {
            Event::WorkerExited(e) => self.exits.push(Exit {
                pid: e.pid,
                at,
                workers_up: e.workers_up,
                cause: e.cause.as_str(),
            }),
            Event::WorkerReady(e) => self.readies.push(Ready {
                at,
                startup: e.startup,
                workers_up: e.workers_up,
            }),
            _ => {}
        }
    }

    fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------
// Report.

#[derive(Debug, Serialize)]
struct Report {
    config: ConfigReport,
    interrupted: bool,
    requests: RequestsReport,
    kills: KillsReport,
    sigstop: Option<SigstopReport>,
    /// `WorkerRestarting` events.
    restarts: u64,
    /// Exits the pool reported that no kill of ours explains (not counting shutdown).
    unexplained_exits: u64,
    cold_start_ms: ColdStartReport,
    events: BTreeMap<&'static str, u64>,
    telemetry_lagged: u64,
    /// Whether the pool was at full strength again after the kills stopped.
    settled: bool,
    shutdown_ms: f64,
    python_processes_left: usize,
    goals: Goals,
    /// Every event but request starts and stops, and the run's own actions,
    /// in seconds since the load started.
    timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize)]
struct TimelineEntry {
    t_s: f64,
    what: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct ConfigReport {
    workers: usize,
    profile: &'static str,
    duration_s: u64,
    kill_interval_ms: u64,
    concurrency: usize,
    call_timeout_ms: u64,
    stop_one: bool,
    seed: u64,
    restart_policy: RestartPolicy,
    /// `default` (enough for the planned kills) or `--max-restarts`.
    max_restarts_from: &'static str,
}

#[derive(Debug, Serialize)]
struct RequestsReport {
    sent: u64,
    ok: u64,
    wrong: u64,
    errors: BTreeMap<&'static str, u64>,
    lost: u64,
    hung: u64,
    by_kind: BTreeMap<&'static str, KindStats>,
    idempotent: IdempotentStats,
    latency_ms: Summary,
    error_examples: BTreeMap<&'static str, String>,
    wrong_examples: Vec<String>,
}

#[derive(Debug, Serialize)]
struct KillsReport {
    count: usize,
    skipped_no_ready_worker: u64,
    failed: u64,
    /// Kills whose exit the pool reported.
    noticed: usize,
    /// Kills after which the pool was seen at full strength.
    recovered: usize,
    unrecovered: usize,
    /// From the kill to the pool's `WorkerExited` for that pid.
    noticed_ms: Summary,
    /// From the kill to the pool at full strength.
    recovery_ms: Summary,
    /// Each kill's recovery, in order (null when not seen).
    recovery_ms_each: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
struct SigstopReport {
    pid: u32,
    after_s: f64,
    /// From SIGSTOP to the pool reporting the pid gone before shutdown began
    /// (null: not detected while the runtime ran).
    detected_after_ms: Option<f64>,
    /// From SIGSTOP to the pool reporting the pid gone, shutdown included.
    exited_after_ms: Option<f64>,
    /// The cause the pool gave for that exit.
    exit_cause: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct ColdStartReport {
    /// Workers started at boot, on an idle machine.
    boot: Summary,
    /// Replacement workers started under load.
    during_chaos: Summary,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    count: usize,
    min: Option<f64>,
    median: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let at = |p: f64| (!samples.is_empty()).then(|| ms(super::percentile(&samples, p)));
        Summary {
            count: samples.len(),
            min: at(0.0),
            median: at(50.0),
            p99: at(99.0),
            max: at(100.0),
        }
    }
}

#[derive(Debug, Serialize)]
struct Goals {
    lost_zero: bool,
    hung_zero: bool,
    wrong_zero: bool,
    /// Every kill recovered, the worst within 1.5 s.
    worst_recovery_le_1500ms: bool,
    processes_left_zero: bool,
    /// All of the above, and the run was not interrupted.
    all_met: bool,
}

struct ReportInput<'a> {
    args: &'a ChaosArgs,
    seed: u64,
    restart: RestartPolicy,
    interrupted: bool,
    stats: Stats,
    lost: u64,
    kills: KillLog,
    sigstop: Option<Frozen>,
    log: EventLog,
    size: usize,
    marks: Marks,
    settled: bool,
    left: usize,
}

/// When the phases of the run began and ended.
struct Marks {
    load_started: Instant,
    load_stopped: Instant,
    shutdown_started: Instant,
    shutdown_ended: Instant,
}

fn build_report(input: ReportInput<'_>) -> Report {
    let ReportInput {
        args,
        seed,
        restart,
        interrupted,
        stats,
        lost,
        kills,
        sigstop,
        log,
        size,
        marks,
        settled,
        left,
    } = input;
    let load_started = marks.load_started;
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    // Seconds since the load started (negative during boot), to the millisecond.
    let secs = |d: Duration| (d.as_secs_f64() * 1e3).round() / 1e3;
    let since = |t: Instant| {
        if t >= load_started {
            secs(t - load_started)
        } else {
            -secs(load_started - t)
        }
    };

    // For each kill: the pool's exit event for that pid, then the first moment
    // after it that the pool was at full strength.
    let mut noticed = Vec::new();
    let mut recovered = Vec::new();
    let mut each = Vec::new();
    for kill in &kills.kills {
        let exit = log
            .exits
            .iter()
            .find(|e| e.pid == kill.pid && e.at >= kill.at);
        let full = exit.and_then(|exit| {
            if exit.workers_up >= size {
                Some(exit.at)
            } else {
                log.readies
                    .iter()
                    .find(|r| r.at >= exit.at && r.workers_up >= size)
                    .map(|r| r.at)
            }
        });
        if let Some(exit) = exit {
            noticed.push(exit.at - kill.at);
        }
        if let Some(full) = full {
            recovered.push(full - kill.at);
        }
        each.push(full.map(|full| ms(full - kill.at)));
    }
    let unrecovered = kills.kills.len() - recovered.len();
    let worst_recovery = recovered.iter().max().copied();

    let sigstop_sent = sigstop;
    let sigstop = sigstop.map(|f| {
        let exit = log.exits.iter().find(|e| e.pid == f.pid && e.at >= f.at);
        SigstopReport {
            pid: f.pid,
            after_s: secs(f.at - load_started),
            detected_after_ms: exit
                .filter(|e| e.at < marks.shutdown_started)
                .map(|e| ms(e.at - f.at)),
            exited_after_ms: exit.map(|e| ms(e.at - f.at)),
            exit_cause: exit.map(|e| e.cause),
        }
    });
    let explained = |pid: u32| {
        kills.kills.iter().any(|k| k.pid == pid) || sigstop.as_ref().is_some_and(|s| s.pid == pid)
    };
    let unexplained_exits = log
        .exits
        .iter()
        .filter(|e| e.cause != "shutdown" && !explained(e.pid))
        .count() as u64;

    let (boot, chaos): (Vec<&Ready>, Vec<&Ready>) =
        log.readies.iter().partition(|r| r.at < load_started);
    let cold_start_ms = ColdStartReport {
        boot: Summary::of(boot.iter().map(|r| r.startup).collect()),
        during_chaos: Summary::of(chaos.iter().map(|r| r.startup).collect()),
    };

    let mut timeline: Vec<TimelineEntry> = log
        .timeline
        .iter()
        .map(|(at, what, detail)| TimelineEntry {
            t_s: since(*at),
            what: what.to_string(),
            detail: detail.clone(),
        })
        .collect();
    let mut mark = |at: Instant, what: &str, detail: String| {
        timeline.push(TimelineEntry {
            t_s: since(at),
            what: what.to_string(),
            detail,
        })
    };
    for kill in &kills.kills {
        mark(kill.at, "chaos.sigkill", format!("pid {}", kill.pid));
    }
    if let Some(f) = &sigstop_sent {
        mark(f.at, "chaos.sigstop", format!("pid {}", f.pid));
    }
    mark(marks.load_started, "chaos.load.started", String::new());
    mark(marks.load_stopped, "chaos.load.stopped", String::new());
    mark(
        marks.shutdown_started,
        "chaos.shutdown.started",
        String::new(),
    );
    mark(
        marks.shutdown_ended,
        "chaos.shutdown.finished",
        String::new(),
    );
    timeline.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));

    let latencies = stats
        .latencies_us
        .iter()
        .map(|us| Duration::from_micros(u64::from(*us)))
        .collect();
    let goals = {
        let lost_zero = lost == 0;
        let hung_zero = stats.hung == 0;
        let wrong_zero = stats.wrong == 0;
        let worst_recovery_le_1500ms =
            unrecovered == 0 && worst_recovery.is_none_or(|w| w <= RECOVERY_GOAL);
        let processes_left_zero = left == 0;
        Goals {
            lost_zero,
            hung_zero,
            wrong_zero,
            worst_recovery_le_1500ms,
            processes_left_zero,
            all_met: lost_zero
                && hung_zero
                && wrong_zero
                && worst_recovery_le_1500ms
                && processes_left_zero
                && !interrupted,
        }
    };
    Report {
        config: ConfigReport {
            workers: args.workers,
            profile: Profile::from(args.profile).as_str(),
            duration_s: args.duration,
            kill_interval_ms: args.kill_interval,
            concurrency: args.concurrency,
            call_timeout_ms: args.call_timeout,
            stop_one: args.stop_one,
            seed,
            restart_policy: restart,
            max_restarts_from: if args.max_restarts.is_some() {
                "--max-restarts"
            } else {
                "default"
            },
        },
        interrupted,
        requests: RequestsReport {
            sent: stats.sent,
            ok: stats.ok,
            wrong: stats.wrong,
            errors: stats.errors,
            lost,
            hung: stats.hung,
            by_kind: stats.by_kind,
            idempotent: stats.idempotent,
            latency_ms: Summary::of(latencies),
            error_examples: stats.error_examples,
            wrong_examples: stats.wrong_examples,
        },
        kills: KillsReport {
            count: kills.kills.len(),
            skipped_no_ready_worker: kills.skipped,
            failed: kills.failed,
            noticed: noticed.len(),
            recovered: recovered.len(),
            unrecovered,
            noticed_ms: Summary::of(noticed),
            recovery_ms: Summary::of(recovered),
            recovery_ms_each: each,
        },
        sigstop,
        restarts: log.count("snakepit.worker.process.restarting"),
        unexplained_exits,
        cold_start_ms,
        events: log.counts,
        telemetry_lagged: log.lagged,
        settled,
        shutdown_ms: ms(marks.shutdown_ended - marks.shutdown_started),
        python_processes_left: left,
        goals,
        timeline,
    }
}

fn print_table(r: &Report) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let c = &r.config;
    let p = &c.restart_policy;
    println!(
        "\nchaos: {} {} workers, {} s, SIGKILL every {} ms, {} callers, call timeout {} ms, seed {}",
        c.workers,
        c.profile,
        c.duration_s,
        c.kill_interval_ms,
        c.concurrency,
        c.call_timeout_ms,
        c.seed
    );
    println!(
        "restart policy ({}): max {} restarts in {} ms, backoff {}..{} ms",
        c.max_restarts_from,
        p.max_restarts,
        p.restart_window_ms,
        p.backoff_initial_ms,
        p.backoff_max_ms
    );
    if r.interrupted {
        println!("(interrupted before the end of the run)");
    }

    let q = &r.requests;
    println!("\nrequests");
    println!("  {:<26} {:>10}", "sent", q.sent);
    println!("  {:<26} {:>10}", "ok", q.ok);
    println!("  {:<26} {:>10}", "wrong", q.wrong);
    for (label, n) in &q.errors {
        println!("  {:<26} {:>10}", format!("error: {label}"), n);
    }
    println!("  {:<26} {:>10}", "lost", q.lost);
    println!("  {:<26} {:>10}", "hung", q.hung);
    println!(
        "  {:<26} {:>10}",
        "idempotent sent / ok",
        format!("{} / {}", q.idempotent.sent, q.idempotent.ok)
    );
    for (label, n) in &q.idempotent.errors {
        println!("  {:<26} {:>10}", format!("idempotent: {label}"), n);
    }
    println!(
        "  {:<26} {:>10}",
        "latency p50 / p99 / max",
        format!(
            "{} / {} / {} ms",
            opt(q.latency_ms.median),
            opt(q.latency_ms.p99),
            opt(q.latency_ms.max)
        )
    );
    println!(
        "  {:<10} {:>8} {:>8} {:>6} {:>7} {:>5} {:>5}",
        "by kind", "sent", "ok", "wrong", "errors", "lost", "hung"
    );
    for (kind, k) in &q.by_kind {
        println!(
            "  {:<10} {:>8} {:>8} {:>6} {:>7} {:>5} {:>5}",
            kind, k.sent, k.ok, k.wrong, k.errors, k.lost, k.hung
        );
    }
    for (label, message) in &q.error_examples {
        println!("  e.g. {label}: {message}");
    }
    for why in &q.wrong_examples {
        println!("  wrong: {why}");
    }

    let k = &r.kills;
    println!("\nkills");
    println!("  {:<26} {:>10}", "SIGKILLs sent", k.count);
    if k.skipped_no_ready_worker > 0 || k.failed > 0 {
        println!(
            "  {:<26} {:>10}",
            "skipped (none ready) / failed",
            format!("{} / {}", k.skipped_no_ready_worker, k.failed)
        );
    }
    println!(
        "  {:<26} {:>10}",
        "noticed / recovered",
        format!("{} / {}", k.noticed, k.recovered)
    );
    println!(
        "  {:<26} {:>10}",
        "kill -> exit seen",
        format!(
            "median {} / worst {} ms",
            opt(k.noticed_ms.median),
            opt(k.noticed_ms.max)
        )
    );
    println!(
        "  {:<26} {:>10}",
        "kill -> full strength",
        format!(
            "median {} / worst {} ms",
            opt(k.recovery_ms.median),
            opt(k.recovery_ms.max)
        )
    );
    println!("  {:<26} {:>10}", "restarts", r.restarts);
    println!("  {:<26} {:>10}", "unexplained exits", r.unexplained_exits);
    if let Some(s) = &r.sigstop {
        println!(
            "  {:<26} {:>10}",
            format!("SIGSTOP pid {} at {:.1} s", s.pid, s.after_s),
            match (s.detected_after_ms, s.exited_after_ms) {
                (Some(ms), _) => format!(
                    "detected after {ms:.1} ms ({})",
                    s.exit_cause.unwrap_or("?")
                ),
                (None, Some(ms)) => format!("not detected; ended at shutdown after {ms:.1} ms"),
                (None, None) => "never detected".to_string(),
            }
        );
    }

    let cs = &r.cold_start_ms;
    println!("\ncold start (spawn -> Hello)");
    for (name, s) in [("boot", &cs.boot), ("during chaos", &cs.during_chaos)] {
        println!(
            "  {:<26} {:>10}",
            name,
            format!(
                "n={} min {} / median {} / max {} ms",
                s.count,
                opt(s.min),
                opt(s.median),
                opt(s.max)
            )
        );
    }

    println!("\nevents");
    for (name, n) in &r.events {
        println!("  {name:<40} {n:>8}");
    }
    if r.telemetry_lagged > 0 {
        println!(
            "  {:<40} {:>8}",
            "(missed: watcher lagged)", r.telemetry_lagged
        );
    }

    println!("\nshutdown");
    println!(
        "  {:<26} {:>10}",
        "full strength before",
        if r.settled { "yes" } else { "no" }
    );
    println!(
        "  {:<26} {:>10}",
        "took",
        format!("{:.1} ms", r.shutdown_ms)
    );
    println!(
        "  {:<26} {:>10}",
        "python processes left", r.python_processes_left
    );

    let g = &r.goals;
    println!(
        "\ngoals: lost == 0: {}; hung == 0: {}; wrong == 0: {}; worst recovery <= 1.5 s: {}; \
         processes left == 0: {}",
        met(g.lost_zero),
        met(g.hung_zero),
        met(g.wrong_zero),
        met(g.worst_recovery_le_1500ms),
        met(g.processes_left_zero)
    );
}
