//! A slot's `tables:` list (per-table routing, filtering, key and column rules) and
//! `mask_salt`, and the wal2json table filters derived from the list.
//!
//! Owns the entry keys, the `match` glob syntax and every rule that makes an entry
//! useless or ambiguous (a glob that can never match, an entry an earlier one
//! shadows, a column named twice), each reported with file:line:col and a fix. It
//! never matches a table at run time: `record::tables` does, with [`TableGlob`].

use super::file::{SlotFile, Value};
use super::slot::{partition_key, stream_name, text};
use super::validate::closest;
use super::yaml::Node;
use super::{ConfigError, PartitionKey, Secret, Source};

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The keys of one `tables:` entry.
pub const TABLE_ENTRY_KEYS: &[&str] = &[
    "match",
    "skip",
    "stream",
    "partition_key",
    "exclude_columns",
    "mask_columns",
    "partition_root",
    "oversize",
];

/// PostgreSQL names are at most NAMEDATALEN - 1 = 63 bytes: a longer literal part
/// can never name a table.
const PG_MAX_NAME_BYTES: usize = 63;

/// How a masked column's value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskMethod {
    /// The hex SHA-256 of `mask_salt` followed by the value's JSON text, as a JSON
    /// string: equal values stay equal (joins and counts still work).
    Sha256,
    /// The JSON string `"***"`.
    Redact,
}

const MASK_METHODS: &[&str] = &["sha256", "redact"];

/// The per-table `oversize` override (wired to the oversize feature by the slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOversize {
    Fail,
    S3,
}

/// One part of a `match` (schema or table): a glob where `*` matches any run of
/// characters (`\*` a literal star).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    /// Literal pieces between the stars, unescaped; one piece = no star.
    pieces: Vec<String>,
}

impl NameGlob {
    fn parse(part: &str) -> NameGlob {
        let mut pieces = vec![String::new()];
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let (Some(n), Some(last)) = (chars.next(), pieces.last_mut()) {
                        last.push(n);
                    }
                }
                '*' => pieces.push(String::new()),
                c => {
                    if let Some(last) = pieces.last_mut() {
                        last.push(c);
                    }
                }
            }
        }
        NameGlob { pieces }
    }

    /// The name, when the part has no `*`.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// `*` alone: every name.
    pub fn is_any(&self) -> bool {
        self.pieces.len() == 2 && self.pieces.iter().all(String::is_empty)
    }

    /// The fewest bytes a matching name has.
    fn min_len(&self) -> usize {
        self.pieces.iter().map(String::len).sum()
    }

    pub fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return name.is_empty(),
        };
        let Some(last) = rest.last() else {
            return name == first;
        };
        let Some(mut tail) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        for middle in &rest[..rest.len() - 1] {
            match tail.find(middle.as_str()) {
                Some(at) => tail = &tail[at + middle.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }

    /// Every name this glob matches, `other` matches too (a sure answer only; a
    /// `false` may be conservative).
    fn covers(&self, other: &NameGlob) -> bool {
        self.is_any() || self == other || other.literal().is_some_and(|name| self.matches(name))
    }
}

/// A `match` value: `schema.table`, either part a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableGlob {
    pub schema: NameGlob,
    pub table: NameGlob,
    /// As written, for messages.
    pub text: String,
}

impl TableGlob {
    /// `schema.table` as `match` takes it (unchecked: the config check is `table_glob`).
    pub fn parse(text: &str) -> Option<TableGlob> {
        let (schema, table) = split_first_dot(text)?;
        Some(TableGlob {
            schema: NameGlob::parse(schema),
            table: NameGlob::parse(table),
            text: text.to_string(),
        })
    }

    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.matches(schema) && self.table.matches(table)
    }

    fn covers(&self, other: &TableGlob) -> bool {
        self.schema.covers(&other.schema) && self.table.covers(&other.table)
    }

    /// The same tables as one wal2json `add-tables`/`filter-tables` entry, when
    /// wal2json can say it: literal names, or `*` as a whole part.
    pub fn wal2json_entry(&self) -> Option<String> {
        let part = |g: &NameGlob| -> Option<String> {
            if g.is_any() {
                return Some("*".into());
            }
            let name = g.literal()?;
            // wal2json trims blanks around an entry: such a name cannot be said.
            if name.trim() != name {
                return None;
            }
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                if matches!(c, ',' | '.' | '\\' | '*' | ' ' | '\'') {
                    out.push('\\');
                }
                out.push(c);
            }
            Some(out)
        };
        Some(format!("{}.{}", part(&self.schema)?, part(&self.table)?))
    }
}

