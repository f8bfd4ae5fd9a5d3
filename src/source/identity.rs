//! Replica identities and the start-up check that every streamed table's identity
//! carries its partition-key columns.
//!
//! A row's partition key is read from its new row in an insert or update and from
//! its identity in a delete (and in the old half of a key change). If the identity
//! lacks a key column, the delete cannot be given the row's key; sent under the table
//! key it could overtake the row's insert. So a slot refuses to start when a table it
//! streams has such an identity, and names the table and the fix. It never changes a
//! table, and it decides only from the catalog and the wal2json options.
//!
//! What wal2json 2.5 sends (PostgreSQL 15, checked in `tests/source.rs`):
//!
//! | `REPLICA IDENTITY` | identity of every update and delete | `pk` (format 2 / format 1) |
//! |---|---|---|
//! | `DEFAULT` with a primary key | the primary-key columns | sent / sent |
//! | `USING INDEX i` | the columns of `i` | sent / not sent |
//! | `FULL` | every column | sent / not sent |
//! | `NOTHING`, `DEFAULT` without a primary key | updates and deletes are skipped | – |
//!
//! So `primary_key` can only break under format 2 with `USING INDEX` on an index
//! that lacks a primary-key column (format 1 keys those tables by the table, which is
//! consistent), and `{columns: [...]}` wherever a table has all the named columns but
//! its identity does not carry them. A table without every named column is keyed by
//! the table throughout, which is consistent.

use tokio_postgres::Client;

use super::SourceError;
use crate::config::PartitionKey;
use crate::decode::{table_patterns, FormatVersion, TablePattern};

/// How many tables a refusal names.
const MAX_NAMED: usize = 10;

/// One table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableIdentity {
    pub schema: String,
    pub table: String,
    /// `pg_class.relreplident`: `d` default, `i` index, `f` full, `n` nothing.
    pub replident: char,
    pub columns: Vec<String>,
    pub primary_key: Vec<String>,
    /// The `USING INDEX` index's name and columns.
    pub identity_index: Option<(String, Vec<String>)>,
}

impl TableIdentity {
    /// The columns an update's or delete's identity carries; `None` when wal2json
    /// sends no update or delete of the table.
    fn identity_columns(&self) -> Option<&[String]> {
        match self.replident {
            'd' if !self.primary_key.is_empty() => Some(&self.primary_key),
            'i' => self.identity_index.as_ref().map(|(_, c)| c.as_slice()),
            'f' => Some(&self.columns),
            _ => None,
        }
    }

    fn describe_identity(&self) -> String {
        match (self.replident, &self.identity_index) {
            ('i', Some((index, columns))) => {
                format!(
                    "REPLICA IDENTITY USING INDEX {index} carries {}",
                    columns.join(", ")
                )
            }
            ('f', _) => "REPLICA IDENTITY FULL".into(),
            _ => format!(
                "REPLICA IDENTITY DEFAULT carries {}",
                self.primary_key.join(", ")
            ),
        }
    }
}

/// The columns `rule` keys a table's rows by, as wal2json will name them.
fn key_columns<'a>(
    rule: &'a PartitionKey,
    table: &'a TableIdentity,
    format: FormatVersion,
    include_pk: bool,
) -> Option<&'a [String]> {
    let columns: &[String] = match rule {
        PartitionKey::Table | PartitionKey::Fixed(_) => return None,
        PartitionKey::PrimaryKey if !include_pk => return None,
        PartitionKey::PrimaryKey => match format {
            FormatVersion::V2 => &table.primary_key,
            FormatVersion::V1 if table.replident == 'd' => &table.primary_key,
            FormatVersion::V1 => return None,
        },
        PartitionKey::Columns(names) if names.iter().all(|n| table.columns.contains(n)) => names,
        PartitionKey::Columns(_) => return None,
    };
    (!columns.is_empty()).then_some(columns)
}

/// Some tables' identities lack their partition-key columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "with partition_key {rule}, a delete or key-changing update of {} could not carry its row's key \
     and could overtake the row's earlier changes: {}{}. Make each identity carry the key (ALTER TABLE … \
     REPLICA IDENTITY FULL, or USING INDEX on a unique index that contains the key columns), stop \
     streaming the table (wal2json option filter-tables), or set partition_key: table",
    if .tables.len() == 1 { "this table" } else { "these tables" },
    .tables.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join("; "),
    if .tables.len() > MAX_NAMED { format!("; and {} more", .tables.len() - MAX_NAMED) } else { String::new() }
)]
pub struct IdentityLacksKey {
    pub rule: String,
    /// `schema.table (what its identity carries, what is missing)`.
    pub tables: Vec<String>,
}

