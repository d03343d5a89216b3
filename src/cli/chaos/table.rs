//! The report as the table `snakepit chaos` prints without `--json`.

use super::report::{Report, Summary};

/// One line: `label   median M / worst W ms`.
fn spread(label: &str, s: &Summary) {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    println!(
        "  {:<26} {:>10}",
        label,
        format!("median {} / worst {} ms", opt(s.median), opt(s.max))
    );
}

pub(super) fn print_table(r: &Report) {
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
        p.restart_window.as_millis(),
        p.backoff_initial.as_millis(),
        p.backoff_max.as_millis()
    );
    if let Some(a) = &r.remote {
        println!(
            "remote: {} agents x {} seats, heartbeat {} ms, liveness timeout {} ms, \
             agent fault ({}) every {} ms",
            a.agents,
            a.seats_per_agent,
            a.heartbeat_ms,
            a.liveness_timeout_ms,
            a.agent_fault,
            a.agent_kill_interval_ms
        );
    }
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
    spread("kill -> exit seen", &k.noticed_ms);
    spread("kill -> full strength", &k.recovery_ms);
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

    if let Some(a) = &r.remote {
        println!("\nagents");
        println!("  {:<26} {:>10}", "agent SIGKILLs sent", a.agent_kills);
        if a.agent_freezes > 0 {
            println!("  {:<26} {:>10}", "agent SIGSTOPs sent", a.agent_freezes);
        }
        if a.agent_kills_skipped > 0 || a.agent_spawn_failures > 0 {
            println!(
                "  {:<26} {:>10}",
                "skipped / spawn failures",
                format!("{} / {}", a.agent_kills_skipped, a.agent_spawn_failures)
            );
        }
        println!("  {:<26} {:>10}", "agent restarts", a.agent_restarts);
        if a.agent_freezes > 0 {
            println!("  {:<26} {:>10}", "agents thawed", a.agents_thawed);
        }
        if !a.agents_exited_on_their_own.is_empty() {
            println!(
                "  {:<26} {:>10}",
                "exited on their own",
                a.agents_exited_on_their_own.join(", ")
            );
        }
        println!(
            "  {:<26} {:>10}",
            "attached / reconnects",
            format!("{} / {}", a.attached, a.reconnects_seen)
        );
        for (cause, n) in &a.detached {
            println!("  {:<26} {:>10}", format!("detached: {cause}"), n);
        }
        println!(
            "  {:<26} {:>10}",
            "faults noticed",
            format!("{} / {}", a.kills_noticed, a.agent_kills + a.agent_freezes)
        );
        spread("kill -> detached", &a.kill_to_detached_ms);
        spread("kill -> calls answered", &a.kill_to_calls_answered_ms);
        if a.agent_freezes > 0 {
            for (fault, worst) in &a.worst_calls_answered_ms_by_fault {
                println!(
                    "  {:<26} {:>10}",
                    format!("  worst after {fault}"),
                    format!("{worst:.1} ms")
                );
            }
        }
        println!(
            "  {:<26} {:>10}",
            "calls failed on them", a.calls_failed_on_killed_agents
        );
        println!(
            "  {:<26} {:>10}",
            "timeouts after a kill", a.timeouts_after_agent_kill
        );
        spread("kill -> full strength", &a.kill_to_full_strength_ms);
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
    if let Some(a) = &r.remote {
        println!(
            "  {:<26} {:>10}",
            "agent processes left", a.agent_processes_left
        );
        println!("  (agents and workers carried {})", a.process_marker);
        if let Some(logs) = &a.agent_logs {
            println!("  agents' logs kept in {logs}");
        }
    }

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
    if let (Some(a), Some(ok)) = (&r.remote, g.agent_kill_answered_le_liveness_plus_100ms) {
        println!(
            "       agent kill -> calls answered <= {} ms: {}",
            a.liveness_timeout_ms + 100,
            met(ok)
        );
    }
}