/// One `tables:` entry, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub glob: TableGlob,
    /// Never put this table's changes on any stream.
    pub skip: bool,
    /// The stream its records go to; `None` = the slot's `kns_stream`.
    pub stream: Option<String>,
    /// Overrides the slot's `partition_key` for these tables.
    pub partition_key: Option<PartitionKey>,
    /// Columns left out of every record (`data`, `old`, both halves of a key change,
    /// backfilled rows).
    pub exclude_columns: Vec<String>,
    /// Columns whose values are replaced, in file order.
    pub mask_columns: Vec<(String, MaskMethod)>,
    /// Overrides the slot's `partition_root`.
    pub partition_root: Option<bool>,
    /// Overrides the slot's `oversize`.
    pub oversize: Option<TableOversize>,
}

/// A slot's table rules: `tables:` in file order (the first matching entry wins)
/// and `mask_salt`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TablesConfig {
    pub entries: Vec<TableEntry>,
    /// Salt of `sha256` masks; `None` = unsalted (a warning at start-up).
    pub mask_salt: Option<SaltSecret>,
}

/// `mask_salt`: redacted in `Debug`, comparable for config reloads.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltSecret(pub Secret);

impl std::fmt::Debug for SaltSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltSecret(***)")
    }
}

impl TablesConfig {
    /// The streams the entries route to besides `kns_stream`, distinct, in file order.
    pub fn extra_streams<'a>(&'a self, kns_stream: &'a str) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for s in self.entries.iter().filter_map(|e| e.stream.as_deref()) {
            if s != kns_stream && !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The entry that decides `schema.table`: the first whose `match` fits it.
    pub fn entry_for(&self, schema: &str, table: &str) -> Option<&TableEntry> {
        self.entries.iter().find(|e| e.glob.matches(schema, table))
    }

    /// Whether any entry masks with `sha256`.
    pub fn hashes(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.mask_columns.iter().any(|(_, m)| *m == MaskMethod::Sha256))
    }
}

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    lookup: Lookup<'_>,
) -> Result<TablesConfig, ConfigError> {
    let mask_salt = match &raw.mask_salt {
        None => None,
        Some(v) => Some(text(src, v, &place("mask_salt"), lookup)?)
            .filter(|s| !s.is_empty())
            .map(|s| SaltSecret(Secret::new(s))),
    };
    let Some(list) = &raw.tables else {
        return Ok(TablesConfig {
            entries: Vec::new(),
            mask_salt,
        });
    };
    let items = match &list.value {
        Node::Seq(items) => items,
        Node::Null => &Vec::new(),
        other => {
            return Err(src.at(
                list,
                format!(
                    "{}: expected a list of entries (`- match: public.orders`), found {}",
                    place("tables"),
                    other.kind()
                ),
            ))
        }
    };
    let mut entries: Vec<(TableEntry, &Value)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = format!("{}, entry {}", place("tables"), i + 1);
        let entry = entry(src, raw, item, &here, lookup)?;
        if let Some((earlier, at)) = entries.iter().find(|(e, _)| e.glob.covers(&entry.glob)) {
            return Err(src.at(
                item,
                format!(
                    "{here}: `match: {}` can never match: the entry at line {} (`match: {}`) \
                     comes first and matches every table this one would (the first matching \
                     entry wins); move this entry above it, or remove it",
                    entry.glob.text,
                    at.referenced.line(),
                    earlier.glob.text
                ),
            ));
        }
        entries.push((entry, item));
    }
    Ok(TablesConfig {
        entries: entries.into_iter().map(|(e, _)| e).collect(),
        mask_salt,
    })
}

