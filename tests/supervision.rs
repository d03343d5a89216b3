//! Supervision against real Python workers: kill -9 under load, SIGSTOP and
//! GIL-bound workers caught by heartbeats, degraded pools that name Python's
//! error, recycling by requests, age and memory, grandchildren ended with
//! their worker, idempotent retry, and cancellation reaching Python.
//!
//! The timing logic itself (backoff, degradation, missed beats) is tested with
//! a paused clock next to the code: `actors/src/pool/restarts.rs`,
//! `actors/src/worker/liveness.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{fixture_pool, pid_alive, showcase, start, wait_event, wait_gone};
use snakepit::{Call, Error, Event, ExitStatus, PoolConfig, Value};
use snakepit_actors::telemetry::{ExitCause, KillReason, RecycleReason};

fn faults(name: &str, size: usize) -> PoolConfig {
    fixture_pool(name, "faults.FaultsAdapter", size)
}

/// Heartbeats fast enough for a test to see a worker die of them.
fn quick_heartbeat(cfg: &mut PoolConfig) {
    cfg.heartbeat.interval = std::time::Duration::from_millis(100);
    cfg.heartbeat.timeout = std::time::Duration::from_millis(100);
    cfg.heartbeat.max_missed = 3;
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill {pid}");
}

async fn pid_of(pool: &snakepit::PoolHandle) -> u32 {
    let v = pool.execute(Call::new("pid")).await.expect("pid()");
    u32::try_from(i64::try_from(v).unwrap()).unwrap()
}

/// Waits for the next request to reach a worker; returns that worker's id and pid.
async fn next_started(
    pool: &snakepit::PoolHandle,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> (String, u32) {
    let Event::RequestStarted(started) = wait_event(events, Duration::from_secs(5), |e| {
        matches!(e, Event::RequestStarted(_))
    })
    .await
    else {
        unreachable!()
    };
    let st = pool.status().await.unwrap();
    let pid = st
        .workers
        .iter()
        .find(|w| w.id == started.worker)
        .and_then(|w| w.pid)
        .expect("the worker that took the request has a pid");
    (started.worker, pid)
}

// Kill -9 under load: every call is answered, non-idempotent calls on a killed
// worker fail with WorkerCrashed, idempotent ones never fail, and the pool is
// back at full strength.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing() {
    let mut cfg = showcase("load", 3);
    cfg.restart.max_restarts = 100;
    let s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for caller in 0..6i64 {
        let (pool, stop) = (pool.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let (mut ok, mut crashed) = (0u32, 0u32);
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let idempotent = caller % 2 == 0;
                let call = Call::new("sleep")
                    .kwarg("ms", 5 + (n % 20))
                    .idempotent(idempotent)
                    .timeout(Duration::from_secs(10));
                // The outer bound catches a lost request; the call's own
                // timeout never fires on a healthy run.
                match tokio::time::timeout(Duration::from_secs(15), pool.execute(call)).await {
                    Err(_) => panic!("a request was never answered"),
                    Ok(Ok(_)) => ok += 1,
                    Ok(Err(Error::WorkerCrashed { .. })) if !idempotent => crashed += 1,
                    Ok(Err(e)) => panic!("caller {caller} (idempotent: {idempotent}): {e:?}"),
                }
            }
            (caller % 2 == 0, ok, crashed)
        }));
    }
    let mut killed = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let st = pool.status().await.unwrap();
        let ready: Vec<u32> = st
            .workers
            .iter()
            .filter(|w| w.ready)
            .filter_map(|w| w.pid)
            .collect();
        if let Some(&pid) = ready.get(killed % ready.len().max(1)) {
            kill(pid, libc::SIGKILL);
            killed += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for c in callers {
        let (idempotent, ok, crashed) = c.await.unwrap();
        assert!(ok > 0);
        if idempotent {
            assert_eq!(crashed, 0);
        }
        total_ok += ok;
    }
    assert!(killed >= 8, "killed {killed}");
    assert!(total_ok > 100, "ok {total_ok}");
    common::poll_status(&pool, |st| st.workers_up == 3).await;
    s.sp.shutdown().await;
}

