//! Services: long-running futures the runtime supervises beside its pools —
//! the gRPC server of `snakepit serve` is one. The root starts each in a
//! [`Service`] actor, a linked child (`RuntimeHandle::spawn_service`), so
//! that a service that fails or panics is a supervision event of the root
//! (logged, and the event `snakepit.runtime.service.failed`), never a task
//! that died unseen.
//!
//! At shutdown the root tells every service to stop through the
//! [`ShutdownSignal`] it was started with, which carries the deadline, and
//! waits for them (until that deadline) before the pools go down: a server
//! drains its streams while the workers still answer. A service still running
//! at the deadline is stopped, its future dropped.
//!
//! What a service does is its own business: this module runs a future and
//! knows nothing of what it serves (tonic stays above the actors).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Instant;

use futures::FutureExt as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::host::tools::panic_text;

/// What a service runs: it resolves when the service is over, `Err` with
/// the reason when it failed.
pub type ServiceFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

/// Makes a service's future, once, from the signal that will tell it to stop.
pub type ServiceFactory = Box<dyn FnOnce(ShutdownSignal) -> ServiceFuture + Send + 'static>;

/// Tells a service that the runtime is shutting down, and by when it must be
/// done. Cheap to clone; every clone sees the same request.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<Option<Instant>>,
}

/// The root's side of the [`ShutdownSignal`]s of its services.
pub(crate) struct ShutdownTrigger {
    tx: watch::Sender<Option<Instant>>,
}

impl ShutdownTrigger {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::channel(None).0,
        }
    }

    /// A signal for one more service.
    pub(crate) fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells every service to be done by `deadline`.
    pub(crate) fn request(&self, deadline: Instant) {
        self.tx.send_replace(Some(deadline));
    }

    /// Whether shutdown was requested.
    pub(crate) fn is_requested(&self) -> bool {
        self.tx.borrow().is_some()
    }
}

impl ShutdownSignal {
    /// The deadline, once shutdown was requested.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.deadline().is_some()
    }

    /// Resolves when shutdown is requested, with its deadline (now, when the
    /// runtime is gone without asking).
    pub async fn requested(&self) -> Instant {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(deadline) => deadline.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        }
    }
}

/// The actor a service runs under.
pub(crate) struct Service;

pub(crate) struct ServiceArgs {
    pub start: ServiceFactory,
    pub signal: ShutdownSignal,
}

/// What a service actor is told.
pub(crate) enum ServiceMessage {
    /// Its future resolved (a panic is an `Err`).
    Ended(Result<(), String>),
}

pub(crate) struct ServiceState {
    task: JoinHandle<()>,
}

impl Actor for Service {
    type Msg = ServiceMessage;
    type State = ServiceState;
    type Arguments = ServiceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ServiceMessage>,
        args: ServiceArgs,
    ) -> Result<ServiceState, ActorProcessingErr> {
        let future = (args.start)(args.signal);
        let task = tokio::spawn(async move {
            let ended = AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let text = panic_text(panic).unwrap_or_else(|| "no message".to_string());
                    Err(format!("the service panicked: {text}"))
                });
            let _ = myself.cast(ServiceMessage::Ended(ended));
        });
        Ok(ServiceState { task })
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceMessage>,
        message: ServiceMessage,
        _state: &mut ServiceState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ServiceMessage::Ended(Ok(())) => {
                myself.stop(None);
                Ok(())
            }
            // Failing the actor is how the root hears of it.
            ServiceMessage::Ended(Err(reason)) => Err(reason.into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ServiceMessage>,
        state: &mut ServiceState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped before its future was done: the future goes.
        state.task.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_signal_carries_the_deadline_to_every_clone() {
        let trigger = ShutdownTrigger::new();
        let signal = trigger.signal();
        let other = signal.clone();
        assert!(!signal.is_requested());
        let waiting = tokio::spawn(async move { other.requested().await });
        let deadline = Instant::now() + Duration::from_secs(3);
        trigger.request(deadline);
        assert_eq!(waiting.await.unwrap(), deadline);
        assert_eq!(signal.deadline(), Some(deadline));
        assert!(trigger.is_requested());
    }

    #[tokio::test]
    async fn a_signal_whose_runtime_is_gone_resolves_at_once() {
        let trigger = ShutdownTrigger::new();
        let signal = trigger.signal();
        drop(trigger);
        let before = Instant::now();
        assert!(signal.requested().await >= before);
    }
}
