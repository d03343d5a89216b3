//! Services under the root, on a runtime without pools (no Python needed):
//! a failure reaches the root as an event, shutdown waits for services before
//! it answers, and a service that ignores the signal is stopped at the
//! deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::*;
use crate::telemetry::Event;

struct Runtime {
    handle: RuntimeHandle,
    events: broadcast::Receiver<Event>,
    _registry: tempfile::TempDir,
}

async fn runtime() -> Runtime {
    let registry = tempfile::tempdir().expect("a registry directory");
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let config = RuntimeConfig {
        pools: Vec::new(),
        python: PathBuf::from("python3"),
        run_id: format!("services-test-{}", std::process::id()),
        registry_dir: Some(registry.path().join("run")),
        sessions: SessionsConfig::default(),
    };
    let handle = RuntimeHandle::start(config, telemetry)
        .await
        .expect("a runtime without pools starts");
    Runtime {
        handle,
        events,
        _registry: registry,
    }
}

async fn failure_of(events: &mut broadcast::Receiver<Event>, service: &str) -> String {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::ServiceFailed(failed)) if failed.service == service => {
                    return failed.error;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("telemetry closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("no failure event for `{service}`"))
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_service_that_fails_or_panics_is_reported_by_the_root() {
    let mut rt = runtime().await;
    rt.handle
        .spawn_service("doomed", |_| Box::pin(async { Err("out of luck".into()) }))
        .await
        .unwrap();
    assert_eq!(failure_of(&mut rt.events, "doomed").await, "out of luck");
    rt.handle
        .spawn_service("panicky", |_| Box::pin(async { panic!("boom") }))
        .await
        .unwrap();
    let error = failure_of(&mut rt.events, "panicky").await;
    assert_eq!(error, "the service panicked: boom");
    rt.handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_waits_for_services_to_drain_before_it_answers() {
    let rt = runtime().await;
    let drained = Arc::new(AtomicBool::new(false));
    let flag = drained.clone();
    rt.handle
        .spawn_service("drains", move |signal| {
            Box::pin(async move {
                let deadline = signal.requested().await;
                assert!(deadline > Instant::now(), "the deadline is ahead");
                tokio::time::sleep(Duration::from_millis(100)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
        })
        .await
        .unwrap();
    rt.handle.shutdown(Duration::from_secs(5)).await;
    assert!(drained.load(Ordering::SeqCst), "answered before the drain");
    let late = rt
        .handle
        .spawn_service("late", |_| Box::pin(async { Ok(()) }))
        .await;
    assert!(matches!(late, Err(Error::ShuttingDown)), "{late:?}");
}

#[tokio::test]
async fn a_service_that_ignores_the_signal_is_stopped_at_the_deadline() {
    let rt = runtime().await;
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(dropped.clone());
    rt.handle
        .spawn_service("deaf", move |_| {
            Box::pin(async move {
                let _guard = guard;
                futures::future::pending::<()>().await;
                Ok(())
            })
        })
        .await
        .unwrap();
    let started = Instant::now();
    rt.handle.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(dropped.load(Ordering::SeqCst), "its future was dropped");
}
