//! Tests of the variable store: what each type accepts and how it is
//! normalized, each constraint, versions and updates, lookups, the limits,
//! and the shapes Python receives.

use bytes::Bytes;
use snakepit_proto::{NdArray, Value};

use super::*;

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

/// Registers `name` in `store` without constraints or description.
fn register_plain<'s>(
    store: &'s mut VariableStore,
    name: &str,
    var_type: VarType,
    initial: Value,
) -> Result<&'s Variable, VariableError> {
    store.register(name, var_type, initial, Constraints::default(), "")
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

mod constraints;
mod conversions;
mod store;
