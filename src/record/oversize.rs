//! Records larger than the stream takes: the error that stops the slot (`oversize:
//! fail`), or a claim check (`oversize: s3`).
//!
//! Owns the claim-check record format, the S3 object key of a record and the choice
//! per table. A claim check is the record with its row data (`data`, `old`; a
//! Debezium envelope's `before`, `after`) replaced by `"claim_check": {"bucket",
//! "key", "bytes", "sha256"}`; every other field keeps its bytes and place. The full
//! record rides along as an [`Offload`] that the sink puts into S3 before it lets
//! the claim check go. This module never talks to S3 and never drops a record.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::Record;
use crate::config::{OversizeMode, SlotConfig};
use crate::lsn::Lsn;

/// The fields that carry row values, in either envelope: what a claim check leaves
/// out. Everything else (kind, schema, table, lsn, seq, xid, timestamps, key_change,
/// snapshot, source, op, ...) is kept as written.
pub const DATA_FIELDS: &[&str] = &["data", "old", "before", "after"];

/// The full record a claim check stands for: the sink puts `body` at `bucket`/`key`
/// and only then sends the claim check.
#[derive(Clone, PartialEq, Eq)]
pub struct Offload {
    pub bucket: String,
    pub key: String,
    pub body: bytes::Bytes,
    /// SHA-256 of `body`, as in the claim check (S3 verifies it on upload).
    pub sha256: [u8; 32],
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the row's values: they may be anything, and large.
        f.debug_struct("Offload")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// A record over the stream's limit that cannot go: the slot stops (nothing is
/// dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OversizeError {
    #[error(
        "a change to {table} at LSN {lsn} encodes to a {size}-byte record, over the stream's {max}-byte \
         limit; it was not dropped, and the slot stops here. Two fixes: set `oversize: s3` with \
         `oversize_bucket: <bucket>` (for the slot, or in the `tables:` entry of {table}) to put such \
         records into S3 and a claim check on the stream in their place; or keep the large columns \
         off the stream with `exclude_columns: [...]` in a `tables:` entry for {table}. (Or raise \
         max_record_bytes if the stream takes larger records.)"
    )]
    TooLarge {
        table: String,
        lsn: Lsn,
        size: usize,
        max: usize,
    },
    #[error(
        "a change to {table} at LSN {lsn} is too large for the stream and its claim check is too \
         ({size} bytes, over {max}): its envelope fields alone are too large; it was not dropped. \
         Raise max_record_bytes, or keep the table off the stream"
    )]
    ClaimTooLarge {
        table: String,
        lsn: Lsn,
        size: usize,
        max: usize,
    },
    #[error(
        "a change to {table} at LSN {lsn} is too large for the stream, but its record is not a \
         JSON object ({reason}); this is a bug: report it with this message"
    )]
    NotAnObject {
        table: String,
        lsn: Lsn,
        reason: String,
    },
    #[error(
        "a change to {table} at LSN {lsn} goes to S3 (`oversize: s3`), but the slot has no \
         `oversize_bucket`: add one"
    )]
    NoBucket { table: String, lsn: Lsn },
}

/// Which table overrides the slot's mode (a `tables:` entry's `oversize`).
pub type TableModes = Arc<dyn Fn(&str, &str) -> Option<OversizeMode> + Send + Sync>;

/// One slot's oversize rule: the mode per table, and where objects go.
#[derive(Clone, Default)]
pub struct Oversize {
    slot: String,
    mode: OversizeMode,
    bucket: Option<String>,
    prefix: String,
    per_table: Option<TableModes>,
}

impl fmt::Debug for Oversize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oversize")
            .field("mode", &self.mode)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("per_table", &self.per_table.is_some())
            .finish()
    }
}

/// Where a record sits in the stream: what names its S3 object.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    /// The transaction's commit LSN (the same on every redelivery).
    pub commit_lsn: Option<Lsn>,
    /// The change's own LSN, for messages.
    pub lsn: Option<Lsn>,
    /// The record's `seq` in its transaction.
    pub seq: u64,
}

impl Oversize {
    pub fn new(slot: &SlotConfig) -> Self {
        Oversize {
            slot: slot.name.clone(),
            mode: slot.oversize.mode,
            bucket: slot.oversize.bucket.clone(),
            prefix: slot.oversize.prefix.clone(),
            per_table: None,
        }
    }

    /// Per-table modes (`tables:` entries with `oversize`): `modes(schema, table)`
    /// returns the table's own mode, or `None` for the slot's.
    pub fn with_table_modes(mut self, modes: TableModes) -> Self {
        self.per_table = Some(modes);
        self
    }