// An idempotent call whose worker dies runs again on another worker; the same
// call not marked idempotent fails with WorkerCrashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_call_is_retried_once_elsewhere() {
    let mut s = start(faults("retry", 2)).await;
    let pool = s.sp.default_pool().clone();
    for idempotent in [true, false] {
        // Forget what earlier rounds emitted (the retried call's start).
        while s.events.try_recv().is_ok() {}
        let p = pool.clone();
        let call = tokio::spawn(async move {
            p.execute(Call::new("sleep").kwarg("ms", 800).idempotent(idempotent))
                .await
        });
        let (started_worker, pid) = next_started(&pool, &mut s.events).await;
        kill(pid, libc::SIGKILL);
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap()
            .unwrap();
        if idempotent {
            assert_eq!(result.unwrap(), Value::Int(800));
            let Event::RequestRetried(r) = wait_event(&mut s.events, Duration::from_secs(1), |e| {
                matches!(e, Event::RequestRetried(_))
            })
            .await
            else {
                unreachable!()
            };
            assert_eq!(r.failed_worker, started_worker);
        } else {
            match result {
                Err(Error::WorkerCrashed { status, .. }) => {
                    assert_eq!(status, ExitStatus::Signal(9))
                }
                other => panic!("expected WorkerCrashed, got {other:?}"),
            }
        }
        common::poll_status(&pool, |st| st.workers_up == 2).await;
    }
    s.sp.shutdown().await;
}

// A request that ends its own worker is a query of death: marked idempotent,
// it is still not run again elsewhere (it would end that worker too), so one
// worker of two dies, the caller gets WorkerCrashed saying why, and the pool
// serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_kills_its_worker_is_not_retried_onto_another() {
    let mut s = start(faults("poison", 2)).await;
    let pool = s.sp.default_pool().clone();
    let result = pool
        .execute(Call::new("exit_now").kwarg("code", 3).idempotent(true))
        .await;
    match result {
        Err(Error::WorkerCrashed { status, detail, .. }) => {
            assert_eq!(status, ExitStatus::Code(3));
            let detail = detail.unwrap_or_default();
            assert!(detail.contains("not retried"), "{detail}");
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    let Event::RequestRetryWithheld(withheld) =
        wait_event(&mut s.events, Duration::from_secs(5), |e| {
            matches!(e, Event::RequestRetryWithheld(_))
        })
        .await
    else {
        unreachable!()
    };
    assert_eq!(
        (withheld.tool.as_str(), withheld.status),
        ("exit_now", ExitStatus::Code(3))
    );
    // Exactly one worker ended: the other was never handed the request.
    let exited = |e: &Event| matches!(e, Event::WorkerExited(_));
    wait_event(&mut s.events, Duration::from_secs(5), exited).await;
    common::poll_status(&pool, |st| st.workers_up == 2).await;
    let mut more = 0;
    while let Ok(e) = s.events.try_recv() {
        more += usize::from(exited(&e));
    }
    assert_eq!(more, 0, "the request reached a second worker");
    let echoed = pool.execute(Call::new("echo").kwarg("value", 5)).await;
    assert_eq!(echoed.unwrap(), Value::Int(5));
    s.sp.shutdown().await;
}

// A SIGSTOPped worker stops answering heartbeats: it is killed and replaced,
// and the call it held fails with WorkerCrashed naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_worker_is_replaced() {
    let mut cfg = faults("stopped", 1);
    quick_heartbeat(&mut cfg);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let pid = pid_of(&pool).await;
    let p = pool.clone();
    let call = tokio::spawn(async move { p.execute(Call::new("sleep").kwarg("ms", 2000)).await });
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::RequestStarted(_))
    })
    .await;
    kill(pid, libc::SIGSTOP);
    let t0 = Instant::now();
    wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::HeartbeatMissed(m) if m.pid == pid),
    )
    .await;
    // A worker that missed a beat gets no new work; this call waits for the
    // replacement instead of piling up behind the stopped process.
    common::poll_status(&pool, |st| {
        st.workers.iter().any(|w| w.pid == Some(pid) && w.suspect)
    })
    .await;
    let p = pool.clone();
    let queued =
        tokio::spawn(async move { p.execute(Call::new("echo").kwarg("value", 7i64)).await });
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::WorkerKilled(k) if k.pid == pid && k.reason == KillReason::Unresponsive)
    })
    .await;
    let detected = t0.elapsed();
    match tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
    {
        Err(Error::WorkerCrashed { status, detail, .. }) => {
            assert_eq!(status, ExitStatus::Signal(9));
            assert!(detail.unwrap_or_default().contains("heartbeat"));
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::WorkerExited(x) if x.pid == pid && x.cause == ExitCause::Unresponsive)
    })
    .await;
    assert!(detected < Duration::from_secs(3), "took {detected:?}");
    assert_eq!(queued.await.unwrap().unwrap(), Value::Int(7));
    let new_pid = tokio::time::timeout(Duration::from_secs(10), pid_of(&pool))
        .await
        .unwrap();
    assert_ne!(new_pid, pid);
    wait_gone(pid, Duration::from_secs(2), "the stopped worker").await;
    s.sp.shutdown().await;
}

