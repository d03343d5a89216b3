//! The universal FFI: call any Python function, keep Python objects as refs.
//!
//! Every worker serves the reserved tools `snakepit.ffi.*` next to its
//! adapter's (see `docs/ffi-protocol.md`). The [`Ffi`] trait turns them into
//! a typed API, implemented by [`Session`] (refs belong to sessions), by
//! [`HostCallContext`] (a host tool or callback calling back into Python, on
//! the caller's worker) and by the runtime facade (its own auto-session).
//!
//! Results are [`Value`]s; convert them with `value.extract::<T>()` or
//! `T::try_from(value)` and `?`. Objects that cannot cross stay in the worker
//! and come back as [`ObjectRef`] / [`StreamRefValue`] values; any call
//! carrying one runs on the worker that holds it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt as _, Stream, StreamExt as _, TryStreamExt as _};
use snakepit_proto::{CallbackRef, ObjectRef, StreamRefValue, Value};

use crate::error::Error;
use crate::handle::{Call, ExecStream, PoolHandle};
use crate::host::{Host, HostCallContext};
use crate::host_tools::{HostTool, HostToolError};
use crate::sessions::Session;

/// Tool names of the FFI operations.
pub mod ops {
    /// `module.function(*args, **kwargs)`.
    pub const CALL: &str = "snakepit.ffi.call";
    /// `module.attr`.
    pub const GET: &str = "snakepit.ffi.get";
    /// A class instantiated.
    pub const CALL_CLASS: &str = "snakepit.ffi.call_class";
    /// `obj.name(*args, **kwargs)`.
    pub const METHOD: &str = "snakepit.ffi.method";
    /// `obj.name`.
    pub const ATTR: &str = "snakepit.ffi.attr";
    /// `obj.name = value`.
    pub const SET_ATTR: &str = "snakepit.ffi.set_attr";
    /// A helper from the configured helper directories.
    pub const HELPER: &str = "snakepit.ffi.helper";
    /// A function's returned iterable, item by item as a native stream.
    pub const STREAM: &str = "snakepit.ffi.stream";
    /// The next items of a stream ref.
    pub const NEXT: &str = "snakepit.ffi.next";
    /// `len(obj)`.
    pub const LEN: &str = "snakepit.ffi.len";
    /// `repr(obj)`.
    pub const REPR: &str = "snakepit.ffi.repr";
    /// `obj.__enter__()`.
    pub const ENTER: &str = "snakepit.ffi.enter";
    /// `obj.__exit__(...)`.
    pub const EXIT: &str = "snakepit.ffi.exit";
}

/// Items a [`PyStream`] over a stream ref fetches per round trip.
const NEXT_BATCH: u32 = 128;

// ------------------------------------------------------------ arguments

/// Positional arguments: `()`, a `Vec` or array of values, or a tuple of up
/// to six things that convert into [`Value`].
pub trait IntoArgs {
    /// The arguments as values.
    fn into_args(self) -> Vec<Value>;
}

impl IntoArgs for () {
    fn into_args(self) -> Vec<Value> {
        Vec::new()
    }
}

