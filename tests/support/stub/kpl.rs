//! KPL de-aggregation for the stub: is a Kinesis record an aggregate, and which user
//! records does it carry.
//!
//! TODO(kpl): a temporary decoder, written from the KPL aggregated-record format
//! description (magic `F3 89 9A C2`, protobuf `AggregatedRecord`, MD5 of the protobuf),
//! until `pg_cdc_to_kinesis::sink::kinesis::aggregate::{is_aggregated, deaggregate}`
//! lands on main; then this file shrinks to a `pub(super) use` of those.
//!
//! Must never panic on malformed input: a bad aggregate is an error, and the stub then
//! counts the record as one plain user record.

use md5::{Digest, Md5};

const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserRecord {
    pub(super) partition_key: String,
    pub(super) explicit_hash_key: Option<String>,
    pub(super) data: Vec<u8>,
}

/// Magic, room for the digest, and a digest that matches.
pub(super) fn is_aggregated(data: &[u8]) -> bool {
    if data.len() < MAGIC.len() + DIGEST_LEN || data[..MAGIC.len()] != MAGIC {
        return false;
    }
    let (proto, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    Md5::digest(proto).as_slice() == digest
}

/// The user records of an aggregate, in order. `_outer_partition_key` is the Kinesis
/// record's own key, which the KPL format does not need to decode the inner ones.
pub(super) fn deaggregate(
    _outer_partition_key: &str,
    data: &[u8],
) -> Result<Vec<UserRecord>, String> {
    if !is_aggregated(data) {
        return Err("not a KPL aggregate (magic or MD5 mismatch)".into());
    }
    let proto = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    let mut raw_records = Vec::new();
    let mut reader = Reader(proto);
    while let Some((field, value)) = reader.field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => keys.push(utf8(b)?),
            (2, Value::Bytes(b)) => hash_keys.push(utf8(b)?),
            (3, Value::Bytes(b)) => raw_records.push(b),
            _ => {}
        }
    }
    raw_records
        .into_iter()
        .map(|raw| {
            let (mut key_index, mut hash_index, mut payload) = (None, None, Vec::new());
            let mut reader = Reader(raw);
            while let Some((field, value)) = reader.field()? {
                match (field, value) {
                    (1, Value::Varint(i)) => key_index = Some(i),
                    (2, Value::Varint(i)) => hash_index = Some(i),
                    (3, Value::Bytes(b)) => payload = b.to_vec(),
                    _ => {}
                }
            }
            let lookup = |table: &[String], i: u64, what: &str| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| table.get(i).cloned())
                    .ok_or_else(|| format!("{what} index {i} is outside its table"))
            };
            Ok(UserRecord {
                partition_key: lookup(
                    &keys,
                    key_index.ok_or("a record without partition_key_index")?,
                    "partition key",
                )?,
                explicit_hash_key: hash_index
                    .map(|i| lookup(&hash_keys, i, "explicit hash key"))
                    .transpose()?,
                data: payload,
            })
        })
        .collect()
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| format!("a key is not UTF-8: {e}"))
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// Protobuf wire format, just what `AggregatedRecord` uses.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        if n > self.0.len() {
            return Err(format!("field of {n} bytes, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            wire => return Err(format!("unsupported wire type {wire}")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

/// Builds a KPL aggregate from `(partition key, explicit hash key, data)` records, for
/// the stub's own tests.
#[cfg(test)]
pub fn aggregate_for_tests(records: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut proto = Vec::new();
    let mut inner = Vec::new();
    for (key, hash, data) in records {
        let k = keys.iter().position(|x| x == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let mut r = Vec::new();
        varint(&mut r, 1 << 3);
        varint(&mut r, k as u64);
        if let Some(h) = hash {
            let i = hash_keys.iter().position(|x| x == h).unwrap_or_else(|| {
                hash_keys.push(h);
                hash_keys.len() - 1
            });
            varint(&mut r, 2 << 3);
            varint(&mut r, i as u64);
        }
        bytes(&mut r, 3, data);
        inner.push(r);
    }
    for k in &keys {
        bytes(&mut proto, 1, k.as_bytes());
    }
    for h in &hash_keys {
        bytes(&mut proto, 2, h.as_bytes());
    }
    for r in &inner {
        bytes(&mut proto, 3, r);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&proto);
    out.extend_from_slice(Md5::digest(&proto).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_round_trip_and_corruption_is_not_an_aggregate() {
        let data = aggregate_for_tests(&[
            ("a", None, b"one"),
            ("b", Some("42"), b"two"),
            ("a", None, b"three"),
        ]);
        assert!(is_aggregated(&data));
        let records = deaggregate("outer", &data).expect("decodes");
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.partition_key.as_str(),
                    r.explicit_hash_key.as_deref(),
                    r.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", None, &b"one"[..]),
                ("b", Some("42"), &b"two"[..]),
                ("a", None, &b"three"[..])
            ]
        );
        let mut bad = data.clone();
        bad[6] ^= 1;
        assert!(!is_aggregated(&bad));
        assert!(deaggregate("outer", &bad).is_err());
        assert!(!is_aggregated(b"{\"plain\":true}"));
    }
}