// A tool that holds the GIL without pause, in the process profile, is caught
// by heartbeats too: nothing in that interpreter can answer a ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gil_holding_tool_gets_its_worker_replaced() {
    let mut cfg = faults("gil", 1);
    quick_heartbeat(&mut cfg);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let pid = pid_of(&pool).await;
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        pool.execute(Call::new("spin_gil").kwarg("seconds", 60.0)),
    )
    .await
    .expect("the spinning call ends well before it would on its own");
    match result {
        Err(Error::WorkerCrashed { detail, .. }) => {
            assert!(detail.unwrap_or_default().contains("heartbeat"));
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        matches!(e, Event::WorkerKilled(k) if k.pid == pid && k.reason == KillReason::Unresponsive)
    })
    .await;
    assert_ne!(pid_of(&pool).await, pid);
    s.sp.shutdown().await;
}

// An adapter that starts failing at import: restarts fail with Python's error,
// the pool turns degraded (event, and `PoolDegraded` naming the error while no
// worker is up), keeps retrying at the capped backoff, and recovers once the
// import works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_imports_degrade_the_pool_and_name_the_error() {
    let marker = std::env::temp_dir().join(format!("snakepit-flaky-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut cfg = fixture_pool("flaky", "flaky_import.FlakyAdapter", 1);
    cfg.env
        .insert("FLAKY_IMPORT_MARKER".into(), marker.display().to_string());
    cfg.restart.max_restarts = 2;
    cfg.restart.restart_window = std::time::Duration::from_millis(3_000);
    cfg.restart.backoff_initial = std::time::Duration::from_millis(20);
    cfg.restart.backoff_max = std::time::Duration::from_millis(300);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let pid = pool.status().await.unwrap().workers[0].pid.unwrap();
    std::fs::write(&marker, "fail").unwrap();
    kill(pid, libc::SIGKILL);

    let Event::WorkerStartFailed(failed) =
        wait_event(&mut s.events, Duration::from_secs(10), |e| {
            matches!(e, Event::WorkerStartFailed(_))
        })
        .await
    else {
        unreachable!()
    };
    assert!(failed.reason.contains("ImportError"), "{}", failed.reason);
    assert!(
        failed.reason.contains("flaky_import refuses to load"),
        "{}",
        failed.reason
    );
    let Event::PoolDegraded(degraded) = wait_event(&mut s.events, Duration::from_secs(10), |e| {
        matches!(e, Event::PoolDegraded(_))
    })
    .await
    else {
        unreachable!()
    };
    assert!(degraded.recent_restarts > 2);
    assert!(
        degraded
            .last_error
            .unwrap_or_default()
            .contains("ImportError")
    );

    let t0 = Instant::now();
    match pool
        .execute(Call::new("add").kwarg("a", 1).kwarg("b", 2))
        .await
    {
        Err(Error::PoolDegraded {
            pool, last_error, ..
        }) => {
            assert_eq!(pool, "flaky");
            assert!(
                last_error
                    .unwrap_or_default()
                    .contains("flaky_import refuses to load")
            );
        }
        other => panic!("expected PoolDegraded, got {other:?}"),
    }
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "refused at once, not after a timeout"
    );
    assert!(pool.status().await.unwrap().degraded);

    // Degraded restarts wait the capped backoff: they go on, but slowly.
    let t1 = Instant::now();
    for _ in 0..2 {
        wait_event(&mut s.events, Duration::from_secs(5), |e| {
            matches!(e, Event::WorkerStartFailed(_))
        })
        .await;
    }
    assert!(
        t1.elapsed() >= Duration::from_millis(400),
        "restarts spin: {:?}",
        t1.elapsed()
    );

    std::fs::remove_file(&marker).unwrap();
    wait_event(
        &mut s.events,
        Duration::from_secs(10),
        |e| matches!(e, Event::WorkerReady(r) if r.workers_up == 1),
    )
    .await;
    wait_event(&mut s.events, Duration::from_secs(10), |e| {
        matches!(e, Event::PoolRecovered(_))
    })
    .await;
    assert!(!pool.status().await.unwrap().degraded);
    assert_eq!(common::add(&pool, 1, 2).await, 3);
    s.sp.shutdown().await;
}

