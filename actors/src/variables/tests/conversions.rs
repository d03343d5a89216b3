//! Types, sources and constraints to and from what Python sends and
//! receives, and the wording of errors.

use super::*;

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
