use super::*;
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

/// One value of every variant, several of them nested.
fn every_variant() -> Vec<Value> {
    let temporal = |kind, text: &str| {
        Value::Temporal(Temporal {
            kind,
            text: text.into(),
        })
    };
    let scalars = vec![
        Value::Null,
        Value::Bool(false),
        Value::Bool(true),
        Value::Int(0),
        Value::Int(-5),
        Value::Int(i64::MIN),
        Value::Int(i64::MAX),
        Value::BigInt(big("1000000000000000000000000000000")),
        Value::BigInt(big("-1000000000000000000000000000000")),
        Value::BigInt(BigInt::from(u64::MAX)),
        Value::BigInt(BigInt::from(i64::MIN) - 1),
        Value::Float(1.5),
        Value::Float(-0.0),
        Value::Float(2.0),
        Value::Float(1e300),
        Value::Float(f64::MIN_POSITIVE),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Str(String::new()),
        Value::Str("hé \"quoted\" \u{1F40D}".into()),
        Value::Str("__type__".into()),
        Value::bytes(Vec::<u8>::new()),
        Value::bytes(vec![0u8, 1, 2, 128, 255]),
        Value::NdArray(NdArray {
            dtype: "float64".into(),
            shape: vec![2, 1],
            data: Bytes::from(vec![7u8; 16]),
        }),
        Value::NdArray(NdArray {
            dtype: "int8".into(),
            shape: vec![],
            data: Bytes::from_static(&[1]),
        }),
        Value::Ref(object_ref("")),
        Value::Ref(object_ref("<Foo at 0x1>")),
        Value::StreamRef(StreamRefValue {
            id: "stream_1".into(),
            session_id: String::new(),
            type_name: "generator".into(),
        }),
        Value::Callback(CallbackRef {
            id: "cb_1".into(),
            arity: u32::MAX,
        }),
        temporal(TemporalKind::DateTime, "2026-11-21T10:00:00+00:00"),
        temporal(TemporalKind::Date, "2026-11-21"),
        temporal(TemporalKind::Time, "10:00:00.5"),
        temporal(TemporalKind::TimeDelta, "-86400000001"),
        Value::Complex { re: 1.0, im: -2.5 },
        Value::Complex {
            re: f64::NAN,
            im: f64::NEG_INFINITY,
        },
    ];
    let mut values = scalars.clone();
    values.extend([
        Value::List(vec![]),
        Value::List(scalars.clone()),
        Value::Tuple(vec![]),
        Value::Tuple(scalars.clone()),
        Value::Set(vec![1.into(), "a".into()]),
        Value::FrozenSet(vec![Value::Tuple(vec![1.into(), 2.into()])]),
        Value::Map(vec![]),
        // String keys, in sorted order: a plain JSON object.
        Value::map([("a", Value::from(1)), ("b", Value::List(scalars.clone()))]),
        // Non-string keys of every kind a dict can hold.
        Value::Map(
            scalars
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, k)| (k, Value::from(i)))
                .collect(),
        ),
        // String keys that JSON objects cannot hold as they are.
        Value::map([("__type__", "bytes"), ("base64", "AA==")]),
        Value::map([("__type__", Value::from(5))]),
        Value::map([("a", 1), ("a", 2)]),
        // Deep nesting of every container.
        Value::List(vec![Value::Tuple(vec![Value::Set(vec![
            Value::FrozenSet(vec![Value::Map(vec![(
                Value::Tuple(vec![Value::Int(1), Value::Str("k".into())]),
                Value::map([("inner", Value::List(vec![Value::Float(f64::NAN)]))]),
            )])]),
        ])])]),
    ]);
    values
}

#[test]
fn every_variant_round_trips_through_tagged_json() {
    for v in every_variant() {
        assert_tagged_round_trip(&v);
    }
}

#[test]
fn tagged_json_round_trips_through_text_too() {
    for v in every_variant() {
        let text = v.to_json_tagged().to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back = Value::from_json_tagged(parsed).unwrap();
        assert!(same(&back, &v), "{v:?} came back from {text} as {back:?}");
    }
}

