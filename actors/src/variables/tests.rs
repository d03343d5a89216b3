//! Tests of the variable store: what each type accepts and how it is
//! normalized, each constraint, versions and updates, lookups, the limits,
//! and the shapes Python receives.

use super::*;
use bytes::Bytes;

/// A `BigInt` value, built without naming `num-bigint` (not a dependency of
/// this crate): a `u128` beyond 64 bits converts to one.
fn big(v: u128) -> Value {
    Value::from(v)
}

fn floats(xs: &[f64]) -> Value {
    Value::List(xs.iter().map(|x| Value::Float(*x)).collect())
}

fn ints(xs: &[i64]) -> Value {
    Value::List(xs.iter().map(|x| Value::Int(*x)).collect())
}

fn array(dtype: &str, shape: &[u64]) -> Value {
    let elements: u64 = shape.iter().product();
    Value::NdArray(NdArray {
        dtype: dtype.to_string(),
        shape: shape.to_vec(),
        data: Bytes::from(vec![0u8; (elements * 8) as usize]),
    })
}

fn bounded(min: Option<f64>, max: Option<f64>) -> Constraints {
    Constraints {
        min,
        max,
        ..Constraints::default()
    }
}

fn choices(items: &[&str]) -> Constraints {
    Constraints {
        choices: Some(items.iter().map(|s| s.to_string()).collect()),
        ..Constraints::default()
    }
}

fn dimension(d: usize) -> Constraints {
    Constraints {
        dimension: Some(d),
        ..Constraints::default()
    }
}

fn shape(dims: &[usize]) -> Constraints {
    Constraints {
        shape: Some(dims.to_vec()),
        ..Constraints::default()
    }
}

fn lengths(min: Option<usize>, max: Option<usize>) -> Constraints {
    Constraints {
        min_length: min,
        max_length: max,
        ..Constraints::default()
    }
}

/// Registers in a fresh store and returns the stored value.
fn accepted(var_type: VarType, constraints: Constraints, initial: Value) -> Value {
    let mut store = VariableStore::default();
    match store.register("v", var_type, initial.clone(), constraints, "") {
        Ok(v) => v.value.clone(),
        Err(e) => panic!("{var_type} rejected {initial:?}: {e}"),
    }
}

/// Registers in a fresh store and returns the constraint the initial value broke.
fn rejected(var_type: VarType, constraints: Constraints, initial: Value) -> String {
    let mut store = VariableStore::default();
    match store.register("v", var_type, initial.clone(), constraints, "") {
        Ok(v) => panic!("{var_type} accepted {initial:?} as {:?}", v.value),
        Err(e) => match e.constraint() {
            Some(c) => c.to_string(),
            None => panic!("{var_type} rejected {initial:?} with a non-constraint error: {e:?}"),
        },
    }
}

/// Registers a definition in a fresh store and returns the InvalidDefinition message.
fn invalid_definition(var_type: VarType, constraints: Constraints, initial: Value) -> String {
    let mut store = VariableStore::default();
    match store.register("v", var_type, initial, constraints, "") {
        Err(VariableError::InvalidDefinition { name, message }) => {
            assert_eq!(name, "v");
            message
        }
        other => panic!("expected InvalidDefinition, got {other:?}"),
    }
}

// ------------------------------------------------------------ types

