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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::bytes::has_control_byte;
use super::{Change, Column, ColumnType, Json, Kind, Name};
use crate::lsn::Lsn;
use scan::{Key, Scanner};

/// The column headers (`{"name":"..","type":"..","value":`) of the last row read of
/// each table, by position. Rows of a table repeat them, so a header whose bytes
/// equal the one before is taken without reading its name and type again. Only
/// equal bytes are taken, so what the cache holds never changes what a row decodes
/// to; a table whose columns change just misses, and so would two tables whose
/// names hash alike. Keyed by a hash of schema and table. Bounded: at most
/// [`MAX_TABLES`] tables, the first [`MAX_COLUMNS`] columns of each, headers of at
/// most [`MAX_HEADER`] bytes (a few MiB at worst).
/// The same holds for the primary key's names (`include-pk`): a table's rows repeat
/// them, so equal bytes share one list, and a row's `pk` costs no allocation; and
/// for format 1's `columnnames` and `columntypes` (`chunk.rs`, at most 8 KiB each).
/// A row whose every header is the cached one gets the tag of that many cached
/// headers ([`Change::columns_tag`]): a number no other header set of any table has
/// had, so the catalog's check of a row against its table's shape is done once per
/// tag. Any header read rather than taken from the cache retires the table's tag.
#[derive(Debug, Default)]
pub(super) struct Headers(FxHashMap<u64, Table>);

#[derive(Debug, Default)]
pub(super) struct Table {
    columns: Vec<Header>,
    pk: Option<Known<String>>,
    /// The tag of the first `tag_len` of `columns`, 0 when none is current.
    tag: u64,
    tag_len: usize,
    /// Format-version 1: the last chunk's `columnnames` and `columntypes`.
    lists: Option<Box<chunk::KnownLists>>,
}

/// The last tag given out, process-wide: tags are never reused.
static LAST_TAG: AtomicU64 = AtomicU64::new(0);

/// A tag no set of columns has had.
fn new_tag() -> u64 {
    LAST_TAG.fetch_add(1, Ordering::Relaxed) + 1
}

/// A list as printed (its bytes) and as read: the `pk` names, and format 1's
/// `columnnames` and `columntypes`.
#[derive(Debug)]
struct Known<T> {
    text: Box<[u8]>,
    items: Arc<[T]>,
}

#[derive(Debug)]
struct Header {
    text: Vec<u8>,
    name: Name,
    ty: ColumnType,
}

/// Beyond this many tables the cache starts again.
const MAX_TABLES: usize = 256;
/// Columns past this position are read without the cache.
const MAX_COLUMNS: usize = 64;
/// Longer headers (long names or types) are read without the cache.
const MAX_HEADER: usize = 128;
/// Longer `pk` values (wide keys) are read without the cache (and empty it).
const MAX_PK: usize = 512;

impl Headers {
    fn of(&mut self, schema: &str, table: &str) -> &mut Table {
        let key = super::table_hash(schema, table);
        if self.0.len() >= MAX_TABLES && !self.0.contains_key(&key) {
            self.0.clear();
        }
        self.0.entry(key).or_default()
    }

    /// The cache of one document's table, looked up at most once.
    fn row(&mut self) -> RowTable<'_> {
        RowTable {
            headers: Some(self),
            table: None,
        }
    }
}

/// One document's entry in [`Headers`], looked up by the first field that needs it,
/// under the schema and table read before that field (wal2json writes both first),
/// and kept for the document's later fields: one hash and lookup per row.
struct RowTable<'h> {
    headers: Option<&'h mut Headers>,
    table: Option<&'h mut Table>,
}

impl RowTable<'_> {
    /// The entry, or `None` while no table has been read (no cache without one).
    fn get(&mut self, schema: Option<&str>, table: Option<&str>) -> Option<&mut Table> {
        if self.table.is_none() {
            let table = table?;
            let headers = self.headers.take()?;
            self.table = Some(headers.of(schema.unwrap_or_default(), table));
        }
        self.table.as_deref_mut()
    }
}

impl<'a> Scanner<'a> {
    /// A list taken from `cache` when the bytes at the cursor are the cached list's,
    /// else read by `read` and cached (when at most `max` bytes; a longer list
    /// empties the cache); and whether it was taken. `None` leaves the error to the
    /// serde path, as `read` does.
    fn known<T>(
        &mut self,
        cache: Option<&mut Option<Known<T>>>,
        max: usize,
        read: impl FnOnce(&mut Self) -> Option<Arc<[T]>>,
    ) -> Option<(Arc<[T]>, bool)> {
        let (b, start) = (self.b, self.i);
        if let Some(known) = cache.as_deref().and_then(Option::as_ref) {
            if b[start..].starts_with(&known.text) {
                self.i += known.text.len();
                return Some((Arc::clone(&known.items), true));
            }
        }
        let items = read(self)?;
        if let Some(cache) = cache {
            *cache = (self.i - start <= max).then(|| Known {
                text: b[start..self.i].into(),
                items: Arc::clone(&items),
            });
        }
        Some((items, false))
    }
}

