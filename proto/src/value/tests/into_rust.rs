//! Conversions into plain Rust types: ranges, lengths, keys and what an
//! error says.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::*;

#[test]
fn ints_convert_within_range_and_say_so_outside_it() {
    assert_eq!(Value::from(i64::MIN).extract::<i64>().unwrap(), i64::MIN);
    assert_eq!(Value::from(i64::MAX).extract::<i64>().unwrap(), i64::MAX);
    assert_eq!(Value::Int(-128).extract::<i8>().unwrap(), -128);
    assert_eq!(Value::Int(255).extract::<u8>().unwrap(), 255);
    assert_eq!(Value::Int(-32768).extract::<i16>().unwrap(), i16::MIN);
    assert_eq!(Value::Int(65535).extract::<u16>().unwrap(), u16::MAX);
    assert_eq!(
        Value::Int(i32::MIN.into()).extract::<i32>().unwrap(),
        i32::MIN
    );
    assert_eq!(
        Value::Int(u32::MAX.into()).extract::<u32>().unwrap(),
        u32::MAX
    );
    assert_eq!(
        Value::Int(i64::MAX).extract::<u64>().unwrap(),
        i64::MAX as u64
    );
    assert_eq!(Value::from(u64::MAX).extract::<u64>().unwrap(), u64::MAX);
    assert_eq!(
        Value::from(usize::MAX).extract::<usize>().unwrap(),
        usize::MAX
    );
    assert_eq!(Value::from(u128::MAX).extract::<u128>().unwrap(), u128::MAX);
    assert_eq!(Value::from(i128::MIN).extract::<i128>().unwrap(), i128::MIN);
    assert_eq!(Value::Int(-1).extract::<isize>().unwrap(), -1);
    // A BigInt that fits (not normalised) converts too.
    assert_eq!(Value::BigInt(BigInt::from(7)).extract::<i64>().unwrap(), 7);
    assert_eq!(Value::BigInt(BigInt::from(7)).extract::<u8>().unwrap(), 7);

    let cases: [(Result<(), ConversionError>, &str, &str); 9] = [
        (
            Value::Int(256).extract::<u8>().map(drop),
            "int fitting u8",
            "int 256",
        ),
        (
            Value::Int(-1).extract::<u8>().map(drop),
            "int fitting u8",
            "int -1",
        ),
        (
            Value::Int(128).extract::<i8>().map(drop),
            "int fitting i8",
            "int 128",
        ),
        (
            Value::Int(70000).extract::<u16>().map(drop),
            "int fitting u16",
            "int 70000",
        ),
        (
            Value::Int(i64::from(i32::MAX) + 1)
                .extract::<i32>()
                .map(drop),
            "int fitting i32",
            "int 2147483648",
        ),
        (
            Value::Int(-1).extract::<u64>().map(drop),
            "int fitting u64",
            "int -1",
        ),
        (
            Value::from(BigInt::from(u64::MAX) + 1u32)
                .extract::<u64>()
                .map(drop),
            "int fitting u64",
            "int 18446744073709551616",
        ),
        (
            Value::BigInt(big("1000000000000000000000000000000"))
                .extract::<i64>()
                .map(drop),
            "int fitting i64",
            "int 1000000000000000000000000000000",
        ),
        (
            Value::from("7").extract::<u32>().map(drop),
            "int fitting u32",
            "str",
        ),
    ];
    for (result, expected, found) in cases {
        let err = result.unwrap_err();
        assert_eq!((err.expected, err.found.as_str()), (expected, found));
    }
    let err = Value::Bool(true).extract::<usize>().unwrap_err();
    assert_eq!(err.to_string(), "expected int fitting usize, found bool");
}

#[test]
fn big_ints_convert_exactly() {
    let n = big("1000000000000000000000000000000");
    let v = Value::from(n.clone());
    assert_eq!(v, Value::BigInt(n.clone()));
    assert_eq!(v.clone().extract::<BigInt>().unwrap(), n);
    assert_eq!(wire_round_trip(v.clone()), v);
    assert_eq!(tagged_round_trip(&v), v);
}

