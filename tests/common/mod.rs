//! Shared helpers for the integration tests: pools of real Python workers,
//! telemetry waits with timeouts, fixture paths.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use snakepit::{Event, PoolConfig, Snakepit, Telemetry};
use tokio::sync::broadcast;

/// Absolute path of `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A showcase pool of `size` workers named `name`.
pub fn showcase(name: &str, size: usize) -> PoolConfig {
    let mut cfg = PoolConfig::named(name);
    cfg.size = size;
    // Restarts in tests should be quick.
    cfg.restart.backoff_initial_ms = 20;
    cfg.restart.backoff_max_ms = 200;
    cfg
}

/// A pool running `adapter` from `tests/fixtures`.
pub fn fixture_pool(name: &str, adapter: &str, size: usize) -> PoolConfig {
    let mut cfg = showcase(name, size);
    cfg.adapter = adapter.to_string();
    cfg.python_path = vec![fixtures_dir()];
    cfg
}

/// A started runtime with one pool, plus a telemetry receiver subscribed
/// before the first worker was spawned.
pub struct Started {
    pub sp: Snakepit,
    pub events: broadcast::Receiver<Event>,
}

pub async fn start(cfg: PoolConfig) -> Started {
    try_start(cfg).await.expect("runtime starts")
}

pub async fn try_start(cfg: PoolConfig) -> Result<Started, snakepit::Error> {
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let sp = Snakepit::builder()
        .telemetry(telemetry)
        .pool(cfg)
        .start()
        .await?;
    Ok(Started { sp, events })
}

/// Waits (at most `timeout`) for an event matching `pred`, skipping others.
pub async fn wait_event<F>(
    rx: &mut broadcast::Receiver<Event>,
    timeout: Duration,
    mut pred: F,
) -> Event
where
    F: FnMut(&Event) -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return ev,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("telemetry closed"),
            Err(_) => panic!("no matching event within {timeout:?}"),
        }
    }
}

/// Polls `status()` (50 × 20 ms at most) until `pred` holds; panics otherwise.
pub async fn poll_status<F>(pool: &snakepit::PoolHandle, mut pred: F) -> snakepit::PoolStatus
where
    F: FnMut(&snakepit::PoolStatus) -> bool,
{
    let mut last = None;
    for _ in 0..50 {
        let st = pool.status().await.expect("status");
        if pred(&st) {
            return st;
        }
        last = Some(st);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("pool status never matched; last: {last:?}");
}

/// `add(a, b)` on `pool`, as an i64.
pub async fn add(pool: &snakepit::PoolHandle, a: i64, b: i64) -> i64 {
    let v = pool
        .execute(snakepit::Call::new("add").kwarg("a", a).kwarg("b", b))
        .await
        .expect("add succeeds");
    i64::try_from(v).expect("add returns an int")
}

/// Whether process `pid` is alive (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
    }
}

/// `value[key]` for a `dict` result; panics naming what is missing.
pub fn field<'a>(value: &'a snakepit::Value, key: &str) -> &'a snakepit::Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {value:?}"))
}
