//! One way to ask an actor and wait for its answer. [`ask`] sends the
//! message `msg` builds around a reply port and tells an answer from an actor
//! that is gone (stopped, or dropped the port) or too slow, so that each
//! caller turns those into its own error in one place. The caller handles
//! (pool, runtime, sessions) use it for every request-reply message.

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::Error;

/// Why an asked actor did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unanswered {
    /// No answer within the timeout given.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The actor stopped, or dropped the reply port.
    #[error("the actor is gone")]
    Gone,
}

impl From<Unanswered> for Error {
    /// A gone actor is the runtime shutting down; a caller that gives a
    /// timeout says what timed out itself.
    fn from(unanswered: Unanswered) -> Self {
        match unanswered {
            Unanswered::Gone => Error::ShuttingDown,
            Unanswered::TimedOut(after) => Error::Timeout {
                tool: "<actor call>".into(),
                after,
            },
        }
    }
}

/// Sends `actor` the message `msg` makes around a reply port and waits for
/// the reply, at most `timeout` when given.
pub(crate) async fn ask<M, T>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Option<Duration>,
) -> Result<T, Unanswered>
where
    M: Message,
    T: Send + 'static,
{
    match actor.call(msg, timeout).await {
        Ok(CallResult::Success(answer)) => Ok(answer),
        Ok(CallResult::Timeout) => Err(Unanswered::TimedOut(timeout.unwrap_or_default())),
        Ok(CallResult::SenderError) | Err(_) => Err(Unanswered::Gone),
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};

    use super::*;

    /// Answers `Some(n)` with `n + 1`; keeps the port of `None` unanswered
    /// (dropping it when it stops).
    struct Echo;

    enum EchoMessage {
        Add(Option<u32>, RpcReplyPort<u32>),
        Stop,
    }

    impl Actor for Echo {
        type Msg = EchoMessage;
        type State = Vec<RpcReplyPort<u32>>;
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<EchoMessage>,
            _: (),
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(Vec::new())
        }

        async fn handle(
            &self,
            myself: ActorRef<EchoMessage>,
            msg: EchoMessage,
            held: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                EchoMessage::Add(Some(n), reply) => {
                    let _ = reply.send(n + 1);
                }
                EchoMessage::Add(None, reply) => held.push(reply),
                EchoMessage::Stop => myself.stop(None),
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_timeouts_and_gone_actors_are_told_apart() {
        let (actor, handle) = Actor::spawn(None, Echo, ()).await.expect("spawned");
        let answer = ask(&actor, |r| EchoMessage::Add(Some(1), r), None).await;
        assert_eq!(answer, Ok(2));
        let wait = Duration::from_millis(20);
        let slow = ask(&actor, |r| EchoMessage::Add(None, r), Some(wait)).await;
        assert_eq!(slow, Err(Unanswered::TimedOut(wait)));
        actor.cast(EchoMessage::Stop).expect("running");
        handle.await.expect("stopped");
        let gone = ask(&actor, |r| EchoMessage::Add(Some(1), r), None).await;
        assert_eq!(gone, Err(Unanswered::Gone));
        assert!(matches!(Error::from(Unanswered::Gone), Error::ShuttingDown));
    }
}
