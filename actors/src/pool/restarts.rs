//! The pool's restart policy as plain bookkeeping, apart from the actor so
//! that backoff and degradation can be tested with a paused clock.
//!
//! Every restart is recorded with its time. More than `max_restarts` within
//! `restart_window` degrades the pool: restarts then wait the capped backoff.
//! The pool recovers when every worker is up and the window holds no more
//! than `max_restarts` again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::RestartPolicy;

pub(crate) struct Restarts {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    degraded_since: Option<Instant>,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            degraded_since: None,
        }
    }

    pub fn window(&self) -> Duration {
        self.policy.restart_window
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded_since.is_some()
    }

    /// Restarts within the window ending `now`.
    pub fn recent(&mut self, now: Instant) -> u32 {
        let window = self.window();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
        self.recent.len() as u32
    }

    /// Records a restart; true when it tips the pool into degraded.
    pub fn record(&mut self, now: Instant) -> bool {
        self.recent.push_back(now);
        if self.degraded_since.is_none() && self.recent(now) > self.policy.max_restarts {
            self.degraded_since = Some(now);
            return true;
        }
        false
    }

    /// The delay before the next start of a slot that failed `failures`
    /// times in a row (0 for a worker that was up), before jitter: doubling
    /// from the initial backoff, capped; always the cap while degraded.
    pub fn backoff(&self, failures: u32) -> Duration {
        let p = &self.policy;
        if self.is_degraded() {
            p.backoff_max
        } else {
            p.backoff_initial
                .saturating_mul(1u32 << failures.min(20))
                .min(p.backoff_max)
        }
    }

    /// The largest delay ever waited, jitter included.
    pub fn backoff_cap(&self) -> Duration {
        self.policy.backoff_max
    }

    /// Clears the degraded state if the pool is at full strength and the
    /// window is back within policy; returns how long it was degraded.
    pub fn try_recover(&mut self, now: Instant, full_strength: bool) -> Option<Duration> {
        let since = self.degraded_since?;
        if !full_strength || self.recent(now) > self.policy.max_restarts {
            return None;
        }
        self.degraded_since = None;
        Some(now.duration_since(since))
    }

    /// When the window will next shed a restart (for a later recovery check).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.recent.front().map(|t| *t + self.window())
    }
}

/// Spreads `base` by ±20% so that workers killed together do not restart in
/// lockstep. `unit` is a uniform sample in [0, 1). Callers cap the result at
/// the policy's maximum.
pub(crate) fn jitter(base: Duration, unit: f64) -> Duration {
    base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_restarts: u32, window_ms: u64) -> RestartPolicy {
        RestartPolicy {
            max_restarts,
            restart_window: Duration::from_millis(window_ms),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(5_000),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Restarts::new(policy(10, 60_000));
        let ms: Vec<u128> = (0..9).map(|f| r.backoff(f).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(r.backoff(u32::MAX), Duration::from_millis(5000));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let base = Duration::from_millis(1000);
        assert_eq!(jitter(base, 0.0), Duration::from_millis(800));
        assert_eq!(jitter(base, 0.5), Duration::from_millis(1000));
        assert!(jitter(base, 0.999_999) <= Duration::from_millis(1200));
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_max_restarts_in_the_window_degrades() {
        let mut r = Restarts::new(policy(3, 10_000));
        for _ in 0..3 {
            assert!(!r.record(Instant::now()));
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(r.record(Instant::now()), "the fourth restart degrades");
        assert!(r.is_degraded());
        // Degraded: every restart waits the cap, whatever the slot's history.
        assert_eq!(r.backoff(0), Duration::from_millis(5000));
        // Not again while degraded.
        assert!(!r.record(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_spread_beyond_the_window_never_degrade() {
        let mut r = Restarts::new(policy(3, 10_000));
        for _ in 0..20 {
            assert!(!r.record(Instant::now()));
            tokio::time::advance(Duration::from_millis(3_500)).await;
        }
        assert!(!r.is_degraded());
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_at_full_strength_once_the_window_drains() {
        let mut r = Restarts::new(policy(2, 10_000));
        let start = Instant::now();
        for _ in 0..3 {
            r.record(Instant::now());
        }
        assert!(r.is_degraded());
        assert_eq!(r.next_expiry(), Some(start + Duration::from_secs(10)));
        // Full strength, but the window still holds 3 restarts.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(r.try_recover(Instant::now(), true), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Window drained, but a worker is missing.
        assert_eq!(r.try_recover(Instant::now(), false), None);
        assert_eq!(
            r.try_recover(Instant::now(), true),
            Some(Duration::from_secs(10))
        );
        assert!(!r.is_degraded());
        assert_eq!(r.backoff(0), Duration::from_millis(100));
    }
}
