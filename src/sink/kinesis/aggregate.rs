//! The KPL aggregated record format: many user records packed into one Kinesis record.
//!
//! Owns encoding ([`Aggregator`]) and decoding ([`deaggregate`]) of the format the
//! Kinesis Producer Library writes and the KCL, the kinesis-aggregation libraries and
//! Firehose read: the 4 magic bytes [`MAGIC`], a protobuf `AggregatedRecord` (proto2),
//! then the 16-byte MD5 digest of the protobuf bytes. It knows nothing of shards,
//! requests or retries: the sink decides what goes into one aggregate.
//!
//! The messages are declared with prost's derive (the decoder, and the reference the
//! tests hold the encoder to). The encoder writes the same bytes with prost's encoding
//! helpers straight into growing buffers, so that a push costs one copy of the data and
//! the size of the aggregate is known exactly after every push without re-encoding.

use std::collections::HashMap;

use md5::{Digest, Md5};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

/// The first 4 bytes of every KPL aggregate.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 digest that closes every aggregate.
pub const DIGEST_LEN: usize = 16;

// Field numbers of the published `AggregatedRecord` and `Record` messages.
const AGG_PARTITION_KEY_TABLE: u32 = 1;
const AGG_EXPLICIT_HASH_KEY_TABLE: u32 = 2;
const AGG_RECORDS: u32 = 3;
const REC_PARTITION_KEY_INDEX: u32 = 1;
const REC_EXPLICIT_HASH_KEY_INDEX: u32 = 2;
const REC_DATA: u32 = 3;

/// `message AggregatedRecord` of the KPL aggregation format.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// `message Record`: one user record, its keys as indexes into the tables.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Record {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `message Tag`: part of the format; never written here, ignored when read.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One record as the producer meant it, taken out of an aggregate (or a plain record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(
        "KPL aggregate of {len} bytes: the MD5 digest at its end ({found}) is not the digest \
         of its protobuf message ({computed}): the record is corrupt, or it starts with the \
         KPL magic bytes without being an aggregate"
    )]
    Digest {
        len: usize,
        found: String,
        computed: String,
    },
    #[error(
        "KPL aggregate of {len} bytes: the digest matches but the protobuf message is not an \
         AggregatedRecord ({source}): the producer does not write the KPL aggregation format"
    )]
    Protobuf {
        len: usize,
        source: prost::DecodeError,
    },
    #[error(
        "KPL aggregate: user record {record} refers to {table} entry {index}, but the table \
         has {table_len} entries: the producer wrote an inconsistent aggregate"
    )]
    Index {
        record: usize,
        table: &'static str,
        index: u64,
        table_len: usize,
    },
}

/// True when `data` starts with [`MAGIC`] and is long enough to be an aggregate
/// (magic, a protobuf message, a digest).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_LEN && data.starts_with(&MAGIC)
}

/// The user records of an aggregate, in order; a non-aggregated blob is returned as-is as
/// one record with `partition_key` (the outer record's key, given by the caller).
///
/// Unlike the KCL, which passes an aggregate with a wrong digest on as one opaque record,
/// this is an error: the caller decides whether to stop or to show the raw bytes.
pub fn deaggregate(
    outer_partition_key: &str,
    data: &[u8],
) -> Result<Vec<UserRecord>, AggregateError> {
    if !is_aggregated(data) {
        return Ok(vec![UserRecord {
            partition_key: outer_partition_key.to_string(),
            explicit_hash_key: None,
            data: data.to_vec(),
        }]);
    }
    let (message, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    let computed = Md5::digest(message);
    if computed.as_slice() != digest {
        return Err(AggregateError::Digest {
            len: data.len(),
            found: hex::encode(digest),
            computed: hex::encode(computed),
        });
    }
    let aggregate =
        AggregatedRecord::decode(message).map_err(|source| AggregateError::Protobuf {
            len: data.len(),
            source,
        })?;
    let lookup = |table: &[String], name: &'static str, record: usize, index: u64| {
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i))
            .cloned()
            .ok_or(AggregateError::Index {
                record,
                table: name,
                index,
                table_len: table.len(),
            })
    };
    let AggregatedRecord {
        partition_key_table,
        explicit_hash_key_table,
        records,
    } = aggregate;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(UserRecord {
                partition_key: lookup(
                    &partition_key_table,
                    "partition_key_table",
                    i,
                    r.partition_key_index,
                )?,
                explicit_hash_key: match r.explicit_hash_key_index {
                    Some(index) => Some(lookup(
                        &explicit_hash_key_table,
                        "explicit_hash_key_table",
                        i,
                        index,
                    )?),
                    None => None,
                },
                data: r.data,
            })
        })
        .collect()
}