async fn recycled(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> snakepit_actors::telemetry::WorkerRecycled {
    let Event::WorkerRecycled(r) = wait_event(events, Duration::from_secs(15), |e| {
        matches!(e, Event::WorkerRecycled(_))
    })
    .await
    else {
        unreachable!()
    };
    r
}

// Recycling by request count: once a worker has answered `max_requests`
// requests a successor starts; the old worker serves on until the successor is
// ready (so the pool never dips below its size), then leaves. No call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_after_max_requests_without_a_dip() {
    let mut cfg = faults("requests", 1);
    cfg.max_requests = Some(5);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let first = pid_of(&pool).await;
    for _ in 0..4 {
        assert_eq!(pid_of(&pool).await, first);
    }
    let r = recycled(&mut s.events).await;
    assert_eq!(r.reason, RecycleReason::Requests);
    assert_eq!(r.pid, first);
    assert!(r.completed >= 5);
    assert_ne!(pid_of(&pool).await, first, "the successor serves now");
    let Event::WorkerExited(exited) = wait_event(
        &mut s.events,
        Duration::from_secs(5),
        |e| matches!(e, Event::WorkerExited(x) if x.pid == first),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(exited.cause, ExitCause::Recycled);
    assert_eq!(
        exited.workers_up, 1,
        "the successor was up before the old worker left"
    );
    assert_eq!(exited.failed_requests, 0);
    s.sp.shutdown().await;
}

// Recycling by age, while a call runs on the old worker: the call finishes
// normally on it (drain), and new calls go to the successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_by_age_after_draining_its_call() {
    let mut cfg = faults("age", 1);
    cfg.worker_ttl = Some(std::time::Duration::from_millis(600));
    cfg.heartbeat.interval = std::time::Duration::from_millis(100);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let old = pid_of(&pool).await;
    let p = pool.clone();
    let long = tokio::spawn(async move { p.execute(Call::new("sleep").kwarg("ms", 1500)).await });
    let r = recycled(&mut s.events).await;
    assert_eq!(r.reason, RecycleReason::Age);
    assert_eq!(r.pid, old);
    assert_eq!(r.in_flight, 1);
    let new = pid_of(&pool).await;
    assert_ne!(new, old, "new calls go to the successor");
    assert!(pid_alive(old), "the old worker is still draining");
    assert_eq!(long.await.unwrap().unwrap(), Value::Int(1500));
    wait_gone(old, Duration::from_secs(3), "the worker recycled by age").await;
    s.sp.shutdown().await;
}

