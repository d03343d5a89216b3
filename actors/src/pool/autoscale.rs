//! When an autoscaled pool (one with `max_size`) grows or shrinks, as a
//! policy over what the pool reports at each tick. Nothing here starts or
//! stops a worker: the pool acts on the [`Decision`]; every rule is tested
//! with a paused clock (`autoscale/tests.rs`).
//!
//! - **Up** when calls wait: the 90th percentile of the queue waits of the
//!   last `scale_up_window` (the oldest call still waiting counts as one),
//!   or, with `scale_up_queue_depth`, more calls per worker waiting for the
//!   whole window. The pool then aims for what its load needs — the workers
//!   busy, the queue spread over workers' capacity, and `prestart` spare —
//!   at least one more than now, at most `max_size`. A pool with no worker
//!   starts one for its first call (`cold_start`). A pool that is failing
//!   to start workers does not scale up: that would only feed its crash
//!   loop (the restart policy decides).
//! - **Down** when workers idle: each worker that ran nothing for
//!   `idle_timeout` may go, as long as the pool keeps `min_size`, the
//!   workers busy now plus `prestart`, and nothing waits. The pool passes
//!   only workers it may stop (no calls in flight, no strict session).
//!
//! After a scale-up the window starts afresh: the waits it held were
//! measured with fewer workers, and would ask again for what is on its way.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::PoolConfig;

#[cfg(test)]
mod tests;

/// An autoscaled pool's limits and triggers (from its `PoolConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScalePolicy {
    pub min: usize,
    pub max: usize,
    pub scale_up_wait: Duration,
    pub window: Duration,
    pub queue_depth: Option<usize>,
    pub idle_timeout: Duration,
    pub prestart: usize,
}

impl ScalePolicy {
    /// The policy of `config`; `None` for a pool of a fixed size.
    pub fn of(config: &PoolConfig) -> Option<Self> {
        let (min, max) = config.autoscale()?;
        Some(Self {
            min,
            max,
            scale_up_wait: config.scale_up_wait,
            window: config.scale_up_window,
            queue_depth: config.scale_up_queue_depth,
            idle_timeout: config.idle_timeout,
            prestart: config.prestart.min(max),
        })
    }

    /// The workers a pool starts with: `min_size`, or `prestart` if more.
    pub fn initial(&self) -> usize {
        self.min.max(self.prestart).min(self.max)
    }
}

/// What the pool reports at a tick. `K` names a worker.
#[derive(Debug, Clone)]
pub(crate) struct Load<K> {
    /// The workers it aims for now (started, starting or restarting).
    pub target: usize,
    /// Of those, the ones not ready yet.
    pub starting: usize,
    /// Workers with calls in flight.
    pub busy: usize,
    /// Requests waiting for a worker: calls, and batches (queued or still
    /// gathering) counting one each.
    pub queued: usize,
    /// How long the oldest of them has waited.
    pub oldest_wait: Option<Duration>,
    /// Calls one worker runs at once.
    pub capacity: usize,
    /// Its restarts are past the policy, or a worker is failing to start.
    pub failing: bool,
    /// Workers the pool may stop, with how long each has run nothing.
    pub idle: Vec<(K, Duration)>,
}

/// Why the target changed (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    QueueWait,
    QueueDepth,
    ColdStart,
    Prestart,
    Idle,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::QueueWait => "queue_wait",
            Reason::QueueDepth => "queue_depth",
            Reason::ColdStart => "cold_start",
            Reason::Prestart => "prestart",
            Reason::Idle => "idle",
        }
    }
}

/// What the pool should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision<K> {
    Hold,
    /// Start workers until it has `to`.
    Up {
        to: usize,
        reason: Reason,
    },
    /// Stop these idle workers, leaving `to`.
    Down {
        to: usize,
        workers: Vec<K>,
    },
}

/// The policy and what it remembers between ticks.
#[derive(Debug)]
pub(crate) struct Autoscaler {
    pub policy: ScalePolicy,
    /// Queue waits of calls that left the queue, with when they left.
    waits: VecDeque<(Instant, Duration)>,
    /// Since when more calls per worker than `queue_depth` wait.
    deep_since: Option<Instant>,
}

