//! The registry against agents that misbehave: refused registrations,
//! protocol violations, silence, a second link of the same id; and where
//! workers are placed.

use std::time::Duration;

use futures::channel::mpsc as fmpsc;
use snakepit_proto::v1::{self, agent_message::Kind, host_message};

use super::*;

const POOL: &str = "gpu";

fn agents() -> Agents {
    Agents::new([POOL.to_string()], Telemetry::new())
}

fn register(id: &str, workers: u32) -> v1::Register {
    v1::Register {
        agent_id: id.into(),
        hostname: "h".into(),
        pools: vec![POOL.into()],
        workers,
        capacity: 1,
        protocol_version: snakepit_proto::PROTOCOL_VERSION,
        ..Default::default()
    }
}

fn config() -> LinkConfig {
    LinkConfig {
        heartbeat: Duration::from_millis(100),
        liveness_timeout: Duration::from_millis(500),
        window_bytes: 1024,
        max_frame_bytes: 1024,
        run_id: "run".into(),
    }
}

fn message(kind: Kind) -> Result<v1::AgentMessage, String> {
    Ok(v1::AgentMessage { kind: Some(kind) })
}

type Inbound = fmpsc::UnboundedSender<Result<v1::AgentMessage, String>>;

/// Admits `id` and runs its link; the sender feeds it, the handle ends
/// with how it ended.
fn link(
    agents: &Agents,
    id: &str,
    workers: u32,
) -> (
    Inbound,
    tokio::task::JoinHandle<Detached>,
    mpsc::UnboundedReceiver<v1::HostMessage>,
) {
    let mut admission = agents
        .admit(register(id, workers), config())
        .expect("admitted");
    let mut outbound = admission.outbound();
    let first = outbound.try_recv().expect("Registered comes first");
    assert!(matches!(
        first.kind,
        Some(host_message::Kind::Registered(_))
    ));
    let (tx, rx) = fmpsc::unbounded();
    let run = tokio::spawn(admission.run(rx, std::future::pending()));
    (tx, run, outbound)
}

fn place(agents: &Agents) -> Option<(String, RemoteProcess)> {
    static SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let slot = SLOT.fetch_add(1, Ordering::Relaxed);
    agents.place(POOL, |agent| format!("{POOL}-{slot}.1@{agent}"))
}

#[test]
fn registrations_that_cannot_be_served_are_refused() {
    let agents = agents();
    let cases: Vec<(v1::Register, &str)> = vec![
        (register("", 1), "agent id"),
        (register("a b", 1), "agent id"),
        (register(&"x".repeat(65), 1), "agent id"),
        (
            v1::Register {
                protocol_version: 999,
                ..register("a", 1)
            },
            "protocol",
        ),
        (
            v1::Register {
                pools: vec![],
                ..register("a", 1)
            },
            "no pool",
        ),
        (
            v1::Register {
                pools: vec!["cpu".into()],
                ..register("a", 1)
            },
            "not a remote pool of this host (remote pools: gpu)",
        ),
    ];
    for (register, said) in cases {
        let refused = agents.admit(register.clone(), config()).err();
        let refused = refused.unwrap_or_else(|| panic!("{register:?} was admitted"));
        assert!(refused.0.contains(said), "{refused}");
    }
    assert!(agents.list().is_empty());
}

#[tokio::test]
async fn broken_messages_end_the_link_and_its_workers() {
    for (bad, why) in [
        (
            Err::<v1::AgentMessage, String>("reset".into()),
            "stream_error",
        ),
        (Ok(v1::AgentMessage { kind: None }), "protocol_violation"),
        (
            message(Kind::Register(register("a", 1))),
            "protocol_violation",
        ),
    ] {
        let agents = agents();
        let (tx, run, _out) = link(&agents, "a", 1);
        let (_, mut process) = place(&agents).expect("a seat");
        tx.unbounded_send(bad).unwrap();
        let detached = run.await.unwrap();
        assert_eq!(detached.cause, why);
        match process.events.recv().await {
            Some(RemoteEvent::Exited {
                lost: true, detail, ..
            }) => {
                assert!(detail.contains("agent `a`"), "{detail}")
            }
            other => panic!("expected the worker lost, got {other:?}"),
        }
        assert!(agents.list().is_empty());
    }
}

