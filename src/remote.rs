//! A Rust client of `snakepit serve`: the same pools, reached over gRPC
//! instead of in-process.
//!
//! [`RemoteClient`] wraps the generated `snakepit.v1.Snakepit` client
//! (`snakepit_proto::v1::snakepit_client`) with what every call needs: the
//! bearer token on every request (an interceptor), a deadline sent as
//! `grpc-timeout` (the server makes it the call's timeout), TLS and mTLS, and
//! errors read back from the server's `google.rpc.ErrorInfo` into a
//! [`RemoteError`] that keeps snakepit's kind, Python's type and traceback.
//! `snakepit exec`/`call --server` and `snakepit bench` use it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), snakepit::remote::RemoteError> {
//! use snakepit::remote::{RemoteClient, RemoteOptions};
//! let client = RemoteClient::connect("127.0.0.1:50051", RemoteOptions::default()).await?;
//! let sum = client.execute(snakepit::Call::new("add").kwarg("a", 2).kwarg("b", 3)).await?;
//! assert_eq!(sum, snakepit::Value::Int(5));
//! let root = client.call("math", "sqrt", [16], ()).await?;
//! assert_eq!(root, snakepit::Value::Float(4.0));
//! # Ok(()) }
//! ```
//!
//! Targets: `http://host:port`, `https://host:port`, `host:port` (plain, or
//! TLS when a CA or a client identity is given) and `unix:/path/to.sock`.

mod error;
#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use snakepit_proto::v1::{self, snakepit_client::SnakepitClient};
pub use snakepit_proto::v1::{
    PoolState, SessionInfo, SessionVariable, ToolSpec, VariableUpdate, WorkerState,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use self::error::{RemoteError, RemoteStatus};
use crate::ffi::{IntoArgs, IntoKwargs};
use crate::server::convert::{affinity_to_proto, constraints_to_proto};
use crate::{Affinity, Call, Constraints, ObjectRef, StreamRefValue, Value, VarType};

/// How long [`RemoteClient::connect`] waits for the connection by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer taken by default: above the server's own limit (the
/// largest pool's `max_frame_bytes`, 64 MiB by default, plus 64 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// A unary call with a deadline is abandoned this long after the deadline if
/// the server has not answered (it normally answers `DEADLINE_EXCEEDED`
/// itself, with the worker told to cancel).
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// How to reach and authenticate to a server.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Bearer token sent as `authorization: Bearer <token>` on every request.
    pub token: Option<String>,
    /// PEM of the CA that signed the server's certificate; turns TLS on.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and key, for servers that require mTLS; turns
    /// TLS on.
    pub identity: Option<ClientIdentity>,
    /// TLS server name to verify, when it is not the target's host.
    pub tls_domain: Option<String>,
    /// Deadline of every call that sets none of its own (`None`: the
    /// server's defaults).
    pub timeout: Option<Duration>,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
    /// The largest answer taken; a larger one fails the call.
    pub max_message_bytes: usize,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            token: None,
            ca_pem: None,
            identity: None,
            tls_domain: None,
            timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A client certificate and its private key, both PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Options of [`RemoteClient::create_session`].
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The session's id; `None`: the server picks one.
    pub id: Option<String>,
    /// The pool its calls use when they name none.
    pub pool: Option<String>,
    /// The affinity its calls use when they name none.
    pub affinity: Option<Affinity>,
    /// Metadata kept with the session.
    pub metadata: Vec<(String, String)>,
}

/// What [`RemoteClient::next`] answers: the next items of a stream ref.
#[derive(Debug, Clone, PartialEq)]
pub struct NextItems {
    /// The items, at most as many as asked for.
    pub items: Vec<Value>,
    /// The iterator is exhausted: no item follows these.
    pub done: bool,
}

/// Adds the bearer token to every request.
#[derive(Clone)]
struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

type Grpc = SnakepitClient<InterceptedService<Channel, Auth>>;