/// Builds one aggregate incrementally, tracking its exact encoded size.
///
/// The protobuf message is kept as three encoded parts, in field order: the partition
/// key table (each distinct key once, indexed in order of first use), the explicit hash
/// key table (at most one entry), and the records. [`Aggregator::finish`] joins them.
#[derive(Debug, Default)]
pub struct Aggregator {
    /// Partition key → its index in the table.
    keys: HashMap<String, u64>,
    first_key: Option<String>,
    /// The encoded `partition_key_table` entries.
    key_table: Vec<u8>,
    /// The encoded `explicit_hash_key_table` entry, when every record carries one.
    hash_key_table: Vec<u8>,
    /// The encoded `records` entries.
    records: Vec<u8>,
    count: usize,
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An aggregator whose every user record carries `explicit_hash_key` (one table entry,
    /// two bytes per record). The sink sends the aggregate itself with that hash key, so
    /// the hash key of every user record falls in the range of the shard that stores it,
    /// whatever its partition key hashes to: a KCL consumer, which drops user records
    /// outside its shard's range, then drops none even if the producer's shard map was
    /// stale when the aggregate was packed.
    pub fn with_explicit_hash_key(explicit_hash_key: &str) -> Self {
        let mut agg = Self::default();
        write_len_delimited(
            AGG_EXPLICIT_HASH_KEY_TABLE,
            explicit_hash_key.as_bytes(),
            &mut agg.hash_key_table,
        );
        agg
    }

    /// Exact encoded size (magic + protobuf + md5) the aggregate would have after
    /// `push(partition_key, data)` with `data_len` bytes of data.
    pub fn size_with(&self, partition_key: &str, data_len: usize) -> usize {
        let (index, table_growth) = match self.keys.get(partition_key) {
            Some(&index) => (index, 0),
            None => (
                self.keys.len() as u64,
                len_delimited_len(AGG_PARTITION_KEY_TABLE, partition_key.len()),
            ),
        };
        self.encoded_len()
            + table_growth
            + len_delimited_len(AGG_RECORDS, self.record_body_len(index, data_len))
    }

    /// Append one user record.
    pub fn push(&mut self, partition_key: &str, data: &[u8]) {
        let index = match self.keys.get(partition_key) {
            Some(&index) => index,
            None => {
                let index = self.keys.len() as u64;
                self.keys.insert(partition_key.to_string(), index);
                write_len_delimited(
                    AGG_PARTITION_KEY_TABLE,
                    partition_key.as_bytes(),
                    &mut self.key_table,
                );
                if self.first_key.is_none() {
                    self.first_key = Some(partition_key.to_string());
                }
                index
            }
        };
        let body_len = self.record_body_len(index, data.len());
        let buf = &mut self.records;
        encode_key(AGG_RECORDS, WireType::LengthDelimited, buf);
        encode_varint(body_len as u64, buf);
        encode_key(REC_PARTITION_KEY_INDEX, WireType::Varint, buf);
        encode_varint(index, buf);
        if !self.hash_key_table.is_empty() {
            encode_key(REC_EXPLICIT_HASH_KEY_INDEX, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        write_len_delimited(REC_DATA, data, buf);
        self.count += 1;
    }

    /// The number of user records.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact size of what [`Aggregator::finish`] would return now.
    pub fn encoded_len(&self) -> usize {
        MAGIC.len() + self.message_len() + DIGEST_LEN
    }

    /// The partition key of the first user record (used as the outer record's key).
    pub fn first_partition_key(&self) -> Option<&str> {
        self.first_key.as_deref()
    }

    /// The aggregate: magic + protobuf + md5.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.key_table);
        out.extend_from_slice(&self.hash_key_table);
        out.extend_from_slice(&self.records);
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    fn message_len(&self) -> usize {
        self.key_table.len() + self.hash_key_table.len() + self.records.len()
    }

    /// Length of one encoded `Record` message (without its own tag and length).
    fn record_body_len(&self, partition_key_index: u64, data_len: usize) -> usize {
        let hash_key_index = if self.hash_key_table.is_empty() {
            0
        } else {
            key_len(REC_EXPLICIT_HASH_KEY_INDEX) + encoded_len_varint(0)
        };
        key_len(REC_PARTITION_KEY_INDEX)
            + encoded_len_varint(partition_key_index)
            + hash_key_index
            + len_delimited_len(REC_DATA, data_len)
    }
}

/// Encoded size of a length-delimited field of `len` bytes: tag, length, bytes.
fn len_delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn write_len_delimited(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
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
}
