//! The runtime's types to the API's messages and back: pool status, session
//! info, variables and their updates, stream items, affinity, constraints,
//! arguments. Values cross as the typed `Value` both ways (the `From` impls
//! of `snakepit_proto`); nothing here goes through JSON.
//!
//! Called by the RPC handlers (`service.rs`), and by the remote client
//! (`crate::remote`) for the messages it sends and reads: affinity,
//! constraints, values.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use snakepit_proto::v1;

use crate::{
    Affinity, Chunk, Constraints, Error, PoolStatus, SessionInfo, Value, Variable, VariableUpdate,
    WorkerStatus,
};

/// The affinity a request asks for; `None` when unspecified (the session's
/// or the pool's default applies).
pub(crate) fn affinity(raw: i32) -> Result<Option<Affinity>, Error> {
    match v1::Affinity::try_from(raw) {
        Ok(v1::Affinity::Unspecified) => Ok(None),
        Ok(v1::Affinity::Hint) => Ok(Some(Affinity::Hint)),
        Ok(v1::Affinity::StrictQueue) => Ok(Some(Affinity::StrictQueue)),
        Ok(v1::Affinity::StrictFailFast) => Ok(Some(Affinity::StrictFailFast)),
        Err(_) => Err(bad_request(
            "affinity",
            format!("unknown affinity {raw} (expected 0 to 3)"),
        )),
    }
}

/// The wire form of an affinity; unset is `AFFINITY_UNSPECIFIED`.
pub(crate) fn affinity_to_proto(affinity: Option<Affinity>) -> i32 {
    let proto = match affinity {
        None => v1::Affinity::Unspecified,
        Some(Affinity::Hint) => v1::Affinity::Hint,
        Some(Affinity::StrictQueue) => v1::Affinity::StrictQueue,
        Some(Affinity::StrictFailFast) => v1::Affinity::StrictFailFast,
    };
    proto as i32
}

/// A request field that is missing or malformed, as the error every
/// handler returns for it (`bad_arguments`, INVALID_ARGUMENT).
pub(crate) fn bad_request(field: &str, message: impl Into<String>) -> Error {
    Error::BadArguments {
        tool: String::new(),
        parameter: Some(field.to_string()),
        message: message.into(),
    }
}

/// An optional `Value` field: absent is `None` (Python's), as on the wire.
pub(crate) fn value(value: Option<v1::Value>) -> Result<Value, Error> {
    match value {
        Some(v) => from_client(v, "value"),
        None => Ok(Value::Null),
    }
}

/// Positional arguments.
pub(crate) fn args(args: Vec<v1::Value>) -> Result<Vec<Value>, Error> {
    args.into_iter().map(|v| from_client(v, "args")).collect()
}

/// A client's value. Regions of shared memory name memory of a worker's
/// host, which a client cannot have: refused, never read as empty bytes.
fn from_client(mut value: v1::Value, field: &str) -> Result<Value, Error> {
    snakepit_proto::frames::visit_value(&mut value, &mut |v: &mut v1::Value| match &v.kind {
        Some(v1::value::Kind::SharedBytes(_)) => Err(()),
        Some(v1::value::Kind::Ndarray(nd)) if nd.shared.is_some() => Err(()),
        _ => Ok(()),
    })
    .map_err(|()| {
        bad_request(
            field,
            "a shared-memory region (NdArray.shared, Value.shared_bytes) names memory of the \
             server's workers; send the bytes inline",
        )
    })?;
    Ok(Value::from(value))
}

/// A request's metadata, sorted by key (a protobuf map keeps no order).
pub(crate) fn metadata(metadata: HashMap<String, String>) -> Vec<(String, String)> {
    let mut metadata: Vec<(String, String)> = metadata.into_iter().collect();
    metadata.sort();
    metadata
}

/// Keyword arguments, sorted by name: a protobuf map keeps no order, so the
/// order Python sees is at least the same for the same call.
pub(crate) fn kwargs(kwargs: HashMap<String, v1::Value>) -> Result<Vec<(String, Value)>, Error> {
    let mut kwargs: Vec<(String, Value)> = kwargs
        .into_iter()
        .map(|(k, v)| Ok((k, from_client(v, "kwargs")?)))
        .collect::<Result<_, Error>>()?;
    kwargs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(kwargs)
}

/// One item of a stream.
pub(crate) fn stream_item(chunk: Chunk) -> v1::StreamItem {
    v1::StreamItem {
        seq: chunk.seq,
        value: Some(chunk.value.into()),
        metadata: chunk
            .metadata
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect(),
    }
}

/// A session as the API shows it: `pool` and `affinity` are the defaults the
/// server keeps for its calls.
pub(crate) fn session_info(
    info: SessionInfo,
    pool: &str,
    affinity: Option<Affinity>,
) -> v1::SessionInfo {
    v1::SessionInfo {
        id: info.id,
        pool: pool.to_string(),
        affinity: affinity_to_proto(affinity),
        metadata: info.metadata.into_iter().collect(),
        created_unix_ms: unix_ms(info.created),
        last_used_unix_ms: unix_ms(info.last_used),
        pools: info.pools,
        variables: u32::try_from(info.variables).unwrap_or(u32::MAX),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A session variable.
pub(crate) fn variable(v: Variable) -> v1::SessionVariable {
    v1::SessionVariable {
        id: v.id,
        name: v.name,
        r#type: v.var_type.as_str().to_string(),
        value: Some(v.value.into()),
        version: v.version,
        constraints: constraints_to_proto(&v.constraints),
        description: v.description,
        metadata: v.metadata.into_iter().collect(),
    }
}

/// The constraints that are set, by key.
pub(crate) fn constraints_to_proto(c: &Constraints) -> HashMap<String, v1::Value> {
    match c.to_value() {
        Value::Map(entries) => entries
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::Str(k) => Some((k, v.into())),
                _ => None,
            })
            .collect(),
        _ => HashMap::new(),
    }
}

