//! The hand-written parsers fed random and truncated bytes: they never panic, and where an
//! encoder exists, what is encoded parses back to the same thing.
//!
//! Covered here: the binary `COPY` stream parser (any split of the stream, any truncation),
//! the JSON object scanner and image merger of the fix plan, JSON canonicalization,
//! conninfo parsing of truncated connection strings, and binary value decoding of truncated
//! encodings. (Unit properties beside the code cover more of value decoding and conninfo.)

use eden_consistency::__private::copy::CopyBinaryParser;
use eden_consistency::__private::decode::decode_binary;
use eden_consistency::__private::json::canonical_json;
use eden_consistency::__private::types::oid;
use eden_consistency::conninfo::ConnParams;
use eden_consistency::plan::{merge_images, split_json_object};
use proptest::prelude::*;

type Tuple = Vec<Option<Vec<u8>>>;

fn encode_copy(tuples: &[Tuple]) -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for t in tuples {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        for f in t {
            match f {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Pushes `data` in the pieces cut at `cuts` and collects every tuple; stops at the first
/// error.
fn parse_in_pieces(data: &[u8], cuts: &[usize]) -> (Vec<Tuple>, bool, bool) {
    let mut p = CopyBinaryParser::new();
    let mut got = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    bounds.push(0);
    bounds.push(data.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut failed = false;
    for w in bounds.windows(2) {
        p.push(&data[w[0]..w[1]]);
        loop {
            match p.next_tuple() {
                Ok(Some(t)) => got.push(t.fields().map(|f| f.map(<[u8]>::to_vec)).collect()),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    (got, p.is_finished(), failed)
}

fn tuples() -> impl Strategy<Value = Vec<Tuple>> {
    let field = prop::option::of(prop::collection::vec(any::<u8>(), 0..12));
    prop::collection::vec(prop::collection::vec(field, 1..5), 0..6)
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z \"\\\\é\\n]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z\"é]{1,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A COPY stream gives back exactly its tuples, however it is split into chunks.
    #[test]
    fn copy_round_trip_in_any_pieces(ts in tuples(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let data = encode_copy(&ts);
        let (got, finished, failed) = parse_in_pieces(&data, &cuts);
        prop_assert!(!failed);
        prop_assert!(finished);
        prop_assert_eq!(got, ts);
    }

    /// A truncated COPY stream never panics and never yields a tuple that was not sent.
    #[test]
    fn copy_truncated_yields_a_prefix(ts in tuples(), keep in any::<usize>(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let data = encode_copy(&ts);
        let keep = keep % (data.len() + 1);
        let (got, finished, _) = parse_in_pieces(&data[..keep], &cuts);
        prop_assert!(got.len() <= ts.len());
        prop_assert_eq!(&got[..], &ts[..got.len()]);
        prop_assert!(!finished || keep == data.len());
    }

    /// Random bytes after a valid header: no panic.
    #[test]
    fn copy_random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut data = encode_copy(&[]);
        data.truncate(19);
        data.extend_from_slice(&raw);
        let _ = parse_in_pieces(&data, &[7, 23, 101]);
        let _ = parse_in_pieces(&raw, &[]);
    }

    /// The plan's JSON object scanner finds every member of an object as serde_json wrote
    /// it, and its values parse back to the members' values.
    #[test]
    fn json_object_scanner_round_trip(v in json_value()) {
        let obj = match v {
            serde_json::Value::Object(m) => m,
            other => [("k".to_string(), other)].into_iter().collect(),
        };
        let text = serde_json::Value::Object(obj.clone()).to_string();
        let members = split_json_object(&text).unwrap();
        prop_assert_eq!(members.len(), obj.len());
        for (k, raw) in &members {
            let parsed: serde_json::Value = serde_json::from_str(raw).unwrap();
            prop_assert_eq!(Some(&parsed), obj.get(k));
        }
        // Merging an image with itself changes nothing.
        let keys: Vec<String> = obj.keys().cloned().collect();
        let sources: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), text.as_str())).collect();
        let merged = merge_images(&text, &sources).unwrap();
        let back: serde_json::Value = serde_json::from_str(&merged).unwrap();
        prop_assert_eq!(back, serde_json::Value::Object(obj));
    }

    /// Truncated or random text never makes the JSON scanners panic.
    #[test]
    fn json_scanners_never_panic(v in json_value(), keep in any::<usize>(), noise in "\\PC{0,24}") {
        let text = v.to_string();
        let mut cut = keep % (text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        for t in [&text[..cut], noise.as_str()] {
            let _ = split_json_object(t);
            let _ = merge_images(t, &[("k", t)]);
            let _ = merge_images(&text, &[("k", t)]);
            let _ = canonical_json(t);
        }
    }

    /// Conninfo parsing of truncated connection strings: no panic.
    #[test]
    fn conninfo_truncated_never_panics(keep in any::<usize>(), pick in 0usize..4) {
        let texts = [
            "postgresql://us%65r:p%40ss@[::1]:5433,h2:5434/db%20x?sslmode=verify-full&application_name=a%20b",
            "host=h1,h2 port=5432,5433 user='it''s' password='a\\\\b c' dbname=d sslmode=require",
            "postgres://u@h/d?options=-c%20search_path%3Dx&connect_timeout=3",
            "service=x host= port='' dbname=\"q\"",
        ];
        let t = texts[pick];
        let mut cut = keep % (t.len() + 1);
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        let _ = ConnParams::parse(&t[..cut]);
    }

    /// Binary decoding of truncated encodings: no panic, and an error rather than a value
    /// for a fixed-size type cut short.
    #[test]
    fn decode_binary_truncated(n in any::<i64>(), keep in 0usize..8) {
        let full = n.to_be_bytes();
        prop_assert!(decode_binary(oid::INT8, &full[..keep]).is_err());
        prop_assert!(decode_binary(oid::INT8, &full).is_ok());
        let _ = decode_binary(oid::NUMERIC, &full[..keep]);
        let _ = decode_binary(oid::INTERVAL, &full[..keep]);
        let _ = decode_binary(oid::TEXT_ARRAY, &full[..keep]);
    }
}
