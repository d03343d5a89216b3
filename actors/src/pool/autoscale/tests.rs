//! The scaling policy on plain values, with tokio's clock paused.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;

fn policy(min: usize, max: usize) -> ScalePolicy {
    ScalePolicy {
        min,
        max,
        scale_up_wait: Duration::from_millis(100),
        window: Duration::from_secs(1),
        queue_depth: None,
        idle_timeout: Duration::from_secs(2),
        prestart: 0,
    }
}

fn load(target: usize) -> Load<usize> {
    Load {
        target,
        starting: 0,
        busy: 0,
        queued: 0,
        oldest_wait: None,
        capacity: 1,
        failing: false,
        idle: Vec::new(),
    }
}

const MS: Duration = Duration::from_millis(1);

/// `target` workers, one of them busy, `queued` calls waiting, the oldest
/// for `oldest`.
fn waiting(target: usize, queued: usize, oldest: Duration) -> Load<usize> {
    Load {
        busy: 1,
        queued,
        oldest_wait: Some(oldest),
        ..load(target)
    }
}

/// Scaling up to `to` for `reason`.
fn up(to: usize, reason: Reason) -> Decision<usize> {
    Decision::Up { to, reason }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_pool_holds() {
    let mut a = Autoscaler::new(policy(1, 4));
    assert_eq!(a.decide(Instant::now(), &load(1)), Decision::Hold);
    let mut busy = load(1);
    busy.busy = 1;
    a.record_wait(Instant::now(), 5 * MS);
    assert_eq!(a.decide(Instant::now(), &busy), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn waits_past_the_target_scale_up_to_what_the_queue_needs() {
    let mut a = Autoscaler::new(policy(1, 4));
    for _ in 0..10 {
        a.record_wait(Instant::now(), 300 * MS);
    }
    let mut l = waiting(1, 2, 250 * MS);
    assert_eq!(a.decide(Instant::now(), &l), up(3, Reason::QueueWait));
    // A burst far past capacity goes straight to max_size.
    let mut a = Autoscaler::new(policy(1, 4));
    l.queued = 40;
    assert_eq!(a.decide(Instant::now(), &l), up(4, Reason::QueueWait));
}

#[tokio::test(start_paused = true)]
async fn one_slow_call_in_ten_does_not_scale() {
    let mut a = Autoscaler::new(policy(1, 4));
    for i in 0..20 {
        a.record_wait(Instant::now(), if i % 10 == 0 { 500 * MS } else { MS });
    }
    let l = waiting(1, 1, MS);
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn old_waits_leave_the_window() {
    let mut a = Autoscaler::new(policy(1, 4));
    for _ in 0..10 {
        a.record_wait(Instant::now(), 300 * MS);
    }
    advance(Duration::from_millis(1_001)).await;
    let l = waiting(1, 1, MS);
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn after_a_scale_up_workers_on_their_way_are_not_asked_for_again() {
    let mut a = Autoscaler::new(policy(1, 4));
    a.record_wait(Instant::now(), 300 * MS);
    let mut l = waiting(1, 1, 300 * MS);
    assert_eq!(a.decide(Instant::now(), &l), up(2, Reason::QueueWait));
    // The next tick: the queue still waits, the new worker still starts.
    advance(100 * MS).await;
    l.target = 2;
    l.starting = 1;
    l.oldest_wait = Some(400 * MS);
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn a_failing_pool_never_scales_up() {
    let mut a = Autoscaler::new(policy(1, 4));
    a.record_wait(Instant::now(), 300 * MS);
    let mut l = load(1);
    l.queued = 10;
    l.oldest_wait = Some(Duration::from_secs(1));
    l.failing = true;
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
    l.target = 0;
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn the_first_call_of_an_empty_pool_starts_a_worker() {
    let mut a = Autoscaler::new(policy(0, 4));
    assert_eq!(a.decide(Instant::now(), &load(0)), Decision::Hold);
    let mut l = load(0);
    l.queued = 1;
    l.oldest_wait = Some(Duration::ZERO);
    assert_eq!(a.decide(Instant::now(), &l), up(1, Reason::ColdStart));
}

#[tokio::test(start_paused = true)]
async fn idle_workers_go_after_the_idle_timeout_down_to_min_size() {
    let mut a = Autoscaler::new(policy(1, 4));
    let mut l = load(4);
    l.idle = vec![
        (0, 3 * 1000 * MS),
        (1, 1000 * MS),
        (2, 2500 * MS),
        (3, 2000 * MS),
    ];
    // Three may go (min 1), the longest idle first; worker 1 is not idle long enough.
    assert_eq!(
        a.decide(Instant::now(), &l),
        Decision::Down {
            to: 1,
            workers: vec![0, 2, 3]
        }
    );
    // A busy worker and prestart raise the floor.
    let mut a = Autoscaler::new(ScalePolicy {
        prestart: 1,
        ..policy(1, 4)
    });
    l.busy = 1;
    l.idle = vec![(1, 9000 * MS), (2, 9000 * MS), (3, 9000 * MS)];
    assert_eq!(
        a.decide(Instant::now(), &l),
        Decision::Down {
            to: 2,
            workers: vec![1, 2]
        }
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_scales_down_while_calls_wait() {
    let mut a = Autoscaler::new(policy(1, 4));
    let mut l = load(4);
    l.queued = 1;
    l.oldest_wait = Some(MS);
    l.idle = vec![(3, Duration::from_secs(10))];
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[tokio::test(start_paused = true)]
async fn min_size_zero_scales_to_none() {
    let mut a = Autoscaler::new(policy(0, 2));
    let mut l = load(1);
    l.idle = vec![(0, Duration::from_secs(3))];
    assert_eq!(
        a.decide(Instant::now(), &l),
        Decision::Down {
            to: 0,
            workers: vec![0]
        }
    );
}

#[tokio::test(start_paused = true)]
async fn prestart_keeps_spares_ready_ahead_of_demand() {
    let p = ScalePolicy {
        prestart: 2,
        ..policy(0, 4)
    };
    assert_eq!(p.initial(), 2);
    let mut a = Autoscaler::new(p);
    let mut l = load(2);
    l.busy = 1;
    assert_eq!(a.decide(Instant::now(), &l), up(3, Reason::Prestart));
}

#[tokio::test(start_paused = true)]
async fn a_deep_queue_scales_up_once_it_stays_deep_for_the_window() {
    let mut a = Autoscaler::new(ScalePolicy {
        queue_depth: Some(2),
        scale_up_wait: Duration::from_secs(60),
        ..policy(1, 4)
    });
    let mut l = waiting(1, 3, MS);
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
    advance(Duration::from_millis(500)).await;
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
    advance(Duration::from_millis(500)).await;
    assert_eq!(a.decide(Instant::now(), &l), up(4, Reason::QueueDepth));
    // It must stay deep: a dip starts the window again.
    let mut a = Autoscaler::new(ScalePolicy {
        queue_depth: Some(2),
        scale_up_wait: Duration::from_secs(60),
        ..policy(1, 4)
    });
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
    advance(Duration::from_millis(600)).await;
    l.queued = 1;
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
    l.queued = 3;
    advance(Duration::from_millis(600)).await;
    assert_eq!(a.decide(Instant::now(), &l), Decision::Hold);
}

#[test]
fn the_policy_comes_from_the_config() {
    let mut c = PoolConfig::named("p");
    assert_eq!(ScalePolicy::of(&c), None);
    c.max_size = Some(4);
    let p = ScalePolicy::of(&c).unwrap();
    assert_eq!((p.min, p.max, p.initial()), (1, 4, 1));
    c.min_size = Some(0);
    assert_eq!(ScalePolicy::of(&c).unwrap().initial(), 0);
}
