//! Unit and property tests of the KPL aggregate format: the encoder against prost's
//! reference encoding, sizes known exactly after every push, and deaggregation of
//! what the encoder wrote and of malformed input.

use super::*;
use proptest::prelude::*;

fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut agg = Aggregator::new();
    for (key, data) in records {
        agg.push(key, data);
    }
    agg.finish()
}

/// The protobuf part of an aggregate.
fn message(aggregate: &[u8]) -> &[u8] {
    &aggregate[MAGIC.len()..aggregate.len() - DIGEST_LEN]
}

#[test]
fn aggregate_starts_with_the_kpl_magic_bytes() {
    let out = aggregate(&[("k", b"v")]);
    assert_eq!(&out[..4], &[0xF3, 0x89, 0x9A, 0xC2]);
    assert!(is_aggregated(&out));
}

#[test]
fn protobuf_fields_match_hand_computed_bytes() {
    let out = aggregate(&[("a", b"xy"), ("bc", b"z"), ("a", b"")]);
    #[rustfmt::skip]
    let expected: &[u8] = &[
        // partition_key_table (field 1, wire type 2: 0x0A), "a", then "bc"
        0x0A, 0x01, b'a',
        0x0A, 0x02, b'b', b'c',
        // records (field 3, wire type 2: 0x1A), a 6-byte Record:
        0x1A, 0x06,
        0x08, 0x00,             //   partition_key_index (field 1, varint: 0x08) = 0
        0x1A, 0x02, b'x', b'y', //   data (field 3, wire type 2: 0x1A), 2 bytes
        // records: a 5-byte Record, key "bc" at index 1, data "z"
        0x1A, 0x05,
        0x08, 0x01,
        0x1A, 0x01, b'z',
        // records: a 4-byte Record, key "a" again (index 0, not a new table entry), empty data
        0x1A, 0x04,
        0x08, 0x00,
        0x1A, 0x00,
    ];
    assert_eq!(message(&out), expected);
}

#[test]
fn explicit_hash_key_is_one_table_entry_referenced_by_every_record() {
    let mut agg = Aggregator::with_explicit_hash_key("42");
    agg.push("a", b"x");
    agg.push("b", b"y");
    let out = agg.finish();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0A, 0x01, b'a',
        0x0A, 0x01, b'b',
        // explicit_hash_key_table (field 2, wire type 2: 0x12), "42"
        0x12, 0x02, b'4', b'2',
        // Record: partition_key_index 0, explicit_hash_key_index (field 2, varint: 0x10) 0, data "x"
        0x1A, 0x07, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x01, b'x',
        0x1A, 0x07, 0x08, 0x01, 0x10, 0x00, 0x1A, 0x01, b'y',
    ];
    assert_eq!(message(&out), expected);
    let records = deaggregate("outer", &out).unwrap();
    assert_eq!(records[1].partition_key, "b");
    assert_eq!(records[1].explicit_hash_key.as_deref(), Some("42"));
}

#[test]
fn encoder_writes_the_bytes_prost_derive_writes() {
    let mut agg = Aggregator::new();
    let data: Vec<Vec<u8>> = (0..300).map(|i| vec![i as u8; i * 3]).collect();
    let keys = ["k1", "k2", "k1", "ключ", "k3"];
    for (i, d) in data.iter().enumerate() {
        agg.push(keys[i % keys.len()], d);
    }
    let out = agg.finish();
    let reference = AggregatedRecord {
        partition_key_table: vec!["k1".into(), "k2".into(), "ключ".into(), "k3".into()],
        explicit_hash_key_table: vec![],
        records: data
            .iter()
            .enumerate()
            .map(|(i, d)| Record {
                partition_key_index: [0, 1, 0, 2, 3][i % 5],
                explicit_hash_key_index: None,
                data: d.clone(),
                tags: vec![],
            })
            .collect(),
    };
    assert_eq!(message(&out), reference.encode_to_vec());
}

#[test]
fn md5_trailer_is_the_digest_of_the_protobuf_part() {
    let out = aggregate(&[("pk1", b"hello"), ("pk1", b"world")]);
    // The protobuf part, and its MD5 computed once with Python's hashlib:
    // hashlib.md5(bytes.fromhex("0a03706b311a0908001a0568656c6c6f1a0908001a05776f726c64")).hexdigest()
    assert_eq!(
        hex::encode(message(&out)),
        "0a03706b311a0908001a0568656c6c6f1a0908001a05776f726c64"
    );
    assert_eq!(
        hex::encode(&out[out.len() - DIGEST_LEN..]),
        "f5fb92b07d5dc986bb5915e9657557aa"
    );
}

#[test]
fn partition_keys_are_stored_once_per_aggregate() {
    let mut agg = Aggregator::new();
    for i in 0..100 {
        agg.push(if i % 2 == 0 { "even-key" } else { "odd-key" }, b"d");
    }
    assert_eq!(agg.len(), 100);
    assert_eq!(agg.first_partition_key(), Some("even-key"));
    let out = agg.finish();
    let decoded = AggregatedRecord::decode(message(&out)).unwrap();
    assert_eq!(decoded.partition_key_table, ["even-key", "odd-key"]);
    assert_eq!(decoded.records.len(), 100);
    assert_eq!(decoded.records[3].partition_key_index, 1);
}