/// A connection to `snakepit serve`. Cheap to clone; clones share the
/// connection (HTTP/2 carries many calls at once).
///
/// Calls go to the server's default pool and run outside any session unless
/// the client is scoped with [`on_pool`](Self::on_pool) /
/// [`in_session`](Self::in_session). FFI calls outside a session run in a
/// session of their own that the server releases when they return, so refs
/// they answer are already gone: keep refs inside a session.
#[derive(Clone)]
pub struct RemoteClient {
    grpc: Grpc,
    target: Arc<str>,
    pool: String,
    session: String,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("target", &self.target)
            .field("pool", &self.pool)
            .field("session", &self.session)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteClient {
    /// Connects to `target` (see the module docs for its forms).
    pub async fn connect(target: &str, options: RemoteOptions) -> Result<Self, RemoteError> {
        let endpoint = endpoint(target, &options)?;
        let header = match &options.token {
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| RemoteError::Target {
                        target: target.to_string(),
                        reason: "the token is not printable ASCII".into(),
                    })?,
            ),
            None => None,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| RemoteError::Connect {
                target: target.to_string(),
                source,
            })?;
        Ok(Self {
            grpc: SnakepitClient::with_interceptor(channel, Auth { header })
                .max_decoding_message_size(options.max_message_bytes),
            target: target.into(),
            pool: String::new(),
            session: String::new(),
            timeout: options.timeout,
        })
    }

    /// The target this client connected to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// This client, sending its calls to pool `pool`.
    pub fn on_pool(&self, pool: impl Into<String>) -> Self {
        Self {
            pool: pool.into(),
            ..self.clone()
        }
    }

    /// This client, running its calls in session `session` (see
    /// [`create_session`](Self::create_session)).
    pub fn in_session(&self, session: impl Into<String>) -> Self {
        Self {
            session: session.into(),
            ..self.clone()
        }
    }

    /// This client, with `timeout` as the deadline of calls that set none.
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    // ------------------------------------------------------------- tools

    /// Runs a tool and answers its result. The call's own session, timeout,
    /// affinity, metadata and `idempotent` flag travel with it.
    pub async fn execute(&self, call: Call) -> Result<Value, RemoteError> {
        let timeout = call.timeout.or(self.timeout);
        let request = self.request(self.execute_request(call), timeout);
        let response = unary(timeout, self.grpc.clone().execute(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// Runs a streaming tool: its items, as the server sends them. Dropping
    /// the stream cancels the call (the worker is told).
    pub async fn execute_stream(&self, call: Call) -> Result<RemoteStream, RemoteError> {
        let timeout = call.timeout.or(self.timeout);
        let request = self.request(self.execute_request(call), timeout);
        let response = self.grpc.clone().execute_stream(request).await?;
        Ok(RemoteStream {
            inner: response.into_inner(),
        })
    }

    fn execute_request(&self, call: Call) -> v1::ExecuteRequest {
        v1::ExecuteRequest {
            tool: call.tool,
            pool: self.pool.clone(),
            session_id: call.session_id.unwrap_or_else(|| self.session.clone()),
            args: call.args.into_iter().map(Into::into).collect(),
            kwargs: call
                .kwargs
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            idempotent: call.idempotent,
            affinity: affinity_to_proto(call.affinity),
            metadata: call.metadata.into_iter().collect(),
        }
    }

    // ---------------------------------------------------------- sessions

    /// Opens a session; calls in it share a worker's state, refs and
    /// variables until [`release_session`](Self::release_session) or the
    /// server's session TTL.
    pub async fn create_session(
        &self,
        options: SessionOptions,
    ) -> Result<SessionInfo, RemoteError> {
        let request = v1::CreateSessionRequest {
            id: options.id.unwrap_or_default(),
            pool: options.pool.unwrap_or_default(),
            affinity: affinity_to_proto(options.affinity),
            metadata: options.metadata.into_iter().collect(),
        };
        let request = self.request(request, self.timeout);
        Ok(
            unary(self.timeout, self.grpc.clone().create_session(request))
                .await?
                .into_inner(),
        )
    }

    /// The session `id`; `session_not_found` once it was released or expired.
    pub async fn get_session(&self, id: &str) -> Result<SessionInfo, RemoteError> {
        let request = self.request(session_request(id), self.timeout);
        Ok(unary(self.timeout, self.grpc.clone().get_session(request))
            .await?
            .into_inner())
    }

    /// Releases the session `id`: every worker that ran it drops its refs.
    pub async fn release_session(&self, id: &str) -> Result<(), RemoteError> {
        let request = self.request(session_request(id), self.timeout);
        unary(self.timeout, self.grpc.clone().release_session(request)).await?;
        Ok(())
    }

    // ---------------------------------------------------- universal FFI

    /// `module.function(*args, **kwargs)`; `function` may be dotted.
    pub async fn call(
        &self,
        module: &str,
        function: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> Result<Value, RemoteError> {
        let request = self.ffi_call_request(module, function, args, kwargs)?;
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_call(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// `module.attr`.
    pub async fn get(&self, module: &str, attr: &str) -> Result<Value, RemoteError> {
        let request = v1::FfiGetRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            module: module.into(),
            attr: attr.into(),
        };
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_get(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// A new instance of the class `module.class`.
    pub async fn call_class(
        &self,
        module: &str,
        class: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> Result<Value, RemoteError> {
        let request = self.ffi_call_request(module, class, args, kwargs)?;
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_call_class(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// `target.name(*args, **kwargs)`.
    pub async fn method(
        &self,
        target: &ObjectRef,
        name: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> Result<Value, RemoteError> {
        let request = v1::FfiMethodRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            target: Some(target.clone().into()),
            name: name.into(),
            args: wire_args(args),
            kwargs: wire_kwargs(kwargs)?,
        };
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_method(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// `target.name`.
    pub async fn attr(&self, target: &ObjectRef, name: &str) -> Result<Value, RemoteError> {
        let request = v1::FfiAttrRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            target: Some(target.clone().into()),
            name: name.into(),
        };
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_attr(request)).await?;
        Ok(value(response.into_inner().value))
    }

    /// `target.name = value`.
    pub async fn set_attr(
        &self,
        target: &ObjectRef,
        name: &str,
        value: impl Into<Value>,
    ) -> Result<(), RemoteError> {
        let request = v1::FfiSetAttrRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            target: Some(target.clone().into()),
            name: name.into(),
            value: Some(value.into().into()),
        };
        let request = self.request(request, self.timeout);
        unary(self.timeout, self.grpc.clone().ffi_set_attr(request)).await?;
        Ok(())
    }

    /// Calls `module.function` and streams the items of the iterable it
    /// returns. Dropping the stream stops the generator.
    pub async fn stream(
        &self,
        module: &str,
        function: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> Result<RemoteStream, RemoteError> {
        let request = self.ffi_call_request(module, function, args, kwargs)?;
        let request = self.request(request, self.timeout);
        let response = self.grpc.clone().ffi_stream(request).await?;
        Ok(RemoteStream {
            inner: response.into_inner(),
        })
    }

    /// The next items (at most `max_items`, at least one unless exhausted)
    /// of an iterator kept in the worker.
    pub async fn next(
        &self,
        stream: &StreamRefValue,
        max_items: u32,
    ) -> Result<NextItems, RemoteError> {
        let request = v1::FfiNextRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            stream: Some(stream.clone().into()),
            max_items,
        };
        let request = self.request(request, self.timeout);
        let response = unary(self.timeout, self.grpc.clone().ffi_next(request))
            .await?
            .into_inner();
        Ok(NextItems {
            items: response.items.into_iter().map(Value::from).collect(),
            done: response.done,
        })
    }

    /// Drops an object kept in the worker (releasing twice is no error).
    pub async fn release_ref(&self, target: &ObjectRef) -> Result<(), RemoteError> {
        self.release(v1::ffi_release_ref_request::Target::Ref(
            target.clone().into(),
        ))
        .await
    }

    /// Drops an iterator kept in the worker (releasing twice is no error).
    pub async fn release_stream_ref(&self, target: &StreamRefValue) -> Result<(), RemoteError> {
        self.release(v1::ffi_release_ref_request::Target::Stream(
            target.clone().into(),
        ))
        .await
    }

    async fn release(
        &self,
        target: v1::ffi_release_ref_request::Target,
    ) -> Result<(), RemoteError> {
        let request = v1::FfiReleaseRefRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            target: Some(target),
        };
        let request = self.request(request, self.timeout);
        unary(self.timeout, self.grpc.clone().ffi_release_ref(request)).await?;
        Ok(())
    }

    fn ffi_call_request(
        &self,
        module: &str,
        function: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> Result<v1::FfiCallRequest, RemoteError> {
        Ok(v1::FfiCallRequest {
            session_id: self.session.clone(),
            pool: self.pool.clone(),
            module: module.into(),
            function: function.into(),
            args: wire_args(args),
            kwargs: wire_kwargs(kwargs)?,
        })
    }

    // ------------------------------------------------- session variables

    /// Registers a typed variable in session `session`.
    pub async fn register_variable(
        &self,
        session: &str,
        name: &str,
        var_type: VarType,
        initial: impl Into<Value>,
        constraints: &Constraints,
        description: &str,
    ) -> Result<SessionVariable, RemoteError> {
        let request = v1::RegisterVariableRequest {
            session_id: session.into(),
            name: name.into(),
            r#type: var_type.as_str().into(),
            initial: Some(initial.into().into()),
            constraints: constraints_to_proto(constraints),
            description: description.into(),
        };
        let request = self.request(request, self.timeout);
        let mut grpc = self.grpc.clone();
        Ok(unary(self.timeout, grpc.register_variable(request))
            .await?
            .into_inner())
    }

    /// The variable `variable` (its name or id) of session `session`.
    pub async fn get_variable(
        &self,
        session: &str,
        variable: &str,
    ) -> Result<SessionVariable, RemoteError> {
        let request = v1::VariableRequest {
            session_id: session.into(),
            variable: variable.into(),
        };
        let request = self.request(request, self.timeout);
        let mut grpc = self.grpc.clone();
        Ok(unary(self.timeout, grpc.get_variable(request))
            .await?
            .into_inner())
    }

    /// Sets a variable, validated against its type and constraints (a
    /// broken one is kind `variable`, its `constraint` named); answers it
    /// with its new version.
    pub async fn set_variable(
        &self,
        session: &str,
        variable: &str,
        value: impl Into<Value>,
    ) -> Result<SessionVariable, RemoteError> {
        let request = v1::SetVariableRequest {
            session_id: session.into(),
            variable: variable.into(),
            value: Some(value.into().into()),
        };
        let request = self.request(request, self.timeout);
        let mut grpc = self.grpc.clone();
        Ok(unary(self.timeout, grpc.set_variable(request))
            .await?
            .into_inner())
    }

    /// Every variable of session `session`, in registration order.
    pub async fn list_variables(&self, session: &str) -> Result<Vec<SessionVariable>, RemoteError> {
        let request = self.request(session_request(session), self.timeout);
        let mut grpc = self.grpc.clone();
        Ok(unary(self.timeout, grpc.list_variables(request))
            .await?
            .into_inner()
            .variables)
    }

    /// Changes of session `session`'s variables `names` (all when empty),
    /// by anyone, from now on (with `include_initial`, their current values
    /// first). Ends when the session does.
    pub async fn watch_variables(
        &self,
        session: &str,
        names: &[&str],
        include_initial: bool,
    ) -> Result<RemoteWatch, RemoteError> {
        let request = v1::WatchVariablesRequest {
            session_id: session.into(),
            variables: names.iter().map(|n| n.to_string()).collect(),
            include_initial,
        };
        let response = self.grpc.clone().watch_variables(request).await?;
        Ok(RemoteWatch {
            inner: response.into_inner(),
        })
    }

    // ------------------------------------------------------------ status

    /// The state of pool `pool`, or of every pool (`None`): workers, queue,
    /// tools.
    pub async fn pool_status(&self, pool: Option<&str>) -> Result<Vec<PoolState>, RemoteError> {
        let request = v1::PoolStatusRequest {
            pool: pool.unwrap_or_default().into(),
        };
        let request = self.request(request, self.timeout);
        Ok(unary(self.timeout, self.grpc.clone().pool_status(request))
            .await?
            .into_inner()
            .pools)
    }

    fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// The items of a streaming call, as [`Value`]s. Dropping it cancels the
/// call on the server (and the generator in the worker).
pub struct RemoteStream {
    inner: tonic::Streaming<v1::StreamItem>,
}

impl std::fmt::Debug for RemoteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStream").finish_non_exhaustive()
    }
}

impl Stream for RemoteStream {
    type Item = Result<Value, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map(|i| value(i.value)).map_err(RemoteError::from)))
    }
}

/// Changes of a session's variables, from
/// [`RemoteClient::watch_variables`].
pub struct RemoteWatch {
    inner: tonic::Streaming<v1::VariableUpdate>,
}

impl std::fmt::Debug for RemoteWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWatch").finish_non_exhaustive()
    }
}

impl Stream for RemoteWatch {
    type Item = Result<VariableUpdate, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(RemoteError::from)))
    }
}