    /// The mode for a table.
    pub fn mode_for(&self, schema: &str, table: &str) -> OversizeMode {
        self.per_table
            .as_ref()
            .and_then(|f| f(schema, table))
            .unwrap_or(self.mode)
    }

    /// Whether any record may become a claim check (the sink then needs S3).
    pub fn may_offload(&self) -> bool {
        self.bucket.is_some() && (self.mode == OversizeMode::S3 || self.per_table.is_some())
    }

    /// Let `record` go if it fits in `max` bytes; else, under `s3`, turn it into its
    /// claim check carrying the full record as its [`Offload`]; else the error.
    pub fn admit(
        &self,
        record: &mut Record,
        at: Place<'_>,
        max: usize,
    ) -> Result<(), OversizeError> {
        let size = record.billed_size();
        if size <= max {
            return Ok(());
        }
        let table = format!("{}.{}", at.schema, at.table);
        let lsn = at.lsn.or(at.commit_lsn).unwrap_or_default();
        if self.mode_for(at.schema, at.table) == OversizeMode::Fail {
            return Err(OversizeError::TooLarge {
                table,
                lsn,
                size,
                max,
            });
        }
        let Some(bucket) = &self.bucket else {
            return Err(OversizeError::NoBucket { table, lsn });
        };
        let key = self.object_key(at, &record.data);
        let claim = claim_check(&record.data, bucket, &key).map_err(|reason| {
            OversizeError::NotAnObject {
                table: table.clone(),
                lsn,
                reason,
            }
        })?;
        if claim.len() + record.partition_key.len() > max {
            return Err(OversizeError::ClaimTooLarge {
                table,
                lsn,
                size: claim.len() + record.partition_key.len(),
                max,
            });
        }
        let body = std::mem::replace(&mut record.data, claim);
        record.offload = Some(Box::new(Offload {
            bucket: bucket.clone(),
            key,
            sha256: Sha256::digest(&body).into(),
            body: body.into(),
        }));
        Ok(())
    }

    /// `<prefix><slot>/<commit_lsn>/<seq>.json`, the commit LSN as 16 hex digits (so
    /// keys list in commit order): a retry of the same change names the same object.
    /// Without a commit LSN (`include-lsn` off) the record's own hash names it.
    pub fn object_key(&self, at: Place<'_>, full: &[u8]) -> String {
        match at.commit_lsn {
            Some(lsn) => format!(
                "{}{}/{:016X}/{}.json",
                self.prefix, self.slot, lsn.0, at.seq
            ),
            None => format!(
                "{}{}/sha256-{}.json",
                self.prefix,
                self.slot,
                hex::encode(Sha256::digest(full))
            ),
        }
    }
}

/// The claim check of the JSON object `full`: its fields in order, the row data
/// replaced (at the first data field's place) by the claim.
pub fn claim_check(full: &[u8], bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let fields = top_level_fields(full).map_err(|e| e.to_string())?;
    let mut claim = Vec::with_capacity(256);
    claim.extend_from_slice(b"{\"bucket\":");
    push_str(&mut claim, bucket);
    claim.extend_from_slice(b",\"key\":");
    push_str(&mut claim, key);
    claim.extend_from_slice(b",\"bytes\":");
    claim.extend_from_slice(full.len().to_string().as_bytes());
    claim.extend_from_slice(b",\"sha256\":\"");
    claim.extend_from_slice(hex::encode(Sha256::digest(full)).as_bytes());
    claim.extend_from_slice(b"\"}");

    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    let mut placed = false;
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(out, name);
        out.push(b':');
        out.extend_from_slice(value);
    };
    for (name, value) in &fields {
        if DATA_FIELDS.contains(&name.as_str()) {
            if !placed {
                field(&mut out, "claim_check", &claim);
                placed = true;
            }
            continue;
        }
        field(&mut out, name, value.get().as_bytes());
    }
    if !placed {
        field(&mut out, "claim_check", &claim);
    }
    out.push(b'}');
    Ok(out)
}

/// The top-level fields of a JSON object, in order, values as written.
fn top_level_fields(json: &[u8]) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    struct Fields<'a>(Vec<(String, &'a RawValue)>);
    struct FieldsVisitor;
    impl<'de> Visitor<'de> for FieldsVisitor {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
            let mut fields = Vec::with_capacity(16);
            while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                fields.push((k, v));
            }
            Ok(Fields(fields))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let fields = de.deserialize_map(FieldsVisitor)?;
    de.end()?;
    Ok(fields.0)
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests;
