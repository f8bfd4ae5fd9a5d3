//! wal2json output → [`Event`]s.
//!
//! Owns the two wal2json wire formats (format-version 1: one JSON document per transaction,
//! optionally split by `write-in-chunks`; format-version 2: one JSON document per
//! row/transaction boundary) and the wal2json options this tool adds. It never panics on
//! any input and never reinterprets a value: values stay the exact JSON text wal2json wrote
//! ([`Json`]), so a `numeric(40,10)` never passes `f64`.
//!
//! # Options added to the user's
//!
//! [`effective_options`] adds these only where the user did not set the option
//! (wal2json 2.5 names; `true` is sent as the value):
//!
//! | option              | format | why                                                       |
//! |---------------------|--------|-----------------------------------------------------------|
//! | `format-version=2`  | (none set) | wal2json defaults to 1; 2 streams transactions of any size |
//! | `include-xids`      | 1, 2   | `Begin::xid`                                              |
//! | `include-timestamp` | 1, 2   | `Begin::timestamp` (commit time)                          |
//! | `include-lsn`       | 1, 2   | `Begin::txn_lsn` (`nextlsn`), `Change::lsn` (v2 `lsn`)     |
//! | `include-pk`        | 1, 2   | `Change::pk`                                              |
//! | `include-transaction` | 2    | `B`/`C` records; a user's `false` is overridden (logged)  |
//! | `write-in-chunks`   | 1      | one message per row instead of one per transaction        |
//!
//! # LSNs (checked against PostgreSQL 15 + wal2json 2.5)
//!
//! The XLogData start the walsender sends is the decoding context's write position, which
//! `pg_logical_slot_peek_changes` returns as `lsn`. For the message that ends a transaction
//! (v2 `C`, v1 whole document or closing `]}` chunk) it is the end of the commit record
//! (`txn->end_lsn`, equal to wal2json's `nextlsn`);
//! `pg_logical_slot_get_changes(slot, upto_lsn => that)` leaves `confirmed_flush_lsn`
//! exactly there and the next read starts at the next transaction. So
//! `Event::Commit::end_lsn` is the position to confirm. v2's `lsn` on `B`/`C` is the
//! *start* of the commit record; changes carry their own record's position; `M` carries the
//! end of the message record.
//!
//! Transactions arrive in commit order, so only `Commit::end_lsn` rises monotonically. A
//! transaction that started before the previous one committed has its `Begin`/row messages
//! at WAL positions *below* that commit (see `testdata/v2_interleaved.jsonl`): never
//! confirm a change's or a begin's position, only a commit's (or a non-transactional
//! message's, which is read in WAL order between commits).
//!
//! # Things wal2json does that callers should know
//!
//! - Format-version 1 never emits TRUNCATE (its truncate callback is compiled out); the v1
//!   decoder still accepts `"kind":"truncate"` should one appear.
//! - Unchanged TOASTed columns are left out of an update's `columns`.
//! - NaN / ±Infinity numerics are printed as `null`.
//! - Updates and deletes on a table without a replica identity are skipped by wal2json with
//!   a server-side WARNING.
//! - A logical message's `content` is the application's bytes, written unescaped (not
//!   necessarily UTF-8). Both decoders skip it unread; the prefix is read as bytes and
//!   shown lossily.
//! - Format-version 1 writes a non-transactional message that follows a transaction of two
//!   or more changes as `{"change":[,{...}]}`; `v1` accepts it.

use crate::lsn::Lsn;
use serde_json::value::RawValue;

pub(crate) mod bytes;
mod fast;
mod json;
mod options;
#[cfg(test)]
mod proptests;
pub mod tables;
mod v1;
mod v2;

pub use json::{table_hash, Json, Name};
pub use options::{
    check_options, effective_options, numbers_as_strings, OptionError, SIGNAL_PREFIX,
};
pub use tables::{table_patterns, TableFilter, TablePattern, TABLE_LIST_OPTIONS};

/// The wal2json output format in effect for a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatVersion {
    V1,
    V2,
}

/// A fresh decoder for one replication stream in `format`.
pub fn decoder_for(format: FormatVersion) -> Box<dyn Decode> {
    match format {
        FormatVersion::V1 => Box::new(v1::V1Decoder::default()),
        FormatVersion::V2 => Box::new(v2::V2Decoder::default()),
    }
}

