//! Session lifetimes on a paused clock: the TTL, its refresh on use, and the
//! release of an auto session when its last handle goes. No pools are
//! involved, so nothing here needs a Python process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use super::*;
use crate::config::SessionsConfig;
use crate::host::Host;
use crate::telemetry::{Event, Telemetry};

async fn registry(
    ttl_ms: u64,
    max_sessions: usize,
) -> (ActorRef<SessionsMessage>, Arc<Host>, Telemetry) {
    let config = SessionsConfig {
        ttl: std::time::Duration::from_millis(ttl_ms),
        max_sessions,
        ..SessionsConfig::default()
    };
    let telemetry = Telemetry::new();
    let bridge = Arc::new(Host::new(config.clone()));
    let (actor, _) = Actor::spawn(
        None,
        Sessions,
        SessionsArgs {
            config,
            telemetry: telemetry.clone(),
            bridge: bridge.clone(),
        },
    )
    .await
    .expect("the registry starts");
    bridge.set_sessions(actor.clone());
    bridge.set_pools(Arc::new(BTreeMap::new()));
    (actor, bridge, telemetry)
}

async fn open(
    sessions: &ActorRef<SessionsMessage>,
    bridge: &Arc<Host>,
    id: Option<&str>,
    auto: bool,
) -> Result<Session, Error> {
    let id = id.map(str::to_string);
    let (id, owner) = sessions
        .call(|reply| SessionsMessage::Open { id, auto, reply }, None)
        .await
        .expect("the registry answers")
        .expect("no timeout")?;
    Ok(Session::new(
        id,
        owner,
        bridge.pools(),
        "default".into(),
        bridge.clone(),
        auto,
    ))
}

async fn live(sessions: &ActorRef<SessionsMessage>) -> usize {
    sessions
        .call(SessionsMessage::Count, None)
        .await
        .expect("the registry answers")
        .expect("no timeout")
}

