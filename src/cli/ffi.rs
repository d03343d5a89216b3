//! `snakepit call` and `snakepit shell`: the universal FFI
//! (`docs/ffi-protocol.md`) from the command line.
//!
//! `call` runs one `module.function(*args, **kwargs)` and prints the result
//! as tagged JSON ([`Value::to_json_tagged`]). `shell` answers JSON-lines
//! requests from stdin on stdout, all in the runtime's auto-session,
//! remembering every ref it has shown so that later lines can name it by id
//! (the protocol is in the README, "snakepit shell"). Both start the runtime
//! as every command does (`--config`, `--metrics-addr`); without `--config`,
//! on one worker of the showcase adapter. `call --server ADDR` runs on a
//! serving host instead (`super::remote`), printed alike.

mod refs;

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value as Json, json};
use snakepit::{Error, Ffi, ObjectRef, PoolConfig, Snakepit, StreamRefValue, Value};
use tokio::sync::mpsc;

use self::refs::RefBook;
use super::remote::ServerOpts;
use crate::RuntimeOpts;

/// Lines read ahead of the one being answered.
const READ_AHEAD: usize = 16;

/// Default longest request line (`--max-line-bytes`).
const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The key of an argument that stands for a remembered ref: `{"__ref__": id}`.
const REF_KEY: &str = "__ref__";

// ------------------------------------------------------------------ call

/// `snakepit call MODULE FUNCTION [ARG]... [--kwargs JSON]`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// Module to import, e.g. `math` or `os.path`.
    module: String,
    /// Function (or class) in it; may be dotted, e.g. `Path.home`.
    function: String,
    /// Positional arguments, each tagged JSON (`16`, `[1, 2]`,
    /// `{"__type__": "bytes", "base64": "AAE="}`); text that is not JSON is
    /// passed as a string.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// Keyword arguments as a (tagged) JSON object.
    #[arg(long)]
    kwargs: Option<String>,
    #[command(flatten)]
    server: ServerOpts,
}

/// Runs `snakepit call`: the result on stdout, exit 0; a failure on stderr,
/// exit 1.
pub async fn call(opts: CallArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let args = opts
        .args
        .iter()
        .enumerate()
        .map(|(i, text)| cli_arg(text).with_context(|| format!("argument {}", i + 1)))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| super::UsageError(format!("{e:#}")))?;
    let kwargs = match &opts.kwargs {
        Some(text) => cli_kwargs(text).map_err(|e| super::UsageError(format!("{e:#}")))?,
        None => Value::Null,
    };
    if opts.server.is_remote() {
        let client = opts.server.connect(&runtime).await?;
        return super::remote::call(client, &opts.module, &opts.function, args, kwargs).await;
    }
    let snakepit = start(&runtime).await?;
    let outcome = super::run_until_signal(&snakepit, async {
        let result = snakepit
            .call(&opts.module, &opts.function, args, kwargs)
            .await;
        release_session(&snakepit).await;
        Ok(result)
    })
    .await?;
    match outcome {
        Ok(Ok(value)) => {
            println!("{}", value.to_json_tagged());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(err)) => {
            let traceback = err.python_exception().map(|e| e.traceback.as_str());
            super::print_failure(&err, traceback);
            Ok(ExitCode::from(super::EXIT_FAILED))
        }
        Err(signal) => Ok(signal.exit_code()),
    }
}

/// A positional argument: tagged JSON, or the text itself when it is not JSON.
fn cli_arg(text: &str) -> anyhow::Result<Value> {
    match serde_json::from_str::<Json>(text) {
        Ok(json) => Ok(Value::from_json_tagged(json)?),
        Err(_) => Ok(Value::from(text)),
    }
}

/// `--kwargs`: a (tagged) JSON object.
fn cli_kwargs(text: &str) -> anyhow::Result<Value> {
    let json: Json = serde_json::from_str(text).context("--kwargs is not valid JSON")?;
    anyhow::ensure!(json.is_object(), "--kwargs must be a JSON object");
    Value::from_json_tagged(json).context("--kwargs")
}

/// Releases the auto-session before the runtime shuts down (its refs go
/// now, not as a failed cleanup at shutdown); a failure is only logged.
async fn release_session(snakepit: &Snakepit) {
    if let Err(err) = snakepit.release_session().await {
        tracing::warn!(error = %err, "Releasing the FFI session failed.");
    }
}

