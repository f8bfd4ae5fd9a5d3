//! The fast path for format-version 2 row documents (`I`, `U`, `D`): one pass over
//! the bytes, no serde machinery, names and values sliced out of the document.
//!
//! It accepts only what it fully understands: a UTF-8 document whose keys and
//! names have no escapes, whose values are JSON scalars (strings without `\u`
//! escapes, numbers, `true`, `false`, `null`), with no key twice. Anything else
//! (`B`, `C`, `M`, `T`, an odd table name, a syntax error) returns `None` and goes
//! to the serde path in `v2.rs`, which decodes it or reports the error. It changes
//! how fast a row is decoded, never what it decodes to: its tests hold it to the
//! serde path's output on the fixtures and on generated rows. `fast/chunk.rs` does
//! the same for format-version 1 change chunks, with this scanner.

use super::{Change, Column, ColumnType, Json, Kind};
use crate::lsn::Lsn;
use scan::{has_control_byte, Scanner};

/// A row change, or `None` to let the serde path decide.
pub(super) fn row(data: &[u8]) -> Option<Change> {
    // wal2json writes `action` first: a begin, commit, message or truncate defers
    // before any scanning.
    if data.starts_with(br#"{"action":""#) && !matches!(data.get(11), Some(b'I' | b'U' | b'D')) {
        return None;
    }
    // One validation of the whole document: every slice below is then a `str`.
    let text = std::str::from_utf8(data).ok()?;
    // wal2json escapes control characters inside strings and writes no newlines
    // between a row's tokens, so a document without any needs no check per string.
    // `plain_str` and `value` rely on this check: serde refuses a raw control
    // character inside a string, and they do not look for one.
    if has_control_byte(data) {
        return None;
    }
    let mut s = Scanner::new(text);
    let mut kind = None;
    let mut lsn = None;
    let (mut schema, mut table) = (None, None);
    let (mut columns, mut identity, mut pk) = (None, None, None);
    s.document(|s, key| {
        Some(match key {
            "action" => {
                kind = Some(match s.plain_str()? {
                    "I" => Kind::Insert,
                    "U" => Kind::Update,
                    "D" => Kind::Delete,
                    _ => return None,
                });
                1
            }
            "lsn" => {
                lsn = Some(s.plain_str()?.parse::<Lsn>().ok()?);
                2
            }
            "schema" => {
                schema = Some(s.plain_str()?);
                4
            }
            "table" => {
                table = Some(s.plain_str()?);
                8
            }
            "columns" => {
                columns = Some(s.columns()?);
                16
            }
            "identity" => {
                identity = Some(s.columns()?);
                32
            }
            "pk" => {
                pk = Some(s.pk()?);
                64
            }
            // Unused by a row, but typed in the serde path: the same types here.
            "xid" => {
                s.value()?.parse::<u64>().ok()?;
                128
            }
            "timestamp" => {
                s.plain_str()?;
                256
            }
            // Fields of other actions, which this path does not decode.
            "prefix" | "content" | "transactional" | "nextlsn" => return None,
            // `origin`, `typeoid` ...: skipped, as the serde path skips them.
            _ => {
                s.value()?;
                0
            }
        })
    })?;
    Some(Change {
        kind: kind?,
        // The serde path treats a missing schema as empty (include-schemas off) and
        // a missing table as an error: leave the error to it.
        schema: schema.unwrap_or_default().into(),
        table: table?.into(),
        columns: columns.unwrap_or_default(),
        identity: identity.unwrap_or_default(),
        pk: pk.unwrap_or_default(),
        lsn,
    })
}

impl<'a> Scanner<'a> {
    /// A column as wal2json prints it, `{"name":"..","type":"..","value":..}` with
    /// no spaces and no other keys: read without matching keys. `None` leaves the
    /// cursor where it was, for the general reading.
    fn printed_column(&mut self) -> Option<(&'a str, &'a str, &'a str)> {
        let start = self.i;
        let column = (|| {
            if !self.take(br#"{"name":""#) {
                return None;
            }
            let name = self.plain_str_body()?;
            if !self.take(br#","type":""#) {
                return None;
            }
            let ty = self.plain_str_body()?;
            if !self.take(br#","value":"#) {
                return None;
            }
            let value = self.value()?;
            self.take(b"}").then_some((name, ty, value))
        })();
        if column.is_none() {
            self.i = start;
        }
        column
    }

    /// `[{"name": .., "type": .., "value": .., ...}, ...]`
    fn columns(&mut self) -> Option<Vec<Column>> {
        let mut out = Vec::with_capacity(8);
        self.array(|s| {
            if let Some((name, ty, value)) = s.printed_column() {
                out.push(Column {
                    name: name.into(),
                    value: Json::scanned(value),
                    ty: ColumnType::of(ty),
                });
                return Some(());
            }
            let (mut name, mut ty, mut value) = (None, None, None);
            s.object(|s, key| {
                match key {
                    "name" if name.is_none() => name = Some(s.plain_str()?),
                    "type" if ty.is_none() => ty = Some(s.plain_str()?),
                    "value" if value.is_none() => value = Some(s.value()?),
                    "name" | "type" | "value" => return None,
                    _ => {
                        s.value()?;
                    }
                }
                Some(())
            })?;
            out.push(Column {
                name: name?.into(),
                value: Json::scanned(value?),
                ty: ty.map_or(ColumnType::Other, ColumnType::of),
            });
            Some(())
        })?;
        Some(out)
    }

    /// `[{"name": .., "type": ..}, ...]`: the names.
    fn pk(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        self.array(|s| {
            let mut name = None;
            s.object(|s, key| {
                match key {
                    "name" if name.is_none() => name = Some(s.plain_str()?),
                    "name" => return None,
                    _ => {
                        s.value()?;
                    }
                }
                Some(())
            })?;
            out.push(name?.to_owned());
            Some(())
        })?;
        Some(out)
    }
}

/// Format-version 1 change chunks.
pub(super) mod chunk;
/// The scanner both fast paths use.
mod scan;

#[cfg(test)]
mod tests;