/// The endpoint `target` names, with the options' TLS settings.
fn endpoint(target: &str, options: &RemoteOptions) -> Result<Endpoint, RemoteError> {
    let bad = |reason: &str| RemoteError::Target {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let tls = options.ca_pem.is_some() || options.identity.is_some();
    let uri = if target.starts_with("unix:") {
        if tls {
            return Err(bad("TLS is not used over a Unix socket"));
        }
        target.to_string()
    } else if let Some((scheme, _)) = target.split_once("://") {
        match (scheme, tls) {
            ("http", true) => return Err(bad("TLS options were given for an http:// target")),
            ("https", false) => {
                return Err(bad(
                    "an https:// target needs the CA of the server's certificate",
                ));
            }
            ("http" | "https", _) => target.to_string(),
            _ => return Err(bad("the scheme must be http, https or unix")),
        }
    } else if tls {
        format!("https://{target}")
    } else {
        format!("http://{target}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true);
    if tls {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &options.ca_pem {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some(identity) = &options.identity {
            config = config.identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
        }
        if let Some(domain) = &options.tls_domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| bad(&format!("TLS settings: {e}")))?;
    }
    Ok(endpoint)
}

/// Awaits a unary call; with a deadline, gives up `DEADLINE_GRACE` after
/// it if the server has said nothing (a server gone silent).
async fn unary<T>(
    timeout: Option<Duration>,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<tonic::Response<T>, RemoteError> {
    let Some(timeout) = timeout else {
        return Ok(call.await?);
    };
    match tokio::time::timeout(timeout + DEADLINE_GRACE, call).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(RemoteError::Status(Box::new(RemoteStatus {
            code: tonic::Code::DeadlineExceeded,
            kind: Some("timeout".into()),
            summary: format!("no answer from the server within the deadline of {timeout:?}"),
            message: String::new(),
            python_type: None,
            traceback: None,
            parameter: None,
        }))),
    }
}

fn wire_args(args: impl IntoArgs) -> Vec<v1::Value> {
    args.into_args().into_iter().map(Into::into).collect()
}

fn wire_kwargs(
    kwargs: impl IntoKwargs,
) -> Result<std::collections::HashMap<String, v1::Value>, RemoteError> {
    Ok(kwargs
        .into_kwargs()?
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect())
}

fn session_request(id: &str) -> v1::SessionRequest {
    v1::SessionRequest {
        session_id: id.into(),
    }
}

/// A value the server answered with (absent: `None`, as on the wire).
fn value(value: Option<v1::Value>) -> Value {
    value.map(Value::from).unwrap_or(Value::Null)
}
