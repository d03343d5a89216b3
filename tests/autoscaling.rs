//! Autoscaled pools with real workers (`fixtures/scaling.py`): a pool with
//! `min_size`/`max_size` grows under a burst and shrinks back once idle,
//! scales from none for its first call, and warms workers up before they
//! count as ready.

mod common;

use std::time::{Duration, Instant};

use futures::future::join_all;
use snakepit::{Call, Event, PoolConfig, PoolHandle};

use common::{fixture_pool, poll_status_within, start};

fn scaling(name: &str, min: usize, max: usize) -> PoolConfig {
    let mut cfg = fixture_pool(name, "scaling.ScalingAdapter", 1);
    cfg.min_size = Some(min);
    cfg.max_size = Some(max);
    cfg.scale_up_wait = Duration::from_millis(50);
    cfg.idle_timeout = Duration::from_millis(800);
    cfg.pipeline_depth = 0;
    cfg
}

async fn work(pool: &PoolHandle, ms: i64) -> i64 {
    let v = pool
        .execute(Call::new("work").kwarg("ms", ms))
        .await
        .expect("work succeeds");
    i64::try_from(v).unwrap()
}

/// The scaling decisions since `events` was subscribed, as (from, to, reason).
fn scalings(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::PoolScaled(s) = event {
            out.push((s.from, s.to, s.reason.to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_grows_the_pool_to_max_and_idling_shrinks_it_back() {
    let mut s = start(scaling("burst", 1, 4)).await;
    let pool = s.sp.pool("burst").unwrap().clone();
    let status = pool.status().await.unwrap();
    assert_eq!((status.size, status.workers_up), (1, 1));
    assert_eq!((status.min_size, status.max_size), (Some(1), Some(4)));

    // 40 calls of 100 ms at once: 4 s of work for one worker.
    let started = Instant::now();
    let burst = {
        let pool = pool.clone();
        tokio::spawn(async move { join_all((0..40).map(|_| work(&pool, 100))).await })
    };
    poll_status_within(&pool, Duration::from_secs(5), |st| st.workers_up == 4).await;
    let grew = started.elapsed();
    let pids = burst.await.unwrap();
    let distinct: std::collections::HashSet<_> = pids.iter().collect();
    assert_eq!(pids.len(), 40, "no call lost");
    assert!(
        distinct.len() >= 3,
        "the new workers took calls: {distinct:?}"
    );
    assert!(grew < Duration::from_secs(4), "grew to 4 in {grew:?}");

    // A long call keeps its worker through the scale-down.
    let long = {
        let pool = pool.clone();
        tokio::spawn(async move { work(&pool, 2500).await })
    };
    let idle = Instant::now();
    let st = poll_status_within(&pool, Duration::from_secs(5), |st| st.size == 1).await;
    assert!(
        idle.elapsed() < Duration::from_millis(800 + 1500),
        "shrank in {:?}",
        idle.elapsed()
    );
    assert_eq!(st.workers.iter().filter(|w| w.ready).count(), 1, "{st:?}");
    let survivor = long.await.unwrap();
    assert!(
        st.workers.iter().any(|w| w.pid == Some(survivor as u32)),
        "the busy worker stayed"
    );

    let scaled = scalings(&mut s.events);
    assert!(
        scaled
            .iter()
            .any(|(from, to, reason)| *from == 1 && *to > 1 && reason == "queue_wait"),
        "{scaled:?}"
    );
    assert!(
        scaled
            .iter()
            .any(|(_, to, reason)| *to == 1 && reason == "idle"),
        "{scaled:?}"
    );
    assert!(
        scaled.iter().all(|(_, to, _)| (1..=4).contains(to)),
        "{scaled:?}"
    );
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_size_zero_starts_a_worker_for_the_first_call_and_none_remain_when_idle() {
    let mut cfg = scaling("cold", 0, 2);
    cfg.queue_timeout = Duration::from_secs(20);
    let mut s = start(cfg).await;
    let pool = s.sp.pool("cold").unwrap().clone();
    let st = pool.status().await.unwrap();
    assert_eq!((st.size, st.workers_up, st.workers.len()), (0, 0, 0));
    // The first call waits for a worker to start (and warm up).
    let pid = work(&pool, 1).await;
    assert!(common::pid_alive(pid as u32));
    let scaled = scalings(&mut s.events);
    assert_eq!(
        scaled.first(),
        Some(&(0, 1, "cold_start".to_string())),
        "{scaled:?}"
    );
    // Idle past the timeout: back to none, its process gone.
    poll_status_within(&pool, Duration::from_secs(5), |st| {
        st.size == 0 && st.workers.is_empty()
    })
    .await;
    common::wait_gone(pid as u32, Duration::from_secs(5), "the idle worker").await;
    // And again.
    assert!(work(&pool, 1).await > 0);
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_runs_before_a_worker_counts_as_ready_and_prestart_keeps_a_spare() {
    let mut cfg = scaling("warm", 0, 3);
    cfg.prestart = 1;
    let mut s = start(cfg).await;
    let pool = s.sp.pool("warm").unwrap().clone();
    let ready = common::wait_event(&mut s.events, Duration::from_secs(20), |e| {
        matches!(e, Event::WorkerReady(_))
    })
    .await;
    let Event::WorkerReady(ready) = ready else {
        unreachable!()
    };
    assert!(
        ready.startup >= Duration::from_millis(300),
        "warmup counted: {:?}",
        ready.startup
    );
    let warmed = pool.execute(Call::new("warmed")).await.unwrap();
    assert!(
        f64::try_from(warmed).unwrap() > 0.0,
        "warmup ran in the worker"
    );
    // One call keeps a worker busy: prestart asks for a spare beside it.
    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move { work(&pool, 1500).await })
    };
    poll_status_within(&pool, Duration::from_secs(5), |st| {
        st.size == 2 && st.workers_up == 2
    })
    .await;
    busy.await.unwrap();
    s.sp.shutdown().await;
}

#[test]
fn autoscaling_settings_are_checked() {
    let mut cfg = PoolConfig::named("p");
    cfg.min_size = Some(3);
    assert!(cfg.validate().is_err(), "min_size without max_size");
    cfg.max_size = Some(2);
    assert!(cfg.validate().is_err(), "min_size above max_size");
    cfg.max_size = Some(4);
    cfg.validate().unwrap();
    cfg.prestart = 5;
    assert!(cfg.validate().is_err(), "prestart above max_size");
    let toml = r#"
        name = "t"
        min_size = 0
        max_size = 4
        scale_up_wait_ms = 50
        idle_timeout_ms = 2000
        prestart = 1
    "#;
    let cfg: PoolConfig = toml::from_str(toml).unwrap();
    assert_eq!(cfg.autoscale(), Some((0, 4)));
    assert_eq!(cfg.scale_up_wait, Duration::from_millis(50));
    assert_eq!(cfg.idle_timeout, Duration::from_secs(2));
    assert_eq!(cfg.prestart, 1);
}

/// `snakepit status` shows an autoscaled pool's target and its bounds.
#[test]
fn status_shows_the_target_and_the_bounds() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("scaled.toml");
    std::fs::write(
        &config,
        "[[pools]]\nname = \"scaled\"\nmin_size = 1\nmax_size = 3\nidle_timeout_ms = 60000\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = common::run_snakepit(
        &["--config", config, "status", "--json"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool = &report["pools"][0];
    assert_eq!(pool["name"], "scaled", "{report}");
    assert_eq!(
        (pool["size"].as_u64(), pool["workers_up"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(pool["autoscale"], serde_json::json!([1, 3]), "{report}");
    let out = common::run_snakepit(&["--config", config, "status"], Duration::from_secs(60));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("pool scaled: 1/1 workers up (target 1, autoscaled 1..3)"),
        "{table}"
    );
}