/// A small deterministic generator (xorshift), so the property test needs no
/// dependency and fails the same way every time.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self) -> String {
        const CHARS: [&str; 8] = ["a", "b", "é", "\"", "\\", "\u{1F40D}", "_", "\n"];
        (0..self.below(4))
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect()
    }

    fn float(&mut self) -> f64 {
        match self.below(6) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            _ => f64::from_bits(self.next()),
        }
    }

    fn items(&mut self, depth: u32) -> Vec<Value> {
        (0..self.below(4)).map(|_| self.value(depth - 1)).collect()
    }

    fn value(&mut self, depth: u32) -> Value {
        let kinds = if depth == 0 { 12 } else { 18 };
        match self.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 1),
            2 => Value::Int(self.next() as i64),
            3 => {
                let b = BigInt::from(self.next()) * BigInt::from(self.next()) + u64::MAX;
                if self.below(2) == 0 {
                    Value::BigInt(b)
                } else {
                    Value::BigInt(-b)
                }
            }
            4 => Value::Float(self.float()),
            5 => Value::Str(self.string()),
            6 => Value::Bytes(
                self.next().to_le_bytes()[..self.below(9) as usize]
                    .to_vec()
                    .into(),
            ),
            7 => Value::NdArray(NdArray {
                dtype: "uint8".into(),
                shape: vec![self.below(3), 1],
                data: Bytes::from(self.next().to_be_bytes().to_vec()),
            }),
            8 => Value::Ref(ObjectRef {
                id: self.string(),
                session_id: self.string(),
                type_name: self.string(),
                repr: self.string(),
            }),
            9 => Value::StreamRef(StreamRefValue {
                id: self.string(),
                session_id: self.string(),
                type_name: self.string(),
            }),
            10 => Value::Callback(CallbackRef {
                id: self.string(),
                arity: self.next() as u32,
            }),
            11 => match self.below(2) {
                0 => Value::Temporal(Temporal {
                    kind: [
                        TemporalKind::DateTime,
                        TemporalKind::Date,
                        TemporalKind::Time,
                        TemporalKind::TimeDelta,
                    ][self.below(4) as usize],
                    text: self.string(),
                }),
                _ => Value::Complex {
                    re: self.float(),
                    im: self.float(),
                },
            },
            12 => Value::List(self.items(depth)),
            13 => Value::Tuple(self.items(depth)),
            14 => Value::Set(self.items(depth)),
            15 => Value::FrozenSet(self.items(depth)),
            16 => {
                // String keys, sorted and distinct: a plain JSON object, whose
                // key order is sorted (or insertion order, which is the same).
                let mut keys: Vec<String> = (0..self.below(4)).map(|_| self.string()).collect();
                keys.sort();
                keys.dedup();
                Value::Map(
                    keys.into_iter()
                        .map(|k| (Value::Str(k), self.value(depth - 1)))
                        .collect(),
                )
            }
            _ => Value::Map(
                (0..self.below(4))
                    .map(|_| (self.value(depth - 1), self.value(depth - 1)))
                    .collect(),
            ),
        }
    }
}

#[test]
fn generated_values_round_trip_through_tagged_json() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        let v = g.value(3);
        assert_tagged_round_trip(&v);
    }
}

#[test]
fn big_ints_are_tagged_decimal_text() {
    let v = Value::BigInt(big("1000000000000000000000000000000"));
    let j = v.to_json_tagged();
    assert_eq!(
        j,
        json!({"__type__": "int", "value": "1000000000000000000000000000000"})
    );
    assert_eq!(Value::from_json_tagged(j).unwrap(), v);
    assert_eq!(
        Value::from_json_tagged(json!({"__type__": "int", "value": "-7"})).unwrap(),
        Value::Int(-7),
        "a tagged int that fits comes back as Int, as from the wire"
    );
    for edge in [i64::MIN, i64::MAX] {
        assert_eq!(Value::Int(edge).to_json_tagged(), json!(edge));
        assert_eq!(tagged_round_trip(&Value::Int(edge)), Value::Int(edge));
    }
    assert_eq!(
        Value::from_json_tagged(json!(u64::MAX)).unwrap(),
        Value::BigInt(BigInt::from(u64::MAX))
    );
}

#[test]
fn non_finite_floats_are_tagged_text() {
    for (f, text) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        let j = Value::Float(f).to_json_tagged();
        assert_eq!(j, json!({"__type__": "float", "value": text}));
        assert!(same(&Value::from_json_tagged(j).unwrap(), &Value::Float(f)));
    }
    let c = Value::Complex {
        re: f64::INFINITY,
        im: 0.5,
    };
    assert_eq!(
        c.to_json_tagged(),
        json!({"__type__": "complex", "real": "inf", "imag": 0.5})
    );
    assert_eq!(tagged_round_trip(&c), c);
}

#[test]
fn refs_carry_their_repr_only_when_there_is_one() {
    let j = Value::Ref(object_ref("")).to_json_tagged();
    assert_eq!(
        j,
        json!({"__type__": "ref", "id": "ref_1", "session_id": "s1", "python_type": "Foo"})
    );
    let with_repr = Value::Ref(object_ref("<Foo>"));
    assert_eq!(with_repr.to_json_tagged()["repr"], "<Foo>");
    assert_eq!(tagged_round_trip(&with_repr), with_repr);

    let no_session = json!({"__type__": "ref", "id": "r", "python_type": "T"});
    assert_eq!(
        Value::from_json_tagged(no_session).unwrap(),
        Value::Ref(ObjectRef {
            id: "r".into(),
            session_id: String::new(),
            type_name: "T".into(),
            repr: String::new(),
        })
    );
    let stream = json!({"__type__": "stream_ref", "id": "s", "python_type": "generator"});
    assert_eq!(
        Value::from_json_tagged(stream).unwrap(),
        Value::StreamRef(StreamRefValue {
            id: "s".into(),
            session_id: String::new(),
            type_name: "generator".into(),
        })
    );
}