impl<T: Into<Value>> IntoArgs for Vec<T> {
    fn into_args(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Value>, const N: usize> IntoArgs for [T; N] {
    fn into_args(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

macro_rules! args_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> IntoArgs for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_args(self) -> Vec<Value> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
args_tuple!(A);
args_tuple!(A, B);
args_tuple!(A, B, C);
args_tuple!(A, B, C, D);
args_tuple!(A, B, C, D, E);
args_tuple!(A, B, C, D, E, F);

/// Keyword arguments: `()`, pairs (`Vec`, array), a map, or a JSON object.
pub trait IntoKwargs {
    /// The keyword arguments, in order.
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error>;
}

impl IntoKwargs for () {
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Ok(Vec::new())
    }
}

impl<K: Into<String>, V: Into<Value>> IntoKwargs for Vec<(K, V)> {
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Ok(self
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl<K: Into<String>, V: Into<Value>, const N: usize> IntoKwargs for [(K, V); N] {
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Ok(self
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl<K: Into<String>, V: Into<Value>> IntoKwargs for HashMap<K, V> {
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Ok(self
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl<K: Into<String>, V: Into<Value>> IntoKwargs for BTreeMap<K, V> {
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Ok(self
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

impl IntoKwargs for Value {
    /// A `dict` with string keys; `None` for no keyword arguments.
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        match self {
            Value::Null => Ok(Vec::new()),
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| match k {
                    Value::Str(k) => Ok((k, v)),
                    other => Err(bad_kwargs(format!(
                        "keyword argument names must be strings, got {}",
                        other.type_name()
                    ))),
                })
                .collect(),
            other => Err(bad_kwargs(format!(
                "keyword arguments must be a dict, got {}",
                other.type_name()
            ))),
        }
    }
}

impl IntoKwargs for serde_json::Value {
    /// A JSON object; `null` for no keyword arguments.
    fn into_kwargs(self) -> Result<Vec<(String, Value)>, Error> {
        Value::from(self).into_kwargs()
    }
}

fn bad_kwargs(message: String) -> Error {
    Error::BadArguments {
        tool: "snakepit.ffi".into(),
        parameter: None,
        message,
    }
}

// ------------------------------------------------------------- targets

/// Where FFI calls go: a session's calls, or nested calls of a host tool (or
/// callback) on the worker of the Python code that called it.
#[derive(Clone)]
pub struct FfiTarget {
    via: Via,
}

#[derive(Clone)]
enum Via {
    /// A session's calls, on `pool` (its default pool when `None`).
    Session {
        session: Session,
        pool: Option<String>,
    },
    /// Calls back into Python from a host tool or callback.
    Nested(HostCallContext),
}

impl std::fmt::Debug for FfiTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfiTarget")
            .field("session", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl FfiTarget {
    pub(crate) fn session(session: Session, pool: Option<String>) -> Self {
        Self {
            via: Via::Session { session, pool },
        }
    }

    pub(crate) fn nested(ctx: HostCallContext) -> Self {
        Self {
            via: Via::Nested(ctx),
        }
    }

    fn session_handle(&self) -> Option<&Session> {
        match &self.via {
            Via::Session { session, .. } => Some(session),
            Via::Nested(ctx) => ctx.session(),
        }
    }

    /// The session refs are made in (empty: none).
    pub fn session_id(&self) -> &str {
        self.session_handle().map_or("", |s| s.id())
    }

    fn pool(&self) -> Result<PoolHandle, Error> {
        match &self.via {
            Via::Session { session, pool } => session.pool_handle(pool.as_deref()).cloned(),
            Via::Nested(ctx) => Ok(ctx.pool().clone()),
        }
    }

    async fn run(&self, call: Call) -> Result<Value, Error> {
        match &self.via {
            Via::Session { session, pool } => session.run_on(pool.as_deref(), call).await,
            Via::Nested(ctx) => ctx.run(call).await,
        }
    }

    async fn run_stream(&self, call: Call) -> Result<ExecStream, Error> {
        match &self.via {
            Via::Session { session, pool } => session.run_stream_on(pool.as_deref(), call).await,
            Via::Nested(ctx) => ctx.run_stream(call).await,
        }
    }

    fn bridge(&self) -> Result<Arc<Host>, Error> {
        self.session_handle()
            .map(|s| s.bridge())
            .ok_or_else(|| Error::SessionNotFound(String::new()))
    }
}

fn op(tool: &str, head: Vec<Value>, args: Vec<Value>, kwargs: Vec<(String, Value)>) -> Call {
    let mut call = Call::new(tool);
    call.args = head;
    call.args.extend(args);
    call.kwargs = kwargs;
    call
}

/// `obj.name(*args, **kwargs)`: `obj` a ref or any value.
fn method_call(
    obj: Value,
    name: &str,
    args: impl IntoArgs,
    kwargs: impl IntoKwargs,
) -> Result<Call, Error> {
    let head = vec![obj, Value::from(name)];
    kwargs
        .into_kwargs()
        .map(|kw| op(ops::METHOD, head, args.into_args(), kw))
}

/// `obj.name`.
fn attr_call(obj: Value, name: &str) -> Call {
    op(
        ops::ATTR,
        vec![obj, Value::from(name)],
        Vec::new(),
        Vec::new(),
    )
}

/// `obj.name = value`.
fn set_attr_call(obj: Value, name: &str, value: Value) -> Call {
    op(
        ops::SET_ATTR,
        vec![obj, Value::from(name), value],
        Vec::new(),
        Vec::new(),
    )
}

// ------------------------------------------------------------------ API

/// The universal FFI. Import it (`use snakepit::Ffi;`) to call Python from a
/// [`Session`], a [`HostCallContext`], or the runtime.
///
/// ```no_run
/// # use snakepit_actors::{Ffi, Session, Error};
/// # async fn demo(session: &Session) -> Result<(), Error> {
/// let root: f64 = session.call("math", "sqrt", [16], ()).await?.extract()?;
/// let path = session.call("pathlib", "Path", ["/tmp/x.txt"], ()).await?;
/// let name: String = session.attr(&path.extract()?, "name").await?.extract()?;
/// # Ok(()) }
/// ```
pub trait Ffi: Sync {
    /// Where this handle's calls go.
    fn ffi_target(&self) -> impl Future<Output = Result<FfiTarget, Error>> + Send;

    /// `module.function(*args, **kwargs)`; `function` may be dotted
    /// (`"Path.home"`).
    fn call(
        &self,
        module: &str,
        function: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let head = vec![Value::from(module), Value::from(function)];
        let call = kwargs
            .into_kwargs()
            .map(|kw| op(ops::CALL, head, args.into_args(), kw));
        async move { self.ffi_target().await?.run(call?).await }
    }

    /// `module.attr` (a constant, a class, a function...).
    fn get(&self, module: &str, attr: &str) -> impl Future<Output = Result<Value, Error>> + Send {
        let call = op(
            ops::GET,
            vec![Value::from(module), Value::from(attr)],
            Vec::new(),
            Vec::new(),
        );
        async move { self.ffi_target().await?.run(call).await }
    }

    /// A new instance of `module.class`.
    fn call_class(
        &self,
        module: &str,
        class: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let head = vec![Value::from(module), Value::from(class)];
        let call = kwargs
            .into_kwargs()
            .map(|kw| op(ops::CALL_CLASS, head, args.into_args(), kw));
        async move { self.ffi_target().await?.run(call?).await }
    }

    /// `obj.name(*args, **kwargs)` on the object behind `obj`.
    fn method(
        &self,
        obj: &ObjectRef,
        name: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let call = method_call(Value::Ref(obj.clone()), name, args, kwargs);
        async move { self.ffi_target().await?.run(call?).await }
    }

    /// `obj.name`.
    fn attr(
        &self,
        obj: &ObjectRef,
        name: &str,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let call = attr_call(Value::Ref(obj.clone()), name);
        async move { self.ffi_target().await?.run(call).await }
    }

    /// `obj.name = value`.
    fn set_attr(
        &self,
        obj: &ObjectRef,
        name: &str,
        value: impl Into<Value>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let call = set_attr_call(Value::Ref(obj.clone()), name, value.into());
        async move { self.ffi_target().await?.run(call).await.map(|_| ()) }
    }

    /// `obj.name(*args, **kwargs)` on any value: a ref (as
    /// [`method`](Self::method)), or a value Python rebuilds on its side, such
    /// as a `date` or a `str`. Generated class wrappers call through this.
    fn method_on(
        &self,
        obj: &Value,
        name: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let call = method_call(obj.clone(), name, args, kwargs);
        async move { self.ffi_target().await?.run(call?).await }
    }

    /// `obj.name` on any value (see [`method_on`](Self::method_on)).
    fn attr_on(
        &self,
        obj: &Value,
        name: &str,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let call = attr_call(obj.clone(), name);
        async move { self.ffi_target().await?.run(call).await }
    }

    /// `obj.name = value` on any value (see [`method_on`](Self::method_on));
    /// on a value Python rebuilds, the change is lost with the copy.
    fn set_attr_on(
        &self,
        obj: &Value,
        name: &str,
        value: impl Into<Value>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let call = set_attr_call(obj.clone(), name, value.into());
        async move { self.ffi_target().await?.run(call).await.map(|_| ()) }
    }

    /// `repr(obj)`.
    fn repr(&self, obj: &ObjectRef) -> impl Future<Output = Result<String, Error>> + Send {
        let call = op(
            ops::REPR,
            vec![Value::Ref(obj.clone())],
            Vec::new(),
            Vec::new(),
        );
        async move { Ok(self.ffi_target().await?.run(call).await?.extract()?) }
    }

    /// A helper (`"file.function"`) from the pool's `ffi.helper_dirs`, if its
    /// `ffi.helper_allowlist` lets it: one round trip for many Python steps.
    fn call_helper(
        &self,
        name: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<Value, Error>> + Send {
        let head = vec![Value::from(name)];
        let call = kwargs
            .into_kwargs()
            .map(|kw| op(ops::HELPER, head, args.into_args(), kw));
        async move { self.ffi_target().await?.run(call?).await }
    }

    /// Calls `module.function` and streams the items of the iterable it
    /// returns (a generator, usually) as they are produced: pushed by the
    /// worker within the pool's `stream_window`, not fetched one by one.
    /// Dropping the stream stops the generator.
    fn stream(
        &self,
        module: &str,
        function: &str,
        args: impl IntoArgs,
        kwargs: impl IntoKwargs,
    ) -> impl Future<Output = Result<PyStream, Error>> + Send {
        let head = vec![Value::from(module), Value::from(function)];
        let call = kwargs
            .into_kwargs()
            .map(|kw| op(ops::STREAM, head, args.into_args(), kw));
        async move {
            let stream = self.ffi_target().await?.run_stream(call?).await?;
            Ok(PyStream {
                inner: Inner::Pushed(stream),
            })
        }
    }

    /// A handle on a Python iterator kept in the worker (a stream ref, as
    /// `call` returns for generators and iterators).
    fn stream_ref(
        &self,
        stream: &StreamRefValue,
    ) -> impl Future<Output = Result<StreamRef, Error>> + Send {
        let stream = stream.clone();
        async move {
            Ok(StreamRef {
                target: self.ffi_target().await?,
                stream,
            })
        }
    }

    /// Drops the object behind `obj` in its worker; using it afterwards gives
    /// [`Error::RefNotFound`]. Releasing twice is not an error.
    fn release_ref(&self, obj: &ObjectRef) -> impl Future<Output = Result<(), Error>> + Send {
        let (session, id) = (obj.session_id.clone(), obj.id.clone());
        async move { release(&self.ffi_target().await?, &session, &id).await }
    }

    /// Drops the iterator behind `stream` in its worker.
    fn release_stream_ref(
        &self,
        stream: &StreamRefValue,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let (session, id) = (stream.session_id.clone(), stream.id.clone());
        async move { release(&self.ffi_target().await?, &session, &id).await }
    }

    /// Uses `obj` as a context manager: `__enter__`, then `body` with what it
    /// returned, then `__exit__` — always, with the body's error when it
    /// failed (a Python exception keeps its type, so `__exit__` sees the real
    /// exception class; any other error arrives as `HostError`), and also when
    /// the caller drops this future mid-body (then from a task of its own).
    /// If `__exit__` suppresses the error (returns true), the result is
    /// `Ok(None)`.
    fn with_python<'a, T, F, Fut>(
        &'a self,
        obj: &ObjectRef,
        body: F,
    ) -> impl Future<Output = Result<Option<T>, Error>> + Send + 'a
    where
        T: Send + 'a,
        F: FnOnce(Value) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, Error>> + Send + 'a,
    {
        let obj = obj.clone();
        async move {
            let target = self.ffi_target().await?;
            let entered = target
                .run(op(
                    ops::ENTER,
                    vec![Value::Ref(obj.clone())],
                    Vec::new(),
                    Vec::new(),
                ))
                .await?;
            // A caller that stops waiting still exits the context (from a
            // task of its own); a panicking body exits it, then panics on.
            let mut guard = ExitOnDrop(Some((target.clone(), obj.clone())));
            let outcome = std::panic::AssertUnwindSafe(body(entered))
                .catch_unwind()
                .await;
            guard.0 = None;
            let (exc_type, message) = match &outcome {
                Ok(Ok(_)) => (Value::Null, Value::Null),
                Ok(Err(err)) => match err.python_exception() {
                    Some(exc) => (
                        Value::from(exc.python_type.as_str()),
                        Value::from(exc.message.as_str()),
                    ),
                    None => (Value::from("HostError"), Value::from(err.to_string())),
                },
                Err(_) => (
                    Value::from("HostError"),
                    Value::from("the Rust body panicked"),
                ),
            };
            let suppressed = target.run(exit_call(obj, exc_type, message)).await;
            match outcome {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(Ok(value)) => {
                    suppressed?;
                    Ok(Some(value))
                }
                Ok(Err(err)) => match suppressed {
                    Ok(Value::Bool(true)) => Ok(None),
                    // The body's error is the one to report; an `__exit__`
                    // failing on top of it is logged.
                    Ok(_) => Err(err),
                    Err(exit_err) => {
                        tracing::warn!(error = %exit_err, "__exit__ failed after the body failed");
                        Err(err)
                    }
                },
            }
        }
    }

    /// Registers `f` as a host callback taking `arity` positional arguments;
    /// pass the returned value as an argument and Python receives a callable.
    /// Calling it runs `f` on the host with a [`HostCallContext`] through
    /// which `f` may call back into Python (even the callback's caller:
    /// nested calls go to the waiting worker, so nothing deadlocks). It lives
    /// as long as the session.
    fn callback<F, Fut>(
        &self,
        arity: u32,
        f: F,
    ) -> impl Future<Output = Result<Value, Error>> + Send
    where
        F: Fn(HostCallContext, Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        async move {
            let target = self.ffi_target().await?;
            let bridge = target.bridge()?;
            let id = format!("cb{}", NEXT_CALLBACK.fetch_add(1, Ordering::Relaxed));
            let f = Arc::new(f);
            let tool = HostTool::new(id.clone(), move |ctx: HostCallContext, args| {
                let f = Arc::clone(&f);
                async move {
                    let (args, kwargs) = args.into_parts();
                    if !kwargs.is_empty() || args.len() != arity as usize {
                        return Err(HostToolError::BadArguments {
                            parameter: None,
                            message: format!(
                                "callback takes {arity} positional argument(s), got {} and {} keyword",
                                args.len(),
                                kwargs.len()
                            ),
                        });
                    }
                    f(ctx, args)
                        .await
                        .map_err(|e| HostToolError::failed(e.to_string()))
                }
            })
            .exposed_to_python(false);
            bridge
                .callbacks
                .register_for_session(target.session_id(), tool)?;
            Ok(Value::Callback(CallbackRef { id, arity }))
        }
    }
}

static NEXT_CALLBACK: AtomicU64 = AtomicU64::new(1);

/// `obj.__exit__` with the exception named by `exc_type` and `message`
/// (`None`, `None`: no exception).
fn exit_call(obj: ObjectRef, exc_type: Value, message: Value) -> Call {
    op(
        ops::EXIT,
        vec![Value::Ref(obj), exc_type, message, Value::Null],
        Vec::new(),
        Vec::new(),
    )
}

/// Exits a context whose `with_python` future was dropped mid-body: the
/// `__exit__` call runs in a task of its own, with a `HostError` saying so.
struct ExitOnDrop(Option<(FfiTarget, ObjectRef)>);

impl Drop for ExitOnDrop {
    fn drop(&mut self) {
        let Some((target, obj)) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let exit = exit_call(
            obj,
            Value::from("HostError"),
            Value::from("the Rust caller stopped waiting (cancelled)"),
        );
        runtime.spawn(async move {
            if let Err(err) = target.run(exit).await {
                tracing::warn!(error = %err, "__exit__ after a cancelled with_python failed");
            }
        });
    }
}

async fn release(target: &FfiTarget, session: &str, id: &str) -> Result<(), Error> {
    let pool = target.pool()?;
    pool.release_ref(session, id, Duration::from_secs(10)).await
}

impl Session {
    /// Where this session's FFI calls go on `pool` instead of its default
    /// pool (refs made there live in that pool's workers).
    pub fn on_pool(&self, pool: impl Into<String>) -> FfiTarget {
        FfiTarget::session(self.clone(), Some(pool.into()))
    }
}

impl Ffi for Session {
    fn ffi_target(&self) -> impl Future<Output = Result<FfiTarget, Error>> + Send {
        std::future::ready(Ok(FfiTarget::session(self.clone(), None)))
    }
}

impl Ffi for HostCallContext {
    fn ffi_target(&self) -> impl Future<Output = Result<FfiTarget, Error>> + Send {
        // Where FFI calls made through this context go: the caller's worker.
        std::future::ready(Ok(FfiTarget::nested(self.clone())))
    }
}

impl Ffi for FfiTarget {
    fn ffi_target(&self) -> impl Future<Output = Result<FfiTarget, Error>> + Send {
        std::future::ready(Ok(self.clone()))
    }
}

// -------------------------------------------------------------- streams

/// A Python iterator kept in a worker: take items one at a time or in
/// batches, ask its length, or turn it into a Rust [`Stream`].
#[derive(Debug, Clone)]
pub struct StreamRef {
    target: FfiTarget,
    stream: StreamRefValue,
}

impl StreamRef {
    /// The ref itself.
    pub fn value(&self) -> &StreamRefValue {
        &self.stream
    }

    /// The next item; `None` once the iterator is exhausted.
    pub async fn next(&self) -> Result<Option<Value>, Error> {
        Ok(self.next_batch(1).await?.pop())
    }

    /// Up to `n` next items; fewer means the iterator is exhausted.
    pub async fn next_batch(&self, n: u32) -> Result<Vec<Value>, Error> {
        let call = op(
            ops::NEXT,
            vec![Value::StreamRef(self.stream.clone()), Value::from(n)],
            Vec::new(),
            Vec::new(),
        );
        match self.target.run(call).await? {
            Value::List(items) => Ok(items),
            other => Err(Error::Protocol(format!(
                "{} answered a {} instead of a list",
                ops::NEXT,
                other.type_name()
            ))),
        }
    }

    /// `len()` of the underlying object, when it has one (a generator has
    /// not: that is a Python `TypeError`).
    pub async fn len(&self) -> Result<usize, Error> {
        let call = op(
            ops::LEN,
            vec![Value::StreamRef(self.stream.clone())],
            Vec::new(),
            Vec::new(),
        );
        let n: i64 = self.target.run(call).await?.extract()?;
        Ok(n.max(0) as usize)
    }

    /// Whether `len()` is 0.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// The remaining items as a Rust stream, fetched in batches of 128 (one
    /// round trip each). Items fetched but not consumed when the stream is
    /// dropped are gone from the iterator; use [`next`](Self::next) or
    /// [`next_batch`](Self::next_batch) to take exactly as many as needed.
    pub fn into_stream(self) -> PyStream {
        let batches = futures::stream::try_unfold((self, false), |(this, done)| async move {
            if done {
                return Ok::<_, Error>(None);
            }
            let batch = this.next_batch(NEXT_BATCH).await?;
            // A short batch means the iterator is exhausted.
            let done = batch.len() < NEXT_BATCH as usize;
            Ok(Some((batch, (this, done))))
        });
        let items = batches
            .map_ok(|batch| futures::stream::iter(batch.into_iter().map(Ok)))
            .try_flatten();
        PyStream {
            inner: Inner::Pulled(items.boxed()),
        }
    }
}

/// Items of a Python iterable, as a Rust [`Stream`] of values.
pub struct PyStream {
    inner: Inner,
}

enum Inner {
    Pushed(ExecStream),
    Pulled(Pin<Box<dyn Stream<Item = Result<Value, Error>> + Send>>),
}

impl PyStream {
    /// A stream of values already here (a sequence that came whole where an
    /// iterator was expected).
    pub fn from_values(values: Vec<Value>) -> Self {
        PyStream {
            inner: Inner::Pulled(futures::stream::iter(values.into_iter().map(Ok)).boxed()),
        }
    }
}

impl std::fmt::Debug for PyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyStream").finish_non_exhaustive()
    }
}

impl Stream for PyStream {
    type Item = Result<Value, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            Inner::Pushed(stream) => stream
                .poll_next_unpin(cx)
                .map(|item| item.map(|chunk| chunk.map(|c| c.value))),
            Inner::Pulled(stream) => stream.poll_next_unpin(cx),
        }
    }
}
