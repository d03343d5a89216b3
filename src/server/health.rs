//! The standard `grpc.health.v1.Health` service, driven by the pools. The
//! names `""` (the whole server) and `snakepit.v1.Snakepit` are SERVING
//! while no pool is degraded; each pool also answers as
//! `snakepit.pool.<name>`, NOT_SERVING while it is degraded. Once shutdown
//! begins, every name is NOT_SERVING. Health checks need no token (they tell
//! only up or down).
//!
//! The statuses start from each pool's status and follow the telemetry
//! events `PoolDegraded` and `PoolRecovered`; after missed events (a lagging
//! subscriber) they are read from the pools again. The loop runs with the
//! server (`server.rs`).

use std::collections::BTreeMap;

use tokio::sync::broadcast;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use snakepit_actors::ShutdownSignal;

use crate::{Event, Snakepit};

/// The health name of the API service.
pub(crate) const API_SERVICE: &str = "snakepit.v1.Snakepit";

/// The health name of pool `pool`.
pub(crate) fn pool_service(pool: &str) -> String {
    format!("snakepit.pool.{pool}")
}

/// What the reporter publishes.
pub(crate) struct Health {
    reporter: HealthReporter,
    /// Whether each pool is degraded.
    degraded: BTreeMap<String, bool>,
    /// Once requested, nothing is SERVING again.
    signal: ShutdownSignal,
}

impl Health {
    /// The statuses of `snakepit`'s pools as they are now, published.
    pub(crate) async fn start(
        reporter: HealthReporter,
        snakepit: &Snakepit,
        signal: ShutdownSignal,
    ) -> Self {
        let mut health = Self {
            reporter,
            degraded: BTreeMap::new(),
            signal,
        };
        health.refresh(snakepit).await;
        health
    }

    /// Reads every pool's status again and publishes.
    async fn refresh(&mut self, snakepit: &Snakepit) {
        for pool in snakepit.pools() {
            // A pool that does not answer is going away: not serving.
            let degraded = pool.status().await.map(|s| s.degraded).unwrap_or(true);
            self.degraded.insert(pool.name().to_string(), degraded);
        }
        self.publish().await;
    }

    async fn set(&mut self, pool: &str, degraded: bool) {
        if self.degraded.get(pool) != Some(&degraded) {
            self.degraded.insert(pool.to_string(), degraded);
            self.publish().await;
        }
    }

    async fn publish(&self) {
        let status = |up: bool| {
            if up && !self.signal.is_requested() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        let all_up = self.degraded.values().all(|d| !d);
        for name in ["", API_SERVICE] {
            self.reporter.set_service_status(name, status(all_up)).await;
        }
        for (pool, degraded) in &self.degraded {
            self.reporter
                .set_service_status(pool_service(pool), status(!degraded))
                .await;
        }
    }

    /// Follows the pools' health until shutdown begins ([`stop`](Self::stop)
    /// then turns every name NOT_SERVING; a change seen meanwhile publishes
    /// NOT_SERVING too).
    pub(crate) async fn run(mut self, snakepit: Snakepit, mut events: broadcast::Receiver<Event>) {
        let signal = self.signal.clone();
        loop {
            tokio::select! {
                _ = signal.requested() => break,
                event = events.recv() => match event {
                    Ok(Event::PoolDegraded(e)) => self.set(&e.pool, true).await,
                    Ok(Event::PoolRecovered(e)) => self.set(&e.pool, false).await,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.refresh(&snakepit).await,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }

    /// Every name NOT_SERVING (the server is going down).
    pub(crate) async fn stop(reporter: &HealthReporter, pools: &[String]) {
        let mut names = vec![String::new(), API_SERVICE.to_string()];
        names.extend(pools.iter().map(|p| pool_service(p)));
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}
