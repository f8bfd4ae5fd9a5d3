//! The fast path for format-version 1 change chunks (`write-in-chunks`, the default):
//! one `{"kind":"insert"|"update"|"delete",...}` object, read in one pass with the
//! v2 row scanner's rules (`fast.rs`). A message, a truncate, pretty-printed or
//! escaped text, non-scalar values, a duplicate key, lengths that disagree, or
//! anything else it does not fully understand returns `None` and goes to serde in
//! `v1.rs`, which decodes it or names the error.

use super::scan::Scanner;
use super::Headers;
use crate::decode::bytes::has_control_byte;
use crate::decode::{Change, Column, ColumnType, Json, Kind};

/// `(names, values, types)` of `columnnames`/`columnvalues`/`columntypes` or of
/// `oldkeys`.
type Lists<'a> = (Vec<&'a str>, Vec<&'a str>, Option<Vec<&'a str>>);

/// A change chunk (without its leading `,`), or `None` to let the serde path decide.
pub(in crate::decode) fn row(data: &[u8], headers: &mut Headers) -> Option<Change> {
    // wal2json writes `kind` first; a message defers before any scanning.
    if !data.starts_with(br#"{"kind":""#) || data.get(9) == Some(&b'm') {
        return None;
    }
    let text = simdutf8::basic::from_utf8(data).ok()?;
    if has_control_byte(data) {
        return None;
    }
    let mut s = Scanner::new(text);
    let (mut kind, mut schema, mut table) = (None, None, None);
    let (mut names, mut values, mut types) = (None, None, None);
    let (mut old, mut pk) = (None, None);
    s.document(|s, key| {
        Some(match key {
            "kind" => {
                kind = Some(match s.plain_str()? {
                    "insert" => Kind::Insert,
                    "update" => Kind::Update,
                    "delete" => Kind::Delete,
                    _ => return None,
                });
                1
            }
            "schema" => {
                schema = Some(s.plain_str()?);
                2
            }
            "table" => {
                table = Some(s.plain_str()?);
                4
            }
            "columnnames" => {
                names = Some(s.strings()?);
                8
            }
            "columnvalues" => {
                values = Some(s.scalars()?);
                16
            }
            "columntypes" => {
                types = Some(s.strings()?);
                32
            }
            "oldkeys" => {
                old = Some(s.old_keys()?);
                64
            }
            "pk" => {
                // wal2json writes schema and table first; without a table, no cache.
                let cache = table.map(|t| headers.of(schema.unwrap_or_default(), t));
                pk = Some(s.shared_pk(cache, Scanner::pk_names)?);
                128
            }
            // Fields of a message, typed in the serde path.
            "prefix" | "content" | "transactional" => return None,
            _ => {
                s.value()?;
                0
            }
        })
    })?;
    let columns = zip((names.unwrap_or_default(), values.unwrap_or_default(), types))?;
    let identity = match old {
        Some(lists) => zip(lists)?,
        None => Vec::new(),
    };
    Some(Change {
        kind: kind?,
        // As the serde path: a missing schema is empty, a missing table an error.
        schema: schema.unwrap_or_default().into(),
        table: table?.into(),
        columns,
        identity,
        pk: pk.unwrap_or_default(),
        lsn: None,
        columns_tag: 0,
    })
}

/// Names, values and types as the serde path pairs them; `None` where it reports
/// an error (lengths that disagree).
fn zip((names, values, types): Lists<'_>) -> Option<Vec<Column>> {
    let types = types.unwrap_or_default();
    if names.len() != values.len() || (!types.is_empty() && types.len() != names.len()) {
        return None;
    }
    Some(
        names
            .into_iter()
            .zip(values)
            .enumerate()
            .map(|(i, (name, value))| Column {
                name: name.into(),
                value: Json::scanned(value),
                ty: types
                    .get(i)
                    .map_or(ColumnType::Other, |t| ColumnType::of(t)),
            })
            .collect(),
    )
}

impl<'a> Scanner<'a> {
    /// `["..", ...]`: strings without escapes.
    fn strings(&mut self) -> Option<Vec<&'a str>> {
        let mut out = Vec::with_capacity(8);
        self.array(|s| {
            out.push(s.plain_str()?);
            Some(())
        })?;
        Some(out)
    }

    /// `[scalar, ...]`: each value's exact text.
    fn scalars(&mut self) -> Option<Vec<&'a str>> {
        let mut out = Vec::with_capacity(8);
        self.array(|s| {
            out.push(s.value()?);
            Some(())
        })?;
        Some(out)
    }

    /// `{"keynames": [..], "keytypes": [..], "keyvalues": [..]}`.
    fn old_keys(&mut self) -> Option<Lists<'a>> {
        let (mut names, mut values, mut types) = (None, None, None);
        self.object(|s, key| {
            match key {
                "keynames" if names.is_none() => names = Some(s.strings()?),
                "keyvalues" if values.is_none() => values = Some(s.scalars()?),
                "keytypes" if types.is_none() => types = Some(s.strings()?),
                "keynames" | "keyvalues" | "keytypes" => return None,
                _ => {
                    s.value()?;
                }
            }
            Some(())
        })?;
        // Both lists are required by the serde path.
        Some((names?, values?, types))
    }

    /// `{"pknames": [..], "pktypes": [..]}`: the names.
    fn pk_names(&mut self) -> Option<Vec<String>> {
        let mut names = None;
        self.object(|s, key| {
            match key {
                "pknames" if names.is_none() => names = Some(s.strings()?),
                "pknames" => return None,
                "pktypes" => {
                    s.strings()?;
                }
                _ => {
                    s.value()?;
                }
            }
            Some(())
        })?;
        Some(names?.into_iter().map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests;