#[tokio::test]
async fn an_agent_that_ignores_its_window_is_cut_off() {
    let agents = agents();
    let (tx, run, _out) = link(&agents, "a", 1);
    let (worker, _process) = place(&agents).expect("a seat");
    let data = |n: usize| {
        message(Kind::Data(v1::WorkerData {
            worker: worker.clone(),
            data: vec![0u8; n].into(),
        }))
    };
    // Data for a worker it does not run is dropped, not fatal.
    tx.unbounded_send(message(Kind::Data(v1::WorkerData {
        worker: "gpu-9.9@a".into(),
        data: vec![1u8; 10].into(),
    })))
    .unwrap();
    tx.unbounded_send(data(1024)).unwrap();
    tx.unbounded_send(data(1024)).unwrap();
    tx.unbounded_send(data(1)).unwrap();
    let detached = run.await.unwrap();
    assert_eq!(detached.cause, "protocol_violation");
    assert!(
        detached.detail.contains("beyond its window"),
        "{}",
        detached.detail
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_detached_at_the_liveness_timeout() {
    let agents = agents();
    let (_tx, run, mut out) = link(&agents, "a", 1);
    let started = tokio::time::Instant::now();
    let detached = run.await.unwrap();
    assert_eq!(detached.cause, "timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(550),
        "{took:?}"
    );
    // It was sent heartbeats meanwhile.
    let mut beats = 0;
    while let Ok(m) = out.try_recv() {
        beats += matches!(m.kind, Some(host_message::Kind::Heartbeat(_))) as u32;
    }
    assert!(beats >= 3, "{beats} heartbeats");
}

#[tokio::test]
async fn a_second_link_of_the_same_agent_replaces_the_first() {
    let agents = agents();
    let (_tx1, run1, _o1) = link(&agents, "a", 1);
    let (_, mut old) = place(&agents).expect("a seat");
    let (_tx2, _run2, _o2) = link(&agents, "a", 1);
    let detached = run1.await.unwrap();
    assert_eq!(detached.cause, "replaced");
    assert!(matches!(
        old.events.recv().await,
        Some(RemoteEvent::Exited { lost: true, .. })
    ));
    // The new link's seat is free.
    assert_eq!(agents.list().len(), 1);
    assert!(place(&agents).is_some());
}

#[tokio::test]
async fn workers_spread_over_agents_and_never_go_to_a_draining_one() {
    let agents = agents();
    let (_ta, _ra, mut out_a) = link(&agents, "a", 1);
    let (tb, _rb, _out_b) = link(&agents, "b", 2);
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (id, process) = place(&agents).expect("a seat");
        placed.push((id, process));
    }
    let on: Vec<&str> = placed
        .iter()
        .map(|(id, _)| id.rsplit_once('@').unwrap().1)
        .collect();
    assert_eq!(on, ["b", "a", "b"]);
    assert!(place(&agents).is_none(), "every seat is taken");
    let spawn = out_a.recv().await.unwrap();
    assert!(matches!(spawn.kind, Some(host_message::Kind::Spawn(s)) if s.worker == placed[1].0));

    // A worker of b ends: its seat is free again; then b drains.
    tb.unbounded_send(message(Kind::Exited(v1::WorkerExited {
        worker: placed[0].0.clone(),
        code: 0,
        signal: 9,
        detail: String::new(),
    })))
    .unwrap();
    match placed[0].1.events.recv().await {
        Some(RemoteEvent::Exited {
            status,
            lost: false,
            ..
        }) => {
            assert_eq!(status, ExitStatus::Signal(9))
        }
        other => panic!("{other:?}"),
    }
    tb.unbounded_send(message(Kind::Draining(v1::Draining { grace_ms: 100 })))
        .unwrap();
    assert!(matches!(
        placed[2].1.events.recv().await,
        Some(RemoteEvent::Draining { .. })
    ));
    assert!(
        place(&agents).is_none(),
        "a draining agent gets no new worker"
    );
}