#[test]
fn f32_narrows_and_refuses_what_it_cannot_hold() {
    assert_eq!(Value::Float(1.5).extract::<f32>().unwrap(), 1.5);
    assert_eq!(Value::Int(3).extract::<f32>().unwrap(), 3.0);
    assert_eq!(
        Value::Float(f64::NEG_INFINITY).extract::<f32>().unwrap(),
        f32::NEG_INFINITY
    );
    assert!(Value::Float(f64::NAN).extract::<f32>().unwrap().is_nan());
    let err = Value::Float(1e300).extract::<f32>().unwrap_err();
    assert_eq!(
        (err.expected, err.found.as_str()),
        ("float fitting f32", "float 1e300")
    );
    let err = Value::from("x").extract::<f32>().unwrap_err();
    assert_eq!(err.to_string(), "expected float fitting f32, found str");
}

#[test]
fn tuples_take_a_tuple_or_list_of_their_length() {
    let v = Value::tuple([Value::from(1), Value::from("a")]);
    assert_eq!(v, Value::Tuple(vec![Value::Int(1), Value::Str("a".into())]));
    assert_eq!(v.extract::<(i64, String)>().unwrap(), (1, "a".into()));
    assert_eq!(
        Value::from(vec![1, 2, 3])
            .extract::<(u8, i32, i64)>()
            .unwrap(),
        (1, 2, 3)
    );
    assert_eq!(
        Value::from((1, 2.5, "x", true))
            .extract::<(i64, f64, String, bool)>()
            .unwrap(),
        (1, 2.5, "x".into(), true)
    );
    assert_eq!(Value::from((5,)).extract::<(u8,)>().unwrap(), (5,));
    assert_eq!(
        Value::from((1, (2, 3)))
            .extract::<(i64, (i64, i64))>()
            .unwrap(),
        (1, (2, 3))
    );

    let err = Value::tuple([1, 2, 3]).extract::<(i64, i64)>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected tuple of length 2, found tuple of length 3"
    );
    let err = Value::from(vec![1]).extract::<(i64, i64)>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected tuple of length 2, found list of length 1"
    );
    let err = Value::set([1, 2]).extract::<(i64, i64)>().unwrap_err();
    assert_eq!(err.to_string(), "expected tuple of length 2, found set");
    let err = Value::tuple([Value::from(1), Value::from("a")])
        .extract::<(i64, i64)>()
        .unwrap_err();
    assert_eq!(err.to_string(), "expected int fitting i64, found str");
}

#[test]
fn sets_take_any_sequence_and_collapse_duplicates() {
    let v = Value::set([3, 1, 3]);
    assert_eq!(v, Value::Set(vec![3.into(), 1.into(), 3.into()]));
    assert_eq!(
        v.extract::<BTreeSet<i64>>().unwrap(),
        BTreeSet::from([1, 3])
    );
    let frozen = Value::FrozenSet(vec!["a".into(), "b".into()]);
    assert_eq!(
        frozen.extract::<HashSet<String>>().unwrap(),
        HashSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        Value::from(vec![1, 1, 2]).extract::<HashSet<u8>>().unwrap(),
        HashSet::from([1, 2])
    );
    assert_eq!(
        Value::tuple([(1, 2), (1, 2)])
            .extract::<BTreeSet<(i64, i64)>>()
            .unwrap(),
        BTreeSet::from([(1, 2)])
    );
    let err = Value::map([("a", 1)])
        .extract::<HashSet<i64>>()
        .unwrap_err();
    assert_eq!(err.to_string(), "expected set, found dict");
    let err = Value::set(["a"]).extract::<BTreeSet<i64>>().unwrap_err();
    assert_eq!(err.to_string(), "expected int fitting i64, found str");

    let set = Value::from(BTreeSet::from([2, 1]));
    assert_eq!(set, Value::Set(vec![1.into(), 2.into()]));
    let Value::Set(items) = Value::from(HashSet::from(["x"])) else {
        panic!("not a set")
    };
    assert_eq!(items, vec![Value::from("x")]);
}

