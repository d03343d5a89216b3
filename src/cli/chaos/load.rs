//! The load: what each request asks and must get back, the callers that
//! send requests until told to stop, and the tally of what they saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;
use snakepit::{Call, Error, PoolHandle, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::remote::agent_of;

/// An answer later than its deadline by more than this is "hung".
const HUNG_SLACK: Duration = Duration::from_secs(1);
/// A caller pauses this long after an error before its next request, as a
/// client backing off would: a pool that refuses everything at once (degraded,
/// no worker up) is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Wrong answers described in the report, at most.
const WRONG_EXAMPLES: usize = 5;
/// Failed requests kept with their times, at most.
const FAILURES_MAX: usize = 200_000;

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
    pub(super) fn random(rng: &mut StdRng) -> Self {
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

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Plan::Echo(_) => "echo",
            Plan::Add(..) => "add",
            Plan::Progress { .. } => "progress",
            Plan::Sleep(_) => "sleep",
        }
    }

    pub(super) fn call(&self) -> Call {
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
    /// Its label, message, and the agent of the worker it names (remote).
    Error(&'static str, String, Option<String>),
}

impl Outcome {
    fn of_error(err: &Error) -> Self {
        let agent = match err {
            Error::WorkerCrashed { worker, .. } => agent_of(worker).map(str::to_string),
            _ => None,
        };
        Outcome::Error(err.outcome(), err.to_string(), agent)
    }
}

/// A request that failed: when it was sent and answered, how, and the agent
/// of the worker the error names (remote workers only).
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) started: Instant,
    pub(super) ended: Instant,
    pub(super) label: &'static str,
    pub(super) agent: Option<String>,
}

/// A request a caller stopped waiting for when the load stopped.
pub(super) struct Pending {
    pub(super) kind: &'static str,
    pub(super) task: JoinHandle<bool>,
    /// Set by whoever accounts for the request first: its task when it
    /// answers, or the lost-request sweep.
    pub(super) claimed: Arc<AtomicBool>,
}

/// One caller: one request in flight at a time (and a short pause after an
/// error) until the load stops. Each request runs in its own task and records
/// itself when it finishes; the caller hands back the one it was waiting for
/// when the load stopped.
pub(super) async fn caller(
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
pub(super) struct KindStats {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) wrong: u64,
    pub(super) errors: u64,
    pub(super) lost: u64,
    pub(super) hung: u64,
}

/// Counters of the idempotent requests (a retry should turn their
/// `worker_crashed` errors into successes).
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct IdempotentStats {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) errors: BTreeMap<&'static str, u64>,
}

/// What callers saw, as counters: nothing per request is kept but its latency.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) wrong: u64,
    pub(super) hung: u64,
    pub(super) errors: BTreeMap<&'static str, u64>,
    pub(super) by_kind: BTreeMap<&'static str, KindStats>,
    pub(super) idempotent: IdempotentStats,
    /// Latency of every answered request, in microseconds.
    pub(super) latencies_us: Vec<u32>,
    /// The first error message of each kind.
    pub(super) error_examples: BTreeMap<&'static str, String>,
    pub(super) wrong_examples: Vec<String>,
    /// Every failed request (up to `FAILURES_MAX`), for what agent kills did.
    pub(super) failures: Vec<Failure>,
}

impl Stats {
    pub(super) fn kind(&mut self, kind: &'static str) -> &mut KindStats {
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
            Outcome::Error(label, message, agent) => {
                if self.failures.len() < FAILURES_MAX {
                    self.failures.push(Failure {
                        started,
                        ended,
                        label,
                        agent,
                    });
                }
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
