//! The tagged JSON form: every variant and generated values come back, and
//! what each tag looks like.

use super::*;

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

#[test]
fn an_unserializable_marker_prints_as_the_plain_dict_it_is() {
    let m = marker(&[
        (UNSERIALIZABLE_KEY, Value::Bool(true)),
        (TYPE_KEY, Value::Str("mymod.Opaque".into())),
        (REPR_KEY, Value::Str("<Opaque>".into())),
    ]);
    let printed = m.to_json_tagged();
    assert_eq!(
        printed,
        json!({"__ffi_unserializable__": true, "__type__": "mymod.Opaque", "__repr__": "<Opaque>"})
    );
    let back = Value::from_json_tagged(printed).unwrap();
    assert_eq!(
        back.unserializable_info(),
        Some(UnserializableInfo {
            type_name: "mymod.Opaque",
            repr: Some("<Opaque>")
        })
    );
    // Inside other values too, and a dict that only has a `__type__` key is
    // still tagged.
    let nested = Value::List(vec![m.clone(), Value::Int(1)]);
    assert_tagged_round_trip(&nested);
    let lookalike = marker(&[(TYPE_KEY, Value::Str("x".into()))]);
    assert_eq!(lookalike.to_json_tagged()["__type__"], "dict");
    assert_tagged_round_trip(&lookalike);
}