#[test]
fn maps_take_keys_of_any_convertible_type() {
    let strings = Value::map([("a", 1), ("b", 2)]);
    assert_eq!(
        strings.clone().extract::<HashMap<String, i64>>().unwrap(),
        HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)])
    );
    assert_eq!(
        strings.extract::<BTreeMap<String, u8>>().unwrap(),
        BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)])
    );
    let pairs = Value::Map(vec![
        (Value::from((1, 2)), "a".into()),
        (Value::from((3, 4)), "b".into()),
    ]);
    assert_eq!(
        pairs.extract::<HashMap<(i64, i64), String>>().unwrap(),
        HashMap::from([((1, 2), "a".to_string()), ((3, 4), "b".to_string())])
    );
    let ints = Value::Map(vec![
        (1.into(), Value::from(vec![1, 2])),
        (2.into(), Value::List(vec![])),
    ]);
    assert_eq!(
        ints.extract::<BTreeMap<u32, Vec<i64>>>().unwrap(),
        BTreeMap::from([(1, vec![1, 2]), (2, vec![])])
    );
    let frozen_keys = Value::Map(vec![(Value::FrozenSet(vec![1.into()]), Value::Null)]);
    assert_eq!(
        frozen_keys
            .extract::<BTreeMap<BTreeSet<i64>, ()>>()
            .unwrap(),
        BTreeMap::from([(BTreeSet::from([1]), ())])
    );

    let err = Value::Map(vec![(1.into(), 1.into())])
        .extract::<HashMap<String, i64>>()
        .unwrap_err();
    assert_eq!(err.to_string(), "expected str, found int");
    let err = Value::from(vec![1])
        .extract::<BTreeMap<i64, i64>>()
        .unwrap_err();
    assert_eq!(err.to_string(), "expected dict, found list");
    let err = Value::map([("a", 300)])
        .extract::<HashMap<String, u8>>()
        .unwrap_err();
    assert_eq!(err.to_string(), "expected int fitting u8, found int 300");
}

#[test]
fn vec_u8_is_a_list_and_bytes_is_bytes() {
    assert_eq!(
        Value::from(vec![1u8, 2]).extract::<Vec<u8>>().unwrap(),
        vec![1u8, 2]
    );
    let err = Value::bytes(vec![1u8]).extract::<Vec<u8>>().unwrap_err();
    assert_eq!(err.to_string(), "expected list, found bytes");
    assert_eq!(
        Value::bytes(vec![1u8]).extract::<Bytes>().unwrap(),
        Bytes::from_static(&[1])
    );
    let err = Value::from(vec![1u8]).extract::<Bytes>().unwrap_err();
    assert_eq!(err.to_string(), "expected bytes, found list");
}

#[test]
fn handles_convert_from_and_into_their_variants() {
    let r = object_ref("<Foo>");
    assert_eq!(Value::from(r.clone()).extract::<ObjectRef>().unwrap(), r);
    let s = StreamRefValue {
        id: "s".into(),
        session_id: "sess".into(),
        type_name: "generator".into(),
    };
    assert_eq!(Value::from(s.clone()), Value::StreamRef(s.clone()));
    assert_eq!(
        Value::from(s.clone()).extract::<StreamRefValue>().unwrap(),
        s
    );
    let c = CallbackRef {
        id: "cb".into(),
        arity: 2,
    };
    assert_eq!(Value::from(c.clone()), Value::Callback(c.clone()));
    assert_eq!(Value::from(c.clone()).extract::<CallbackRef>().unwrap(), c);
    let t = Temporal {
        kind: TemporalKind::Time,
        text: "12:00:00".into(),
    };
    assert_eq!(Value::from(t.clone()), Value::Temporal(t.clone()));
    assert_eq!(Value::from(t.clone()).extract::<Temporal>().unwrap(), t);

    let wrong = [
        (
            Value::from(s.clone()).extract::<ObjectRef>().map(drop),
            "expected ref, found stream_ref",
        ),
        (
            Value::from(r.clone()).extract::<StreamRefValue>().map(drop),
            "expected stream_ref, found ref",
        ),
        (
            Value::Null.extract::<CallbackRef>().map(drop),
            "expected callback, found NoneType",
        ),
        (
            Value::from(1).extract::<Temporal>().map(drop),
            "expected datetime, date, time or timedelta, found int",
        ),
    ];
    for (result, message) in wrong {
        assert_eq!(result.unwrap_err().to_string(), message);
    }
}

#[test]
fn conversion_errors_can_describe_what_was_found() {
    let err = ConversionError::custom("a port", "int 70000");
    assert_eq!(err.to_string(), "expected a port, found int 70000");
    assert_eq!(err.found, "int 70000");
}