/// Refuses `rule` when a table the slot streams (per `options`, the wal2json options
/// sent) has an identity without the table's key columns.
/// The streamed tables without a primary key (`schema.table`): under
/// `partition_key: primary_key` each of them is one hot key.
pub fn keyless_tables(options: &[(String, String)], tables: &[TableIdentity]) -> Vec<String> {
    let add = option(options, "add-tables").map(TablePatterns::parse);
    let filter = option(options, "filter-tables").map(TablePatterns::parse);
    tables
        .iter()
        .filter(|t| {
            t.primary_key.is_empty()
                && add.as_ref().is_none_or(|p| p.matches(&t.schema, &t.table))
                && !filter
                    .as_ref()
                    .is_some_and(|p| p.matches(&t.schema, &t.table))
        })
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect()
}

pub fn check_identities(
    rule: &PartitionKey,
    options: &[(String, String)],
    format: FormatVersion,
    tables: &[TableIdentity],
) -> Result<(), IdentityLacksKey> {
    let include_pk = option(options, "include-pk").is_none_or(is_true);
    let add = option(options, "add-tables").map(TablePatterns::parse);
    let filter = option(options, "filter-tables").map(TablePatterns::parse);
    let mut bad = Vec::new();
    for t in tables {
        let streamed = add.as_ref().is_none_or(|p| p.matches(&t.schema, &t.table))
            && !filter
                .as_ref()
                .is_some_and(|p| p.matches(&t.schema, &t.table));
        let (Some(key), Some(identity)) = (
            key_columns(rule, t, format, include_pk),
            t.identity_columns(),
        ) else {
            continue;
        };
        let missing: Vec<&str> = key
            .iter()
            .filter(|k| !identity.contains(k))
            .map(String::as_str)
            .collect();
        if streamed && !missing.is_empty() {
            bad.push(format!(
                "{}.{} ({}, not {})",
                t.schema,
                t.table,
                t.describe_identity(),
                missing.join(", ")
            ));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let rule = match rule {
        PartitionKey::Columns(c) => format!("{{columns: [{}]}}", c.join(", ")),
        _ => "primary_key".into(),
    };
    Err(IdentityLacksKey { rule, tables: bad })
}

/// Every table wal2json may stream from the connected database: permanent ordinary
/// tables (leaf partitions included) outside the system schemas.
pub async fn table_identities(c: &Client) -> Result<Vec<TableIdentity>, SourceError> {
    let rows = c
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relreplident::text, \
               ARRAY(SELECT a.attname::text FROM pg_attribute a \
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum), \
               ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                     WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY a.attnum), \
               (SELECT i.indexrelid::regclass::text FROM pg_index i \
                     WHERE i.indrelid = c.oid AND i.indisreplident), \
               ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
                     WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY a.attnum) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND c.relpersistence = 'p' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
            &[],
        )
        .await
        .map_err(|e| super::slot::sql_error("the server", "reading replica identities", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let col = |e| super::slot::sql_error("the server", "reading replica identities", e);
        let replident: String = row.try_get(2).map_err(col)?;
        let index: Option<String> = row.try_get(5).map_err(col)?;
        let index_columns: Vec<String> = row.try_get(6).map_err(col)?;
        out.push(TableIdentity {
            schema: row.try_get(0).map_err(col)?,
            table: row.try_get(1).map_err(col)?,
            replident: replident.chars().next().unwrap_or('d'),
            columns: row.try_get(3).map_err(col)?,
            primary_key: row.try_get(4).map_err(col)?,
            identity_index: index.map(|name| (name, index_columns)),
        });
    }
    Ok(out)
}

fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_true(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "f" | "0" | "no" | "n" | "off"
    )
}

/// wal2json's `add-tables` / `filter-tables` value. Entries wal2json refuses are left
/// out: with one, the slot cannot start streaming anyway.
struct TablePatterns(Vec<TablePattern>);