/// The kind of row change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Insert,
    Update,
    Delete,
    Truncate,
    /// A row read by a backfill (never decoded from wal2json: `crate::backfill`).
    Read,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Truncate => "truncate",
            Kind::Read => "read",
        }
    }
}

/// One column and its value, exactly as wal2json printed it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: Name,
    pub value: Json,
    /// What the record's type options need to know of the column's type (from
    /// wal2json's `columntypes`/`keytypes` (v1) or `type` (v2), or the catalog for
    /// a backfill); [`ColumnType::Other`] when wal2json sent no types.
    pub ty: ColumnType,
}

impl Column {
    /// A column of a type no option rewrites.
    pub fn new(name: impl Into<Name>, value: Json) -> Self {
        Column {
            name: name.into(),
            value,
            ty: ColumnType::Other,
        }
    }
}

/// The column types whose values a record option rewrites (`json_as_object`,
/// `timestamps: iso8601`); every other type is `Other`. Classified once, from the
/// type's name as PostgreSQL's `format_type` prints it (wal2json's and the
/// catalog's), so a record costs no allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnType {
    #[default]
    Other,
    /// `json`, `jsonb`.
    Json,
    /// `json[]`, `jsonb[]` (any number of dimensions: PostgreSQL writes `[]` once).
    JsonArray,
    /// `timestamp[(p)] without time zone`.
    Timestamp,
    /// `timestamp[(p)] with time zone`.
    TimestampTz,
    /// `date`.
    Date,
    /// `time[(p)] with time zone`.
    TimeTz,
}

impl ColumnType {
    /// Classify a type name as `format_type` prints it (`timestamp(3) with time zone`,
    /// `jsonb[]`, ...). A domain over one of these is `Other` (wal2json prints the
    /// domain's name unless `include-domain-data-type` is set).
    pub fn of(name: &str) -> ColumnType {
        match name {
            "json" | "jsonb" => return ColumnType::Json,
            "json[]" | "jsonb[]" => return ColumnType::JsonArray,
            "date" => return ColumnType::Date,
            _ => {}
        }
        let base = |prefix: &str, suffix: &str| -> bool {
            let Some(rest) = name.strip_prefix(prefix) else {
                return false;
            };
            let rest = match rest.strip_prefix('(') {
                // A precision: `(0)` to `(6)`.
                Some(p) => match p.split_once(')') {
                    Some((digits, tail)) if digits.bytes().all(|b| b.is_ascii_digit()) => tail,
                    _ => return false,
                },
                None => rest,
            };
            rest == suffix
        };
        if base("timestamp", " without time zone") {
            ColumnType::Timestamp
        } else if base("timestamp", " with time zone") {
            ColumnType::TimestampTz
        } else if base("time", " with time zone") {
            ColumnType::TimeTz
        } else {
            ColumnType::Other
        }
    }
}

/// One row change.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: Kind,
    pub schema: Name,
    pub table: Name,
    /// The new row (insert, update). Empty for delete and truncate.
    pub columns: Vec<Column>,
    /// The old key / replica identity (update, delete) when the server sends it.
    pub identity: Vec<Column>,
    /// Primary-key names (`include-pk`), shared by a table's rows (`fast::Headers`).
    pub pk: std::sync::Arc<[String]>,
    /// The change's own WAL position when known (format-version 2 with `include-lsn`).
    pub lsn: Option<Lsn>,
    /// Equal non-zero tags: the same column names and types in order (`fast::Headers`).
    pub columns_tag: u64,
}

/// What the decoder produces, in stream order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A transaction starts. Every field is optional because the user may have
    /// turned the corresponding wal2json option off.
    Begin {
        xid: Option<u64>,
        /// Commit timestamp as wal2json printed it.
        timestamp: Option<String>,
        /// An LSN that identifies the transaction and is the same on every
        /// redelivery (wal2json's `lsn` / `nextlsn` of the transaction).
        txn_lsn: Option<Lsn>,
    },
    Change(Change),
    /// The transaction is complete. `end_lsn` is the WAL position of the message
    /// that completed it (the XLogData start of the commit), which is the
    /// position to confirm once every change before it has been delivered.
    Commit {
        end_lsn: Lsn,
    },
    /// A logical decoding message (`pg_logical_emit_message`). Never put on the stream;
    /// those with [`SIGNAL_PREFIX`] are signals to the streamer.
    Message {
        prefix: String,
        /// The content, lossily as text (an application's may be any bytes).
        content: String,
        transactional: bool,
        lsn: Lsn,
    },
}

