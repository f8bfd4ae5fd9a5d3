//! The wal2json `add-tables` / `filter-tables` options a slot's `tables:` list
//! implies, merged with the user's own `options`.
//!
//! Owns the rule that the server-side filters never drop a table the list streams
//! (client-side matching in `record::tables` stays the backstop). It reads the
//! validated [`TablesConfig`] and never re-checks it.

use super::file::SlotFile;
use super::table_glob::may_overlap;
use super::tables_keys::TablesConfig;
use super::{ConfigError, Source};

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