/// Starts the runtime from `--config`, or on one showcase worker without it.
pub(super) async fn start(opts: &RuntimeOpts) -> anyhow::Result<Snakepit> {
    let mut builder = super::builder(opts)?;
    if opts.config_path().is_none() {
        let mut pool = PoolConfig::named("ffi");
        pool.size = 1;
        builder = builder
            .config(snakepit::config::Config::default())
            .pool(pool);
    }
    super::start(builder).await
}

// ----------------------------------------------------------------- shell

/// `snakepit shell`.
#[derive(Args, Debug)]
pub struct ShellArgs {
    /// Longest request line in bytes; a longer one is skipped (never held
    /// in memory) and answered with `bad_request`.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
}

/// Runs `snakepit shell` until EOF on stdin (or a signal), then releases the
/// session and shuts the runtime down.
pub async fn shell(opts: ShellArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let snakepit = start(&runtime).await?;
    let outcome = super::run_until_signal(&snakepit, async {
        let served = Shell::new(&snakepit, std::io::stdout())
            .serve(stdin_lines(opts.max_line_bytes))
            .await;
        release_session(&snakepit).await;
        Ok(served?)
    })
    .await?;
    Ok(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(signal) => signal.exit_code(),
    })
}

/// One request line, after its `id` was taken out.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Call {
        module: String,
        function: String,
        #[serde(default)]
        args: Vec<Json>,
        #[serde(default)]
        kwargs: JsonMap<String, Json>,
    },
    Get {
        module: String,
        attr: String,
    },
    CallClass {
        module: String,
        class: String,
        #[serde(default)]
        args: Vec<Json>,
        #[serde(default)]
        kwargs: JsonMap<String, Json>,
    },
    Method {
        #[serde(rename = "ref")]
        target: Json,
        name: String,
        #[serde(default)]
        args: Vec<Json>,
        #[serde(default)]
        kwargs: JsonMap<String, Json>,
    },
    Attr {
        #[serde(rename = "ref")]
        target: Json,
        name: String,
    },
    SetAttr {
        #[serde(rename = "ref")]
        target: Json,
        name: String,
        value: Json,
    },
    Helper {
        name: String,
        #[serde(default)]
        args: Vec<Json>,
        #[serde(default)]
        kwargs: JsonMap<String, Json>,
    },
    Stream {
        module: String,
        function: String,
        #[serde(default)]
        args: Vec<Json>,
        #[serde(default)]
        kwargs: JsonMap<String, Json>,
        limit: Option<u64>,
    },
    Next {
        #[serde(rename = "ref")]
        target: Json,
        n: Option<u32>,
    },
    Len {
        #[serde(rename = "ref")]
        target: Json,
    },
    Repr {
        #[serde(rename = "ref")]
        target: Json,
    },
    ReleaseRef {
        #[serde(rename = "ref")]
        target: Json,
    },
    ReleaseSession {},
}

/// What a request failed with.
#[derive(Debug, thiserror::Error)]
enum ShellError {
    /// Not JSON, not an object, an unknown op, a missing or mistyped field.
    #[error("{0}")]
    BadRequest(String),
    /// A ref id this shell has not shown in any result.
    #[error("ref `{0}` is not known to this shell (not in any earlier result)")]
    UnknownRef(String),
    /// The runtime or Python failed (boxed: `Error` is large).
    #[error(transparent)]
    Runtime(Box<Error>),
    /// Stdout is gone: the shell ends.
    #[error("cannot write to stdout: {0}")]
    Output(#[from] std::io::Error),
}

impl From<Error> for ShellError {
    fn from(err: Error) -> Self {
        Self::Runtime(Box::new(err))
    }
}

impl ShellError {
    fn bad(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// The `kind` of the error line.
    fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::Output(_) => "bad_request",
            Self::UnknownRef(_) => "ref_not_found",
            Self::Runtime(err) => err.outcome(),
        }
    }

