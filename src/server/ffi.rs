//! The universal FFI over gRPC: each operation is a call of a reserved tool
//! (`snakepit.ffi.*`, see `docs/ffi-protocol.md`) built here with the
//! request's arguments and deadline, and run in a [`Scope`]:
//!
//! - the request's session, when it names one;
//! - else the session of the ref it targets (a ref lives in its session);
//! - else a session of its own, released as soon as the request is over
//!   (and, for a stream, when the stream is): nothing it makes outlives it.
//!
//! Releasing a ref ([`release`]) is not a call: it goes to the worker
//! holding the ref, and releasing twice, or after the session ended, is not
//! an error.
//!
//! Called by the RPC handlers (`service.rs`).

use std::time::Duration;

use futures::StreamExt as _;
use snakepit_proto::v1::{self, ffi_release_ref_request};
use snakepit_proto::{ObjectRef, StreamRefValue};

use super::convert;
use super::observe::BoxStream;
use super::service::{Api, given, items, missing};
use super::sessions::Entry;
pub(super) use crate::ffi::ops;
use crate::{Call, Error, Session, Value};

/// How long a ref release may take when the client set no deadline.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The session an FFI request runs in.
pub(super) enum Scope {
    /// One of the server's sessions.
    Session(Entry),
    /// A session of the request's own.
    OneShot(Session),
}

impl Scope {
    /// The scope of a request naming `session_id` (maybe empty) and
    /// targeting a ref of `ref_session`, when it targets one.
    pub(super) async fn open(
        api: &Api,
        session_id: &str,
        ref_session: Option<&str>,
    ) -> Result<Self, Error> {
        let id = match (session_id, ref_session) {
            ("", Some(of_ref)) => of_ref,
            (id, _) => id,
        };
        Ok(match id {
            "" => Scope::OneShot(api.sessions.one_shot().await?),
            id => Scope::Session(api.sessions.get(id).await?),
        })
    }

    fn session(&self) -> &Session {
        match self {
            Scope::Session(entry) => &entry.session,
            Scope::OneShot(session) => session,
        }
    }

    /// The pool `pool` names, else the session's default.
    fn pool(&self, pool: String) -> Option<String> {
        given(pool).or_else(|| match self {
            Scope::Session(entry) => entry.pool.clone(),
            Scope::OneShot(_) => None,
        })
    }

    /// Runs `call` on `pool` (see [`pool`](Self::pool)); a one-shot session
    /// is released before the answer goes out.
    pub(super) async fn run(self, pool: String, call: Call) -> Result<Value, Error> {
        let pool = self.pool(pool);
        let result = self.session().run_on(pool.as_deref(), call).await;
        if let Scope::OneShot(session) = self
            && let Err(err) = session.release().await
        {
            tracing::debug!(error = %err, "Releasing a one-shot FFI session failed.");
        }
        result
    }

    /// Runs the streaming `call`; a one-shot session lives as long as the
    /// stream and is released when it is dropped.
    pub(super) async fn stream(
        self,
        pool: String,
        call: Call,
    ) -> Result<BoxStream<v1::StreamItem>, Error> {
        let pool = self.pool(pool);
        let stream = self.session().run_stream_on(pool.as_deref(), call).await?;
        // The stream owns the scope: dropping it drops a one-shot session's
        // last handle, which releases the session.
        let scope = self;
        Ok(items(stream.map(move |chunk| {
            let _ = &scope;
            chunk
        })))
    }
}

/// A call of `op` with `head` (what the operation works on) as its first
/// positional arguments.
pub(super) fn op(op: &str, head: Vec<Value>, timeout: Option<Duration>) -> Call {
    let mut call = Call::new(op);
    call.args = head;
    call.timeout = timeout;
    call
}

/// `op(module, function, *args, **kwargs)`: a call, a class, or a stream.
pub(super) fn call(
    op_name: &str,
    req: &mut v1::FfiCallRequest,
    timeout: Option<Duration>,
) -> Result<Call, Error> {
    let head = vec![
        Value::from(std::mem::take(&mut req.module)),
        Value::from(std::mem::take(&mut req.function)),
    ];
    let mut call = op(op_name, head, timeout);
    call.args
        .extend(convert::args(std::mem::take(&mut req.args))?);
    call.kwargs = convert::kwargs(std::mem::take(&mut req.kwargs))?;
    Ok(call)
}

/// An FFI operation's answer.
pub(super) fn response(value: Result<Value, Error>) -> Result<v1::FfiResponse, Error> {
    Ok(v1::FfiResponse {
        value: Some(value?.into()),
    })
}

/// The object a request targets.
pub(super) fn object_ref(target: Option<v1::ObjectRef>) -> Result<ObjectRef, Error> {
    Ok(target.ok_or_else(|| missing("target"))?.into())
}

/// The iterator a request targets.
pub(super) fn stream_ref(stream: Option<v1::StreamRef>) -> Result<StreamRefValue, Error> {
    Ok(stream.ok_or_else(|| missing("stream"))?.into())
}

/// Drops the object or iterator a FfiReleaseRef names in the worker that
/// holds it.
pub(super) async fn release(
    api: &Api,
    req: v1::FfiReleaseRefRequest,
    timeout: Option<Duration>,
) -> Result<(), Error> {
    let (id, ref_session) = match req.target {
        Some(ffi_release_ref_request::Target::Ref(r)) => (r.id, r.session_id),
        Some(ffi_release_ref_request::Target::Stream(s)) => (s.id, s.session_id),
        None => return Err(missing("target")),
    };
    let session = given(req.session_id).unwrap_or(ref_session);
    // The session's default pool when it has one; a session that is over
    // took its refs with it, and the release finds nothing, which is fine.
    let default = match session.as_str() {
        "" => None,
        id => api.sessions.get(id).await.ok().and_then(|e| e.pool),
    };
    let pool = api.pool(given(req.pool).or(default).as_deref())?;
    pool.release_ref(&session, &id, timeout.unwrap_or(RELEASE_TIMEOUT))
        .await
}
