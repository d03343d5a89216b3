//! Calls to batched tools, in the pool actor: they gather in the batching
//! window (`batching.rs`), leave it as one request carrying the batch
//! (`Execute.batch`), which queues and routes like any other, and its
//! answers go back to each caller (`split`).
//!
//! Per call, as for a call of its own: a caller that gives up leaves the
//! window or the queued batch (once sent, its answer is dropped); an
//! idempotent call whose worker dies runs again (in a later batch); the
//! caller's deadline and telemetry are its own (`PoolHandle`).

use std::sync::Arc;
use std::time::Instant;

use ractor::ActorRef;
use snakepit_proto::v1;
use tokio::sync::oneshot;

use super::batching::{Added, BatchKey, BatchPolicy, Formed};
use super::messages::{BatchCalls, BatchMember, PoolMessage, Request, RequestBox, Retry};
use super::{PoolState, pump};
use crate::error::Error;
use crate::telemetry::{BatchFormed, RequestCancelled};
use crate::wire::{self, BatchAnswers, Sink};

/// The batching policy of `request`'s tool, when the request may batch: a
/// unary call of a batched tool, not a host tool's nested call.
pub(super) fn policy_for(state: &PoolState, request: &Request) -> Option<BatchPolicy> {
    if request.parent.is_some()
        || request.batch.is_some()
        || !matches!(request.sink, Sink::Unary(_))
    {
        return None;
    }
    state.batching.get(&*request.tool).copied()
}

/// The calls `request` may share a batch with: same tool, and the same
/// worker when it must run on one (it carries a ref, or its strict session
/// is bound) — for refs, also the same session, in which the worker
/// resolves the refs of the whole batch.
fn key_of(state: &PoolState, request: &Request) -> BatchKey {
    let (worker, session) = match (&request.pin, &request.session) {
        (Some(pin), _) => (Some(pin.worker.to_string()), request.session.clone()),
        (None, Some(session)) if request.affinity.is_strict() => {
            (state.bindings.get(session).map(|b| b.worker.clone()), None)
        }
        _ => (None, None),
    };
    BatchKey {
        tool: request.tool.clone(),
        worker,
        session,
    }
}

/// Puts `request` in the batching window; a batch it completes joins the
/// queue.
pub(super) fn gather(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    request: Box<Request>,
    policy: BatchPolicy,
) {
    let key = key_of(state, &request);
    // The call's Execute bounds what it adds to a batch (its tool name and
    // metadata are counted though only the first call's are sent).
    let bytes = prost::Message::encoded_len(&request.execute);
    // What a batch adds around its calls: the Execute's own fields.
    let room = state.config.max_frame_bytes.saturating_sub(BATCH_OVERHEAD);
    let Added { left, opened } = state.batcher.add(
        key.clone(),
        request,
        bytes,
        policy,
        room,
        tokio::time::Instant::now(),
    );
    if let Some((epoch, due)) = opened {
        let wait = due.saturating_duration_since(tokio::time::Instant::now());
        let key = key.clone();
        myself.send_after(wait, move || PoolMessage::BatchDue { key, epoch });
    }
    for formed in left {
        enqueue(state, formed);
    }
    pump(myself, state);
}

/// Bytes of an Execute (and its frame) beyond its calls.
const BATCH_OVERHEAD: usize = 4 * 1024;

/// The batching window of `key`'s batch `epoch` closed.
pub(super) fn due(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState,
    key: &BatchKey,
    epoch: u64,
) {
    if let Some(formed) = state.batcher.due(key, epoch) {
        enqueue(state, formed);
        pump(myself, state);
    }
}

/// Fails every call still gathering with `err`.
pub(super) fn flush(state: &mut PoolState, err: &Error) {
    for formed in state.batcher.flush() {
        for request in formed.calls {
            request.fail(err.clone());
        }
    }
}

/// Calls queued one by one before their tool was known as batched (no
/// worker had said Hello yet) move to the batching window.
pub(super) fn rebatch(myself: &ActorRef<PoolMessage>, state: &mut PoolState) {
    let mut i = 0;
    while i < state.queue.len() {
        match policy_for(state, state.queue.get(i)) {
            Some(policy) => {
                let request = state.queue.remove(i);
                gather(myself, state, request, policy);
            }
            None => i += 1,
        }
    }
}

