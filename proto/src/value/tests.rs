use super::*;
use crate::v1;
use serde_json::json;

fn wire_round_trip(v: Value) -> Value {
    let wire: v1::Value = v.into();
    Value::from(wire)
}

#[test]
fn every_variant_survives_the_wire() {
    let big: BigInt = "1000000000000000000000000000000".parse().unwrap();
    let values = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(-5),
        Value::BigInt(big.clone()),
        Value::BigInt(-big),
        Value::Float(f64::INFINITY),
        Value::Str("hé".into()),
        Value::bytes(vec![0u8, 1, 2, 128, 255]),
        Value::Tuple(vec![1.into(), "a".into()]),
        Value::Set(vec![1.into()]),
        Value::FrozenSet(vec![2.into()]),
        Value::Map(vec![(
            Value::Tuple(vec![1.into(), 2.into()]),
            "pair".into(),
        )]),
        Value::NdArray(NdArray {
            dtype: "float64".into(),
            shape: vec![2, 1],
            data: Bytes::from(vec![0u8; 16]),
        }),
        Value::Temporal(Temporal {
            kind: TemporalKind::Date,
            text: "2026-11-21".into(),
        }),
        Value::Complex { re: 1.0, im: -2.0 },
    ];
    for v in values {
        assert_eq!(wire_round_trip(v.clone()), v);
    }
}

#[test]
fn nan_crosses_as_nan() {
    match wire_round_trip(Value::Float(f64::NAN)) {
        Value::Float(f) => assert!(f.is_nan()),
        other => panic!("got {other:?}"),
    }
}

#[test]
fn small_big_ints_are_normalised_to_int() {
    assert_eq!(
        wire_round_trip(Value::BigInt(BigInt::from(7))),
        Value::Int(7)
    );
    assert_eq!(Value::from(u64::MAX), Value::BigInt(BigInt::from(u64::MAX)));
}

#[test]
fn rust_types_convert_both_ways() {
    assert_eq!(i64::try_from(Value::from(5u8)).unwrap(), 5);
    assert_eq!(f64::try_from(Value::from(2)).unwrap(), 2.0);
    assert_eq!(
        Vec::<String>::try_from(Value::from(vec!["a", "b"])).unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    let err = i64::try_from(Value::from("x")).unwrap_err();
    assert_eq!(err.expected, "int fitting i64");
    assert_eq!(err.found, "str");
    let opt: Option<i64> = Value::Null.extract().unwrap();
    assert_eq!(opt, None);
}

#[test]
fn json_converts_both_ways_and_refuses_what_it_cannot_say() {
    let j =
        serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
    let v = Value::from(j.clone());
    assert_eq!(v.get("a").unwrap().type_name(), "list");
    assert!(matches!(
        v.get("b").unwrap().get("c"),
        Some(Value::BigInt(_))
    ));
    let back =
        serde_json::Value::try_from(Value::from(serde_json::json!({"a": [1, "x"]}))).unwrap();
    assert_eq!(back, serde_json::json!({"a": [1, "x"]}));
    assert!(serde_json::Value::try_from(Value::bytes(vec![1u8])).is_err());
    assert!(serde_json::Value::try_from(Value::Float(f64::NAN)).is_err());
}

#[test]
fn tagged_json_never_fails() {
    let v = Value::Map(vec![(Value::Int(1), Value::bytes(vec![0u8, 255]))]);
    let j = v.to_json_tagged();
    assert_eq!(j["__type__"], "dict");
    assert_eq!(j["entries"][0][1]["base64"], "AP8=");
}

// ------------------------------------------------------------ tagged JSON

/// Equality where NaN equals NaN and the sign of zero counts.
fn same(a: &Value, b: &Value) -> bool {
    fn float(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
    }
    fn all(a: &[Value], b: &[Value]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
    }
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => float(*a, *b),
        (Value::Complex { re: ar, im: ai }, Value::Complex { re: br, im: bi }) => {
            float(*ar, *br) && float(*ai, *bi)
        }
        (Value::List(a), Value::List(b))
        | (Value::Tuple(a), Value::Tuple(b))
        | (Value::Set(a), Value::Set(b))
        | (Value::FrozenSet(a), Value::FrozenSet(b)) => all(a, b),
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ak, av), (bk, bv))| same(ak, bk) && same(av, bv))
        }
        _ => a == b,
    }
}

fn tagged_round_trip(v: &Value) -> Value {
    Value::from_json_tagged(v.to_json_tagged())
        .unwrap_or_else(|e| panic!("{v:?} does not come back: {e}"))
}

fn marker(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::Str(k.to_string()), v.clone()))
            .collect(),
    )
}

#[test]
fn an_unserializable_marker_says_its_type_and_repr() {
    let bare = marker(&[
        (UNSERIALIZABLE_KEY, Value::Bool(true)),
        (TYPE_KEY, Value::Str("mymod.Model".into())),
    ]);
    assert!(bare.is_unserializable_marker());
    assert_eq!(
        bare.unserializable_info(),
        Some(UnserializableInfo {
            type_name: "mymod.Model",
            repr: None
        })
    );
    let detailed = marker(&[
        (TYPE_KEY, Value::Str("builtins.object".into())),
        (REPR_KEY, Value::Str("<object at 0x...>".into())),
        (UNSERIALIZABLE_KEY, Value::Bool(true)),
    ]);
    let info = detailed.unserializable_info().unwrap();
    assert_eq!(
        (info.type_name, info.repr),
        ("builtins.object", Some("<object at 0x...>"))
    );
}

#[test]
fn maps_that_only_look_like_markers_are_not() {
    for v in [
        marker(&[(TYPE_KEY, Value::Str("x.Y".into()))]),
        marker(&[(UNSERIALIZABLE_KEY, Value::Bool(true))]),
        marker(&[
            (UNSERIALIZABLE_KEY, Value::Bool(false)),
            (TYPE_KEY, Value::Str("x.Y".into())),
        ]),
        marker(&[
            (UNSERIALIZABLE_KEY, Value::Int(1)),
            (TYPE_KEY, Value::Str("x.Y".into())),
        ]),
        marker(&[
            (UNSERIALIZABLE_KEY, Value::Bool(true)),
            (TYPE_KEY, Value::Int(3)),
        ]),
        Value::Str(UNSERIALIZABLE_KEY.into()),
        Value::Null,
    ] {
        assert!(!v.is_unserializable_marker(), "{v:?}");
    }
}

fn assert_tagged_round_trip(v: &Value) {
    let back = tagged_round_trip(v);
    assert!(same(&back, v), "{v:?} came back as {back:?}");
}

fn big(text: &str) -> BigInt {
    text.parse().unwrap()
}

fn object_ref(repr: &str) -> ObjectRef {
    ObjectRef {
        id: "ref_1".into(),
        session_id: "s1".into(),
        type_name: "Foo".into(),
        repr: repr.into(),
    }
}

mod into_rust;
mod tagged_json;
