//! The store: versions and updates, metadata, lookups by id or name,
//! deletes, names and the limit.

use super::*;

// ------------------------------------------------------------ the store

#[test]
fn each_set_bumps_the_version_and_reports_the_change() {
    let mut store = VariableStore::default();
    let id = store
        .register(
            "temperature",
            VarType::Float,
            Value::Float(0.7),
            bounded(Some(0.0), Some(2.0)),
            "",
        )
        .expect("valid")
        .id
        .clone();
    let registered = store.get(&id).expect("present").updated;

    let meta = vec![("reason".to_string(), "tuning".to_string())];
    let update = store
        .set(
            "temperature",
            Value::Int(1),
            UpdateSource::Python,
            meta.clone(),
        )
        .expect("valid");
    assert_eq!(
        update,
        VariableUpdate {
            variable_id: id.clone(),
            name: "temperature".to_string(),
            old_value: Value::Float(0.7),
            new_value: Value::Float(1.0),
            version: 1,
            source: UpdateSource::Python,
            metadata: meta,
        }
    );

    // An equal value is still a change.
    let update = store
        .set(&id, Value::Float(1.0), UpdateSource::Host, Vec::new())
        .expect("valid");
    assert_eq!(update.version, 2);
    assert_eq!(update.old_value, Value::Float(1.0));
    assert_eq!(update.new_value, Value::Float(1.0));
    assert_eq!(update.source, UpdateSource::Host);

    // A rejected value changes nothing.
    let err = store
        .set(&id, Value::Float(5.0), UpdateSource::Host, Vec::new())
        .expect_err("above max");
    assert_eq!(err.constraint(), Some("max"));

    let v = store.get("temperature").expect("present");
    assert_eq!(v.version, 2);
    assert_eq!(v.value, Value::Float(1.0));
    assert!(v.updated >= registered);
    assert_eq!(
        v.metadata,
        vec![("reason".to_string(), "tuning".to_string())]
    );
}

#[test]
fn set_merges_metadata_into_the_variable() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "k", VarType::Integer, Value::Int(1)).expect("valid");
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    store
        .set(
            "k",
            Value::Int(2),
            UpdateSource::Host,
            vec![pair("a", "1"), pair("b", "1")],
        )
        .expect("valid");
    store
        .set(
            "k",
            Value::Int(3),
            UpdateSource::Host,
            vec![pair("b", "2"), pair("c", "2")],
        )
        .expect("valid");
    let v = store.get("k").expect("present");
    assert_eq!(
        v.metadata,
        vec![pair("a", "1"), pair("b", "2"), pair("c", "2")]
    );
}

#[test]
fn get_takes_an_id_or_a_name() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "alpha", VarType::Integer, Value::Int(1)).expect("valid");
    register_plain(&mut store, "beta", VarType::Integer, Value::Int(2)).expect("valid");
    assert_eq!(store.get("var_2").expect("by id").name, "beta");
    assert_eq!(store.get("beta").expect("by name").id, "var_2");
    assert_eq!(store.get("alpha").expect("by name").id, "var_1");
    for missing in ["gamma", "var_3", "var_01", "var_", ""] {
        match store.get(missing) {
            Err(VariableError::NotFound { identifier }) => assert_eq!(identifier, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
    let err = store
        .set("gamma", Value::Int(1), UpdateSource::Host, Vec::new())
        .expect_err("missing");
    assert!(matches!(err, VariableError::NotFound { .. }));
    assert_eq!(err.constraint(), None);
}

#[test]
fn delete_frees_the_name_but_never_the_id() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "a", VarType::Boolean, Value::Bool(true)).expect("valid");
    register_plain(&mut store, "b", VarType::Boolean, Value::Bool(true)).expect("valid");
    let deleted = store.delete("var_1").expect("present");
    assert_eq!(deleted.name, "a");
    assert!(matches!(
        store.get("a"),
        Err(VariableError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("a"),
        Err(VariableError::NotFound { .. })
    ));
    assert_eq!(store.len(), 1);

    let again = register_plain(&mut store, "a", VarType::Boolean, Value::Bool(false))
        .expect("name free again");
    assert_eq!(again.id, "var_3");
    let names: Vec<&str> = store.list().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    store.delete("b").expect("by name");
    assert_eq!(store.len(), 1);
}

#[test]
fn a_name_is_registered_once() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "x", VarType::Integer, Value::Int(1)).expect("valid");
    match register_plain(&mut store, "x", VarType::Float, Value::Float(1.0)) {
        Err(VariableError::AlreadyExists { name }) => assert_eq!(name, "x"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.len(), 1);
}

#[test]
fn names_are_checked() {
    let mut store = VariableStore::default();
    let long = "n".repeat(MAX_NAME_BYTES + 1);
    for name in ["", long.as_str(), "var_7", "var_0"] {
        let result = register_plain(&mut store, name, VarType::Boolean, Value::Bool(true));
        assert!(
            matches!(result, Err(VariableError::InvalidDefinition { .. })),
            "{name:?}: {result:?}"
        );
    }
    let longest = "n".repeat(MAX_NAME_BYTES);
    for name in [longest.as_str(), "var_", "var_x", "variable_1"] {
        register_plain(&mut store, name, VarType::Boolean, Value::Bool(true))
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
}

#[test]
fn the_store_holds_at_most_its_limit() {
    let mut store = VariableStore::with_limit(2);
    assert!(store.is_empty());
    for name in ["a", "b"] {
        register_plain(&mut store, name, VarType::Integer, Value::Int(0)).expect("under the limit");
    }
    match register_plain(&mut store, "c", VarType::Integer, Value::Int(0)) {
        Err(e @ VariableError::TooMany { .. }) => {
            assert!(matches!(e, VariableError::TooMany { limit: 2 }));
        }
        other => panic!("{other:?}"),
    }
    store.delete("a").expect("present");
    register_plain(&mut store, "c", VarType::Integer, Value::Int(0)).expect("room again");
    assert_eq!(VariableStore::default().limit(), DEFAULT_MAX_VARIABLES);
}

#[test]
fn a_rejected_registration_uses_no_id() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "bad", VarType::Integer, Value::from("x")).expect_err("not an int");
    let v = register_plain(&mut store, "good", VarType::Integer, Value::Int(1)).expect("valid");
    assert_eq!(v.id, "var_1");
}

#[test]
fn missing_lists_the_names_not_registered() {
    let mut store = VariableStore::default();
    register_plain(&mut store, "alpha", VarType::Integer, Value::Int(1)).expect("valid");
    let required: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(store.missing(&required), ["beta", "gamma"]);
    assert!(store.missing(&required[..1]).is_empty());
    assert!(store.missing(&[]).is_empty());
}