/// A formed batch as one request, into the queue (in arrival order of its
/// first call: ahead of calls that came after it).
fn enqueue(state: &mut PoolState, formed: Formed<Box<Request>>) {
    let Formed {
        key,
        calls,
        opened,
        closed,
    } = formed;
    let now = Instant::now();
    let size = calls.len();
    let mut members = Vec::with_capacity(size);
    let mut batch = Vec::with_capacity(size);
    let mut shared = Vec::new();
    let mut timeout_ms = 0;
    // The batch routes as its first call, and its worker sees that call's
    // tool, session and metadata.
    let mut head = None;
    for request in calls {
        let retry = request.retry.then(|| Box::new(Retry::of(&request)));
        let Request {
            id,
            tool,
            execute,
            sink,
            enqueued,
            session,
            affinity,
            pin,
            span,
            shared: mut own,
            ..
        } = *request;
        let Sink::Unary(sink) = sink else {
            unreachable!("only unary calls batch");
        };
        let v1::Execute {
            tool: name,
            session_id,
            args,
            kwargs,
            timeout_ms: call_timeout,
            metadata,
            ..
        } = execute;
        timeout_ms = timeout_ms.max(call_timeout);
        shared.append(&mut own);
        batch.push(v1::BatchCall {
            kwargs,
            args,
            session_id: session_id.clone(),
        });
        members.push(BatchMember {
            id,
            sink,
            session: session.clone(),
            enqueued,
            retry,
        });
        if head.is_none() {
            let execute = v1::Execute {
                tool: name,
                session_id,
                metadata,
                ..Default::default()
            };
            head = Some((tool, execute, session, affinity, pin, span));
        }
    }
    let (tool, execute, session, affinity, pin, span) = head.expect("a batch has a call");
    crate::telemetry::metric_batch(
        &state.config.name,
        &key.tool,
        size,
        members.iter().map(|m| now - m.enqueued),
    );
    BatchFormed {
        pool: state.config.name.clone(),
        tool: key.tool.to_string(),
        size,
        waited: opened.elapsed(),
        reason: closed.as_str(),
    }
    .emit(&state.telemetry);
    let (tx, answers) = oneshot::channel();
    let enqueued = members.iter().map(|m| m.enqueued).min().unwrap_or(now);
    let request = Request {
        id: wire::next_request_id(),
        tool,
        execute: v1::Execute {
            batch,
            timeout_ms,
            ..execute
        },
        sink: Sink::Batch(tx),
        enqueued,
        retry: false,
        session,
        affinity,
        parent: None,
        pin,
        span,
        shared,
        batch: Some(Box::new(BatchCalls { members, answers })),
    };
    let at = (0..state.queue.len())
        .find(|&i| state.queue.get(i).enqueued > enqueued)
        .unwrap_or(state.queue.len());
    state.queue.insert(at, Box::new(request));
}

/// Drops call `id` from the batching window or from a batch still queued;
/// whether it was there.
pub(super) fn cancel(state: &mut PoolState, id: u64) -> bool {
    if let Some(request) = state.batcher.remove(|r| r.id == id) {
        cancelled(state, &request.tool);
        request.sink.fail(Error::Cancelled);
        return true;
    }
    let found = (0..state.queue.len()).find_map(|i| {
        let at = state
            .queue
            .get(i)
            .batch
            .as_ref()?
            .members
            .iter()
            .position(|m| m.id == id)?;
        Some((i, at))
    });
    let Some((i, at)) = found else {
        return false;
    };
    let mut request = state.queue.remove(i);
    let batch = request.batch.as_mut().expect("a batch");
    let member = batch.members.remove(at);
    request.execute.batch.remove(at);
    let _ = member.sink.send(Err(Error::Cancelled));
    let tool = request.tool.clone();
    if !request.batch.as_ref().expect("a batch").members.is_empty() {
        state.queue.insert(i, request);
    }
    cancelled(state, &tool);
    true
}

fn cancelled(state: &PoolState, tool: &Arc<str>) {
    RequestCancelled {
        pool: state.config.name.clone(),
        tool: tool.to_string(),
        stage: "batching",
    }
    .emit(&state.telemetry);
}

/// Once a batch is sent: waits for its answers and hands each caller its
/// own. When its worker died, idempotent calls run again (`Requeue`).
pub(super) fn split(
    myself: ActorRef<PoolMessage>,
    tool: Arc<str>,
    worker: String,
    calls: BatchCalls,
) {
    let BatchCalls { members, answers } = calls;
    tokio::spawn(async move {
        let answers: BatchAnswers = match answers.await {
            Ok(Ok(items)) if items.len() == members.len() => items,
            Ok(Ok(items)) => {
                let err = Error::Protocol(format!(
                    "batched tool `{tool}` answered {} of {} calls",
                    items.len(),
                    members.len()
                ));
                members.iter().map(|_| Err(err.clone())).collect()
            }
            Ok(Err(err @ Error::WorkerCrashed { .. })) => {
                let mut answers = Vec::with_capacity(members.len());
                let mut rest = Vec::with_capacity(members.len());
                for mut member in members {
                    match member.retry.take() {
                        Some(retry) if !member.sink.is_closed() => {
                            let request = retry.into_request(
                                member.id,
                                tool.clone(),
                                Sink::Unary(member.sink),
                            );
                            let _ = myself.cast(PoolMessage::Requeue {
                                request: RequestBox(Box::new(request)),
                                failed_worker: worker.clone(),
                            });
                        }
                        _ => {
                            answers.push(Err(err.clone()));
                            rest.push(member);
                        }
                    }
                }
                answer(rest, answers);
                return;
            }
            Ok(Err(err)) => members.iter().map(|_| Err(err.clone())).collect(),
            // The connection went without an answer: the callers see the
            // pool gone, as a single call would.
            Err(_) => return,
        };
        answer(members, answers);
    });
}

fn answer(members: Vec<BatchMember>, answers: BatchAnswers) {
    for (member, answer) in members.into_iter().zip(answers) {
        let _ = member.sink.send(answer);
    }
}
