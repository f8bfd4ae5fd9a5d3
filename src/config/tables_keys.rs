//! A slot's `tables:` list (per-table routing, filtering, key and column rules) and
//! `mask_salt`, and the wal2json table filters derived from the list.
//!
//! Owns the entry keys, the `match` glob syntax and every rule that makes an entry
//! useless or ambiguous (a glob that can never match, an entry an earlier one
//! shadows, a column named twice), each reported with file:line:col and a fix. It
//! never matches a table at run time: `record::tables` does, with [`TableGlob`].

use super::file::{SlotFile, Value};
use super::suggest::closest;
use super::table_glob::{table_glob, NameGlob, TableGlob};
use super::value::{partition_key, stream_name, text, Lookup};
use super::yaml::Node;
use super::{ConfigError, PartitionKey, Secret, Source};

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

impl TableEntry {
    /// An entry matching `glob` that changes nothing: every other key at its default.
    pub fn matching(glob: TableGlob) -> Self {
        TableEntry {
            glob,
            skip: false,
            stream: None,
            partition_key: None,
            exclude_columns: Vec::new(),
            mask_columns: Vec::new(),
            partition_root: None,
            oversize: None,
        }
    }
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
    let mut e = TableEntry::matching(TableGlob {
        schema: NameGlob::parse("*"),
        table: NameGlob::parse("*"),
        text: String::new(),
    });
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

#[cfg(test)]
mod tests;