    /// The `error` object of the error line.
    fn body(&self) -> ErrorBody {
        let exception = match self {
            Self::Runtime(err) => err.python_exception(),
            _ => None,
        };
        ErrorBody {
            kind: self.kind(),
            message: self.to_string(),
            python_type: exception.map(|e| e.python_type.clone()),
            traceback: exception
                .map(|e| e.traceback.clone())
                .filter(|t| !t.is_empty()),
        }
    }
}

/// One output line; fields in this order, absent ones left out.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<Json>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl<'a> Line<'a> {
    fn new(id: &'a Json) -> Self {
        Self {
            id,
            item: None,
            ok: None,
            done: false,
            error: None,
        }
    }
}

/// The `error` of an error line.
#[derive(Serialize)]
struct ErrorBody {
    kind: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    python_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceback: Option<String>,
}

/// A successful answer: `ok`, and whether a stream ref is exhausted.
struct Answer {
    ok: Json,
    done: bool,
}

impl From<Json> for Answer {
    fn from(ok: Json) -> Self {
        Self { ok, done: false }
    }
}

/// A `ref` field, resolved.
enum Target {
    Object(ObjectRef),
    Stream(StreamRefValue),
}

/// The state of a shell: the runtime, the refs seen so far, stdout.
struct Shell<'a, W> {
    snakepit: &'a Snakepit,
    refs: RefBook,
    out: W,
}

impl<'a, W: Write> Shell<'a, W> {
    fn new(snakepit: &'a Snakepit, out: W) -> Self {
        Self {
            snakepit,
            refs: RefBook::default(),
            out,
        }
    }

    /// Answers every line of `input` until it ends; fails only when reading
    /// stdin or writing stdout does.
    async fn serve(
        mut self,
        mut input: mpsc::Receiver<std::io::Result<Input>>,
    ) -> std::io::Result<()> {
        while let Some(line) = input.recv().await {
            match line? {
                Input::Line(line) if line.iter().all(u8::is_ascii_whitespace) => {}
                Input::Line(line) => self.answer(&line).await?,
                Input::TooLong { size, limit } => self.write_error(
                    &Json::Null,
                    &ShellError::bad(format!(
                        "line of {size} bytes exceeds --max-line-bytes ({limit}); skipped"
                    )),
                )?,
            }
        }
        Ok(())
    }

    /// Runs one request line and writes its answer.
    async fn answer(&mut self, line: &[u8]) -> std::io::Result<()> {
        let (id, request) = match parse_request(line) {
            Ok(parsed) => parsed,
            Err((id, err)) => return self.write_error(&id, &err),
        };
        match self.run(&id, request).await {
            Ok(answer) => {
                self.alias_result(&id, &answer.ok);
                self.write(&Line {
                    ok: Some(answer.ok),
                    done: answer.done,
                    ..Line::new(&id)
                })
            }
            Err(ShellError::Output(err)) => Err(err),
            Err(err) => self.write_error(&id, &err),
        }
    }

    async fn run(&mut self, id: &Json, request: Request) -> Result<Answer, ShellError> {
        let sp = self.snakepit;
        let value = match request {
            Request::Call {
                module,
                function,
                args,
                kwargs,
            } => {
                let (args, kwargs) = self.call_args(args, kwargs)?;
                sp.call(&module, &function, args, kwargs).await?
            }
            Request::Get { module, attr } => sp.get(&module, &attr).await?,
            Request::CallClass {
                module,
                class,
                args,
                kwargs,
            } => {
                let (args, kwargs) = self.call_args(args, kwargs)?;
                sp.call_class(&module, &class, args, kwargs).await?
            }
            Request::Method {
                target,
                name,
                args,
                kwargs,
            } => {
                let obj = self.object(target, "method")?;
                let (args, kwargs) = self.call_args(args, kwargs)?;
                sp.method(&obj, &name, args, kwargs).await?
            }
            Request::Attr { target, name } => sp.attr(&self.object(target, "attr")?, &name).await?,
            Request::SetAttr {
                target,
                name,
                value,
            } => {
                let obj = self.object(target, "set_attr")?;
                let value = self.value(value, "value")?;
                sp.set_attr(&obj, &name, value).await?;
                Value::Null
            }
            Request::Helper { name, args, kwargs } => {
                let (args, kwargs) = self.call_args(args, kwargs)?;
                sp.call_helper(&name, args, kwargs).await?
            }
            Request::Stream {
                module,
                function,
                args,
                kwargs,
                limit,
            } => {
                let (args, kwargs) = self.call_args(args, kwargs)?;
                return self
                    .stream(id, &module, &function, (args, kwargs), limit)
                    .await;
            }
            Request::Next { target, n } => return self.next(target, n).await,
            Request::Len { target } => match self.target(target)? {
                Target::Object(obj) => sp.call("builtins", "len", [Value::Ref(obj)], ()).await?,
                Target::Stream(s) => Value::from(sp.stream_ref(&s).await?.len().await? as u64),
            },
            Request::Repr { target } => match self.target(target)? {
                Target::Object(obj) => Value::from(sp.repr(&obj).await?),
                Target::Stream(s) => {
                    sp.call("builtins", "repr", [Value::StreamRef(s)], ())
                        .await?
                }
            },
            Request::ReleaseRef { target } => {
                let id = match self.target(target)? {
                    Target::Object(obj) => {
                        sp.release_ref(&obj).await?;
                        obj.id
                    }
                    Target::Stream(s) => {
                        sp.release_stream_ref(&s).await?;
                        s.id
                    }
                };
                self.refs.released(&id);
                Value::Null
            }
            Request::ReleaseSession {} => {
                let released = sp.release_session().await;
                // The workers dropped the session's refs, or will with it.
                self.refs.all_released();
                released?;
                Value::Null
            }
        };
        Ok(self.shown(&value).into())
    }

