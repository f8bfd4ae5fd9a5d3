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
mod tests;
