//! The RPCs of `snakepit.v1.Snakepit` (`proto/snakepit/v1/service.proto`),
//! each a thin handler over the runtime: it reads the request, runs the
//! call through the runtime's own API, and answers; [`Observer`] turns the
//! error into its status and counts the call.
//!
//! - Where a call runs ([`Target`]): the request's session (from the
//!   server's table, `sessions.rs`) or none; the request's pool, else the
//!   session's, else the default; the request's affinity, else the
//!   session's, else the pool's.
//! - The client's deadline is the call's timeout (`deadline.rs`), for
//!   Execute, ExecuteStream (the whole stream) and the FFI operations.
//! - Streams are the runtime's `ExecStream` mapped item by item, with no
//!   buffer in between: HTTP/2 flow control stops polling it, the stream
//!   grants the worker no more credits, and the Python generator waits.
//!   A client that cancels drops the stream, which cancels the generator.
//! - The FFI operations (`ffi.rs`) run in the request's session, else the
//!   session of the ref they target, else a session of their own released
//!   when the request is over.
//!
//! Served by `server.rs`, behind the gate of `auth.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt as _};
use snakepit_proto::v1;
use snakepit_proto::v1::snakepit_server::Snakepit as Rpc;
use tonic::{Request, Response, Status};

use super::convert::{self, bad_request};
use super::deadline;
use super::ffi::{self, Scope};
use super::observe::{BoxStream, InFlight, Observer};
use super::sessions::{Entry, NewSession, SessionTable};
use super::status;
use snakepit_actors::ShutdownSignal;

use crate::{Affinity, Call, Error, ExecStream, PoolHandle, Snakepit, Value, VarType};

/// The API's state: the runtime, the session table, the call observer.
pub(crate) struct Api {
    pub(super) snakepit: Snakepit,
    pub(super) sessions: Arc<SessionTable>,
    observer: Observer,
    signal: ShutdownSignal,
}

/// Where a call runs.
pub(super) struct Target {
    pub(super) entry: Option<Entry>,
    pub(super) pool: Option<String>,
    pub(super) affinity: Option<Affinity>,
}

