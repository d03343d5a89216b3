//! The host's `snakepit.variables.*` tools: Python reading and writing its
//! session's typed variables, as a table of operations onto the session's
//! owner (the same messages the typed [`Session`](crate::Session) API sends).
//!
//! Called by the host's call dispatch (`calls.rs`) for a host call whose tool
//! starts with `snakepit.variables.`; each operation parses its arguments,
//! asks the session owner within the call's timeout, and maps the answer.

use std::time::Duration;

use futures::future::BoxFuture;
use ractor::ActorRef;
use snakepit_proto::Value;
use snakepit_proto::v1::Frame;
use tokio::sync::mpsc;

use crate::host::tools::{HostArgs, HostToolError};
use crate::sessions::{OwnerMessage, WatchSink};
use crate::variables::{Constraints, UpdateSource, Variable, VariableError, parse_var_type};

/// The prefix of the tools in [`OPS`].
pub(super) const PREFIX: &str = "snakepit.variables.";

/// What an operation works on.
pub(super) struct Op<'a> {
    pub owner: ActorRef<OwnerMessage>,
    pub session: &'a str,
    pub timeout: Duration,
    /// The calling worker's connection, for a watch's updates.
    pub push: &'a mpsc::UnboundedSender<Frame>,
}

type Handler = for<'a> fn(Op<'a>, HostArgs) -> BoxFuture<'a, Result<Value, HostToolError>>;

/// Every operation, by the name after [`PREFIX`].
const OPS: &[(&str, Handler)] = &[
    ("register", |op, args| Box::pin(register(op, args))),
    ("get", |op, args| Box::pin(get(op, args))),
    ("set", |op, args| Box::pin(set(op, args))),
    ("list", |op, _| Box::pin(list(op))),
    ("delete", |op, args| Box::pin(delete(op, args))),
    ("watch", |op, args| Box::pin(watch(op, args))),
    ("unwatch", |op, args| Box::pin(unwatch(op, args))),
];

/// Runs operation `name` (the tool name after [`PREFIX`]).
pub(super) async fn run(name: &str, op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    match OPS.iter().find(|(n, _)| *n == name) {
        Some((_, handler)) => handler(op, args).await,
        None => Err(HostToolError::UnknownTool {
            name: format!("{PREFIX}{name}"),
            available: OPS.iter().map(|(n, _)| format!("{PREFIX}{n}")).collect(),
        }),
    }
}

async fn register(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let name = text(&args, "name")?;
    let var_type = parse_var_type(&text(&args, "type")?)?;
    let initial = args.get("initial_value").cloned().unwrap_or(Value::Null);
    let constraints = match args.get("constraints") {
        None | Some(Value::Null) => Constraints::default(),
        Some(v) => Constraints::from_value(&name, v)?,
    };
    let description = match args.get("description") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    variable(
        ask(&op, |reply| OwnerMessage::Register {
            name,
            var_type,
            initial,
            constraints,
            description,
            reply,
        })
        .await?,
    )
}

async fn get(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let identifier = text(&args, "identifier")?;
    variable(ask(&op, |reply| OwnerMessage::Get { identifier, reply }).await?)
}

async fn set(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let identifier = text(&args, "identifier")?;
    let value = args.get("value").cloned().unwrap_or(Value::Null);
    let metadata = string_map(args.get("metadata"));
    variable(
        ask(&op, |reply| OwnerMessage::Set {
            identifier,
            value,
            source: UpdateSource::Python,
            metadata,
            reply,
        })
        .await?,
    )
}

async fn list(op: Op<'_>) -> Result<Value, HostToolError> {
    let all: Vec<Variable> = ask(&op, OwnerMessage::List).await?;
    Ok(Value::List(all.iter().map(|v| v.to_value()).collect()))
}

async fn delete(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let identifier = text(&args, "identifier")?;
    variable(ask(&op, |reply| OwnerMessage::Delete { identifier, reply }).await?)
        .map(|_| Value::Null)
}

async fn watch(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let names = match args.get("identifiers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::List(items) | Value::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                other => Err(HostToolError::BadArguments {
                    parameter: Some("identifiers".into()),
                    message: format!("identifiers must be strings, not {}", other.type_name()),
                }),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Str(s)) => vec![s.clone()],
        Some(other) => {
            return Err(HostToolError::BadArguments {
                parameter: Some("identifiers".into()),
                message: format!("identifiers must be a list, not {}", other.type_name()),
            });
        }
    };
    let include_initial = matches!(args.get("include_initial"), Some(Value::Bool(true)));
    let sink = WatchSink::Python {
        frames: op.push.clone(),
    };
    let id: Result<String, VariableError> = ask(&op, |reply| OwnerMessage::Watch {
        names,
        include_initial,
        sink,
        reply,
    })
    .await?;
    Ok(Value::Str(id?))
}

async fn unwatch(op: Op<'_>, args: HostArgs) -> Result<Value, HostToolError> {
    let watch_id = text(&args, "watch_id")?;
    let _ = op.owner.cast(OwnerMessage::Unwatch { watch_id });
    Ok(Value::Null)
}

/// Argument `name`, which must be a string.
fn text(args: &HostArgs, name: &str) -> Result<String, HostToolError> {
    match args.require(name)? {
        Value::Str(s) => Ok(s.clone()),
        other => Err(HostToolError::BadArguments {
            parameter: Some(name.to_string()),
            message: format!("`{name}` must be a string, not {}", other.type_name()),
        }),
    }
}

fn variable(r: Result<Variable, VariableError>) -> Result<Value, HostToolError> {
    r.map(|v| v.to_value()).map_err(HostToolError::from)
}

async fn ask<T: Send + 'static>(
    op: &Op<'_>,
    msg: impl FnOnce(ractor::RpcReplyPort<T>) -> OwnerMessage,
) -> Result<T, HostToolError> {
    crate::ask::ask(&op.owner, msg, Some(op.timeout))
        .await
        .map_err(|_| HostToolError::failed(format!("session `{}` is gone", op.session)))
}

fn string_map(value: Option<&Value>) -> Vec<(String, String)> {
    match value {
        Some(Value::Map(entries)) => entries
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Str(v)) => Some((k.clone(), v.clone())),
                (Value::Str(k), other) => Some((k.clone(), format!("{other:?}"))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
