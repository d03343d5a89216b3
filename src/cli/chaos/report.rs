//! The report: what the run measured, as JSON, and the goals it checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use snakepit::{Profile, RestartPolicy};

use super::ChaosArgs;
use super::events::{EventLog, Ready};
use super::faults::{Frozen, KillLog};
use super::load::{IdempotentStats, KindStats, Stats};

/// Goal for the worst time from a kill until the pool is at full strength.
const RECOVERY_GOAL: Duration = Duration::from_millis(1500);

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) config: ConfigReport,
    pub(super) interrupted: bool,
    pub(super) requests: RequestsReport,
    pub(super) kills: KillsReport,
    pub(super) sigstop: Option<SigstopReport>,
    /// `WorkerRestarting` events.
    pub(super) restarts: u64,
    /// Exits the pool reported that no kill of ours explains (not counting shutdown).
    pub(super) unexplained_exits: u64,
    pub(super) cold_start_ms: ColdStartReport,
    pub(super) events: BTreeMap<&'static str, u64>,
    pub(super) telemetry_lagged: u64,
    /// Whether the pool was at full strength again after the kills stopped.
    pub(super) settled: bool,
    pub(super) shutdown_ms: f64,
    pub(super) python_processes_left: usize,
    pub(super) goals: Goals,
    /// Every event but request starts and stops, and the run's own actions,
    /// in seconds since the load started.
    pub(super) timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize)]
pub(super) struct TimelineEntry {
    t_s: f64,
    what: String,
    detail: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ConfigReport {
    pub(super) workers: usize,
    pub(super) profile: &'static str,
    pub(super) duration_s: u64,
    pub(super) kill_interval_ms: u64,
    pub(super) concurrency: usize,
    pub(super) call_timeout_ms: u64,
    pub(super) stop_one: bool,
    pub(super) seed: u64,
    pub(super) restart_policy: RestartPolicy,
    /// `default` (enough for the planned kills) or `--max-restarts`.
    pub(super) max_restarts_from: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct RequestsReport {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) wrong: u64,
    pub(super) errors: BTreeMap<&'static str, u64>,
    pub(super) lost: u64,
    pub(super) hung: u64,
    pub(super) by_kind: BTreeMap<&'static str, KindStats>,
    pub(super) idempotent: IdempotentStats,
    pub(super) latency_ms: Summary,
    pub(super) error_examples: BTreeMap<&'static str, String>,
    pub(super) wrong_examples: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct KillsReport {
    pub(super) count: usize,
    pub(super) skipped_no_ready_worker: u64,
    pub(super) failed: u64,
    /// Kills whose exit the pool reported.
    pub(super) noticed: usize,
    /// Kills after which the pool was seen at full strength.
    pub(super) recovered: usize,
    unrecovered: usize,
    /// From the kill to the pool's `WorkerExited` for that pid.
    pub(super) noticed_ms: Summary,
    /// From the kill to the pool at full strength.
    pub(super) recovery_ms: Summary,
    /// Each kill's recovery, in order (null when not seen).
    recovery_ms_each: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub(super) struct SigstopReport {
    pub(super) pid: u32,
    pub(super) after_s: f64,
    /// From SIGSTOP to the pool reporting the pid gone before shutdown began
    /// (null: not detected while the runtime ran).
    pub(super) detected_after_ms: Option<f64>,
    /// From SIGSTOP to the pool reporting the pid gone, shutdown included.
    pub(super) exited_after_ms: Option<f64>,
    /// The cause the pool gave for that exit.
    pub(super) exit_cause: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub(super) struct ColdStartReport {
    /// Workers started at boot, on an idle machine.
    pub(super) boot: Summary,
    /// Replacement workers started under load.
    pub(super) during_chaos: Summary,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct Summary {
    pub(super) count: usize,
    pub(super) min: Option<f64>,
    pub(super) median: Option<f64>,
    pub(super) p99: Option<f64>,
    pub(super) max: Option<f64>,
}

impl Summary {
    pub(super) fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let at = |p: f64| (!samples.is_empty()).then(|| ms(crate::cli::percentile(&samples, p)));
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
pub(super) struct Goals {
    pub(super) lost_zero: bool,
    pub(super) hung_zero: bool,
    pub(super) wrong_zero: bool,
    /// Every kill recovered, the worst within 1.5 s.
    pub(super) worst_recovery_le_1500ms: bool,
    pub(super) processes_left_zero: bool,
    /// All of the above, and the run was not interrupted.
    pub(super) all_met: bool,
}

pub(super) struct ReportInput<'a> {
    pub(super) args: &'a ChaosArgs,
    pub(super) seed: u64,
    pub(super) restart: RestartPolicy,
    pub(super) interrupted: bool,
    pub(super) stats: Stats,
    pub(super) lost: u64,
    pub(super) kills: KillLog,
    pub(super) sigstop: Option<Frozen>,
    pub(super) log: EventLog,
    pub(super) size: usize,
    pub(super) marks: Marks,
    pub(super) settled: bool,
    pub(super) left: usize,
}

/// When the phases of the run began and ended.
pub(super) struct Marks {
    pub(super) load_started: Instant,
    pub(super) load_stopped: Instant,
    pub(super) shutdown_started: Instant,
    pub(super) shutdown_ended: Instant,
}

pub(super) fn build_report(input: ReportInput<'_>) -> Report {
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
