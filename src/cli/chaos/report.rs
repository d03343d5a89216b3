//! The report: what the run measured, as JSON, and the goals it checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use snakepit::{Profile, RestartPolicy};

use super::ChaosArgs;
use super::events::{EventLog, Ready};
use super::faults::{Frozen, KillLog};
use super::load::{IdempotentStats, KindStats, Stats};
use super::remote::{AgentKillLog, FleetEnd, MARKER_ENV, agent_of};

/// Goal for the worst time from a kill until the pool is at full strength.
const RECOVERY_GOAL: Duration = Duration::from_millis(1500);
/// Goal for the worst time from an agent kill until every call it ran was
/// answered: the liveness timeout plus this.
const AGENT_ANSWER_SLACK: Duration = Duration::from_millis(100);

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
    /// Only with `--remote`: the agents and what their kills did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) remote: Option<RemoteReport>,
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
pub(super) struct RemoteReport {
    /// Agents running at once.
    pub(super) agents: usize,
    /// Workers each agent may run.
    pub(super) seats_per_agent: u32,
    pub(super) heartbeat_ms: u64,
    pub(super) liveness_timeout_ms: u64,
    pub(super) agent_kill_interval_ms: u64,
    /// `kill`, `freeze` or `both` (`--agent-fault`).
    pub(super) agent_fault: &'static str,
    /// `NAME=VALUE` in the environment of every agent and worker of the run.
    pub(super) process_marker: String,
    /// SIGKILLs of an agent process.
    pub(super) agent_kills: usize,
    /// SIGSTOPs of an agent process (`--agent-fault freeze` or `both`).
    pub(super) agent_freezes: usize,
    /// Ticks when no agent was alive to be killed, or too late for a freeze.
    pub(super) agent_kills_skipped: u64,
    /// Replacement agents started after a kill.
    pub(super) agent_restarts: u64,
    /// Frozen agents SIGCONTed after their detach (each should reconnect).
    pub(super) agents_thawed: u64,
    /// Agents that exited without being killed (each was replaced too).
    pub(super) agents_exited_on_their_own: Vec<String>,
    pub(super) agent_spawn_failures: u64,
    /// `AgentAttached` events (the first attach of every agent included).
    pub(super) attached: usize,
    /// Attaches of an agent that had attached before (a reconnect).
    pub(super) reconnects_seen: usize,
    /// `AgentDetached` events by cause.
    pub(super) detached: BTreeMap<&'static str, u64>,
    /// Agent kills and freezes whose detach the host reported.
    pub(super) kills_noticed: usize,
    /// From an agent kill (or freeze) to the host's `AgentDetached` for it.
    pub(super) kill_to_detached_ms: Summary,
    /// From an agent kill (or freeze) until every call it ran was
    /// answered: the last of its workers' exits (which fail or requeue
    /// their calls) and of the calls failed naming one of its workers; a
    /// `timeout` of any call outstanding at the kill counts too.
    pub(super) kill_to_calls_answered_ms: Summary,
    /// The worst of that by fault (`sigkill`, `sigstop`).
    pub(super) worst_calls_answered_ms_by_fault: BTreeMap<&'static str, f64>,
    /// Calls that failed naming a worker of a killed agent.
    pub(super) calls_failed_on_killed_agents: u64,
    /// Calls outstanding at an agent kill that ended by their call timeout.
    pub(super) timeouts_after_agent_kill: u64,
    /// From an agent kill (or freeze) until the pool was at full strength again.
    pub(super) kill_to_full_strength_ms: Summary,
    /// Each kill and freeze, in order.
    pub(super) faults: Vec<AgentFaultReport>,
    /// Agents still running 5 s after the SIGTERM that ended the run.
    pub(super) agent_processes_left: usize,
    /// Where the agents' logs were kept (only when something was left).
    pub(super) agent_logs: Option<String>,
    #[serde(skip)]
    pub(super) answered_goal_met: bool,
}

/// One agent kill or freeze (times in ms from the signal; null: not seen).
#[derive(Debug, Serialize)]
pub(super) struct AgentFaultReport {
    agent: String,
    /// `sigkill` or `sigstop`.
    fault: &'static str,
    /// Seconds since the load started.
    at_s: f64,
    detached_ms: Option<f64>,
    /// Null: it ran no worker and no call failed on it.
    calls_answered_ms: Option<f64>,
    full_strength_ms: Option<f64>,
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
    /// Only with `--remote`: every agent kill was noticed and all the calls
    /// it ran were answered within the liveness timeout + 100 ms, none by
    /// its call timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) agent_kill_answered_le_liveness_plus_100ms: Option<bool>,
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
    pub(super) remote: Option<RemoteInput>,
}

