//! Heartbeat bookkeeping for one worker, kept apart from the actor so that its
//! timing can be tested with a paused clock.
//!
//! The worker actor calls [`Heartbeat::tick`] every interval and
//! [`Heartbeat::pong`] when a `Pong` arrives; the answer says whether to send
//! a ping, count a missed beat, or give up on the worker.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::HeartbeatConfig;

/// What the actor should do after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Send a ping with this sequence number.
    Ping(u64),
    /// The last ping is still within its timeout; nothing to do.
    Waiting,
    /// The last ping went unanswered: `missed` in a row now. Send a new ping.
    Missed { missed: u32, ping: u64 },
    /// `missed` beats in a row: the worker is unresponsive.
    Dead { missed: u32 },
}

pub(crate) struct Heartbeat {
    timeout: Duration,
    max_missed: u32,
    next_seq: u64,
    outstanding: Option<(u64, Instant)>,
    missed: u32,
}

impl Heartbeat {
    pub fn new(cfg: &HeartbeatConfig) -> Self {
        Self {
            timeout: cfg.timeout(),
            max_missed: cfg.max_missed.max(1),
            next_seq: 1,
            outstanding: None,
            missed: 0,
        }
    }

    pub fn max_missed(&self) -> u32 {
        self.max_missed
    }

    /// Called every heartbeat interval.
    pub fn tick(&mut self, now: Instant) -> Beat {
        match self.outstanding {
            Some((_, sent)) if now.duration_since(sent) < self.timeout => Beat::Waiting,
            Some(_) => {
                self.missed += 1;
                self.outstanding = None;
                if self.missed >= self.max_missed {
                    return Beat::Dead {
                        missed: self.missed,
                    };
                }
                Beat::Missed {
                    missed: self.missed,
                    ping: self.send(now),
                }
            }
            None => Beat::Ping(self.send(now)),
        }
    }

    /// A `Pong` arrived. Any answer, even a late one, shows the worker runs.
    /// True when it had missed beats until now.
    pub fn pong(&mut self, seq: u64) -> bool {
        let was_missing = self.missed > 0;
        self.missed = 0;
        if self.outstanding.is_some_and(|(s, _)| s <= seq) {
            self.outstanding = None;
        }
        was_missing
    }

    fn send(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding = Some((seq, now));
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(interval_ms: u64, timeout_ms: u64, max_missed: u32) -> HeartbeatConfig {
        HeartbeatConfig {
            enabled: true,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            max_missed,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answered_pings_never_count_as_missed() {
        let mut hb = Heartbeat::new(&config(1000, 1000, 3));
        for _ in 0..10 {
            let Beat::Ping(seq) = hb.tick(Instant::now()) else {
                panic!("expected a ping")
            };
            tokio::time::advance(Duration::from_millis(50)).await;
            assert!(!hb.pong(seq));
            tokio::time::advance(Duration::from_millis(950)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_worker_is_dead_after_max_missed_beats() {
        let mut hb = Heartbeat::new(&config(1000, 1000, 3));
        let start = Instant::now();
        assert_eq!(hb.tick(Instant::now()), Beat::Ping(1));
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Missed { missed: 1, ping: 2 });
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Missed { missed: 2, ping: 3 });
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Dead { missed: 3 });
        // Detected max_missed × interval after the first unanswered ping.
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_pong_resets_the_count() {
        let mut hb = Heartbeat::new(&config(1000, 1000, 3));
        assert_eq!(hb.tick(Instant::now()), Beat::Ping(1));
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Missed { missed: 1, ping: 2 });
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(hb.pong(1), "the first ping's answer, late, ends the miss");
        tokio::time::advance(Duration::from_millis(700)).await;
        // Ping 2 is still outstanding and now timed out: missed starts again at 1.
        assert_eq!(hb.tick(Instant::now()), Beat::Missed { missed: 1, ping: 3 });
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_longer_than_interval_waits() {
        let mut hb = Heartbeat::new(&config(500, 2000, 2));
        assert_eq!(hb.tick(Instant::now()), Beat::Ping(1));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(500)).await;
            assert_eq!(hb.tick(Instant::now()), Beat::Waiting);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Missed { missed: 1, ping: 2 });
        assert!(hb.pong(2));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(hb.tick(Instant::now()), Beat::Ping(3));
    }
}
