//! The Prometheus endpoint. Its own test binary: the metrics recorder is
//! process-global.

mod common;

use std::net::SocketAddr;

use common::{add, http_get, metric_sample, showcase};
use snakepit::{Call, Error, Snakepit};

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_requests() {
    let addr = free_addr();
    let sp = Snakepit::builder()
        .pool(showcase("m", 2))
        .pool(common::fixture_pool("s", "stateful.StatefulAdapter", 1))
        .metrics_addr(addr)
        .start()
        .await
        .expect("runtime starts");
    let pool = sp.pool("m").unwrap().clone();
    for i in 0..3 {
        assert_eq!(add(&pool, i, 1).await, i + 1);
    }
    match pool
        .execute(Call::new("fail").kwarg("message", "boom"))
        .await
    {
        Err(Error::Python(e)) => assert_eq!(e.python_type, "ValueError"),
        other => panic!("expected a Python error, got {other:?}"),
    }

    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("snakepit_requests_total{"), "{body}");
    assert_eq!(
        metric_sample(
            &body,
            "snakepit_requests_total",
            &[r#"pool="m""#, r#"tool="add""#, r#"outcome="ok""#]
        ),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(
            &body,
            "snakepit_requests_total",
            &[
                r#"pool="m""#,
                r#"tool="fail""#,
                r#"outcome="python_exception""#
            ]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(&body, "snakepit_workers_up", &[r#"pool="m""#]),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(&body, "snakepit_worker_spawns_total", &[r#"pool="m""#]),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(&body, "snakepit_pool_degraded", &[r#"pool="m""#]),
        Some(0.0),
        "{body}"
    );

    // A worker killed from outside: its exit, the restart and the new spawn
    // are counted, and the pool is back at full strength.
    let pid = pool.status().await.unwrap().workers[0].pid.unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    common::poll_status(&pool, |st| {
        st.workers_up == 2 && st.workers.iter().all(|w| w.pid != Some(pid))
    })
    .await;
    let (_, body) = http_get(addr, "/metrics").await;
    let exits = [r#"pool="m""#, r#"cause="crashed""#];
    assert_eq!(
        metric_sample(&body, "snakepit_worker_exits_total", &exits),
        Some(1.0),
        "{body}"
    );
    for (metric, value) in [
        ("snakepit_worker_restarts_total", 1.0),
        ("snakepit_worker_spawns_total", 3.0),
        ("snakepit_workers_up", 2.0),
    ] {
        assert_eq!(
            metric_sample(&body, metric, &[r#"pool="m""#]),
            Some(value),
            "{metric}: {body}"
        );
    }

    // A session whose worker was killed cannot be cleaned up: the release
    // says so, and so does the counter.
    let session = sp.session("lost").await.unwrap();
    let me = session
        .run_on(Some("s"), Call::new("whoami"))
        .await
        .unwrap();
    let pid = i64::try_from(common::field(&me, "pid").clone()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let s_pool = sp.pool("s").unwrap().clone();
    common::poll_status(&s_pool, |st| {
        st.workers.iter().all(|w| w.pid != Some(pid as u32))
    })
    .await;
    match session.release().await {
        Err(Error::SessionCleanupFailed { .. }) => {}
        other => panic!("expected SessionCleanupFailed, got {other:?}"),
    }
    let (_, body) = http_get(addr, "/metrics").await;
    assert_eq!(
        metric_sample(
            &body,
            "snakepit_session_cleanup_errors_total",
            &[r#"source="manual""#]
        ),
        Some(1.0),
        "{body}"
    );
    sp.shutdown().await;
}