/// What a `--remote` run adds.
pub(super) struct RemoteInput {
    pub(super) agents: usize,
    pub(super) seats: u32,
    pub(super) heartbeat: Duration,
    pub(super) liveness_timeout: Duration,
    pub(super) kill_interval: Duration,
    pub(super) fault: &'static str,
    pub(super) marker: String,
    pub(super) kills: AgentKillLog,
    pub(super) end: FleetEnd,
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
        remote,
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
    let mut moot = 0;
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
        // A kill that found its worker already gone (its agent died the
        // instant before) has nothing to recover from.
        if exit.is_none()
            && log
                .exits
                .iter()
                .any(|e| e.pid == kill.pid && e.at < kill.at)
        {
            moot += 1;
        }
        each.push(full.map(|full| ms(full - kill.at)));
    }
    let unrecovered = kills.kills.len() - recovered.len() - moot;
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
    let killed_agent = |worker: &str| {
        remote.as_ref().is_some_and(|r| {
            agent_of(worker).is_some_and(|a| r.kills.kills.iter().any(|k| k.agent == a))
        })
    };
    let explained = |pid: u32, worker: &str| {
        kills.kills.iter().any(|k| k.pid == pid)
            || sigstop.as_ref().is_some_and(|s| s.pid == pid)
            || killed_agent(worker)
    };
    let unexplained_exits = log
        .exits
        .iter()
        .filter(|e| e.cause != "shutdown" && !explained(e.pid, &e.worker))
        .count() as u64;
    // The first moment at or after `from` that the pool was at full strength.
    let full_after = |from: Instant, up: usize| {
        if up >= size {
            Some(from)
        } else {
            log.readies
                .iter()
                .find(|r| r.at >= from && r.workers_up >= size)
                .map(|r| r.at)
        }
    };
    let agent_kill_marks: Vec<(Instant, &str, String)> = remote
        .iter()
        .flat_map(|r| &r.kills.kills)
        .map(|k| (k.at, k.fault, format!("agent {} pid {}", k.agent, k.pid)))
        .collect();
    let remote = remote.map(|r| {
        remote_report(
            r,
            &log,
            &stats,
            marks.load_started,
            marks.shutdown_started,
            full_after,
        )
    });

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
    for (at, fault, detail) in agent_kill_marks {
        mark(at, &format!("chaos.agent.{fault}"), detail);
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
        let processes_left_zero =
            left == 0 && remote.as_ref().is_none_or(|r| r.agent_processes_left == 0);
        let agent_goal = remote.as_ref().map(|r| r.answered_goal_met);
        Goals {
            lost_zero,
            hung_zero,
            wrong_zero,
            worst_recovery_le_1500ms,
            processes_left_zero,
            agent_kill_answered_le_liveness_plus_100ms: agent_goal,
            all_met: lost_zero
                && hung_zero
                && wrong_zero
                && worst_recovery_le_1500ms
                && processes_left_zero
                && agent_goal != Some(false)
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
        remote,
        goals,
        timeline,
    }
}