/// The constraints of a registration, read as Python's `dict` would be.
pub(crate) fn constraints(
    variable: &str,
    raw: HashMap<String, v1::Value>,
) -> Result<Constraints, Error> {
    let entries = raw
        .into_iter()
        .map(|(k, v)| (Value::Str(k), Value::from(v)))
        .collect();
    Ok(Constraints::from_value(variable, &Value::Map(entries))?)
}

/// A change of a watched variable.
pub(crate) fn variable_update(session_id: &str, u: VariableUpdate) -> v1::VariableUpdate {
    v1::VariableUpdate {
        session_id: session_id.to_string(),
        watch_id: String::new(),
        variable_id: u.variable_id,
        name: u.name,
        old_value: Some(u.old_value.into()),
        new_value: Some(u.new_value.into()),
        version: u.version,
        source: u.source.as_str().to_string(),
        metadata: u.metadata.into_iter().collect(),
    }
}

/// A pool's snapshot.
pub(crate) fn pool_state(st: PoolStatus) -> v1::PoolState {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    v1::PoolState {
        name: st.name,
        size: count(st.size),
        workers_up: count(st.workers_up),
        in_flight: count(st.in_flight),
        queued: count(st.queued),
        degraded: st.degraded,
        workers: st.workers.into_iter().map(worker_state).collect(),
        tools: st.tools,
        min_size: count(st.min_size.unwrap_or(0)),
        max_size: count(st.max_size.unwrap_or(0)),
    }
}

fn worker_state(w: WorkerStatus) -> v1::WorkerState {
    v1::WorkerState {
        id: w.id,
        pid: w.pid.unwrap_or(0),
        ready: w.ready,
        draining: w.draining,
        suspect: w.suspect,
        in_flight: w.in_flight,
        completed: w.completed,
        python_version: w.python_version.unwrap_or_default(),
        gil_enabled: w.gil_enabled.unwrap_or(true),
        capacity: w.capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_round_trips_and_refuses_unknown_numbers() {
        for a in [
            None,
            Some(Affinity::Hint),
            Some(Affinity::StrictQueue),
            Some(Affinity::StrictFailFast),
        ] {
            assert_eq!(affinity(affinity_to_proto(a)).unwrap(), a);
        }
        let err = affinity(9).unwrap_err();
        assert_eq!(err.outcome(), "bad_arguments");
    }

    #[test]
    fn constraints_cross_both_ways() {
        let raw = HashMap::from([
            ("min".to_string(), v1::Value::from(Value::from(0.0))),
            ("max".to_string(), v1::Value::from(Value::from(1))),
        ]);
        let c = constraints("x", raw).unwrap();
        assert_eq!((c.min, c.max), (Some(0.0), Some(1.0)));
        let back = constraints_to_proto(&c);
        assert_eq!(Value::from(back["max"].clone()), Value::Float(1.0));
        let err = constraints(
            "x",
            HashMap::from([("colour".to_string(), v1::Value::from(Value::from(1)))]),
        )
        .unwrap_err();
        assert_eq!(err.outcome(), "variable");
    }

    #[test]
    fn keyword_arguments_come_out_sorted() {
        let kw = kwargs(HashMap::from([
            ("b".to_string(), v1::Value::from(Value::from(2))),
            ("a".to_string(), v1::Value::from(Value::from(1))),
        ]))
        .unwrap();
        assert_eq!(
            kw,
            vec![
                ("a".to_string(), Value::Int(1)),
                ("b".to_string(), Value::Int(2))
            ]
        );
        assert_eq!(value(None).unwrap(), Value::Null);
    }

    #[test]
    fn values_naming_shared_memory_are_refused() {
        let region = v1::SharedRegion {
            arena: v1::SharedArena::Host as i32,
            offset: 0,
            length: 1 << 20,
        };
        let shared_bytes = v1::Value {
            kind: Some(v1::value::Kind::SharedBytes(region)),
        };
        let shared_array = v1::Value {
            kind: Some(v1::value::Kind::Ndarray(v1::NdArray {
                dtype: "uint8".into(),
                shape: vec![1 << 20],
                data: Default::default(),
                shared: Some(region),
            })),
        };
        let nested = v1::Value::from(Value::List(vec![Value::Null]));
        let mut nested = nested;
        if let Some(v1::value::Kind::List(l)) = nested.kind.as_mut() {
            l.items.push(shared_array.clone());
        }
        for (v, field) in [(shared_bytes, "value"), (nested, "value")] {
            let err = value(Some(v)).unwrap_err();
            assert!(
                matches!(&err, Error::BadArguments { parameter: Some(p), .. } if p == field),
                "{err:?}"
            );
        }
        assert!(args(vec![shared_array.clone()]).is_err());
        assert!(kwargs(HashMap::from([("x".to_string(), shared_array)])).is_err());
    }
}
