//! Property tests of what a peer can send: the frame decoder fed arbitrary
//! bytes, arbitrary nested values through the whole encode/decode path, and
//! the nesting limit, which must agree with what the decoder accepts.
//!
//! Bounded in count (a few thousand cases in all) so the suite stays fast.

use bytes::{BufMut, BytesMut};
use num_bigint::BigInt;
use proptest::prelude::*;
use snakepit_proto::frames;
use snakepit_proto::framing::{self, FrameError};
use snakepit_proto::v1::{self, Frame, frame::Kind};
use snakepit_proto::{VALUE_WIRE_DEPTH, Value};

const LIMIT: usize = 1 << 20;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<[u8; 12]>().prop_map(|b| Value::BigInt(BigInt::from_signed_bytes_be(&b) << 64)),
        any::<f64>().prop_map(Value::Float),
        Just(Value::Float(f64::NAN)),
        ".{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::bytes),
        (any::<f64>(), any::<f64>()).prop_map(|(re, im)| Value::Complex { re, im }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Set),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// Values compared through their tagged JSON, where NaN is a plain token.
fn same(a: &Value, b: &Value) -> bool {
    a.to_json_tagged() == b.to_json_tagged()
}

fn execute_frame(id: u64, v: Value) -> Frame {
    frames::execute(
        id,
        v1::Execute {
            tool: "t".into(),
            args: vec![v.clone().into()],
            kwargs: [("k".to_string(), v.into())].into_iter().collect(),
            ..Default::default()
        },
    )
}

/// Decodes every frame in `bytes`, stopping at the first error, as a reader does.
fn drain(bytes: &[u8]) -> (usize, Option<FrameError>) {
    let mut buf = BytesMut::from(bytes);
    let mut frames = 0;
    loop {
        match framing::decode(&mut buf, LIMIT) {
            Ok(Some(_)) => frames += 1,
            Ok(None) => return (frames, None),
            Err(err) => return (frames, Some(err)),
        }
    }
}

fn nested_lists(levels: usize) -> Value {
    let mut v = Value::Int(1);
    for _ in 0..levels {
        v = Value::List(vec![v]);
    }
    v
}

fn nested_maps(levels: usize) -> Value {
    let mut v = Value::Int(1);
    for _ in 0..levels {
        v = Value::Map(vec![(Value::Str("k".into()), v)]);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        drain(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_length_are_refused_or_decoded(
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut wire = BytesMut::new();
        wire.put_u32(body.len() as u32);
        wire.put_slice(&body);
        let (frames, err) = drain(&wire);
        // Either the body is some frame, or it is refused as malformed; it
        // is never left half-read.
        let malformed = matches!(err, Some(FrameError::Malformed { .. }));
        prop_assert!(frames == 1 || malformed, "{} frames, error {:?}", frames, err);
    }

    #[test]
    fn arbitrary_wire_values_convert_without_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        use prost::Message as _;
        if let Ok(wire) = v1::Value::decode(body.as_slice()) {
            let v = Value::from(wire);
            let _ = v.to_json_tagged();
            let _ = v1::Value::from(v);
        }
    }

    #[test]
    fn a_huge_length_prefix_is_refused_from_the_header(len in (LIMIT as u32 + 1)..=u32::MAX) {
        let mut wire = BytesMut::new();
        wire.put_u32(len);
        let (_, err) = drain(&wire);
        prop_assert!(
            matches!(err, Some(FrameError::TooLarge { .. })),
            "a length over the limit must be refused before the body arrives"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip_through_frames(v in value(), id in any::<u64>()) {
        prop_assume!(v.fits_wire_depth());
        let mut wire = BytesMut::new();
        framing::encode(&execute_frame(id, v.clone()), &mut wire, LIMIT).unwrap();
        let mut buf = wire;
        let frame = framing::decode(&mut buf, LIMIT).unwrap().expect("one whole frame");
        prop_assert_eq!(frame.id, id);
        let Some(Kind::Execute(ex)) = frame.kind else { panic!("not an execute") };
        let back = Value::from(ex.args.into_iter().next().unwrap());
        prop_assert!(same(&back, &v), "{:?} came back as {:?}", v, back);
        let back = Value::from(ex.kwargs.into_values().next().unwrap());
        prop_assert!(same(&back, &v));
    }

    #[test]
    fn a_truncated_frame_is_never_decoded(v in value(), cut in 1usize..64) {
        prop_assume!(v.fits_wire_depth());
        let mut wire = BytesMut::new();
        framing::encode(&execute_frame(1, v), &mut wire, LIMIT).unwrap();
        let keep = wire.len().saturating_sub(cut).max(1);
        let (frames, _) = drain(&wire[..keep]);
        prop_assert_eq!(frames, 0);
    }
}

/// The one nesting limit agrees with what prost accepts in a frame: every
/// depth the host would send decodes, and one level more does not.
#[test]
fn the_nesting_limit_is_what_the_decoder_accepts() {
    let lists = (VALUE_WIRE_DEPTH / 2) as usize;
    let maps = (VALUE_WIRE_DEPTH / 3) as usize;
    for (v, fits) in [
        (nested_lists(lists), true),
        (nested_lists(lists + 1), false),
        (nested_maps(maps), true),
        (nested_maps(maps + 1), false),
    ] {
        assert_eq!(v.fits_wire_depth(), fits, "depth {}", v.wire_depth());
        let mut wire = BytesMut::new();
        framing::encode(&execute_frame(7, v.clone()), &mut wire, LIMIT).unwrap();
        let decoded = framing::decode(&mut wire, LIMIT);
        if fits {
            let frame = decoded.unwrap().expect("whole frame");
            let Some(Kind::Execute(ex)) = frame.kind else {
                panic!("not an execute")
            };
            assert_eq!(Value::from(ex.args[0].clone()), v);
        } else {
            assert!(
                matches!(decoded, Err(FrameError::Malformed { .. })),
                "a value past the limit must be one the decoder refuses, or the limit is too strict"
            );
        }
    }
}

#[test]
fn wire_depth_counts_levels_of_each_container() {
    assert_eq!(Value::Int(1).wire_depth(), 0);
    assert_eq!(nested_lists(3).wire_depth(), 6);
    assert_eq!(nested_maps(2).wire_depth(), 6);
    let mixed = Value::Tuple(vec![Value::Null, nested_maps(1), nested_lists(2)]);
    assert_eq!(mixed.wire_depth(), 2 + 4);
    // A deep key counts as much as a deep value.
    let deep_key = Value::Map(vec![(Value::tuple([nested_lists(2)]), Value::Null)]);
    assert_eq!(deep_key.wire_depth(), 3 + 2 + 4);
    // Measuring never recurses: a value far past any stack is fine.
    let very_deep = nested_lists(200_000);
    assert_eq!(very_deep.wire_depth(), 400_000);
    std::mem::forget(very_deep); // dropping it would recurse
}