#[test]
fn every_type_registers_with_a_valid_initial_value() {
    let cases = [
        (VarType::Float, Constraints::default(), Value::Float(0.7)),
        (VarType::Integer, Constraints::default(), Value::Int(42)),
        (
            VarType::String,
            Constraints::default(),
            Value::from("hello"),
        ),
        (VarType::Boolean, Constraints::default(), Value::Bool(true)),
        (VarType::Choice, choices(&["a", "b"]), Value::from("b")),
        (
            VarType::Embedding,
            Constraints::default(),
            floats(&[0.1, 0.2]),
        ),
        (
            VarType::Tensor,
            Constraints::default(),
            array("float32", &[2, 3]),
        ),
    ];
    let mut store = VariableStore::default();
    for (i, (var_type, constraints, initial)) in cases.into_iter().enumerate() {
        let name = format!("{var_type}_var");
        let v = store
            .register(
                &name,
                var_type,
                initial.clone(),
                constraints,
                "a description",
            )
            .expect("valid");
        assert_eq!(v.id, format!("var_{}", i + 1));
        assert_eq!(v.name, name);
        assert_eq!(v.var_type, var_type);
        assert_eq!(v.value, initial);
        assert_eq!(v.version, 0);
        assert_eq!(v.description, "a description");
        assert!(v.metadata.is_empty());
        assert_eq!(v.created, v.updated);
    }
    assert_eq!(store.len(), 7);
}

#[test]
fn invalid_initial_values_name_the_type_constraint() {
    let cases = [
        (VarType::Float, Value::from("1.0")),
        (VarType::Float, Value::Null),
        (VarType::Integer, Value::from("1")),
        (VarType::Integer, Value::Float(1.5)),
        (VarType::String, Value::Int(1)),
        (VarType::String, Value::bytes(&b"x"[..])),
        (VarType::Boolean, Value::Int(1)),
        (VarType::Boolean, Value::from("true")),
        (VarType::Embedding, Value::from("0.1")),
        (
            VarType::Embedding,
            Value::List(vec![Value::Float(0.1), Value::from("x")]),
        ),
        (VarType::Embedding, array("float64", &[2, 2])),
        (VarType::Embedding, array("object", &[3])),
        (VarType::Tensor, Value::Float(1.0)),
        (VarType::Tensor, Value::List(vec![Value::from("x")])),
    ];
    for (var_type, initial) in cases {
        assert_eq!(rejected(var_type, Constraints::default(), initial), "type");
    }
    assert_eq!(
        rejected(VarType::Choice, choices(&["a"]), Value::Int(1)),
        "type"
    );
}

#[test]
fn a_bool_is_not_a_number() {
    for var_type in [VarType::Float, VarType::Integer] {
        assert_eq!(
            rejected(var_type, Constraints::default(), Value::Bool(true)),
            "type"
        );
    }
    let with_bool = Value::List(vec![Value::Float(1.0), Value::Bool(false)]);
    assert_eq!(
        rejected(
            VarType::Embedding,
            Constraints::default(),
            with_bool.clone()
        ),
        "type"
    );
    assert_eq!(
        rejected(VarType::Tensor, Constraints::default(), with_bool),
        "type"
    );
}

#[test]
fn a_float_variable_takes_ints_as_floats() {
    assert_eq!(
        accepted(VarType::Float, Constraints::default(), Value::Int(3)),
        Value::Float(3.0)
    );
    assert_eq!(
        accepted(VarType::Float, Constraints::default(), big(1 << 80)),
        Value::Float((1u128 << 80) as f64)
    );
    let huge = Value::from(u128::MAX);
    assert_eq!(
        accepted(VarType::Float, Constraints::default(), huge),
        Value::Float(u128::MAX as f64)
    );
}

#[test]
fn an_integer_variable_takes_whole_floats_as_ints() {
    let ok = |v| accepted(VarType::Integer, Constraints::default(), v);
    assert_eq!(ok(Value::Float(4.0)), Value::Int(4));
    assert_eq!(ok(Value::Float(-0.0)), Value::Int(0));
    assert_eq!(
        ok(Value::Float(-9_223_372_036_854_775_808.0)),
        Value::Int(i64::MIN)
    );
    assert_eq!(ok(big(1 << 70)), big(1 << 70), "a BigInt stays as it is");
    let no = |v| rejected(VarType::Integer, Constraints::default(), v);
    assert_eq!(no(Value::Float(9_223_372_036_854_775_808.0)), "type");
    assert_eq!(no(Value::Float(f64::NAN)), "type");
    assert_eq!(no(Value::Float(f64::INFINITY)), "type");
}