#[test]
fn dicts_are_plain_objects_only_when_that_is_exact() {
    assert_eq!(
        Value::map([("b", 1), ("a", 2)]).to_json_tagged(),
        json!({"a": 2, "b": 1})
    );
    for awkward in [
        Value::map([("__type__", "ndarray")]),
        Value::map([("k", 1), ("k", 2)]),
        Value::Map(vec![(Value::Int(1), Value::Null)]),
    ] {
        let j = awkward.to_json_tagged();
        assert_eq!(j["__type__"], "dict", "{awkward:?}");
        assert_eq!(Value::from_json_tagged(j).unwrap(), awkward);
    }
}

#[test]
fn string_keyed_dicts_keep_their_entries_whatever_the_key_order() {
    let v = Value::map([("z", 1), ("a", 2), ("m", 3)]);
    let Value::Map(mut back) = tagged_round_trip(&v) else {
        panic!("not a dict")
    };
    let Value::Map(mut want) = v else {
        unreachable!()
    };
    let key = |(k, _): &(Value, Value)| k.to_string();
    back.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(back, want);
}

#[test]
fn plain_json_reads_as_from_does() {
    let j = json!({"a": [1, 2.5, "x", null, true, {"b": -3}], "c": 18446744073709551615u64});
    assert_eq!(Value::from_json_tagged(j.clone()).unwrap(), Value::from(j));
}

#[test]
fn bad_tagged_json_is_a_conversion_error() {
    let cases = [
        (
            json!({"__type__": "pickle", "data": ""}),
            "a known __type__ tag",
            "__type__ \"pickle\"",
        ),
        (
            json!({"__type__": 3}),
            "a known __type__ tag",
            "__type__ as number",
        ),
        (
            json!({"__type__": "bytes"}),
            "tagged bytes with base64 text `base64`",
            "no `base64`",
        ),
        (
            json!({"__type__": "bytes", "base64": "!!"}),
            "tagged bytes with base64 text `base64`",
            "`base64` not base64 (Invalid symbol 33, offset 0.)",
        ),
        (
            json!({"__type__": "int", "value": "12x"}),
            "tagged int with decimal text `value`",
            "`value` \"12x\"",
        ),
        (
            json!({"__type__": "int", "value": 12}),
            "tagged int with decimal text `value`",
            "`value` as number",
        ),
        (
            json!({"__type__": "float", "value": "lots"}),
            "tagged float with a float `value`",
            "`value` \"lots\"",
        ),
        (
            json!({"__type__": "tuple", "items": {}}),
            "tagged tuple with array `items`",
            "`items` as object",
        ),
        (
            json!({"__type__": "dict", "entries": [[1, 2, 3]]}),
            "tagged dict with `entries` of [key, value] pairs",
            "an entry of 3 items",
        ),
        (
            json!({"__type__": "dict", "entries": ["k"]}),
            "tagged dict with `entries` of [key, value] pairs",
            "an entry as string",
        ),
        (
            json!({"__type__": "ndarray", "dtype": "int8", "shape": [-1], "base64": ""}),
            "tagged ndarray with `dtype`, `shape` and `base64`",
            "a `shape` item -1",
        ),
        (
            json!({"__type__": "ref", "session_id": "s", "python_type": "T"}),
            "tagged ref with string `id`, `session_id`, `python_type`, `repr`",
            "no `id`",
        ),
        (
            json!({"__type__": "callback", "id": "c", "arity": 4294967296u64}),
            "tagged callback with string `id` and 32-bit `arity`",
            "`arity` 4294967296",
        ),
        (
            json!({"__type__": "date", "value": null}),
            "tagged date or time with string `value`",
            "`value` as null",
        ),
        (
            json!({"__type__": "complex", "real": 1.0}),
            "tagged complex with float `real` and `imag`",
            "no `imag`",
        ),
    ];
    for (j, expected, found) in cases {
        let err = Value::from_json_tagged(j.clone()).unwrap_err();
        assert_eq!((err.expected, err.found.as_str()), (expected, found), "{j}");
    }
    // Errors deep inside surface too.
    let nested = json!({"a": [{"__type__": "nope"}]});
    assert_eq!(
        Value::from_json_tagged(nested).unwrap_err().to_string(),
        "expected a known __type__ tag, found __type__ \"nope\""
    );
}

// ------------------------------------------------------ into Rust types

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