/// Waits kept at most (a burst of calls leaving at once need not all count).
const MAX_SAMPLES: usize = 4096;

impl Autoscaler {
    pub fn new(policy: ScalePolicy) -> Self {
        Self {
            policy,
            waits: VecDeque::new(),
            deep_since: None,
        }
    }

    /// A call left the queue for a worker after waiting `waited`.
    pub fn record_wait(&mut self, now: Instant, waited: Duration) {
        if self.waits.len() == MAX_SAMPLES {
            self.waits.pop_front();
        }
        self.waits.push_back((now, waited));
    }

    /// The 90th percentile of the window's waits, the oldest call waiting
    /// now counting as one more.
    fn p90_wait(&mut self, now: Instant, oldest: Option<Duration>) -> Duration {
        let since = now.checked_sub(self.policy.window);
        while let Some(&(at, _)) = self.waits.front() {
            if since.is_some_and(|since| at < since) {
                self.waits.pop_front();
            } else {
                break;
            }
        }
        let mut waits: Vec<Duration> = self.waits.iter().map(|&(_, w)| w).chain(oldest).collect();
        if waits.is_empty() {
            return Duration::ZERO;
        }
        waits.sort_unstable();
        // Nearest rank: the smallest wait at or above 90% of them.
        let rank = (waits.len() * 9).div_ceil(10).max(1);
        waits[rank - 1]
    }

    /// What to do now.
    pub fn decide<K: Clone>(&mut self, now: Instant, load: &Load<K>) -> Decision<K> {
        let p = self.policy;
        let capacity = load.capacity.max(1);
        // What the load needs: the busy workers, the queue spread over
        // workers, and the spares.
        let needed = (load.busy + load.queued.div_ceil(capacity) + p.prestart).clamp(p.min, p.max);
        let floor = (load.busy + p.prestart).clamp(p.min, p.max);
        let p90 = self.p90_wait(now, load.oldest_wait);
        let deep = match p.queue_depth {
            Some(depth) if load.queued > depth * load.target.max(1) => {
                let since = *self.deep_since.get_or_insert(now);
                now.duration_since(since) >= p.window
            }
            _ => {
                self.deep_since = None;
                false
            }
        };
        let up = |this: &mut Self, to: usize, reason: Reason| {
            this.waits.clear();
            this.deep_since = None;
            Decision::Up { to, reason }
        };
        if load.failing {
            return Decision::Hold;
        }
        if load.target == 0 && load.queued > 0 {
            return up(self, needed.max(1), Reason::ColdStart);
        }
        if load.target < floor {
            return up(self, floor, Reason::Prestart);
        }
        let reason = if p90 > p.scale_up_wait && load.queued > 0 {
            Some(Reason::QueueWait)
        } else if deep {
            Some(Reason::QueueDepth)
        } else {
            None
        };
        if let Some(reason) = reason {
            // Workers on their way are capacity to come: ask again only
            // for what the load needs beyond them.
            let to = if load.starting > 0 {
                needed
            } else {
                needed.max(load.target + 1)
            }
            .min(p.max);
            if to > load.target {
                return up(self, to, reason);
            }
            return Decision::Hold;
        }
        if load.queued > 0 || load.target <= floor {
            return Decision::Hold;
        }
        let mut idle: Vec<&(K, Duration)> = load
            .idle
            .iter()
            .filter(|(_, idle)| *idle >= p.idle_timeout)
            .collect();
        if idle.is_empty() {
            return Decision::Hold;
        }
        // The longest idle go first.
        idle.sort_by_key(|(_, idle)| std::cmp::Reverse(*idle));
        let workers: Vec<K> = idle
            .into_iter()
            .take(load.target - floor)
            .map(|(k, _)| k.clone())
            .collect();
        Decision::Down {
            to: load.target - workers.len(),
            workers,
        }
    }
}