#[test]
fn deaggregate_returns_the_user_records_in_order() {
    let out = aggregate(&[("a", b"1"), ("b", b"2"), ("a", b"3")]);
    let records = deaggregate("outer", &out).unwrap();
    let got: Vec<(&str, &[u8])> = records
        .iter()
        .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
        .collect();
    assert_eq!(got, [("a", &b"1"[..]), ("b", &b"2"[..]), ("a", &b"3"[..])]);
    assert!(records.iter().all(|r| r.explicit_hash_key.is_none()));
}

#[test]
fn deaggregate_passes_a_plain_record_through_with_the_outer_key() {
    let records = deaggregate("outer", br#"{"kind":"insert"}"#).unwrap();
    assert_eq!(
        records,
        [UserRecord {
            partition_key: "outer".into(),
            explicit_hash_key: None,
            data: br#"{"kind":"insert"}"#.to_vec(),
        }]
    );
    // The magic alone, too short to hold a digest, is data, not an aggregate.
    assert!(!is_aggregated(&MAGIC));
    assert_eq!(deaggregate("k", &MAGIC).unwrap()[0].data, MAGIC);
}

#[test]
fn deaggregate_rejects_a_corrupt_digest() {
    let mut out = aggregate(&[("a", b"payload")]);
    let last = out.len() - 1;
    out[last] ^= 0xFF;
    let err = deaggregate("outer", &out).unwrap_err();
    assert!(matches!(err, AggregateError::Digest { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("MD5 digest"), "{text}");
    assert!(text.contains("corrupt"), "{text}");

    // A flipped data byte is caught the same way.
    let mut out = aggregate(&[("a", b"payload")]);
    out[10] ^= 0x01;
    assert!(matches!(
        deaggregate("outer", &out),
        Err(AggregateError::Digest { .. })
    ));
}

/// Wraps a protobuf message into an aggregate with a correct digest.
fn wrap(message: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(message);
    out.extend_from_slice(&Md5::digest(message));
    out
}

#[test]
fn deaggregate_rejects_a_message_that_is_not_protobuf() {
    let err = deaggregate("outer", &wrap(&[0x1A, 0x7F, 0x00])).unwrap_err();
    assert!(matches!(err, AggregateError::Protobuf { .. }), "{err:?}");
    assert!(err.to_string().contains("not an AggregatedRecord"), "{err}");
}

#[test]
fn deaggregate_rejects_an_index_out_of_range() {
    let bad = AggregatedRecord {
        partition_key_table: vec!["only".into()],
        explicit_hash_key_table: vec![],
        records: vec![Record {
            partition_key_index: 3,
            explicit_hash_key_index: None,
            data: b"x".to_vec(),
            tags: vec![],
        }],
    };
    let err = deaggregate("outer", &wrap(&bad.encode_to_vec())).unwrap_err();
    assert!(
        matches!(
            err,
            AggregateError::Index {
                record: 0,
                index: 3,
                table_len: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("partition_key_table entry 3"),
        "{err}"
    );
}

#[test]
fn empty_aggregate_has_the_exact_size_it_announces() {
    let agg = Aggregator::new();
    assert!(agg.is_empty());
    assert_eq!(agg.first_partition_key(), None);
    assert_eq!(agg.encoded_len(), 20);
    assert_eq!(agg.finish().len(), 20);
}

#[test]
fn size_with_is_exact_across_varint_boundaries() {
    // Key indexes past 127 and data lengths past 127 and 16383 take a longer varint.
    let mut agg = Aggregator::new();
    for i in 0..300usize {
        let key = format!("key-{}", i % 200);
        let len = [0, 1, 127, 128, 16_383, 16_384, 200][i % 7];
        let predicted = agg.size_with(&key, len);
        agg.push(&key, &vec![1u8; len]);
        assert_eq!(agg.encoded_len(), predicted, "push {i}");
    }
    let expected = agg.encoded_len();
    assert_eq!(agg.finish().len(), expected);
}

proptest! {
    #[test]
    fn size_with_and_encoded_len_are_exact(
        records in proptest::collection::vec(
            ("[a-z]{0,3}|\\PC{0,200}", 0usize..20_000),
            0..60,
        ),
        hash_key in proptest::option::of("[0-9]{1,39}"),
    ) {
        let mut agg = match &hash_key {
            Some(h) => Aggregator::with_explicit_hash_key(h),
            None => Aggregator::new(),
        };
        let mut pushed = Vec::new();
        for (key, len) in &records {
            let data = vec![0x5Au8; *len];
            let predicted = agg.size_with(key, data.len());
            agg.push(key, &data);
            prop_assert_eq!(agg.encoded_len(), predicted);
            pushed.push((key.clone(), data));
        }
        let expected = agg.encoded_len();
        let out = agg.finish();
        prop_assert_eq!(out.len(), expected);
        let back = deaggregate("outer", &out).unwrap();
        prop_assert_eq!(back.len(), pushed.len());
        for (r, (key, data)) in back.iter().zip(&pushed) {
            prop_assert_eq!(&r.partition_key, key);
            prop_assert_eq!(&r.data, data);
            prop_assert_eq!(r.explicit_hash_key.as_deref(), hash_key.as_deref());
        }
    }
}