    /// `stream`: one `item` line per item (at most `limit`), then the count.
    async fn stream(
        &mut self,
        id: &Json,
        module: &str,
        function: &str,
        (args, kwargs): (Vec<Value>, Value),
        limit: Option<u64>,
    ) -> Result<Answer, ShellError> {
        let mut stream = self.snakepit.stream(module, function, args, kwargs).await?;
        let mut count: u64 = 0;
        while limit.is_none_or(|limit| count < limit) {
            let Some(item) = stream.next().await else {
                break;
            };
            let item = self.shown(&item?);
            self.write(&Line {
                item: Some(item),
                ..Line::new(id)
            })?;
            count += 1;
        }
        // Dropping the stream stops the generator when `limit` cut it short.
        drop(stream);
        Ok(json!({ "count": count }).into())
    }

    /// `next`: one item (`null` and `done` once exhausted), or a list of up
    /// to `n` (`done` when it is shorter).
    async fn next(&mut self, target: Json, n: Option<u32>) -> Result<Answer, ShellError> {
        let Target::Stream(stream) = self.target(target)? else {
            return Err(ShellError::bad("`next` needs a stream ref"));
        };
        let stream = self.snakepit.stream_ref(&stream).await?;
        match n {
            None => Ok(match stream.next().await? {
                Some(item) => self.shown(&item).into(),
                None => Answer {
                    ok: Json::Null,
                    done: true,
                },
            }),
            Some(n) => {
                let items = stream.next_batch(n).await?;
                let done = items.len() < n as usize;
                Ok(Answer {
                    ok: self.shown(&Value::List(items)),
                    done,
                })
            }
        }
    }

    /// When request `id` answered a ref, `$id` names that ref from now on,
    /// so that a script can use it without reading the answer first.
    fn alias_result(&mut self, id: &Json, ok: &Json) {
        let name = match id {
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            _ => return,
        };
        let is_ref =
            matches!(ok.get("__type__"), Some(Json::String(t)) if t == "ref" || t == "stream_ref");
        if let (true, Some(Json::String(ref_id))) = (is_ref, ok.get("id")) {
            self.refs.alias(format!("${name}"), ref_id);
        }
    }

    /// Remembers the refs in `value` and renders it.
    fn shown(&mut self, value: &Value) -> Json {
        self.refs.remember(value);
        value.to_json_tagged()
    }

    /// Positional and keyword arguments from their JSON.
    fn call_args(
        &self,
        args: Vec<Json>,
        kwargs: JsonMap<String, Json>,
    ) -> Result<(Vec<Value>, Value), ShellError> {
        let args = args
            .into_iter()
            .enumerate()
            .map(|(i, arg)| self.value(arg, &format!("args[{i}]")))
            .collect::<Result<_, _>>()?;
        let kwargs = self.value(Json::Object(kwargs), "kwargs")?;
        Ok((args, kwargs))
    }

