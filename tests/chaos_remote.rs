//! `snakepit chaos --remote` end to end: the built binary runs the pool on
//! two node agents (its own child processes), SIGKILLs workers every 500 ms
//! and an agent every 2 s (starting a replacement each time), and must lose
//! no request, hang none, answer none wrongly, answer the calls of every
//! killed agent within the liveness timeout + 100 ms, and leave neither a
//! Python worker nor an agent behind (the 1.5 s recovery goal of worker
//! kills is reported, not asserted, as in tests/chaos.rs). A second run freezes agents instead
//! (SIGSTOP, then SIGCONT): the host must detach them by their silence and
//! they must reconnect.
//!
//! The runs take turns: two at once on a 2-core machine would measure the
//! machine.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{chaos_report, count};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// No process carrying the run's marker is alive.
fn assert_nothing_left(report: &Value, ctx: &str) {
    assert_eq!(count(report, "/python_processes_left"), 0, "{ctx}");
    assert_eq!(count(report, "/remote/agent_processes_left"), 0, "{ctx}");
    let marker = report["remote"]["process_marker"]
        .as_str()
        .expect("process_marker");
    let (key, value) = marker.split_once('=').expect("NAME=VALUE");
    let alive: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| common::read_env(pid, key).as_deref() == Some(value))
        .filter(|&pid| common::pid_alive(pid))
        .collect();
    assert!(
        alive.is_empty(),
        "processes of the run alive: {alive:?}: {ctx}"
    );
}

#[test]
fn remote_chaos_kills_agents_and_loses_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let out = common::run_snakepit(
        &[
            "chaos",
            "--remote",
            "--duration",
            "6",
            "--agents",
            "2",
            "--workers",
            "2",
            "--kill-interval",
            "500",
            "--agent-kill-interval",
            "2000",
            "--liveness-timeout",
            "1500",
            "--json",
        ],
        Duration::from_secs(55),
    );
    let (report, ctx) = chaos_report(&out);
    // Every goal met (exit 0) — but for the 1.5 s worker recovery, which on
    // a loaded 2-core machine is the tool's business to report (as in
    // tests/chaos.rs), not this test's to gate on: then exit 1 is allowed
    // as long as every other goal, the agent kill one included, was met.
    let goals = report["goals"].as_object().expect("goals");
    let unmet: Vec<&String> = goals
        .iter()
        .filter(|(name, met)| *name != "all_met" && **met != Value::Bool(true))
        .map(|(name, _)| name)
        .collect();
    match out.status.code() {
        Some(0) => assert!(unmet.is_empty(), "{ctx}"),
        Some(1) => assert_eq!(unmet, ["worst_recovery_le_1500ms"], "{ctx}"),
        _ => panic!("unexpected exit: {ctx}"),
    }

    assert_eq!(count(&report, "/requests/lost"), 0, "{ctx}");
    assert_eq!(count(&report, "/requests/hung"), 0, "{ctx}");
    assert_eq!(count(&report, "/requests/wrong"), 0, "{ctx}");
    assert!(count(&report, "/requests/sent") > 100, "{ctx}");
    assert!(count(&report, "/kills/count") > 0, "{ctx}");

    let agent_kills = count(&report, "/remote/agent_kills");
    assert!(agent_kills > 0, "no agent was killed: {ctx}");
    assert_eq!(
        count(&report, "/remote/agent_restarts"),
        agent_kills,
        "{ctx}"
    );
    assert_eq!(
        count(&report, "/remote/kills_noticed"),
        agent_kills,
        "{ctx}"
    );
    assert_eq!(
        count(&report, "/remote/timeouts_after_agent_kill"),
        0,
        "{ctx}"
    );
    // The two first agents and a replacement for every kill attached.
    assert!(count(&report, "/remote/attached") > agent_kills, "{ctx}");
    assert_eq!(
        report["goals"]["agent_kill_answered_le_liveness_plus_100ms"],
        Value::Bool(true),
        "{ctx}"
    );

    assert_nothing_left(&report, &ctx);
    assert!(started.elapsed() < Duration::from_secs(60), "{ctx}");
}

#[test]
fn remote_chaos_frozen_agents_are_detached_and_reconnect() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = common::run_snakepit(
        &[
            "chaos",
            "--remote",
            "--duration",
            "6",
            "--agents",
            "2",
            "--workers",
            "2",
            "--kill-interval",
            "1000",
            "--agent-fault",
            "freeze",
            "--agent-kill-interval",
            "2000",
            "--liveness-timeout",
            "1000",
            "--json",
        ],
        Duration::from_secs(55),
    );
    let (report, ctx) = chaos_report(&out);
    // 1: a goal was not met, maybe only a timing one (a frozen agent's
    // calls answered later than the liveness timeout + 100 ms, a recovery
    // slower than 1.5 s while an agent was frozen); not this test's to gate.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "unexpected exit: {ctx}"
    );

    assert_eq!(count(&report, "/requests/lost"), 0, "{ctx}");
    assert_eq!(count(&report, "/requests/hung"), 0, "{ctx}");
    assert_eq!(count(&report, "/requests/wrong"), 0, "{ctx}");
    let freezes = count(&report, "/remote/agent_freezes");
    assert!(freezes > 0, "no agent was frozen: {ctx}");
    assert_eq!(count(&report, "/remote/agent_kills"), 0, "{ctx}");
    // The host found every frozen agent by its silence, and no call on one
    // waited for its call timeout.
    assert_eq!(count(&report, "/remote/kills_noticed"), freezes, "{ctx}");
    assert_eq!(count(&report, "/remote/detached/timeout"), freezes, "{ctx}");
    assert_eq!(
        count(&report, "/remote/timeouts_after_agent_kill"),
        0,
        "{ctx}"
    );
    // The first freeze (at 2 s) is thawed at 4 s and attaches again.
    assert!(count(&report, "/remote/reconnects_seen") >= 1, "{ctx}");
    assert_nothing_left(&report, &ctx);
}
