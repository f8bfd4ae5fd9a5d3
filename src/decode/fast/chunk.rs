//! The fast path for format-version 1 change chunks (`write-in-chunks`, the default):
//! one `{"kind":"insert"|"update"|"delete",...}` object, read in one pass with the
//! v2 row scanner's rules (`fast.rs`). A message, a truncate, pretty-printed or
//! escaped text, non-scalar values, a duplicate key, lengths that disagree, or
//! anything else it does not fully understand returns `None` and goes to serde in
//! `v1.rs`, which decodes it or names the error.

use std::sync::Arc;

use super::scan::{Key, Scanner};
use super::{new_tag, Headers, Known, Table};
use crate::decode::bytes::has_control_byte;
use crate::decode::{Change, Column, ColumnType, Json, Kind, Name};

/// A table's last `columnnames` and `columntypes`, as printed and as read: a chunk
/// whose list is the same bytes takes it without reading it again, and a chunk that
/// takes both gets the pair's tag ([`Change::columns_tag`]), as a format-version 2
/// row whose every header is cached does. A list read replaces the cached one (a
/// list over [`MAX_LIST`] bytes empties it) and retires the tag at once.
#[derive(Debug, Default)]
pub(in crate::decode) struct KnownLists {
    names: Option<Known<Name>>,
    types: Option<Known<ColumnType>>,
    /// The pair's tag, 0 until a chunk takes both.
    tag: u64,
}

/// Longer lists (very wide tables) are read without the cache.
const MAX_LIST: usize = 8192;

/// `(names, values, types)` of `columnnames`/`columnvalues`/`columntypes` or of
/// `oldkeys`.
type Lists<'a> = (Vec<&'a str>, Vec<&'a str>, Option<Vec<&'a str>>);

/// The keys of a change chunk in the order wal2json writes them.
const ORDER: &[Key] = &[
    Key::new("kind"),
    Key::new("schema"),
    Key::new("table"),
    Key::new("columnnames"),
    Key::new("columntypes"),
    Key::new("columnvalues"),
    Key::new("oldkeys"),
    Key::new("pk"),
];

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
    let mut cached = headers.row();
    let (mut kind, mut schema, mut table) = (None, None, None);
    let (mut names, mut values, mut types) = (None, None, None);
    let (mut old, mut pk) = (None, None);
    // Whether each list was taken from the cache (the one entry the document's table
    // was first looked up under).
    let (mut names_known, mut types_known) = (false, false);
    s.document(ORDER, |s, key| {
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
                let lists = cached.get(schema, table).map(lists_of);
                let (list, known) = s.known_list(lists, |l| &mut l.names, Name::from)?;
                (names, names_known) = (Some(list), known);
                8
            }
            "columnvalues" => {
                values = Some(s.scalars()?);
                16
            }
            "columntypes" => {
                let lists = cached.get(schema, table).map(lists_of);
                let (list, known) = s.known_list(lists, |l| &mut l.types, ColumnType::of)?;
                (types, types_known) = (Some(list), known);
                32
            }
            "oldkeys" => {
                old = Some(s.old_keys()?);
                64
            }
            "pk" => {
                // wal2json writes schema and table first; without a table, no cache.
                let cache = cached.get(schema, table).map(|t| &mut t.pk);
                pk = Some(
                    s.known(cache, super::MAX_PK, |s| Some(s.pk_names()?.into()))?
                        .0,
                );
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
    let names = names.unwrap_or_else(|| Arc::from([]));
    let columns = zip(&names, values.unwrap_or_default(), types.as_deref())?;
    // Both lists are the ones the table's cache holds, unchanged since they were
    // cached: that cache's tag for the pair.
    let mut columns_tag = 0;
    let entry = (names_known && types_known).then(|| cached.get(schema, table));
    if let Some(table) = entry.flatten() {
        let lists = lists_of(table);
        if lists.tag == 0 {
            lists.tag = new_tag();
        }
        columns_tag = lists.tag;
    }
    let identity = match old {
        Some(lists) => zip_read(lists)?,
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
        columns_tag,
    })
}

/// The table's cached lists.
fn lists_of(table: &mut Table) -> &mut KnownLists {
    table.lists.get_or_insert_with(Default::default)
}

/// Names, values and types as the serde path pairs them; `None` where it reports
/// an error (lengths that disagree).
fn zip(names: &[Name], values: Vec<&str>, types: Option<&[ColumnType]>) -> Option<Vec<Column>> {
    let types = types.unwrap_or_default();
    if names.len() != values.len() || (!types.is_empty() && types.len() != names.len()) {
        return None;
    }
    Some(
        names
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (name, value))| Column {
                name: name.clone(),
                value: Json::scanned(value),
                ty: types.get(i).copied().unwrap_or(ColumnType::Other),
            })
            .collect(),
    )
}

/// [`zip`] of `oldkeys`' lists, which are not cached.
fn zip_read((names, values, types): Lists<'_>) -> Option<Vec<Column>> {
    let names: Vec<Name> = names.into_iter().map(Name::from).collect();
    let types: Option<Vec<ColumnType>> = types.map(|t| t.into_iter().map(ColumnType::of).collect());
    zip(&names, values, types.as_deref())
}

impl<'a> Scanner<'a> {
    /// A list of strings, taken from the cache `pick` chooses in `lists` or read
    /// and cached ([`Scanner::known`]); a list read retires the pair's tag.
    fn known_list<T>(
        &mut self,
        lists: Option<&mut KnownLists>,
        pick: impl Fn(&mut KnownLists) -> &mut Option<Known<T>>,
        convert: impl Fn(&'a str) -> T,
    ) -> Option<(Arc<[T]>, bool)> {
        let mut lists = lists;
        let read = |s: &mut Self| Some(s.strings()?.into_iter().map(convert).collect());
        let (items, taken) = self.known(lists.as_deref_mut().map(pick), MAX_LIST, read)?;
        if let Some(lists) = lists.filter(|_| !taken) {
            lists.tag = 0;
        }
        Some((items, taken))
    }

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