/// The keys of a row document in the order wal2json writes them.
const ORDER: &[Key] = &[
    Key::new("action"),
    Key::new("xid"),
    Key::new("timestamp"),
    Key::new("origin"),
    Key::new("lsn"),
    Key::new("schema"),
    Key::new("table"),
    Key::new("columns"),
    Key::new("identity"),
    Key::new("pk"),
];

/// A row change, or `None` to let the serde path decide.
pub(super) fn row(data: &[u8], headers: &mut Headers) -> Option<Change> {
    // wal2json writes `action` first: a begin, commit, message or truncate defers
    // before any scanning.
    if data.starts_with(br#"{"action":""#) && !matches!(data.get(11), Some(b'I' | b'U' | b'D')) {
        return None;
    }
    // One validation of the whole document: every slice below is then a `str`.
    let text = simdutf8::basic::from_utf8(data).ok()?;
    // wal2json escapes control characters inside strings and writes no newlines
    // between a row's tokens, so a document without any needs no check per string.
    // `plain_str` and `value` rely on this check: serde refuses a raw control
    // character inside a string, and they do not look for one.
    if has_control_byte(data) {
        return None;
    }
    let mut s = Scanner::new(text);
    let mut cached = headers.row();
    let mut kind = None;
    let mut lsn = None;
    let (mut schema, mut table) = (None, None);
    let (mut columns, mut identity, mut pk) = (None, None, None);
    let mut columns_tag = 0;
    s.document(ORDER, |s, key| {
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
                // wal2json writes schema and table before the columns; without a
                // table, no cache.
                let mut cache = cached.get(schema, table);
                // Retired before reading: a header read changes the cache, and a row
                // that fails after that must not leave the tag standing.
                let kept = cache.as_mut().map_or(0, |t| std::mem::take(&mut t.tag));
                let (read, all_known) = s.columns(cache.as_mut().map(|t| &mut t.columns))?;
                if let Some(t) = cache.filter(|_| all_known) {
                    t.tag = if kept != 0 && t.tag_len == read.len() {
                        kept
                    } else {
                        t.tag_len = read.len();
                        new_tag()
                    };
                    columns_tag = t.tag;
                }
                columns = Some(read);
                16
            }
            "identity" => {
                identity = Some(s.columns(None)?.0);
                32
            }
            "pk" => {
                let cache = cached.get(schema, table).map(|t| &mut t.pk);
                pk = Some(s.known(cache, MAX_PK, |s| Some(s.pk()?.into()))?.0);
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
        columns_tag,
    })
}

impl<'a> Scanner<'a> {
    /// A column as wal2json prints it, `{"name":"..","type":"..","value":..}` with
    /// no spaces and no other keys: read without matching keys, its header taken
    /// from `cache[at]` when the bytes are the same. `None` leaves the cursor where
    /// it was, for the general reading.
    fn printed_column(
        &mut self,
        cache: Option<&mut Vec<Header>>,
        at: usize,
    ) -> Option<(Column, bool)> {
        let (b, start) = (self.b, self.i);
        let column = match cache.as_deref().and_then(|c| c.get(at)) {
            Some(known) if b[start..].starts_with(&known.text) => {
                self.i += known.text.len();
                let value = self.value();
                value.filter(|_| self.take(b"}")).map(|value| {
                    let column = Column {
                        name: known.name.clone(),
                        value: Json::scanned(value),
                        ty: known.ty,
                    };
                    (column, true)
                })
            }
            _ => self.printed_header().and_then(|(name, ty, end)| {
                let value = self.value()?;
                if !self.take(b"}") {
                    return None;
                }
                let column = Column {
                    name: name.into(),
                    value: Json::scanned(value),
                    ty: ColumnType::of(ty),
                };
                let fits = at < MAX_COLUMNS && end - start <= MAX_HEADER;
                if let Some(cache) = cache.filter(|c| fits && c.len() >= at) {
                    let header = Header {
                        text: b[start..end].to_vec(),
                        name: column.name.clone(),
                        ty: column.ty,
                    };
                    match cache.get_mut(at) {
                        Some(slot) => *slot = header,
                        None => cache.push(header),
                    }
                }
                Some((column, false))
            }),
        };
        if column.is_none() {
            self.i = start;
        }
        column
    }

    /// `{"name":"..","type":"..","value":` at the cursor: the name, the type, and
    /// where the value starts.
    fn printed_header(&mut self) -> Option<(&'a str, &'a str, usize)> {
        if !self.take(br#"{"name":""#) {
            return None;
        }
        let name = self.plain_str_body()?;
        if !self.take(br#","type":""#) {
            return None;
        }
        let ty = self.plain_str_body()?;
        self.take(br#","value":"#).then_some((name, ty, self.i))
    }

    /// `[{"name": .., "type": .., "value": .., ...}, ...]`, with the table's cached
    /// headers when it has some; and whether every header was the cached one (the
    /// first that is not changes the cache, and says no).
    fn columns(&mut self, mut cache: Option<&mut Vec<Header>>) -> Option<(Vec<Column>, bool)> {
        let mut out = Vec::with_capacity(8);
        let mut all_known = cache.is_some();
        self.array(|s| {
            if let Some((column, known)) = s.printed_column(cache.as_deref_mut(), out.len()) {
                all_known &= known;
                out.push(column);
                return Some(());
            }
            all_known = false;
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
        Some((out, all_known))
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