impl TablePatterns {
    fn parse(value: &str) -> TablePatterns {
        TablePatterns(table_patterns(value).into_iter().flatten().collect())
    }

    fn matches(&self, schema: &str, table: &str) -> bool {
        self.0.iter().any(|p| {
            p.schema.as_deref().is_none_or(|s| s == schema)
                && p.table.as_deref().is_none_or(|t| t == table)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, replident: char, index: Option<&[&str]>) -> TableIdentity {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        TableIdentity {
            schema: "public".into(),
            table: name.into(),
            replident,
            columns: strings(&["id", "u", "region"]),
            primary_key: strings(&["id"]),
            identity_index: index.map(|c| (format!("{name}_idx"), strings(c))),
        }
    }

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keyless_tables_are_the_streamed_tables_without_a_primary_key() {
        let mut audit = table("audit_log", 'f', None);
        audit.primary_key.clear();
        let mut skipped = table("scratch", 'f', None);
        skipped.primary_key.clear();
        let tables = [table("orders", 'd', None), audit, skipped];
        assert_eq!(
            keyless_tables(&opts(&[("filter-tables", "public.scratch")]), &tables),
            ["public.audit_log"]
        );
        assert!(keyless_tables(&opts(&[("add-tables", "public.orders")]), &tables).is_empty());
    }

    #[test]
    fn primary_key_needs_the_key_in_a_using_index_identity_under_format_2() {
        let tables = [
            table("d", 'd', None),
            table("f", 'f', None),
            table("n", 'n', None),
            table("ok_idx", 'i', Some(&["u", "id"])),
            table("bad_idx", 'i', Some(&["u"])),
        ];
        let err = check_identities(&PartitionKey::PrimaryKey, &[], FormatVersion::V2, &tables)
            .unwrap_err();
        assert_eq!(
            err.tables,
            ["public.bad_idx (REPLICA IDENTITY USING INDEX bad_idx_idx carries u, not id)"]
        );
        let text = err.to_string();
        assert!(
            text.contains("partition_key primary_key") && text.contains("REPLICA IDENTITY FULL"),
            "{text}"
        );
        // Format 1 names no primary key for such a table: keyed by the table throughout.
        assert!(
            check_identities(&PartitionKey::PrimaryKey, &[], FormatVersion::V1, &tables).is_ok()
        );
        let no_pk = opts(&[("include-pk", "false")]);
        assert!(check_identities(
            &PartitionKey::PrimaryKey,
            &no_pk,
            FormatVersion::V2,
            &tables
        )
        .is_ok());
        assert!(check_identities(&PartitionKey::Table, &[], FormatVersion::V2, &tables).is_ok());
    }

    #[test]
    fn columns_must_be_in_the_identity_of_tables_that_have_them() {
        let region = PartitionKey::Columns(vec!["region".into()]);
        let tables = [table("d", 'd', None), table("f", 'f', None)];
        let err = check_identities(&region, &[], FormatVersion::V1, &tables).unwrap_err();
        assert_eq!(
            err.tables,
            ["public.d (REPLICA IDENTITY DEFAULT carries id, not region)"]
        );
        assert!(err.to_string().contains("{columns: [region]}"), "{err}");
        // A table without the column is keyed by the table throughout.
        let absent = PartitionKey::Columns(vec!["tenant".into()]);
        assert!(check_identities(&absent, &[], FormatVersion::V2, &tables).is_ok());
    }

    #[test]
    fn only_streamed_tables_are_checked() {
        let tables = [table("bad", 'i', Some(&["u"])), table("good", 'd', None)];
        let pk = &PartitionKey::PrimaryKey;
        let v2 = FormatVersion::V2;
        for (options, ok) in [
            (opts(&[("add-tables", "public.good")]), true),
            (opts(&[("add-tables", "public.good, public.bad")]), false),
            (opts(&[("add-tables", "*.bad")]), false),
            (opts(&[("add-tables", "public.*")]), false),
            (opts(&[("add-tables", "other.*")]), true),
            (opts(&[("filter-tables", "public.bad")]), true),
            (opts(&[("filter-tables", "public.b\\ad")]), true),
            (opts(&[("filter-tables", "public.\\*")]), false),
        ] {
            assert_eq!(
                check_identities(pk, &options, v2, &tables).is_ok(),
                ok,
                "{options:?}"
            );
        }
    }
}