/// The remote section: what each agent kill did, from the kill log, the
/// telemetry and the callers' failures.
fn remote_report(
    r: RemoteInput,
    log: &EventLog,
    stats: &Stats,
    load_started: Instant,
    shutdown_started: Instant,
    full_after: impl Fn(Instant, usize) -> Option<Instant>,
) -> RemoteReport {
    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
    let mut detached_after = Vec::new();
    let mut answered = Vec::new();
    let mut worst_by_fault = BTreeMap::<&'static str, f64>::new();
    let mut faults = Vec::new();
    let mut full = Vec::new();
    let mut failed_on_killed = 0u64;
    let mut timeouts = 0u64;
    for kill in &r.kills.kills {
        // A frozen agent attaches again under its id once thawed: what
        // happens to it from then on is not this fault's doing.
        let until = log
            .attached
            .iter()
            .find(|(at, agent, _)| *agent == kill.agent && *at > kill.at)
            .map_or(shutdown_started, |(at, ..)| (*at).min(shutdown_started));
        let detached_at = log
            .detached
            .iter()
            .find(|(at, agent, _)| *agent == kill.agent && *at >= kill.at && *at < until)
            .map(|(at, ..)| *at);
        if let Some(at) = detached_at {
            detached_after.push(at - kill.at);
        }
        // Its workers' exits: the host failed (or requeued) their calls then.
        let exits: Vec<_> = log
            .exits
            .iter()
            .filter(|e| {
                e.at >= kill.at && e.at < until && agent_of(&e.worker) == Some(kill.agent.as_str())
            })
            .collect();
        let outstanding = |f: &&super::load::Failure| f.started <= kill.at && f.ended >= kill.at;
        let on_it: Vec<_> = stats
            .failures
            .iter()
            .filter(outstanding)
            .filter(|f| f.agent.as_deref() == Some(kill.agent.as_str()) && f.ended < until)
            .collect();
        let timed_out: Vec<_> = stats
            .failures
            .iter()
            .filter(outstanding)
            .filter(|f| f.label == "timeout")
            .collect();
        failed_on_killed += on_it.len() as u64;
        timeouts += timed_out.len() as u64;
        let last = exits
            .iter()
            .map(|e| e.at)
            .chain(on_it.iter().chain(&timed_out).map(|f| f.ended))
            .max();
        if let Some(t) = last {
            answered.push(t - kill.at);
            let worst = worst_by_fault.entry(kill.fault).or_default();
            *worst = worst.max(ms(t - kill.at));
        }
        let (from, up) = exits
            .last()
            .map_or((kill.at, usize::MAX), |e| (e.at, e.workers_up));
        let full_at = full_after(from, up);
        if let Some(t) = full_at {
            full.push(t - kill.at);
        }
        faults.push(AgentFaultReport {
            agent: kill.agent.clone(),
            fault: kill.fault,
            at_s: (kill
                .at
                .saturating_duration_since(load_started)
                .as_secs_f64()
                * 1e3)
                .round()
                / 1e3,
            detached_ms: detached_at.map(|t| ms(t - kill.at)),
            calls_answered_ms: last.map(|t| ms(t - kill.at)),
            full_strength_ms: full_at.map(|t| ms(t - kill.at)),
        });
    }
    let mut detached = BTreeMap::new();
    for (_, _, cause) in &log.detached {
        *detached.entry(*cause).or_default() += 1;
    }
    let bound = r.liveness_timeout + AGENT_ANSWER_SLACK;
    let answered_goal_met = detached_after.len() == r.kills.kills.len()
        && timeouts == 0
        && answered.iter().all(|d| *d <= bound);
    RemoteReport {
        agents: r.agents,
        seats_per_agent: r.seats,
        heartbeat_ms: r.heartbeat.as_millis() as u64,
        liveness_timeout_ms: r.liveness_timeout.as_millis() as u64,
        agent_kill_interval_ms: r.kill_interval.as_millis() as u64,
        agent_fault: r.fault,
        process_marker: format!("{MARKER_ENV}={}", r.marker),
        agent_kills: r
            .kills
            .kills
            .iter()
            .filter(|k| k.fault == "sigkill")
            .count(),
        agent_freezes: r
            .kills
            .kills
            .iter()
            .filter(|k| k.fault == "sigstop")
            .count(),
        agent_kills_skipped: r.kills.skipped,
        agent_restarts: r.kills.restarts,
        agents_thawed: r.kills.thawed,
        agents_exited_on_their_own: r.kills.exited_on_their_own,
        agent_spawn_failures: r.kills.spawn_failures,
        attached: log.attached.len(),
        reconnects_seen: log.attached.iter().filter(|(_, _, n)| *n > 0).count(),
        detached,
        kills_noticed: detached_after.len(),
        kill_to_detached_ms: Summary::of(detached_after),
        kill_to_calls_answered_ms: Summary::of(answered),
        worst_calls_answered_ms_by_fault: worst_by_fault,
        calls_failed_on_killed_agents: failed_on_killed,
        timeouts_after_agent_kill: timeouts,
        kill_to_full_strength_ms: Summary::of(full),
        faults,
        agent_processes_left: r.end.agents_left,
        agent_logs: r.end.logs.map(|p| p.display().to_string()),
        answered_goal_met,
    }
}