    /// A value from tagged JSON, with `{"__ref__": id}` standing for a
    /// remembered ref; `field` names it in errors.
    fn value(&self, json: Json, field: &str) -> Result<Value, ShellError> {
        let json = self.resolve_refs(json)?;
        Value::from_json_tagged(json).map_err(|e| ShellError::bad(format!("`{field}`: {e}")))
    }

    /// Replaces every `{"__ref__": id}` in `json` by the tagged ref.
    fn resolve_refs(&self, json: Json) -> Result<Json, ShellError> {
        match json {
            Json::Object(obj) if obj.len() == 1 && obj.contains_key(REF_KEY) => match &obj[REF_KEY]
            {
                Json::String(id) => Ok(self.remembered(id)?.to_json_tagged()),
                _ => Err(ShellError::bad(format!(
                    "`{REF_KEY}` must be a ref id string"
                ))),
            },
            Json::Object(obj) => obj
                .into_iter()
                .map(|(k, v)| Ok((k, self.resolve_refs(v)?)))
                .collect::<Result<_, _>>()
                .map(Json::Object),
            Json::Array(items) => items
                .into_iter()
                .map(|v| self.resolve_refs(v))
                .collect::<Result<_, _>>()
                .map(Json::Array),
            other => Ok(other),
        }
    }

    /// A ref seen in an earlier result.
    fn remembered(&self, id: &str) -> Result<&Value, ShellError> {
        self.refs
            .get(id)
            .ok_or_else(|| ShellError::UnknownRef(id.to_string()))
    }

    /// A `ref` field: a remembered ref's id, or a ref as tagged JSON.
    fn target(&self, json: Json) -> Result<Target, ShellError> {
        let value = match json {
            Json::String(id) => self.remembered(&id)?.clone(),
            json @ Json::Object(_) => self.value(json, "ref")?,
            _ => {
                return Err(ShellError::bad(
                    "`ref` must be a ref id or a tagged ref object",
                ));
            }
        };
        match value {
            Value::Ref(obj) => Ok(Target::Object(obj)),
            Value::StreamRef(stream) => Ok(Target::Stream(stream)),
            other => Err(ShellError::bad(format!(
                "`ref` must be a ref, got {}",
                other.type_name()
            ))),
        }
    }

    /// A `ref` field that must be an object ref (for `op`).
    fn object(&self, json: Json, op: &str) -> Result<ObjectRef, ShellError> {
        match self.target(json)? {
            Target::Object(obj) => Ok(obj),
            Target::Stream(_) => Err(ShellError::bad(format!(
                "`{op}` needs an object ref, not a stream ref"
            ))),
        }
    }

    fn write_error(&mut self, id: &Json, err: &ShellError) -> std::io::Result<()> {
        self.write(&Line {
            error: Some(err.body()),
            ..Line::new(id)
        })
    }

    /// Writes one line and flushes it.
    fn write(&mut self, line: &Line<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

/// One line of input, or what is left of one that was too long.
#[derive(Debug, PartialEq)]
enum Input {
    Line(Vec<u8>),
    /// A line past the limit, skipped as it was read.
    TooLong {
        size: usize,
        limit: usize,
    },
}

/// Stdin's lines, read on a thread of their own: a blocking read cannot be
/// cancelled, and a runtime thread stuck in one would hold up the exit after
/// a signal until the user pressed enter.
fn stdin_lines(max_line_bytes: usize) -> mpsc::Receiver<std::io::Result<Input>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let Some(read) = read_line_capped(&mut stdin, max_line_bytes).transpose() else {
                return;
            };
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Reads one line (its newline dropped), holding at most `limit` bytes of
/// it: the rest of a longer line is read and discarded. `None` at EOF.
fn read_line_capped(input: &mut impl BufRead, limit: usize) -> std::io::Result<Option<Input>> {
    let mut line = Vec::new();
    let mut size = 0usize;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buf.is_empty() {
            if size == 0 {
                return Ok(None);
            }
            break;
        }
        let (part, ended) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], true),
            None => (buf, false),
        };
        size += part.len();
        if size <= limit {
            line.extend_from_slice(part);
        } else if !line.is_empty() {
            line = Vec::new();
        }
        let used = part.len() + usize::from(ended);
        input.consume(used);
        if ended {
            break;
        }
    }
    Ok(Some(if size > limit {
        Input::TooLong { size, limit }
    } else {
        Input::Line(line)
    }))
}

