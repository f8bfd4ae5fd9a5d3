//! The CBOR forms against their JSON twins, and the reader on any bytes; with the
//! converters the body and answer tests compare through.

use base64::Engine;
use minicbor::data::Type;
use minicbor::Encoder;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// A CBOR document as JSON, byte strings as base64 text (as awsJson carries blobs);
/// panics on anything else, such as a trailing byte.
pub(in crate::sink::kinesis) fn as_json(cbor: &[u8]) -> Value {
    fn value(d: &mut Decoder<'_>) -> Value {
        let items =
            |d: &mut Decoder<'_>, n: Option<u64>, each: &mut dyn FnMut(&mut Decoder<'_>)| match n {
                Some(n) => (0..n).for_each(|_| each(d)),
                None => {
                    while d.datatype().unwrap() != Type::Break {
                        each(d);
                    }
                    d.set_position(d.position() + 1);
                }
            };
        match d.datatype().unwrap() {
            Type::Map | Type::MapIndef => {
                let n = d.map().unwrap();
                let mut fields = serde_json::Map::new();
                items(d, n, &mut |d| {
                    let key = d.str().unwrap().to_string();
                    fields.insert(key, value(d));
                });
                Value::Object(fields)
            }
            Type::Array | Type::ArrayIndef => {
                let n = d.array().unwrap();
                let mut list = Vec::new();
                items(d, n, &mut |d| list.push(value(d)));
                Value::Array(list)
            }
            Type::String => d.str().unwrap().into(),
            Type::Bytes => base64::engine::general_purpose::STANDARD
                .encode(d.bytes().unwrap())
                .into(),
            Type::Null => {
                d.skip().unwrap();
                Value::Null
            }
            Type::Bool => d.bool().unwrap().into(),
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64().unwrap().into(),
            Type::I8 | Type::I16 | Type::I32 | Type::I64 => d.i64().unwrap().into(),
            other => panic!("unexpected CBOR {other:?} at {}", d.position()),
        }
    }
    let mut d = Decoder::new(cbor);
    let v = value(&mut d);
    assert_eq!(d.position(), cbor.len(), "bytes after the document");
    v
}

/// A JSON document as CBOR, maps and arrays of definite length or, when
/// `indefinite`, of indefinite length (as a streaming encoder writes them).
pub(in crate::sink::kinesis) fn to_cbor(json: &Value, indefinite: bool) -> Vec<u8> {
    fn write(e: &mut Encoder<&mut Vec<u8>>, v: &Value, indefinite: bool) {
        let r = match v {
            Value::Null => e.null().map(drop),
            Value::Bool(b) => e.bool(*b).map(drop),
            Value::Number(n) => match n.as_u64() {
                Some(u) => e.u64(u).map(drop),
                None => e.i64(n.as_i64().expect("an integer")).map(drop),
            },
            Value::String(s) => e.str(s).map(drop),
            Value::Array(items) => {
                let r = if indefinite {
                    e.begin_array()
                } else {
                    e.array(items.len() as u64)
                };
                r.unwrap();
                items.iter().for_each(|i| write(e, i, indefinite));
                if indefinite {
                    e.end().map(drop)
                } else {
                    Ok(())
                }
            }
            Value::Object(fields) => {
                let r = if indefinite {
                    e.begin_map()
                } else {
                    e.map(fields.len() as u64)
                };
                r.unwrap();
                for (k, v) in fields {
                    e.str(k).unwrap();
                    write(e, v, indefinite);
                }
                if indefinite {
                    e.end().map(drop)
                } else {
                    Ok(())
                }
            }
        };
        r.unwrap();
    }
    let mut out = Vec::new();
    write(&mut Encoder::new(&mut out), json, indefinite);
    out
}

type Fields<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

#[test]
fn heads_take_the_fewest_bytes_and_read_back() {
    for (len, head_len) in [
        (0, 1),
        (23, 1),
        (24, 2),
        (255, 2),
        (256, 3),
        (65_535, 3),
        (65_536, 5),
        (70_000, 5),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        head(&mut out, BYTES, len);
        assert_eq!(out.len(), head_len, "head of {len}");
        out.extend_from_slice(&data);
        let mut d = Decoder::new(&out);
        assert_eq!(d.bytes().unwrap(), &data[..]);
        assert_eq!(d.position(), out.len());
        let mut t = Vec::new();
        let s = "é".repeat(len / 2);
        push_text(&mut t, &s);
        assert_eq!(Decoder::new(&t).str().unwrap(), s);
    }
}

fn shard_ids<'a>(entries: &[Answered<'a>]) -> Vec<Fields<'a>> {
    entries
        .iter()
        .map(|e| (e.shard_id, e.error_code, e.error_message))
        .collect()
}

#[test]
fn answers_read_in_either_length_form_with_null_and_unknown_fields() {
    let doc = json!({
        "FailedRecordCount": 1,
        "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-000000000001"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "café", "ShardId": null},
            {"ShardId": "shardId-000000000002", "Extra": [1, {"x": true}]},
        ],
        "EncryptionType": "KMS",
        "Future": {"nested": [null]},
    });
    for indefinite in [false, true] {
        let body = to_cbor(&doc, indefinite);
        let entries = answer(&body).expect("a readable answer");
        assert_eq!(
            shard_ids(&entries),
            vec![
                (Some("shardId-000000000001"), None, None),
                (None, Some("InternalFailure"), Some("café")),
                (Some("shardId-000000000002"), None, None),
            ]
        );
    }
}