// A recycled worker still busy after the drain timeout is killed; its call
// fails with WorkerCrashed saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_kills_a_busy_recycled_worker() {
    let mut cfg = faults("drain", 1);
    cfg.worker_ttl = Some(std::time::Duration::from_millis(300));
    cfg.heartbeat.interval = std::time::Duration::from_millis(100);
    cfg.drain_timeout = std::time::Duration::from_millis(300);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let result = pool.execute(Call::new("sleep").kwarg("ms", 5000)).await;
    match result {
        Err(Error::WorkerCrashed { detail, .. }) => {
            assert!(detail.unwrap_or_default().contains("drain timeout"));
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    wait_event(
        &mut s.events,
        Duration::from_secs(2),
        |e| matches!(e, Event::WorkerKilled(k) if k.reason == KillReason::DrainTimeout),
    )
    .await;
    s.sp.shutdown().await;
}

// Recycling by the worker's resident memory as the OS reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_when_resident_memory_grows() {
    let mut cfg = faults("memory", 1);
    cfg.max_memory_mb = Some(120);
    cfg.heartbeat.interval = std::time::Duration::from_millis(100);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let old = pid_of(&pool).await;
    let rss = i64::try_from(
        pool.execute(Call::new("hold_memory").kwarg("mb", 200))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(rss > 120 << 20, "rss {rss}");
    let r = recycled(&mut s.events).await;
    match r.reason {
        RecycleReason::Memory { rss_mb } => assert!(rss_mb > 120, "{rss_mb}"),
        other => panic!("expected a memory recycle, got {other:?}"),
    }
    assert_eq!(r.pid, old);
    assert_ne!(pid_of(&pool).await, old);
    wait_gone(old, Duration::from_secs(3), "the worker recycled by memory").await;
    s.sp.shutdown().await;
}

// Children a tool started (subprocess, multiprocessing) share their worker's
// process group and end with it: on a crash, and on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grandchildren_end_with_their_worker() {
    let s = start(faults("grandchildren", 1)).await;
    let pool = s.sp.default_pool().clone();
    let spawn = || async {
        let v = pool.execute(Call::new("spawn_grandchild")).await.unwrap();
        u32::try_from(i64::try_from(v).unwrap()).unwrap()
    };
    let first = spawn().await;
    assert!(pid_alive(first));
    kill(pid_of(&pool).await, libc::SIGKILL);
    wait_gone(
        first,
        Duration::from_secs(3),
        "the killed worker's grandchild",
    )
    .await;

    let second = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match pool.execute(Call::new("spawn_grandchild")).await {
                Ok(v) => return u32::try_from(i64::try_from(v).unwrap()).unwrap(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap();
    assert!(pid_alive(second));
    s.sp.shutdown().await;
    assert!(
        !pid_alive(second),
        "shutdown returned with a grandchild alive"
    );
}

// A caller that gives up (timeout or dropped future) cancels the request in
// Python: a sync tool sees `ctx.cancelled`, an async tool gets CancelledError.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_reaches_python() {
    let s = start(faults("cancel", 1)).await;
    let pool = s.sp.default_pool().clone();
    let dir = std::env::temp_dir();
    for tool in ["wait_for_cancel", "async_wait_for_cancel"] {
        let marker = dir.join(format!("snakepit-{tool}-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let call = Call::new(tool)
            .kwarg("marker", marker.display().to_string())
            .timeout(Duration::from_millis(300));
        match pool.execute(call).await {
            Err(Error::Timeout { .. }) => {}
            other => panic!("{tool}: expected Timeout, got {other:?}"),
        }
        let until = Instant::now() + Duration::from_secs(3);
        while !marker.exists() {
            assert!(
                Instant::now() < until,
                "{tool}: Python never saw the cancellation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cancelled");
        std::fs::remove_file(&marker).unwrap();
    }
    // Dropping the future works the same way.
    let marker = dir.join(format!("snakepit-drop-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let call = Call::new("wait_for_cancel").kwarg("marker", marker.display().to_string());
    let _ = tokio::time::timeout(Duration::from_millis(200), pool.execute(call)).await;
    let until = Instant::now() + Duration::from_secs(3);
    while !marker.exists() {
        assert!(
            Instant::now() < until,
            "a dropped call was never cancelled in Python"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_file(&marker).unwrap();
    let echoed = pool
        .execute(Call::new("echo").kwarg("value", 3i64))
        .await
        .unwrap();
    assert_eq!(
        echoed,
        Value::Int(3),
        "the worker serves on after cancellations"
    );
    s.sp.shutdown().await;
}

// A pool whose adapter module does not exist: `snakepit doctor` fails fast
// (not after the start-up timeout) and prints the module and Python's exception.
#[test]
fn doctor_names_the_missing_module() {
    let config = std::env::temp_dir().join(format!("snakepit-doctor-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[pools]]\nname = \"broken\"\nsize = 1\nadapter = \"no_such_adapter_module.Adapter\"\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snakepit"))
        .args(["doctor", "--config"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An environment problem: exit code 3, the pool's adapter named as not
    // importing, before any worker is started.
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("pool broken"), "stdout: {stdout}");
    assert!(stdout.contains("DOES NOT IMPORT"), "stdout: {stdout}");
    assert!(stderr.contains("ModuleNotFoundError"), "stderr: {stderr}");
    assert!(
        stderr.contains("no_such_adapter_module"),
        "stderr: {stderr}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
}

// A worker counts only after its Hello: one that does not say it within the
// start-up timeout is killed and counted as a failed start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_timeout_kills_a_silent_worker() {
    let mut cfg = fixture_pool("slow", "slow_import.SlowAdapter", 1);
    cfg.startup_timeout = std::time::Duration::from_millis(500);
    let telemetry = snakepit::Telemetry::new();
    let mut events = telemetry.subscribe();
    let t0 = Instant::now();
    let result = snakepit::Snakepit::builder()
        .telemetry(telemetry)
        .pool(cfg)
        .start()
        .await;
    match result {
        Err(Error::WorkerStartFailed { reason, .. }) => {
            assert!(reason.contains("no Hello within"), "{reason}");
        }
        Err(other) => panic!("expected WorkerStartFailed, got {other:?}"),
        Ok(_) => panic!("a worker that never said Hello was counted"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    let Event::WorkerKilled(killed) = wait_event(&mut events, Duration::from_secs(1), |e| {
        matches!(e, Event::WorkerKilled(_))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(killed.reason, KillReason::StartupTimeout);
    assert!(!pid_alive(killed.pid));
}

// Shutdown waits for in-flight calls, but not for a worker that died with
// them: once its calls are settled, the other workers stop at once rather than
// at the end of the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_out_the_grace_for_a_dead_worker() {
    let mut cfg = faults("frozen", 2);
    quick_heartbeat(&mut cfg);
    cfg.shutdown_grace = std::time::Duration::from_millis(20_000);
    let mut s = start(cfg).await;
    let pool = s.sp.default_pool().clone();
    let p = pool.clone();
    let call = tokio::spawn(async move { p.execute(Call::new("sleep").kwarg("ms", 10_000)).await });
    let (_, frozen) = next_started(&pool, &mut s.events).await;
    kill(frozen, libc::SIGSTOP);
    let t0 = Instant::now();
    s.sp.shutdown_with_grace(Duration::from_secs(20)).await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(!pid_alive(frozen));
    match call.await.unwrap() {
        Err(Error::WorkerCrashed { .. }) => {}
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
}