fn entry(
    src: &Source<'_>,
    raw: &SlotFile,
    item: &Value,
    here: &str,
    lookup: Lookup<'_>,
) -> Result<TableEntry, ConfigError> {
    let Node::Map(fields) = &item.value else {
        return Err(src.at(
            item,
            format!(
                "{here}: expected a mapping such as `- match: public.orders`, found {}",
                item.value.kind()
            ),
        ));
    };
    let mut glob = None;
    let mut e = TableEntry {
        glob: TableGlob {
            schema: NameGlob::parse("*"),
            table: NameGlob::parse("*"),
            text: String::new(),
        },
        skip: false,
        stream: None,
        partition_key: None,
        exclude_columns: Vec::new(),
        mask_columns: Vec::new(),
        partition_root: None,
        oversize: None,
    };
    let mut skip_at = None;
    let mut routed_at: Option<(&Value, &str)> = None;
    let mut columns: Vec<(String, &Value)> = Vec::new();
    for (key, value) in fields {
        let name = key.value.scalar_text().unwrap_or_default();
        let at_key = |what: &str| format!("{here}, key `{what}`");
        match name.as_str() {
            "match" => glob = Some(table_glob(src, value, &at_key("match"))?),
            "skip" => {
                e.skip = src.flag(&Some(value.clone()), &at_key("skip"), false)?;
                skip_at = Some(value);
            }
            "stream" => {
                e.stream = Some(stream_name(src, value, &at_key("stream"), lookup)?);
                routed_at = Some((value, "stream"));
            }
            "partition_key" => {
                e.partition_key = Some(partition_key(src, value, &at_key("partition_key"))?);
                routed_at = Some((value, "partition_key"));
            }
            "exclude_columns" => {
                let Node::Seq(names) = &value.value else {
                    return Err(src.at(
                        value,
                        format!(
                            "{}: expected a list of column names, e.g. `[card_number]`",
                            at_key("exclude_columns")
                        ),
                    ));
                };
                for n in names {
                    let col = column_name(src, n, &at_key("exclude_columns"), &columns)?;
                    columns.push((col.clone(), n));
                    e.exclude_columns.push(col);
                }
                routed_at = Some((value, "exclude_columns"));
            }
            "mask_columns" => {
                let Node::Map(masks) = &value.value else {
                    return Err(src.at(
                        value,
                        format!(
                            "{}: expected a mapping of column to method, e.g. `{{email: sha256}}`",
                            at_key("mask_columns")
                        ),
                    ));
                };
                for (col_node, method) in masks {
                    let col = column_name(src, col_node, &at_key("mask_columns"), &columns)?;
                    let m = match method.value.scalar_text().as_deref() {
                        Some("sha256") => MaskMethod::Sha256,
                        Some("redact") => MaskMethod::Redact,
                        other => {
                            let hint = other
                                .and_then(|o| closest(o, MASK_METHODS))
                                .map(|c| format!("did you mean `{c}`? "))
                                .unwrap_or_default();
                            return Err(src.at(
                                method,
                                format!(
                                    "{}: unknown mask method {} for column `{col}`; {hint}use \
                                     `sha256` (hex hash, salted by `mask_salt`) or `redact` (`\"***\"`)",
                                    at_key("mask_columns"),
                                    method.value.show()
                                ),
                            ));
                        }
                    };
                    columns.push((col.clone(), col_node));
                    e.mask_columns.push((col, m));
                }
                routed_at = Some((value, "mask_columns"));
            }
            "partition_root" => {
                e.partition_root =
                    Some(src.flag(&Some(value.clone()), &at_key("partition_root"), false)?);
            }
            "oversize" => {
                e.oversize = Some(match value.value.scalar_text().as_deref() {
                    Some("fail") => TableOversize::Fail,
                    Some("s3") if raw.oversize_bucket.is_none() => {
                        return Err(src.at(
                            value,
                            format!(
                                "{}: `s3` needs the slot's `oversize_bucket`; add \
                                 `oversize_bucket: <bucket>` to the slot (the CDK stack \
                                 sets ${{PG_CDC_OVERSIZE_BUCKET}}), or use `fail`",
                                at_key("oversize")
                            ),
                        ))
                    }
                    Some("s3") => TableOversize::S3,
                    _ => {
                        return Err(src.at(
                            value,
                            format!(
                                "{}: expected `fail` or `s3`, found {}",
                                at_key("oversize"),
                                value.value.show()
                            ),
                        ))
                    }
                });
            }
            _ => {
                let hint = closest(&name, TABLE_ENTRY_KEYS)
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                return Err(src.at(
                    key,
                    format!(
                        "{here}: unknown key {}; {hint}known keys: {}",
                        key.value.show(),
                        TABLE_ENTRY_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    let Some(glob) = glob else {
        return Err(src.at(
            item,
            format!(
                "{here}: missing `match`; every entry names the tables it applies to, e.g. \
                 `- match: public.orders` or `- match: public.*`"
            ),
        ));
    };
    e.glob = glob;
    if let (true, Some(_), Some((value, key))) = (e.skip, skip_at, routed_at) {
        return Err(src.at(
            value,
            format!(
                "{here}: `{key}` has no effect with `skip: true` (a skipped table is never \
                 put on any stream); remove `{key}`, or `skip`"
            ),
        ));
    }
    Ok(e)
}

/// A column name not already named in this entry's `exclude_columns`/`mask_columns`.
fn column_name(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    seen: &[(String, &Value)],
) -> Result<String, ConfigError> {
    let name = match &v.value {
        Node::Str(s) if !s.is_empty() => s.clone(),
        other => {
            return Err(src.at(
                v,
                format!(
                    "{place}: column names must be non-empty text, got {}",
                    other.show()
                ),
            ))
        }
    };
    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
        return Err(src.at(
            v,
            format!(
                "{place}: column `{name}` is named twice in this entry (first at line {}, \
                 column {}); a column is either excluded or masked once: remove one",
                first.referenced.line(),
                first.referenced.column()
            ),
        ));
    }
    Ok(name)
}

/// `schema.table`, split at the first `.` not escaped by `\`; `*` in either part is
/// a glob. Quoted PostgreSQL names may hold any character, so only what certainly
/// names no table is refused: no `.`, an empty part, a part longer than 63 bytes.
fn table_glob(src: &Source<'_>, v: &Value, place: &str) -> Result<TableGlob, ConfigError> {
    let Node::Str(written) = &v.value else {
        return Err(src.at(
            v,
            format!(
                "{place}: expected `schema.table` (either part may use `*`), found {}",
                v.value.show()
            ),
        ));
    };
    let fix = "write `schema.table`, e.g. `public.orders`, `public.*` or `*.audit_*` (escape \
               a `.` or `*` that is part of a name with `\\`)";
    let (schema, table) = split_first_dot(written).ok_or_else(|| {
        src.at(
            v,
            format!("{place}: `{written}` can never match a table: there is no `.` between schema and table; {fix}"),
        )
    })?;
    for (part, what) in [(schema, "schema"), (table, "table")] {
        if part.is_empty() {
            return Err(src.at(
                v,
                format!(
                    "{place}: `{written}` can never match a table: the {what} name is empty; {fix}"
                ),
            ));
        }
        let glob = NameGlob::parse(part);
        if glob.min_len() > PG_MAX_NAME_BYTES {
            return Err(src.at(
                v,
                format!(
                    "{place}: `{written}` can never match a table: the {what} name is longer than \
                     PostgreSQL's {PG_MAX_NAME_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(TableGlob {
        schema: NameGlob::parse(schema),
        table: NameGlob::parse(table),
        text: written.clone(),
    })
}

/// `value` split at its first `.` not escaped by `\` (escapes kept).
fn split_first_dot(value: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '.' => return Some((&value[..i], &value[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The wal2json options the list adds to the user's, or an error when the user's
/// own `add-tables` would have to be merged with one derived here.
///
/// - `filter-tables`: each `skip` entry wal2json can express whose tables no earlier
///   entry may claim (the first matching entry wins, so an earlier routed entry
///   keeps its tables).
/// - `add-tables`: when a `skip` entry matches every table (`*.*`), only the earlier
///   entries' tables are ever streamed; named server-side when wal2json can express
///   each of them.
///
/// Client-side matching stays the backstop either way.
pub(super) fn wal2json_filters(
    src: &Source<'_>,
    raw: &SlotFile,
    tables: &TablesConfig,
    user: &[(String, String)],
    place: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut filter: Vec<String> = Vec::new();
    let mut add: Option<Vec<String>> = None;
    for (i, entry) in tables.entries.iter().enumerate() {
        if !entry.skip {
            continue;
        }
        let earlier = &tables.entries[..i];
        if entry.glob.schema.is_any() && entry.glob.table.is_any() {
            add = earlier
                .iter()
                .map(|e| e.glob.wal2json_entry())
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty());
            break;
        }
        let claimed = earlier
            .iter()
            .any(|e| !e.skip && may_overlap(&e.glob, &entry.glob));
        if let (false, Some(server)) = (claimed, entry.glob.wal2json_entry()) {
            filter.push(server);
        }
    }
    let user_has = |name: &str| user.iter().any(|(n, _)| n == name);
    let mut out = Vec::new();
    if let Some(add) = add {
        if user_has("add-tables") {
            let at = raw.tables.as_ref().map(|v| v.referenced);
            return Err(src.error(
                at.as_ref(),
                format!(
                    "{}: the list ends in a `skip` of every table, so it chooses the streamed \
                     tables ({}), and `options: add-tables` chooses them too; keep one: remove \
                     `add-tables` from `options`, or remove the `match: '*.*'` skip entry",
                    place("tables"),
                    add.join(", ")
                ),
            ));
        }
        out.push(("add-tables".to_string(), add.join(",")));
    }
    if !filter.is_empty() {
        // The user's own filter-tables still applies: both lists drop tables.
        let mut value = user
            .iter()
            .rev()
            .find(|(n, _)| n == "filter-tables")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.trim().is_empty())
            .into_iter()
            .collect::<Vec<_>>();
        value.extend(filter);
        out.push(("filter-tables".to_string(), value.join(",")));
    }
    Ok(out)
}

/// Whether some table could match both globs (`true` when unsure).
fn may_overlap(a: &TableGlob, b: &TableGlob) -> bool {
    let part = |x: &NameGlob, y: &NameGlob| match (x.literal(), y.literal()) {
        (Some(l), _) => y.matches(l),
        (_, Some(l)) => x.matches(l),
        _ => true,
    };
    part(&a.schema, &b.schema) && part(&a.table, &b.table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> NameGlob {
        NameGlob::parse(s)
    }

    #[test]
    fn globs_match_prefixes_suffixes_and_middles() {
        assert!(glob("*").matches("") && glob("*").matches("orders"));
        assert!(glob("audit_*").matches("audit_log") && !glob("audit_*").matches("xaudit_log"));
        assert!(glob("*_log").matches("audit_log") && !glob("*_log").matches("audit_logs"));
        assert!(glob("a*b*c").matches("abc") && glob("a*b*c").matches("axxbyyc"));
        assert!(!glob("a*b*c").matches("acb") && !glob("ab*ab").matches("aba"));
        assert!(glob(r"a\*").matches("a*") && !glob(r"a\*").matches("ab"));
        assert_eq!(glob("orders").literal(), Some("orders"));
    }

    #[test]
    fn wal2json_can_say_literals_and_whole_part_stars_only() {
        let g = |s: &str, t: &str| TableGlob {
            schema: glob(s),
            table: glob(t),
            text: String::new(),
        };
        assert_eq!(
            g("public", "orders").wal2json_entry().as_deref(),
            Some("public.orders")
        );
        assert_eq!(g("*", "t").wal2json_entry().as_deref(), Some("*.t"));
        assert_eq!(
            g("my.s", "a,b").wal2json_entry().as_deref(),
            Some(r"my\.s.a\,b")
        );
        assert_eq!(g("public", "audit_*").wal2json_entry(), None);
        let written = g("my.s", "a,b*").wal2json_entry();
        assert_eq!(
            written, None,
            "a star inside a name part is a glob, not said"
        );
    }

    #[test]
    fn overlap_is_ruled_out_only_when_certain() {
        let g = |s: &str, t: &str| TableGlob {
            schema: glob(s),
            table: glob(t),
            text: String::new(),
        };
        assert!(!may_overlap(
            &g("public", "orders"),
            &g("public", "audit_*")
        ));
        assert!(may_overlap(&g("public", "orders"), &g("public", "*")));
        assert!(may_overlap(&g("*", "a*"), &g("public", "*b")));
        assert!(!may_overlap(&g("sales", "*"), &g("public", "*")));
    }

    fn load(tables: &str, extra: &str) -> Result<super::super::Config, ConfigError> {
        let text = format!(
            "replication_slots:\n  - s:\n      host: db\n      user: u\n      db_name: d\n      \
             kns_stream: main\n{extra}      tables:\n{tables}"
        );
        let env = |name: &str| (name == "SALT").then(|| "pepper".to_string());
        super::super::Config::from_text(std::path::Path::new("t.yml"), &text, &env)
    }

    fn slot(tables: &str, extra: &str) -> super::super::SlotConfig {
        match load(tables, extra) {
            Ok(c) => c.slots.into_iter().next().unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    fn option<'a>(s: &'a super::super::SlotConfig, name: &str) -> Option<&'a str> {
        s.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_entry_key_is_read() {
        let s = slot(
            "        - match: public.orders\n          stream: orders-cdc\n          \
             partition_key: {columns: [tenant]}\n          exclude_columns: [card_number]\n          \
             mask_columns: {email: sha256, name: redact}\n          partition_root: true\n          \
             oversize: s3\n        - match: '*.audit_*'\n          skip: true\n",
            "      mask_salt: ${SALT}\n      oversize_bucket: claims\n",
        );
        let e = &s.tables.entries[0];
        assert_eq!(e.stream.as_deref(), Some("orders-cdc"));
        assert_eq!(
            e.partition_key,
            Some(PartitionKey::Columns(vec!["tenant".into()]))
        );
        assert_eq!(e.exclude_columns, ["card_number"]);
        assert_eq!(
            e.mask_columns,
            [
                ("email".to_string(), MaskMethod::Sha256),
                ("name".to_string(), MaskMethod::Redact)
            ]
        );
        assert_eq!(
            (e.partition_root, e.oversize),
            (Some(true), Some(TableOversize::S3))
        );
        assert!(s.tables.entries[1].skip && s.tables.entries[1].glob.matches("x", "audit_1"));
        assert_eq!(
            s.tables.mask_salt.as_ref().map(|m| m.0.expose()),
            Some("pepper")
        );
        assert!(!format!("{s:?}").contains("pepper"), "the salt is redacted");
        assert_eq!(s.streams(), ["main", "orders-cdc"]);
        // `*.audit_*` is a glob wal2json cannot say: no server-side filter.
        assert_eq!(option(&s, "filter-tables"), None);
    }

    #[test]
    fn an_entry_with_oversize_s3_needs_the_slots_bucket() {
        let e = load("        - match: public.docs\n          oversize: s3\n", "")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yml:9:21:"), "{e}");
        assert!(e.contains("`oversize_bucket`"), "{e}");
        let s = slot(
            "        - match: public.docs\n          oversize: s3\n",
            "      oversize_bucket: claims\n",
        );
        assert_eq!(s.tables.entries[0].oversize, Some(TableOversize::S3));
    }

    #[test]
    fn without_tables_nothing_changes() {
        let text = "replication_slots:\n  - s:\n      host: db\n      user: u\n      db_name: d\n      kns_stream: main\n";
        let c = super::super::Config::from_text(std::path::Path::new("t.yml"), text, &|_| None)
            .unwrap();
        assert_eq!(c.slots[0].tables, TablesConfig::default());
        assert!(c.slots[0].options.is_empty());
        assert_eq!(c.slots[0].streams(), ["main"]);
    }

    #[test]
    fn skips_wal2json_can_say_become_filter_tables_unless_an_earlier_entry_claims_them() {
        let s = slot(
            "        - match: public.orders\n          stream: o\n        - match: public.*\n          \
             skip: true\n        - match: audit.*\n          skip: true\n        - match: 'x.log'\n          \
             skip: true\n",
            "      options: {filter-tables: 'tmp.*'}\n",
        );
        // public.* would also drop public.orders, routed by the entry before it.
        assert_eq!(option(&s, "filter-tables"), Some("tmp.*,audit.*,x.log"));
        assert_eq!(option(&s, "add-tables"), None);
    }

    #[test]
    fn a_final_skip_of_everything_becomes_add_tables() {
        let s = slot(
            "        - match: public.orders\n          stream: o\n        - match: 'sales.*'\n        \
             - match: '*.*'\n          skip: true\n",
            "",
        );
        assert_eq!(option(&s, "add-tables"), Some("public.orders,sales.*"));
        // A glob wal2json cannot say keeps everything decoded; matching drops the rest.
        let s = slot(
            "        - match: public.order_*\n        - match: '*.*'\n          skip: true\n",
            "",
        );
        assert_eq!(option(&s, "add-tables"), None);
    }

    #[test]
    fn quoted_names_with_dots_and_stars_are_legal_when_escaped() {
        let s = slot(
            "        - match: 'my\\.schema.Odd Name'\n          skip: true\n",
            "",
        );
        let g = &s.tables.entries[0].glob;
        assert!(g.matches("my.schema", "Odd Name") && !g.matches("my", "schema"));
        assert_eq!(option(&s, "filter-tables"), Some(r"my\.schema.Odd\ Name"));
    }
}