/// Lets actors process what is in their mailboxes.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_unused_session_expires_after_its_ttl() {
    let (sessions, bridge, telemetry) = registry(1_000, 10).await;
    let mut events = telemetry.subscribe();
    let session = open(&sessions, &bridge, Some("s1"), false).await.unwrap();
    assert_eq!(live(&sessions).await, 1);
    tokio::time::sleep(Duration::from_millis(999)).await;
    settle().await;
    assert_eq!(live(&sessions).await, 1, "not before the TTL");
    tokio::time::sleep(Duration::from_millis(2)).await;
    settle().await;
    assert_eq!(live(&sessions).await, 0, "gone after the TTL");
    match events.recv().await.unwrap() {
        Event::SessionReleased(r) => {
            assert_eq!(r.session_id, "s1");
            assert_eq!(r.source, "ttl");
            assert!(r.clean);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        session.info().await,
        Err(Error::SessionNotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn use_refreshes_the_ttl() {
    let (sessions, bridge, _) = registry(1_000, 10).await;
    let session = open(&sessions, &bridge, Some("s2"), false).await.unwrap();
    session.set_metadata("tenant", "acme").unwrap();
    session.set_metadata("tenant", "globex").unwrap();
    let info = session.info().await.unwrap();
    assert_eq!(
        info.metadata,
        [("tenant".to_string(), "globex".to_string())]
    );
    assert!(!info.auto);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        // What a call does before it is sent.
        session
            .inner
            .owner
            .cast(OwnerMessage::Touch { pool: None })
            .unwrap();
        settle().await;
        assert_eq!(live(&sessions).await, 1);
    }
    tokio::time::sleep(Duration::from_millis(1_001)).await;
    settle().await;
    assert_eq!(live(&sessions).await, 0);
}

#[tokio::test(start_paused = true)]
async fn an_auto_session_ends_with_its_last_handle_an_explicit_one_does_not() {
    let (sessions, bridge, telemetry) = registry(3_600_000, 10).await;
    let mut events = telemetry.subscribe();
    let auto = open(&sessions, &bridge, None, true).await.unwrap();
    let id = auto.id().to_string();
    let clone = auto.clone();
    drop(auto);
    settle().await;
    assert_eq!(live(&sessions).await, 1, "a clone still holds it");
    drop(clone);
    settle().await;
    assert_eq!(live(&sessions).await, 0);
    match events.recv().await.unwrap() {
        Event::SessionReleased(r) => {
            assert_eq!(r.session_id, id);
            assert_eq!(r.source, "dropped");
        }
        other => panic!("unexpected {other:?}"),
    }

    let explicit = open(&sessions, &bridge, Some("kept"), false).await.unwrap();
    drop(explicit);
    settle().await;
    assert_eq!(live(&sessions).await, 1);
    let again = open(&sessions, &bridge, Some("kept"), false).await.unwrap();
    again.release().await.unwrap();
    assert_eq!(live(&sessions).await, 0);
}

#[tokio::test(start_paused = true)]
async fn the_quota_is_enforced() {
    let (sessions, bridge, _) = registry(3_600_000, 2).await;
    let a = open(&sessions, &bridge, Some("a"), false).await.unwrap();
    let _b = open(&sessions, &bridge, Some("b"), false).await.unwrap();
    // Opening a live session again is no new session.
    open(&sessions, &bridge, Some("a"), false).await.unwrap();
    match open(&sessions, &bridge, Some("c"), false).await {
        Err(Error::SessionQuotaExceeded { max }) => assert_eq!(max, 2),
        other => panic!("expected SessionQuotaExceeded, got {other:?}"),
    }
    a.release().await.unwrap();
    settle().await;
    open(&sessions, &bridge, Some("c"), false).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn variables_are_typed_versioned_and_watched() {
    use futures::StreamExt;
    let (sessions, bridge, _) = registry(3_600_000, 10).await;
    let s = open(&sessions, &bridge, Some("vars"), false).await.unwrap();
    let constraints = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Constraints::default()
    };
    let t = s
        .register_variable("temperature", VarType::Float, 0.7, constraints)
        .await
        .unwrap();
    assert_eq!(t.version, 0);
    let mut watch = s.watch_variables(&["temperature"], true).await.unwrap();
    let initial = watch.next().await.unwrap();
    assert_eq!(initial.source, UpdateSource::Initial);
    assert_eq!(initial.new_value, Value::Float(0.7));

    let t = s.set_variable("temperature", 1.5).await.unwrap();
    assert_eq!(t.version, 1);
    let update = watch.next().await.unwrap();
    assert_eq!(
        (update.old_value, update.new_value),
        (Value::Float(0.7), Value::Float(1.5))
    );
    assert_eq!(update.source, UpdateSource::Host);

    match s.set_variable("temperature", 3.5).await {
        Err(Error::Variable(e)) => assert_eq!(e.constraint(), Some("max")),
        other => panic!("expected a constraint error, got {other:?}"),
    }
    assert_eq!(
        s.get_variable("temperature").await.unwrap().value,
        Value::Float(1.5)
    );
    assert!(matches!(
        s.get_variable("nope").await,
        Err(Error::Variable(_))
    ));
    s.delete_variable("temperature").await.unwrap();
    assert!(s.list_variables().await.unwrap().is_empty());
    s.release().await.unwrap();
    assert_eq!(watch.next().await, None, "the watch ends with the session");
}

/// A released session leaves nothing behind: its TTL timer (a task holding a
/// reference to the stopped owner) is cancelled, so opening and releasing
/// many sessions under a long TTL keeps the task count flat.
#[tokio::test(start_paused = true)]
async fn released_sessions_leave_no_timer_behind() {
    let (sessions, bridge, _) = registry(3_600_000, 1_000).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // One first, so lazily started machinery is counted in the baseline.
    open(&sessions, &bridge, None, false)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    settle().await;
    let before = tasks();
    for _ in 0..200 {
        let session = open(&sessions, &bridge, None, false).await.unwrap();
        session.release().await.unwrap();
    }
    settle().await;
    assert_eq!(live(&sessions).await, 0);
    let after = tasks();
    assert!(
        after <= before + 2,
        "200 released sessions left {} tasks behind ({before} before, {after} after)",
        after.saturating_sub(before)
    );
}
