//! The batching window on plain values, with tokio's clock paused: time
//! moves only when a test advances it.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn key(tool: &str, worker: Option<&str>) -> BatchKey {
    BatchKey {
        tool: Arc::from(tool),
        worker: worker.map(str::to_string),
        session: None,
    }
}

fn policy(max_size: usize, max_wait_ms: u64) -> BatchPolicy {
    BatchPolicy {
        max_size,
        max_wait: Duration::from_millis(max_wait_ms),
    }
}

const ROOMY: usize = 1 << 20;

#[tokio::test(start_paused = true)]
async fn the_first_call_opens_a_batch_due_after_max_wait() {
    let mut b = Batcher::default();
    let t0 = Instant::now();
    let added = b.add(key("sq", None), 1, 10, policy(4, 5), ROOMY, t0);
    assert!(added.left.is_empty());
    let (epoch, due) = added.opened.expect("opened");
    assert_eq!(due, t0 + Duration::from_millis(5));
    tokio::time::advance(Duration::from_millis(2)).await;
    let joined = b.add(key("sq", None), 2, 10, policy(4, 5), ROOMY, Instant::now());
    assert!(joined.left.is_empty() && joined.opened.is_none());
    assert_eq!(b.len(), 2);
    tokio::time::advance(Duration::from_millis(3)).await;
    let formed = b.due(&key("sq", None), epoch).expect("due");
    assert_eq!(formed.calls, vec![1, 2]);
    assert_eq!(formed.closed, Closed::Waited);
    assert_eq!(formed.opened, t0);
    assert_eq!(b.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_leaves_at_once_and_its_timer_then_finds_nothing() {
    let mut b = Batcher::default();
    let k = key("sq", None);
    let (epoch, _) = b
        .add(k.clone(), 0, 1, policy(3, 5), ROOMY, Instant::now())
        .opened
        .unwrap();
    b.add(k.clone(), 1, 1, policy(3, 5), ROOMY, Instant::now());
    let added = b.add(k.clone(), 2, 1, policy(3, 5), ROOMY, Instant::now());
    assert_eq!(added.left.len(), 1);
    assert_eq!(added.left[0].calls, vec![0, 1, 2]);
    assert_eq!(added.left[0].closed, Closed::Full);
    // The next call opens a new batch with a new epoch; the old timer is stale.
    let (next, _) = b
        .add(k.clone(), 3, 1, policy(3, 5), ROOMY, Instant::now())
        .opened
        .unwrap();
    assert_ne!(next, epoch);
    tokio::time::advance(Duration::from_millis(5)).await;
    assert!(b.due(&k, epoch).is_none());
    assert_eq!(b.due(&k, next).unwrap().calls, vec![3]);
}

#[tokio::test(start_paused = true)]
async fn sixty_four_calls_make_four_batches_of_sixteen() {
    let mut b = Batcher::default();
    let mut formed = Vec::new();
    for i in 0..64 {
        formed.extend(
            b.add(key("sq", None), i, 8, policy(16, 5), ROOMY, Instant::now())
                .left,
        );
    }
    assert_eq!(formed.len(), 4);
    assert!(formed.iter().all(|f| f.calls.len() == 16));
    let all: Vec<_> = formed.into_iter().flat_map(|f| f.calls).collect();
    assert_eq!(all, (0..64).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn calls_for_different_workers_or_tools_never_share_a_batch() {
    let mut b = Batcher::default();
    let now = Instant::now();
    let mut opened = Vec::new();
    for (i, k) in [
        key("sq", None),
        key("sq", Some("p-0.1")),
        key("sq", Some("p-1.1")),
        key("cube", None),
    ]
    .into_iter()
    .enumerate()
    {
        let (epoch, _) = b
            .add(k.clone(), i, 1, policy(8, 5), ROOMY, now)
            .opened
            .expect("each opens its own");
        opened.push((k, epoch));
    }
    b.add(key("sq", Some("p-1.1")), 9, 1, policy(8, 5), ROOMY, now);
    assert_eq!((b.batches(), b.len()), (4, 5));
    tokio::time::advance(Duration::from_millis(5)).await;
    let calls: Vec<Vec<usize>> = opened
        .iter()
        .map(|(k, e)| b.due(k, *e).expect("due").calls)
        .collect();
    assert_eq!(calls, vec![vec![0], vec![1], vec![2, 9], vec![3]]);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_would_overfill_the_frame_starts_the_next_batch() {
    let mut b = Batcher::default();
    let k = key("sq", None);
    let now = Instant::now();
    b.add(k.clone(), 0, 600, policy(8, 5), 1000, now);
    let added = b.add(k.clone(), 1, 600, policy(8, 5), 1000, now);
    assert_eq!(added.left.len(), 1);
    assert_eq!(added.left[0].calls, vec![0]);
    assert_eq!(added.left[0].closed, Closed::Bytes);
    assert!(
        added.opened.is_some(),
        "the second call opens the next batch"
    );
    assert_eq!(b.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_one_leaves_with_its_call() {
    let mut b = Batcher::default();
    let added = b.add(key("sq", None), 7, 1, policy(1, 5), ROOMY, Instant::now());
    assert!(added.opened.is_none());
    assert_eq!(added.left.len(), 1);
    assert_eq!(added.left[0].calls, vec![7]);
    assert_eq!(b.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_leaves_its_batch_and_an_emptied_batch_is_dropped() {
    let mut b = Batcher::default();
    let k = key("sq", None);
    let (epoch, _) = b
        .add(k.clone(), 1, 1, policy(8, 5), ROOMY, Instant::now())
        .opened
        .unwrap();
    b.add(k.clone(), 2, 1, policy(8, 5), ROOMY, Instant::now());
    assert_eq!(b.remove(|c| *c == 1), Some(1));
    assert_eq!(b.remove(|c| *c == 1), None);
    assert_eq!(b.remove(|c| *c == 2), Some(2));
    assert_eq!(b.len(), 0);
    tokio::time::advance(Duration::from_millis(5)).await;
    assert!(b.due(&k, epoch).is_none());
}

#[tokio::test(start_paused = true)]
async fn flush_empties_every_batch() {
    let mut b = Batcher::default();
    b.add(key("a", None), 1, 1, policy(8, 5), ROOMY, Instant::now());
    b.add(key("b", None), 2, 1, policy(8, 5), ROOMY, Instant::now());
    let mut flushed: Vec<_> = b.flush().into_iter().flat_map(|f| f.calls).collect();
    flushed.sort_unstable();
    assert_eq!(flushed, vec![1, 2]);
    assert_eq!(b.len(), 0);
}

#[test]
fn the_policy_comes_from_the_tool_spec() {
    use snakepit_proto::v1::{BatchSpec, ToolSpec};
    let mut spec = ToolSpec {
        name: "sq".into(),
        ..Default::default()
    };
    assert_eq!(BatchPolicy::of(&spec), None);
    spec.batch = Some(BatchSpec {
        max_size: 0,
        max_wait_ms: 7,
        stack: false,
    });
    assert_eq!(BatchPolicy::of(&spec), Some(policy(1, 7)));
}