#[test]
fn nan_is_a_float_but_fails_bounds() {
    let nan = Value::Float(f64::NAN);
    match accepted(VarType::Float, Constraints::default(), nan.clone()) {
        Value::Float(f) => assert!(f.is_nan()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rejected(VarType::Float, bounded(Some(0.0), None), nan.clone()),
        "min"
    );
    assert_eq!(
        rejected(VarType::Float, bounded(None, Some(1.0)), nan),
        "max"
    );
}

// ------------------------------------------------------------ constraints

#[test]
fn min_and_max_are_inclusive() {
    let c = || bounded(Some(0.0), Some(2.0));
    for ok in [0.0, 1.0, 2.0] {
        accepted(VarType::Float, c(), Value::Float(ok));
    }
    assert_eq!(rejected(VarType::Float, c(), Value::Float(-0.001)), "min");
    assert_eq!(rejected(VarType::Float, c(), Value::Float(2.001)), "max");
    assert_eq!(
        rejected(VarType::Float, c(), Value::Float(f64::INFINITY)),
        "max"
    );

    let c = || bounded(Some(1.0), Some(10.0));
    accepted(VarType::Integer, c(), Value::Int(1));
    accepted(VarType::Integer, c(), Value::Int(10));
    assert_eq!(rejected(VarType::Integer, c(), Value::Int(0)), "min");
    assert_eq!(rejected(VarType::Integer, c(), Value::Int(11)), "max");
    assert_eq!(rejected(VarType::Integer, c(), Value::Float(11.0)), "max");
    assert_eq!(rejected(VarType::Integer, c(), big(1 << 70)), "max");
}

#[test]
fn integer_bounds_compare_exactly() {
    // 2^53 + 1 rounds to 2^53 as a float; the comparison must not.
    let bound = 9_007_199_254_740_992.0;
    let c = bounded(None, Some(bound));
    assert_eq!(
        rejected(VarType::Integer, c.clone(), Value::Int((1 << 53) + 1)),
        "max"
    );
    accepted(VarType::Integer, c, Value::Int(1 << 53));
    // A fractional bound on an integer.
    let c = || bounded(Some(1.5), Some(2.5));
    assert_eq!(rejected(VarType::Integer, c(), Value::Int(1)), "min");
    accepted(VarType::Integer, c(), Value::Int(2));
    assert_eq!(rejected(VarType::Integer, c(), Value::Int(3)), "max");
    let c = bounded(Some(-2.5), None);
    assert_eq!(rejected(VarType::Integer, c.clone(), Value::Int(-3)), "min");
    accepted(VarType::Integer, c, Value::Int(-2));
}

#[test]
fn a_bound_breach_message_names_variable_value_and_bound() {
    let mut store = VariableStore::default();
    store
        .register(
            "temperature",
            VarType::Float,
            Value::Float(0.7),
            bounded(Some(0.0), Some(2.0)),
            "",
        )
        .expect("valid");
    let err = store
        .set(
            "temperature",
            Value::Float(3.5),
            UpdateSource::Host,
            Vec::new(),
        )
        .expect_err("above max");
    assert_eq!(
        err.to_string(),
        "variable `temperature`: 3.5 is above the maximum 2.0"
    );
    match err {
        VariableError::Constraint {
            variable,
            constraint,
            ..
        } => {
            assert_eq!(variable, "temperature");
            assert_eq!(constraint, "max");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn string_lengths_count_characters() {
    let c = || lengths(Some(2), Some(3));
    accepted(VarType::String, c(), Value::from("ab"));
    accepted(VarType::String, c(), Value::from("ééé"));
    assert_eq!(
        rejected(VarType::String, c(), Value::from("a")),
        "min_length"
    );
    assert_eq!(
        rejected(VarType::String, c(), Value::from("abcd")),
        "max_length"
    );
}

#[test]
fn a_choice_must_be_one_of_the_choices() {
    let c = || choices(&["fast", "slow"]);
    assert_eq!(
        accepted(VarType::Choice, c(), Value::from("slow")),
        Value::from("slow")
    );
    assert_eq!(
        rejected(VarType::Choice, c(), Value::from("medium")),
        "choices"
    );
    assert_eq!(
        rejected(VarType::Choice, c(), Value::from("Fast")),
        "choices"
    );
}

#[test]
fn an_embedding_is_normalized_to_floats_and_checked_for_dimension() {
    let v = accepted(
        VarType::Embedding,
        dimension(3),
        Value::Tuple(vec![Value::Int(1), Value::Float(0.5), Value::Int(-2)]),
    );
    assert_eq!(v, floats(&[1.0, 0.5, -2.0]));
    assert_eq!(
        rejected(VarType::Embedding, dimension(3), floats(&[1.0, 2.0])),
        "dimension"
    );
    assert_eq!(
        rejected(VarType::Embedding, dimension(3), ints(&[1, 2, 3, 4])),
        "dimension"
    );
    accepted(
        VarType::Embedding,
        Constraints::default(),
        Value::List(Vec::new()),
    );
}

#[test]
fn an_embedding_array_is_kept_and_checked_for_dimension() {
    for dtype in ["float32", "float64", "int64", "uint8"] {
        let a = array(dtype, &[4]);
        assert_eq!(accepted(VarType::Embedding, dimension(4), a.clone()), a);
    }
    assert_eq!(
        rejected(VarType::Embedding, dimension(3), array("float32", &[4])),
        "dimension"
    );
    assert_eq!(
        rejected(VarType::Embedding, dimension(4), array("float32", &[1, 4])),
        "type"
    );
    assert_eq!(
        rejected(VarType::Embedding, dimension(4), array("bool", &[4])),
        "type"
    );
}

#[test]
fn a_tensor_of_nested_lists_must_be_rectangular_and_of_its_shape() {
    let matrix = Value::List(vec![ints(&[1, 2, 3]), floats(&[4.0, 5.0, 6.0])]);
    assert_eq!(
        accepted(VarType::Tensor, shape(&[2, 3]), matrix.clone()),
        matrix
    );
    assert_eq!(
        rejected(VarType::Tensor, shape(&[3, 2]), matrix.clone()),
        "shape"
    );
    assert_eq!(rejected(VarType::Tensor, shape(&[6]), matrix), "shape");

    let ragged = Value::List(vec![ints(&[1, 2, 3]), ints(&[4, 5])]);
    assert_eq!(
        rejected(VarType::Tensor, Constraints::default(), ragged),
        "type"
    );
    let mixed_depth = Value::List(vec![ints(&[1]), Value::Int(2)]);
    assert_eq!(
        rejected(VarType::Tensor, Constraints::default(), mixed_depth),
        "type"
    );

    // A tensor of 49 dimensions could not reach a watcher: refused by name.
    let mut too_deep = ints(&[1]);
    for _ in 0..48 {
        too_deep = Value::List(vec![too_deep]);
    }
    assert_eq!(
        rejected(VarType::Tensor, Constraints::default(), too_deep),
        "nesting"
    );

    let cube = Value::List(vec![
        Value::List(vec![ints(&[1, 2]), ints(&[3, 4])]),
        Value::List(vec![ints(&[5, 6]), ints(&[7, 8])]),
    ]);
    accepted(VarType::Tensor, shape(&[2, 2, 2]), cube);
    accepted(VarType::Tensor, shape(&[0]), Value::List(Vec::new()));
    let empty_rows = Value::List(vec![Value::List(Vec::new()), Value::List(Vec::new())]);
    accepted(VarType::Tensor, shape(&[2, 0]), empty_rows);
}

#[test]
fn a_tensor_array_of_any_dtype_is_checked_for_shape() {
    for dtype in ["float32", "int8", "bool", "complex128", "<U5"] {
        let a = array(dtype, &[2, 3]);
        assert_eq!(accepted(VarType::Tensor, shape(&[2, 3]), a.clone()), a);
    }
    assert_eq!(
        rejected(VarType::Tensor, shape(&[3, 2]), array("float32", &[2, 3])),
        "shape"
    );
    assert_eq!(
        rejected(
            VarType::Tensor,
            shape(&[2, 3, 1]),
            array("float32", &[2, 3])
        ),
        "shape"
    );
}

#[test]
fn constraints_must_fit_the_type_and_each_other() {
    let msg = invalid_definition(VarType::Float, choices(&["a"]), Value::Float(1.0));
    assert!(msg.contains("`choices`"), "{msg}");
    let msg = invalid_definition(
        VarType::Boolean,
        Constraints {
            min: Some(0.0),
            dimension: Some(2),
            ..Constraints::default()
        },
        Value::Bool(true),
    );
    assert!(
        msg.contains("`min`") && msg.contains("`dimension`"),
        "{msg}"
    );
    invalid_definition(VarType::String, bounded(Some(0.0), None), Value::from("x"));
    invalid_definition(VarType::Embedding, shape(&[2]), floats(&[1.0, 2.0]));
    invalid_definition(VarType::Tensor, dimension(2), floats(&[1.0, 2.0]));

    let msg = invalid_definition(
        VarType::Float,
        bounded(Some(2.0), Some(1.0)),
        Value::Float(1.5),
    );
    assert!(msg.contains("min") && msg.contains("max"), "{msg}");
    invalid_definition(
        VarType::Float,
        bounded(Some(f64::NAN), None),
        Value::Float(1.5),
    );
    invalid_definition(
        VarType::String,
        lengths(Some(3), Some(2)),
        Value::from("ab"),
    );
    invalid_definition(VarType::Choice, Constraints::default(), Value::from("a"));
    invalid_definition(VarType::Choice, choices(&[]), Value::from("a"));
    // Equal bounds are fine.
    accepted(
        VarType::Float,
        bounded(Some(1.0), Some(1.0)),
        Value::Float(1.0),
    );
}

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
    store
        .register(
            "k",
            VarType::Integer,
            Value::Int(1),
            Constraints::default(),
            "",
        )
        .expect("valid");
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
    store
        .register(
            "alpha",
            VarType::Integer,
            Value::Int(1),
            Constraints::default(),
            "",
        )
        .expect("valid");
    store
        .register(
            "beta",
            VarType::Integer,
            Value::Int(2),
            Constraints::default(),
            "",
        )
        .expect("valid");
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
    store
        .register(
            "a",
            VarType::Boolean,
            Value::Bool(true),
            Constraints::default(),
            "",
        )
        .expect("valid");
    store
        .register(
            "b",
            VarType::Boolean,
            Value::Bool(true),
            Constraints::default(),
            "",
        )
        .expect("valid");
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

    let again = store
        .register(
            "a",
            VarType::Boolean,
            Value::Bool(false),
            Constraints::default(),
            "",
        )
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
    store
        .register(
            "x",
            VarType::Integer,
            Value::Int(1),
            Constraints::default(),
            "",
        )
        .expect("valid");
    match store.register(
        "x",
        VarType::Float,
        Value::Float(1.0),
        Constraints::default(),
        "",
    ) {
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
        let result = store.register(
            name,
            VarType::Boolean,
            Value::Bool(true),
            Constraints::default(),
            "",
        );
        assert!(
            matches!(result, Err(VariableError::InvalidDefinition { .. })),
            "{name:?}: {result:?}"
        );
    }
    let longest = "n".repeat(MAX_NAME_BYTES);
    for name in [longest.as_str(), "var_", "var_x", "variable_1"] {
        store
            .register(
                name,
                VarType::Boolean,
                Value::Bool(true),
                Constraints::default(),
                "",
            )
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
}

#[test]
fn the_store_holds_at_most_its_limit() {
    let mut store = VariableStore::with_limit(2);
    assert!(store.is_empty());
    for name in ["a", "b"] {
        store
            .register(
                name,
                VarType::Integer,
                Value::Int(0),
                Constraints::default(),
                "",
            )
            .expect("under the limit");
    }
    match store.register(
        "c",
        VarType::Integer,
        Value::Int(0),
        Constraints::default(),
        "",
    ) {
        Err(e @ VariableError::TooMany { .. }) => {
            assert!(matches!(e, VariableError::TooMany { limit: 2 }));
        }
        other => panic!("{other:?}"),
    }
    store.delete("a").expect("present");
    store
        .register(
            "c",
            VarType::Integer,
            Value::Int(0),
            Constraints::default(),
            "",
        )
        .expect("room again");
    assert_eq!(VariableStore::default().limit(), DEFAULT_MAX_VARIABLES);
}

#[test]
fn a_rejected_registration_uses_no_id() {
    let mut store = VariableStore::default();
    store
        .register(
            "bad",
            VarType::Integer,
            Value::from("x"),
            Constraints::default(),
            "",
        )
        .expect_err("not an int");
    let v = store
        .register(
            "good",
            VarType::Integer,
            Value::Int(1),
            Constraints::default(),
            "",
        )
        .expect("valid");
    assert_eq!(v.id, "var_1");
}

#[test]
fn missing_lists_the_names_not_registered() {
    let mut store = VariableStore::default();
    store
        .register(
            "alpha",
            VarType::Integer,
            Value::Int(1),
            Constraints::default(),
            "",
        )
        .expect("valid");
    let required: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(store.missing(&required), ["beta", "gamma"]);
    assert!(store.missing(&required[..1]).is_empty());
    assert!(store.missing(&[]).is_empty());
}

// ------------------------------------------------------------ conversions

#[test]
fn var_types_parse_and_display() {
    for t in VarType::ALL {
        assert_eq!(parse_var_type(&t.to_string()).expect("own name"), t);
    }
    assert_eq!(parse_var_type("int").expect("alias"), VarType::Integer);
    assert_eq!(parse_var_type("str").expect("alias"), VarType::String);
    assert_eq!(parse_var_type("bool").expect("alias"), VarType::Boolean);
    match parse_var_type("complex") {
        Err(VariableError::UnknownType { given }) => assert_eq!(given, "complex"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_sources_have_wire_names() {
    assert_eq!(UpdateSource::Host.as_str(), "host");
    assert_eq!(UpdateSource::Python.as_str(), "python");
    assert_eq!(UpdateSource::Initial.as_str(), "initial");
}

#[test]
fn constraints_round_trip_through_a_value() {
    let all = Constraints {
        min: Some(-1.5),
        max: Some(3.0),
        choices: Some(vec!["a".to_string(), "b".to_string()]),
        dimension: Some(4),
        shape: Some(vec![2, 3]),
        min_length: Some(1),
        max_length: Some(9),
    };
    for c in [all, Constraints::default(), bounded(Some(0.0), None)] {
        let value = c.to_value();
        assert_eq!(Constraints::from_value("v", &value).expect("own output"), c);
    }
    assert_eq!(
        bounded(Some(0.0), Some(2.0)).to_value(),
        Value::map([("min", 0.0), ("max", 2.0)])
    );
}

#[test]
fn constraints_read_what_python_sends() {
    let value = Value::map([
        ("min", Value::Int(0)),
        ("max", Value::Null),
        ("choices", Value::Tuple(vec![Value::from("x")])),
        ("shape", Value::List(vec![Value::Int(2), Value::Int(2)])),
    ]);
    let c = Constraints::from_value("v", &value).expect("valid");
    assert_eq!(c.min, Some(0.0));
    assert_eq!(c.max, None);
    assert_eq!(c.choices, Some(vec!["x".to_string()]));
    assert_eq!(c.shape, Some(vec![2, 2]));
    assert_eq!(
        Constraints::from_value("v", &Value::Null).expect("none"),
        Constraints::default()
    );
}

#[test]
fn constraints_reject_unknown_keys_and_bad_values() {
    let value = Value::map([
        ("min", Value::Int(0)),
        ("maximum", Value::Int(1)),
        ("step", Value::Int(1)),
    ]);
    match Constraints::from_value("temperature", &value) {
        Err(VariableError::InvalidDefinition { name, message }) => {
            assert_eq!(name, "temperature");
            assert!(
                message.contains("`maximum`") && message.contains("`step`"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let bad = [
        Value::Int(3),
        Value::Map(vec![(Value::Int(1), Value::Int(2))]),
        Value::map([("min", Value::Bool(true))]),
        Value::map([("min", Value::from("0"))]),
        Value::map([("dimension", Value::Int(-1))]),
        Value::map([("dimension", Value::Float(3.0))]),
        Value::map([("choices", Value::from("abc"))]),
        Value::map([("choices", Value::List(vec![Value::Int(1)]))]),
        Value::map([("shape", Value::List(vec![Value::Int(-2)]))]),
        Value::Map(vec![
            (Value::from("min"), Value::Int(0)),
            (Value::from("min"), Value::Int(1)),
        ]),
    ];
    for value in bad {
        let result = Constraints::from_value("v", &value);
        assert!(
            matches!(result, Err(VariableError::InvalidDefinition { .. })),
            "{value:?}: {result:?}"
        );
    }
}

#[test]
fn a_variable_reaches_python_as_a_dict() {
    let mut store = VariableStore::default();
    store
        .register(
            "mode",
            VarType::Choice,
            Value::from("fast"),
            choices(&["fast", "slow"]),
            "how to run",
        )
        .expect("valid");
    store
        .set(
            "mode",
            Value::from("slow"),
            UpdateSource::Host,
            vec![("by".to_string(), "test".to_string())],
        )
        .expect("valid");
    let v = store.get("mode").expect("present");
    assert_eq!(
        v.to_value(),
        Value::map([
            ("id", Value::from("var_1")),
            ("name", Value::from("mode")),
            ("type", Value::from("choice")),
            ("value", Value::from("slow")),
            (
                "constraints",
                Value::map([("choices", Value::from(vec!["fast", "slow"]))])
            ),
            ("version", Value::Int(1)),
            ("description", Value::from("how to run")),
            ("metadata", Value::map([("by", "test")])),
        ])
    );
    let initial = v.initial_update();
    assert_eq!(initial.source, UpdateSource::Initial);
    assert_eq!(initial.old_value, Value::Null);
    assert_eq!(initial.new_value, Value::from("slow"));
    assert_eq!(initial.version, 1);
}

#[test]
fn error_messages_are_sentences_naming_the_value() {
    let mut store = VariableStore::default();
    store
        .register(
            "mode",
            VarType::Choice,
            Value::from("fast"),
            choices(&["fast", "slow"]),
            "",
        )
        .expect("valid");
    let err = store
        .set(
            "mode",
            Value::from("medium"),
            UpdateSource::Python,
            Vec::new(),
        )
        .expect_err("not a choice");
    assert_eq!(
        err.to_string(),
        "variable `mode`: \"medium\" is not one of the choices [\"fast\", \"slow\"]"
    );
    let err = store
        .set("mode", Value::Bool(true), UpdateSource::Python, Vec::new())
        .expect_err("not a str");
    assert_eq!(
        err.to_string(),
        "variable `mode`: expected a str, got a bool (true)"
    );

    // A long value is cut short.
    store
        .register("e", VarType::Embedding, floats(&[0.0; 3]), dimension(3), "")
        .expect("valid");
    let err = store
        .set("e", floats(&[0.25; 1000]), UpdateSource::Host, Vec::new())
        .expect_err("wrong dimension");
    assert_eq!(
        err.to_string(),
        "variable `e`: the embedding has 1000 elements, the dimension is 3"
    );
    let err = store
        .set(
            "mode",
            Value::from("x".repeat(1000)),
            UpdateSource::Host,
            Vec::new(),
        )
        .expect_err("not a choice");
    assert!(err.to_string().len() < 200, "{err}");
}