/// `Some` unless empty: proto3 strings are empty when unset.
pub(super) fn given(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl Api {
    pub(crate) fn new(
        snakepit: Snakepit,
        sessions: Arc<SessionTable>,
        signal: ShutdownSignal,
        in_flight: InFlight,
    ) -> Self {
        let observer = Observer::new(snakepit.runtime().telemetry().clone(), in_flight);
        Self {
            snakepit,
            sessions,
            observer,
            signal,
        }
    }

    /// Where a request for `session_id`, `pool` and `affinity` runs.
    async fn target(&self, session_id: &str, pool: String, affinity: i32) -> Result<Target, Error> {
        let affinity = convert::affinity(affinity)?;
        let entry = match session_id {
            "" => None,
            id => Some(self.sessions.get(id).await?),
        };
        Ok(Target {
            pool: given(pool).or_else(|| entry.as_ref().and_then(|e| e.pool.clone())),
            affinity: affinity.or_else(|| entry.as_ref().and_then(|e| e.affinity)),
            entry,
        })
    }

    /// The pool called `name`, the default one when `None`.
    pub(super) fn pool(&self, name: Option<&str>) -> Result<&PoolHandle, Error> {
        match name {
            Some(name) => self.snakepit.pool(name),
            None => Ok(self.snakepit.default_pool()),
        }
    }

    async fn run(&self, target: &Target, mut call: Call) -> Result<Value, Error> {
        match &target.entry {
            Some(entry) => {
                call.affinity = target.affinity;
                entry.session.run_on(target.pool.as_deref(), call).await
            }
            None => self.pool(target.pool.as_deref())?.execute(call).await,
        }
    }

    async fn run_stream(&self, target: &Target, mut call: Call) -> Result<ExecStream, Error> {
        match &target.entry {
            Some(entry) => {
                call.affinity = target.affinity;
                entry
                    .session
                    .run_stream_on(target.pool.as_deref(), call)
                    .await
            }
            None => {
                self.pool(target.pool.as_deref())?
                    .execute_stream(call)
                    .await
            }
        }
    }

    async fn session(&self, id: &str) -> Result<Entry, Error> {
        self.sessions.get(id).await
    }

    async fn session_info(&self, entry: &Entry) -> Result<v1::SessionInfo, Error> {
        let info = entry.session.info().await?;
        Ok(convert::session_info(
            info,
            &self.sessions.pool_of(entry),
            entry.affinity,
        ))
    }
}

/// The call an ExecuteRequest asks for; `correlation`: the request's
/// correlation-id header, used when its metadata names none.
fn tool_call(
    req: v1::ExecuteRequest,
    timeout: Option<std::time::Duration>,
    correlation: Option<String>,
) -> Result<Call, Error> {
    let mut call = Call::new(req.tool).idempotent(req.idempotent);
    call.args = convert::args(req.args)?;
    call.kwargs = convert::kwargs(req.kwargs)?;
    call.timeout = timeout;
    call.metadata = convert::metadata(req.metadata);
    if let Some(id) = correlation
        && call.correlation().is_none()
    {
        call = call.correlation_id(id);
    }
    Ok(call)
}

/// The `x-snakepit-correlation-id` header of a request, when it has a
/// non-empty one.
fn correlation_header(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get(snakepit_actors::telemetry::trace::CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Chunks as stream items; an error ends the stream with its status.
pub(super) fn items(
    stream: impl Stream<Item = Result<crate::Chunk, Error>> + Send + 'static,
) -> BoxStream<v1::StreamItem> {
    Box::pin(stream.map(|item| {
        item.map(convert::stream_item)
            .map_err(|err| status::status(&err))
    }))
}

#[tonic::async_trait]
impl Rpc for Api {
    async fn execute(
        &self,
        request: Request<v1::ExecuteRequest>,
    ) -> Result<Response<v1::ExecuteResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let correlation = correlation_header(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("Execute", async move {
                let target = self
                    .target(&req.session_id, req.pool.clone(), req.affinity)
                    .await?;
                let value = self
                    .run(&target, tool_call(req, timeout, correlation)?)
                    .await?;
                Ok(v1::ExecuteResponse {
                    value: Some(value.into()),
                })
            })
            .await
    }

    type ExecuteStreamStream = BoxStream<v1::StreamItem>;

    async fn execute_stream(
        &self,
        request: Request<v1::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let correlation = correlation_header(request.metadata());
        let req = request.into_inner();
        self.observer
            .stream("ExecuteStream", async move {
                let target = self
                    .target(&req.session_id, req.pool.clone(), req.affinity)
                    .await?;
                let stream = self
                    .run_stream(&target, tool_call(req, timeout, correlation)?)
                    .await?;
                Ok(items(stream))
            })
            .await
    }

    async fn create_session(
        &self,
        request: Request<v1::CreateSessionRequest>,
    ) -> Result<Response<v1::SessionInfo>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("CreateSession", async move {
                let entry = self
                    .sessions
                    .create(NewSession {
                        id: req.id,
                        pool: given(req.pool),
                        affinity: convert::affinity(req.affinity)?,
                        metadata: convert::metadata(req.metadata),
                    })
                    .await?;
                self.session_info(&entry).await
            })
            .await
    }

    async fn get_session(
        &self,
        request: Request<v1::SessionRequest>,
    ) -> Result<Response<v1::SessionInfo>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("GetSession", async move {
                let entry = self.session(&req.session_id).await?;
                self.session_info(&entry).await
            })
            .await
    }

    async fn release_session(
        &self,
        request: Request<v1::SessionRequest>,
    ) -> Result<Response<v1::ReleaseSessionResponse>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("ReleaseSession", async move {
                self.sessions.release(&req.session_id).await?;
                Ok(v1::ReleaseSessionResponse {})
            })
            .await
    }

    async fn ffi_call(
        &self,
        request: Request<v1::FfiCallRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let mut req = request.into_inner();
        self.observer
            .unary("FfiCall", async move {
                let scope = Scope::open(self, &req.session_id, None).await?;
                let call = ffi::call(ffi::ops::CALL, &mut req, timeout)?;
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    async fn ffi_get(
        &self,
        request: Request<v1::FfiGetRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiGet", async move {
                let scope = Scope::open(self, &req.session_id, None).await?;
                let head = vec![Value::from(req.module), Value::from(req.attr)];
                let call = ffi::op(ffi::ops::GET, head, timeout);
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    async fn ffi_call_class(
        &self,
        request: Request<v1::FfiCallRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let mut req = request.into_inner();
        self.observer
            .unary("FfiCallClass", async move {
                let scope = Scope::open(self, &req.session_id, None).await?;
                let call = ffi::call(ffi::ops::CALL_CLASS, &mut req, timeout)?;
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    async fn ffi_method(
        &self,
        request: Request<v1::FfiMethodRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiMethod", async move {
                let target = ffi::object_ref(req.target)?;
                let scope = Scope::open(self, &req.session_id, Some(&target.session_id)).await?;
                let mut call = ffi::op(
                    ffi::ops::METHOD,
                    vec![Value::Ref(target), Value::from(req.name)],
                    timeout,
                );
                call.args.extend(convert::args(req.args)?);
                call.kwargs = convert::kwargs(req.kwargs)?;
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    async fn ffi_attr(
        &self,
        request: Request<v1::FfiAttrRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiAttr", async move {
                let target = ffi::object_ref(req.target)?;
                let scope = Scope::open(self, &req.session_id, Some(&target.session_id)).await?;
                let head = vec![Value::Ref(target), Value::from(req.name)];
                let call = ffi::op(ffi::ops::ATTR, head, timeout);
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    async fn ffi_set_attr(
        &self,
        request: Request<v1::FfiSetAttrRequest>,
    ) -> Result<Response<v1::FfiResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiSetAttr", async move {
                let target = ffi::object_ref(req.target)?;
                let scope = Scope::open(self, &req.session_id, Some(&target.session_id)).await?;
                let head = vec![
                    Value::Ref(target),
                    Value::from(req.name),
                    convert::value(req.value)?,
                ];
                let call = ffi::op(ffi::ops::SET_ATTR, head, timeout);
                ffi::response(scope.run(req.pool, call).await)
            })
            .await
    }

    type FfiStreamStream = BoxStream<v1::StreamItem>;

    async fn ffi_stream(
        &self,
        request: Request<v1::FfiCallRequest>,
    ) -> Result<Response<Self::FfiStreamStream>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let mut req = request.into_inner();
        self.observer
            .stream("FfiStream", async move {
                let scope = Scope::open(self, &req.session_id, None).await?;
                let call = ffi::call(ffi::ops::STREAM, &mut req, timeout)?;
                scope.stream(req.pool, call).await
            })
            .await
    }

    async fn ffi_next(
        &self,
        request: Request<v1::FfiNextRequest>,
    ) -> Result<Response<v1::FfiNextResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiNext", async move {
                let stream = ffi::stream_ref(req.stream)?;
                let scope = Scope::open(self, &req.session_id, Some(&stream.session_id)).await?;
                let wanted = req.max_items.max(1);
                let head = vec![Value::StreamRef(stream), Value::from(wanted)];
                let call = ffi::op(ffi::ops::NEXT, head, timeout);
                match scope.run(req.pool, call).await? {
                    Value::List(items) => Ok(v1::FfiNextResponse {
                        done: items.len() < wanted as usize,
                        items: items.into_iter().map(Into::into).collect(),
                    }),
                    other => Err(Error::Protocol(format!(
                        "{} answered a {} instead of a list",
                        ffi::ops::NEXT,
                        other.type_name()
                    ))),
                }
            })
            .await
    }

    async fn ffi_release_ref(
        &self,
        request: Request<v1::FfiReleaseRefRequest>,
    ) -> Result<Response<v1::FfiReleaseRefResponse>, Status> {
        let timeout = deadline::call_timeout(request.metadata());
        let req = request.into_inner();
        self.observer
            .unary("FfiReleaseRef", async move {
                ffi::release(self, req, timeout).await?;
                Ok(v1::FfiReleaseRefResponse {})
            })
            .await
    }

    async fn register_variable(
        &self,
        request: Request<v1::RegisterVariableRequest>,
    ) -> Result<Response<v1::SessionVariable>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("RegisterVariable", async move {
                let entry = self.session(&req.session_id).await?;
                let var_type: VarType = req.r#type.parse()?;
                let constraints = convert::constraints(&req.name, req.constraints)?;
                let variable = entry
                    .session
                    .register_described_variable(
                        &req.name,
                        var_type,
                        convert::value(req.initial)?,
                        constraints,
                        &req.description,
                    )
                    .await?;
                Ok(convert::variable(variable))
            })
            .await
    }

    async fn get_variable(
        &self,
        request: Request<v1::VariableRequest>,
    ) -> Result<Response<v1::SessionVariable>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("GetVariable", async move {
                let entry = self.session(&req.session_id).await?;
                let variable = entry.session.get_variable(&req.variable).await?;
                Ok(convert::variable(variable))
            })
            .await
    }

    async fn set_variable(
        &self,
        request: Request<v1::SetVariableRequest>,
    ) -> Result<Response<v1::SessionVariable>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("SetVariable", async move {
                let entry = self.session(&req.session_id).await?;
                let variable = entry
                    .session
                    .set_variable(&req.variable, convert::value(req.value)?)
                    .await?;
                Ok(convert::variable(variable))
            })
            .await
    }

    async fn list_variables(
        &self,
        request: Request<v1::SessionRequest>,
    ) -> Result<Response<v1::ListVariablesResponse>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("ListVariables", async move {
                let entry = self.session(&req.session_id).await?;
                let variables = entry.session.list_variables().await?;
                Ok(v1::ListVariablesResponse {
                    variables: variables.into_iter().map(convert::variable).collect(),
                })
            })
            .await
    }

    type WatchVariablesStream = BoxStream<v1::VariableUpdate>;

    async fn watch_variables(
        &self,
        request: Request<v1::WatchVariablesRequest>,
    ) -> Result<Response<Self::WatchVariablesStream>, Status> {
        let req = request.into_inner();
        self.observer
            .stream("WatchVariables", async move {
                let entry = self.session(&req.session_id).await?;
                let names: Vec<&str> = req.variables.iter().map(String::as_str).collect();
                let watch = entry
                    .session
                    .watch_variables(&names, req.include_initial)
                    .await?;
                let session_id = req.session_id.clone();
                let updates = watch.map(move |u| Ok(convert::variable_update(&session_id, u)));
                Ok(until_shutdown(Box::pin(updates), self.signal.clone()))
            })
            .await
    }

    async fn pool_status(
        &self,
        request: Request<v1::PoolStatusRequest>,
    ) -> Result<Response<v1::PoolStatusResponse>, Status> {
        let req = request.into_inner();
        self.observer
            .unary("PoolStatus", async move {
                let pools: Vec<&PoolHandle> = match given(req.pool) {
                    None => self.snakepit.pools().collect(),
                    Some(name) => vec![self.snakepit.pool(&name)?],
                };
                let mut states = Vec::with_capacity(pools.len());
                for pool in pools {
                    states.push(convert::pool_state(pool.status().await?));
                }
                Ok(v1::PoolStatusResponse { pools: states })
            })
            .await
    }
}

/// `stream` until shutdown begins; then one UNAVAILABLE (`shutting_down`)
/// and the end. For streams that are no work in flight (a watch), which the
/// server's drain must not wait for.
fn until_shutdown<T: 'static>(stream: BoxStream<T>, signal: ShutdownSignal) -> BoxStream<T> {
    Box::pin(UntilShutdown {
        inner: stream,
        stop: Box::pin(async move {
            signal.requested().await;
        }),
        ended: false,
    })
}

struct UntilShutdown<T> {
    inner: BoxStream<T>,
    stop: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ended: bool,
}

impl<T> Stream for UntilShutdown<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(status::status(&Error::ShuttingDown))));
        }
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = item {
            self.ended = true;
        }
        item
    }
}

/// A request without a needed field.
pub(super) fn missing(field: &str) -> Error {
    bad_request(field, format!("`{field}` is required"))
}