/// `SequenceNumber` is passed over unread, by the shortcut and the general reader
/// alike: bytes that are not UTF-8 there do not refuse the answer, as they would
/// in `ShardId`, which is read.
#[test]
fn the_sequence_number_is_passed_over_unread() {
    for indefinite in [false, true] {
        let doc = json!({"Records": [{"SequenceNumber": "4965", "ShardId": "shardId-7"}]});
        let mut body = to_cbor(&doc, indefinite);
        let at = body.windows(4).position(|w| w == b"4965").unwrap();
        body[at + 1] = 0xff;
        let entries = answer(&body).expect("an answer");
        assert_eq!(shard_ids(&entries), vec![(Some("shardId-7"), None, None)]);
        let at = body.windows(9).position(|w| w == b"shardId-7").unwrap();
        body[at + 1] = 0xff;
        assert!(answer(&body).is_none());
    }
}

/// Each entry's ShardId is its own, when it repeats the one before and when it does
/// not; one that is not UTF-8 is refused after a valid one, too.
#[test]
fn each_shard_id_is_read_after_the_one_before() {
    let shards = [
        "shardId-1",
        "shardId-1",
        "shardId-2",
        "shardId-1",
        "shardId-2",
    ];
    let records: Vec<_> = shards
        .iter()
        .map(|s| json!({"SequenceNumber": "4965", "ShardId": s}))
        .collect();
    let mut body = to_cbor(&json!({ "Records": records }), false);
    let entries = answer(&body).expect("an answer");
    let want: Vec<_> = shards.iter().map(|s| (Some(*s), None, None)).collect();
    assert_eq!(shard_ids(&entries), want);
    let last = body.windows(9).rposition(|w| w == b"shardId-2").unwrap();
    body[last + 8] = 0xff;
    assert!(answer(&body).is_none());
}

#[test]
fn what_is_not_an_answer_is_none() {
    let good = to_cbor(&json!({"Records": [{"ShardId": "s"}]}), false);
    assert!(answer(&good).is_some());
    let mut trailing = good.clone();
    trailing.push(0);
    for body in [
        trailing,
        good[..good.len() - 1].to_vec(),
        to_cbor(&json!({"FailedRecordCount": 0}), false),
        to_cbor(&json!({"Records": 5}), false),
        to_cbor(&json!({"Records": [{"ShardId": 7}]}), false),
        to_cbor(
            &json!({"Records": [{"SequenceNumber": 1, "ShardId": "s"}]}),
            false,
        ),
        to_cbor(&json!({"EncryptionType": 7, "Records": []}), false),
        to_cbor(&json!({"FailedRecordCount": "0", "Records": []}), false),
        to_cbor(&json!([1, 2]), false),
        br#"{"Records":[]}"#.to_vec(),
        Vec::new(),
    ] {
        assert!(answer(&body).is_none(), "{body:x?}");
    }
}

#[test]
fn an_error_answer_becomes_its_text_fields_in_json() {
    let body = to_cbor(
        &json!({"__type": "ResourceNotFoundException", "message": "no \"s\"", "code": 7, "x": null}),
        true,
    );
    let json: Value = serde_json::from_slice(&error_as_json(&body).unwrap()).unwrap();
    assert_eq!(
        json,
        json!({"__type": "ResourceNotFoundException", "message": "no \"s\""})
    );
    assert!(error_as_json(b"Service Unavailable").is_none());
    assert!(error_as_json(&to_cbor(&json!("text"), false)).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes, and a real answer with bytes changed or cut: the readers answer
    /// or refuse, and never panic.
    #[test]
    fn the_readers_never_panic(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let _ = answer(&noise);
        let _ = error_as_json(&noise);
        let mut body = to_cbor(&json!({"FailedRecordCount": 1, "Records": [
            {"SequenceNumber": "1", "ShardId": "shardId-000000000001"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "x"},
        ]}), edits.len() % 2 == 0);
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = answer(&body);
        let _ = error_as_json(&body);
        let cut = cut.index(body.len());
        let _ = answer(&body[..cut]);
        let _ = error_as_json(&body[..cut]);
    }
}

proptest! {
    /// The shortcut for an accepted entry reads what the general reader reads, and
    /// ends where it ends; on any other entry it leaves the decoder where it was.
    #[test]
    fn an_accepted_entry_reads_the_same_by_the_shortcut(
        sequence in prop_oneof![
            Just(json!("49655")),
            // Kinesis's own: 56 digits, a text of one length byte.
            Just(json!("49655958112298429547339834585327386467434133522718490674")),
            Just(json!("4".repeat(300))),
            Just(json!(null)),
            Just(json!(7)),
        ],
        shard in prop_oneof![Just(json!("shardId-000000000003")), Just(json!(null)), Just(json!(true))],
        // The shard the entry before named: none, the same, another.
        before in prop_oneof![Just(""), Just("shardId-000000000003"), Just("shardId-000000000004")],
        extra in any::<bool>(),
        indefinite in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut doc = json!({"SequenceNumber": sequence, "ShardId": shard});
        if extra {
            doc["Tail"] = json!([1]);
        }
        let body = to_cbor(&doc, indefinite);
        for body in [&body[..], &body[..cut.index(body.len())]] {
            let mut fast = Decoder::new(body);
            let mut slow = Decoder::new(body);
            let general = entry(&mut slow).map(|e| (e.shard_id, e.error_code, e.error_message));
            match accepted(&mut fast, &mut { before }) {
                Some(e) => {
                    prop_assert_eq!(Some((e.shard_id, e.error_code, e.error_message)), general);
                    prop_assert_eq!(fast.position(), slow.position());
                }
                None => prop_assert_eq!(fast.position(), 0),
            }
        }
        // The usual entry takes the shortcut.
        let usual = !extra && !indefinite && sequence.is_string() && shard.is_string();
        prop_assert_eq!(accepted(&mut Decoder::new(&body), &mut { before }).is_some(), usual);
    }
}