/// The `id` (null when absent) and the request of one line, or the `id` and
/// why the line is not a request.
fn parse_request(line: &[u8]) -> Result<(Json, Request), (Json, ShellError)> {
    let json: Json = serde_json::from_slice(line)
        .map_err(|e| (Json::Null, ShellError::bad(format!("not JSON: {e}"))))?;
    let Json::Object(mut obj) = json else {
        return Err((
            Json::Null,
            ShellError::bad("a request must be a JSON object"),
        ));
    };
    let id = obj.remove("id").unwrap_or(Json::Null);
    if !obj.contains_key("op") {
        return Err((id, ShellError::bad("missing field `op`")));
    }
    match Request::deserialize(Json::Object(obj)) {
        Ok(request) => Ok((id, request)),
        Err(e) => Err((id, ShellError::bad(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(line: &str) -> (Json, String) {
        match parse_request(line.as_bytes()) {
            Ok((_, request)) => panic!("{line} parsed as {request:?}"),
            Err((id, err)) => {
                assert_eq!(err.kind(), "bad_request", "{line}: {err}");
                (id, err.to_string())
            }
        }
    }

    #[test]
    fn a_request_keeps_its_id_and_defaults_args_and_kwargs() {
        let (id, request) =
            parse_request(br#"{"id": "a", "op": "call", "module": "m", "function": "f"}"#).unwrap();
        assert_eq!(id, "a");
        let Request::Call { args, kwargs, .. } = request else {
            panic!("{request:?}")
        };
        assert!(args.is_empty() && kwargs.is_empty());
        let (id, _) = parse_request(br#"{"op": "release_session"}"#).unwrap();
        assert_eq!(id, Json::Null);
    }

    #[test]
    fn malformed_lines_are_bad_requests_that_keep_the_id_when_there_is_one() {
        assert_eq!(bad("{").0, Json::Null);
        assert_eq!(bad("[1, 2]").0, Json::Null);
        let (id, message) =
            bad(r#"{"id": 3, "op": "call", "module": "m", "function": "f", "kwarg": {}}"#);
        assert_eq!(id, 3);
        assert!(message.contains("kwarg"), "{message}");
        assert!(
            bad(r#"{"id": 4, "op": "next", "ref": "x", "n": -1}"#)
                .1
                .contains("-1")
        );
        assert!(
            bad(r#"{"id": 5, "op": "call", "module": "m", "function": "f", "args": {}}"#)
                .1
                .contains("sequence")
        );
    }

    #[test]
    fn refs_are_remembered_wherever_they_are_in_a_result() {
        let obj = ObjectRef {
            id: "w/1".into(),
            session_id: "s".into(),
            type_name: "T".into(),
            repr: String::new(),
        };
        let stream = StreamRefValue {
            id: "w/2".into(),
            session_id: "s".into(),
            type_name: "generator".into(),
        };
        let value = Value::map([(
            "k",
            Value::tuple([
                Value::Ref(obj.clone()),
                Value::List(vec![Value::StreamRef(stream)]),
            ]),
        )]);
        let mut refs = RefBook::default();
        refs.remember(&value);
        assert_eq!(refs.len(), 2);
        assert_eq!(refs.get("w/1"), Some(&Value::Ref(obj)));
        assert!(matches!(refs.get("w/2"), Some(Value::StreamRef(_))));
    }

    #[test]
    fn a_line_past_the_limit_is_skipped_without_being_held() {
        let text = format!("{}\n{{\"id\":1}}\n\nlast", "x".repeat(100));
        let mut input = std::io::BufReader::with_capacity(7, text.as_bytes());
        let lines: Vec<Input> =
            std::iter::from_fn(|| read_line_capped(&mut input, 10).unwrap()).collect();
        assert_eq!(
            lines,
            [
                Input::TooLong {
                    size: 100,
                    limit: 10
                },
                Input::Line(b"{\"id\":1}".to_vec()),
                Input::Line(Vec::new()),
                Input::Line(b"last".to_vec()),
            ]
        );
    }
}
