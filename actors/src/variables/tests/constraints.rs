//! Each constraint: bounds, lengths, choices, dimensions and shapes, and
//! definitions that do not fit their type.

use super::*;

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