/// The input was not the wal2json output this decoder expects.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("wal2json output at LSN {lsn} is not valid JSON ({source}); first bytes: {excerpt:?}")]
    Json {
        lsn: Lsn,
        excerpt: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("wal2json output at LSN {lsn} is not in the expected shape: {what}; first bytes: {excerpt:?}")]
    Shape {
        lsn: Lsn,
        what: String,
        excerpt: String,
    },
}

/// The decoder for one replication stream. Stateful: format-version 1 with
/// `write-in-chunks` spreads one document over several messages.
pub trait Decode: Send {
    /// Feed one XLogData payload whose WAL start is `wal_start`; push the events it
    /// completes onto `out`.
    fn feed(
        &mut self,
        wal_start: Lsn,
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError>;
}

/// How much of a bad message an error shows: enough to recognise it, little
/// enough to keep row data out of logs.
const EXCERPT_BYTES: usize = 120;

fn excerpt(data: &[u8]) -> String {
    let head = data.get(..EXCERPT_BYTES).unwrap_or(data);
    let mut text = String::from_utf8_lossy(head).into_owned();
    if head.len() < data.len() {
        text.push('…');
    }
    text
}

fn json_error(lsn: Lsn, data: &[u8], source: serde_json::Error) -> DecodeError {
    DecodeError::Json {
        lsn,
        excerpt: excerpt(data),
        source,
    }
}

fn shape_error(lsn: Lsn, data: &[u8], what: impl Into<String>) -> DecodeError {
    DecodeError::Shape {
        lsn,
        what: what.into(),
        excerpt: excerpt(data),
    }
}

/// A JSON string read as bytes, without UTF-8 validation, shown lossily. For a
/// logical message's prefix: it is the application's text, not ours to validate.
struct LossyText(String);

impl<'de> serde::Deserialize<'de> for LossyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = LossyText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<LossyText, E> {
                Ok(LossyText(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_str<E>(self, v: &str) -> Result<LossyText, E> {
                Ok(LossyText(v.to_owned()))
            }
        }
        // serde_json hands a string's bytes (escapes resolved) to `deserialize_bytes`
        // without checking that they are UTF-8.
        d.deserialize_bytes(Bytes)
    }
}

/// Parse an optional `X/Y` LSN field wal2json printed.
fn lsn_field(
    text: Option<&str>,
    field: &str,
    lsn: Lsn,
    data: &[u8],
) -> Result<Option<Lsn>, DecodeError> {
    text.map(|t| {
        t.parse::<Lsn>()
            .map_err(|e| shape_error(lsn, data, format!("field {field:?}: {e}")))
    })
    .transpose()
}

/// Pair column names with their values (and types, when sent); wal2json prints
/// them as parallel lists in v1, so a length mismatch means the document is not
/// what we think it is.
/// `fast/chunk.rs` (`zip`) declines where these checks fail: keep the two alike.
fn zip_columns(
    names: Vec<std::borrow::Cow<'_, str>>,
    values: Vec<&RawValue>,
    types: Option<Vec<std::borrow::Cow<'_, str>>>,
    what: &str,
    lsn: Lsn,
    data: &[u8],
) -> Result<Vec<Column>, DecodeError> {
    if names.len() != values.len() {
        return Err(shape_error(
            lsn,
            data,
            format!("{what}: {} names but {} values", names.len(), values.len()),
        ));
    }
    let types = types.unwrap_or_default();
    if !types.is_empty() && types.len() != names.len() {
        return Err(shape_error(
            lsn,
            data,
            format!("{what}: {} names but {} types", names.len(), types.len()),
        ));
    }
    Ok(names
        .into_iter()
        .zip(values)
        .enumerate()
        .map(|(i, (name, value))| Column {
            name: Name::from(name),
            value: Json::from_raw(value),
            ty: types
                .get(i)
                .map_or(ColumnType::Other, |t| ColumnType::of(t)),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests;
