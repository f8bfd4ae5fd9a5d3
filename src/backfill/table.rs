//! One table as a backfill reads it: its key from the catalog, and its rows in key
//! order, one chunk per `SELECT`, each value printed exactly as wal2json prints it.
//!
//! Owns the catalog queries, the chunk query and the wal2json value rules (numbers
//! bare, `NaN`/`Infinity` as null, booleans as `true`/`false`, everything else a JSON
//! string of the type's text output). It never writes to the database.

use tokio_postgres::Client;

use crate::decode::{Column, ColumnType, Json};
use crate::source::{sql_error, SourceError};

/// A table the backfill cannot read in key order, or a query that failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {0} does not exist (or the user cannot see it); check the name (schema.table) and the user's USAGE and SELECT grants")]
    Missing(String),
    #[error("table {table} has no primary key and no unique index on NOT NULL columns, so it cannot be read in chunks in key order; add a primary key (ALTER TABLE {table} ADD PRIMARY KEY (…)), or a unique index on NOT NULL columns, then backfill it again")]
    NoKey { table: String },
    #[error("table {table} is read by its unique index {index}, but its replica identity does not carry that index's columns, so a delete during the backfill could not be matched to its row; run ALTER TABLE {table} REPLICA IDENTITY USING INDEX {index} (or add a primary key), then backfill it again")]
    IdentityLacksKey { table: String, index: String },
    #[error("backfill of {table}: {source}")]
    Query {
        table: String,
        #[source]
        source: SourceError,
    },
}

/// How a column's text becomes JSON (wal2json's rules, by type OID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Number,
    Bool,
    /// wal2json prints a bytea's hex without its `\x`.
    Bytea,
    Text,
}

impl ValueKind {
    fn of(type_oid: u32) -> ValueKind {
        match type_oid {
            // int2, int4, int8, oid, float4, float8, numeric
            21 | 23 | 20 | 26 | 700 | 701 | 1700 => ValueKind::Number,
            16 => ValueKind::Bool,
            17 => ValueKind::Bytea,
            _ => ValueKind::Text,
        }
    }
}

/// What the backfill knows of a table.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub schema: String,
    pub name: String,
    /// Every column, in `attnum` order (wal2json's).
    columns: Vec<(String, ValueKind, String)>,
    /// The chunking key, in index order (the `ORDER BY`), with each column's type.
    pub key: Vec<String>,
    key_types: Vec<String>,
    /// The primary key's columns in wal2json's order (the partition key); empty
    /// when the table is read by a unique index instead.
    pub pk: Vec<String>,
    /// `pg_class.reltuples`, for the progress line.
    pub estimate: u64,
}

impl TableShape {
    /// `schema.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Look `table` (`schema.table`, or a name on the search path) up.
    pub async fn load(c: &Client, table: &str) -> Result<TableShape, TableError> {
        let query_err = |source| TableError::Query {
            table: table.to_string(),
            source,
        };
        let rel = c
            .query_opt(
                "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text, \
                        GREATEST(c.reltuples, 0)::int8 \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                &[&table],
            )
            .await
            .map_err(|e| query_err(sql_error("the server", "looking up the table", e)))?
            .ok_or_else(|| TableError::Missing(table.to_string()))?;
        let oid: i64 = rel.get(0);
        let schema: String = rel.get(1);
        let name: String = rel.get(2);
        let replident: String = rel.get(3);
        let estimate: i64 = rel.get(4);
        let qualified = format!("{schema}.{name}");
        let cols = c
            .query(
                "SELECT a.attname::text, a.atttypid::int8, format_type(a.atttypid, a.atttypmod), \
                        a.attnotnull \
                 FROM pg_attribute a WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 \
                   AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(|e| query_err(sql_error("the server", "reading the table's columns", e)))?;
        let columns: Vec<(String, ValueKind, String)> = cols
            .iter()
            .map(|r| {
                let oid: i64 = r.get(1);
                (r.get(0), ValueKind::of(oid as u32), r.get(2))
            })
            .collect();
        let not_null: Vec<String> = cols
            .iter()
            .filter(|r| r.get::<_, bool>(3))
            .map(|r| r.get(0))
            .collect();
        // Unique indexes on plain columns, the primary key first.
        let indexes = c
            .query(
                "SELECT i.indexrelid::regclass::text, i.indisprimary, i.indisreplident, \
                        ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, pos) \
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                              ORDER BY k.pos) \
                 FROM pg_index i WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indisvalid \
                   AND i.indpred IS NULL AND i.indexprs IS NULL AND NOT (0 = ANY (i.indkey::int2[])) \
                 ORDER BY i.indisprimary DESC, i.indisreplident DESC, i.indexrelid",
                &[&oid],
            )
            .await
            .map_err(|e| query_err(sql_error("the server", "reading the table's indexes", e)))?;
        let mut chosen = None;
        for r in &indexes {
            let index: String = r.get(0);
            let primary: bool = r.get(1);
            let replident_index: bool = r.get(2);
            let key: Vec<String> = r.get(3);
            if primary || key.iter().all(|k| not_null.contains(k)) {
                chosen = Some((index, primary, replident_index, key));
                break;
            }
        }
        let Some((index, primary, replident_index, key)) = chosen else {
            return Err(TableError::NoKey { table: qualified });
        };
        // Without a primary key, a delete names its row only through a replica
        // identity that carries the index's columns.
        let identity_ok = primary || replident == "f" || (replident == "i" && replident_index);
        if !identity_ok {
            return Err(TableError::IdentityLacksKey {
                table: qualified,
                index,
            });
        }
        let key_types = key
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .find(|(n, _, _)| n == k)
                    .map(|(_, _, t)| t.clone())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let pk = if primary {
            columns
                .iter()
                .map(|(n, _, _)| n.clone())
                .filter(|n| key.contains(n))
                .collect()
        } else {
            Vec::new()
        };
        Ok(TableShape {
            schema,
            name,
            columns,
            key,
            key_types,
            pk,
            estimate: estimate.max(0) as u64,
        })
    }

    /// The next `limit` rows after `after` (the last key read, as text), in key
    /// order, read-only, with `filter` (an SQL condition) applied. Each row's columns
    /// are in wal2json's order and form; the key of the last row comes back too.
    pub async fn read_chunk(
        &self,
        c: &mut Client,
        after: Option<&[String]>,
        filter: Option<&str>,
        limit: u64,
        style: ValueStyle,
    ) -> Result<Vec<Vec<Column>>, TableError> {
        let query_err = |source| TableError::Query {
            table: self.qualified(),
            source,
        };
        let select: Vec<String> = self
            .columns
            .iter()
            // The type's output function, as wal2json calls it (a `::text` cast is
            // not always that: booleans cast to `true`, inet keeps its netmask).
            .map(|(n, _, _)| {
                format!(
                    "CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END",
                    c = ident(n)
                )
            })
            .collect();
        let key_list: Vec<String> = self.key.iter().map(|k| ident(k)).collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            select.join(", "),
            ident(&self.schema),
            ident(&self.name)
        );
        let mut conditions = Vec::new();
        if after.is_some() {
            let params: Vec<String> = self
                .key_types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("${}::text::{t}", i + 1))
                .collect();
            conditions.push(format!(
                "({}) > ({})",
                key_list.join(", "),
                params.join(", ")
            ));
        }
        if let Some(f) = filter {
            conditions.push(format!("({f})"));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key_list.join(", ")));
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = after
            .unwrap_or(&[])
            .iter()
            .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        // Read-only: a filter is SQL text from whoever signalled, and one statement
        // only (the extended protocol refuses a second).
        let tx = c
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| {
                query_err(sql_error(
                    "the server",
                    "starting the chunk's transaction",
                    e,
                ))
            })?;
        let rows = tx
            .query(&sql, &params)
            .await
            .map_err(|e| query_err(sql_error("the server", "reading a chunk", e)))?;
        tx.commit()
            .await
            .map_err(|e| query_err(sql_error("the server", "ending the chunk's transaction", e)))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cols = Vec::with_capacity(self.columns.len());
            for (i, (name, kind, type_name)) in self.columns.iter().enumerate() {
                let text: Option<String> = row
                    .try_get(i)
                    .map_err(|e| query_err(sql_error("the server", "reading a chunk's row", e)))?;
                cols.push(Column {
                    name: name.as_str().into(),
                    value: json_value(*kind, text.as_deref(), style),
                    // The name wal2json prints (format_type), so a record option
                    // rewrites a read row exactly as the live row.
                    ty: ColumnType::of(type_name),
                });
            }
            out.push(cols);
        }
        Ok(out)
    }
}

/// The wal2json options that change how values are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueStyle {
    /// `numeric-data-types-as-string`.
    pub numeric_as_string: bool,
}

/// A value as wal2json prints a column of this kind.
fn json_value(kind: ValueKind, text: Option<&str>, style: ValueStyle) -> Json {
    let json = match (kind, text) {
        (_, None) => "null".to_string(),
        (ValueKind::Number, Some(t)) if style.numeric_as_string => quote(t),
        (ValueKind::Number, Some(t)) => {
            let lower = t.to_ascii_lowercase();
            if lower.starts_with("nan")
                || lower.starts_with("infinity")
                || lower.starts_with("-infinity")
            {
                "null".to_string()
            } else {
                t.to_string()
            }
        }
        (ValueKind::Bool, Some(t)) => if t == "t" { "true" } else { "false" }.to_string(),
        (ValueKind::Bytea, Some(t)) => quote(t.strip_prefix("\\x").unwrap_or(t)),
        (ValueKind::Text, Some(t)) => quote(t),
    };
    Json::parse(&json).unwrap_or_else(|_| {
        // Only a number whose text is not JSON can get here (wal2json itself fails
        // on one): keep it as a string.
        Json::printed(quote(text.unwrap_or_default()))
    })
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A key value as text, for matching a change to a buffered row: a JSON string's
/// content, or the bare JSON (numbers, booleans).
pub fn key_text(value: &Json) -> String {
    let raw = value.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_string())
    } else {
        raw.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_wal2jsons_rules() {
        let plain = ValueStyle::default();
        let strings = ValueStyle {
            numeric_as_string: true,
        };
        let v = |k, t: Option<&str>, s| json_value(k, t, s).get().to_string();
        assert_eq!(v(ValueKind::Number, Some("12.50"), plain), "12.50");
        assert_eq!(v(ValueKind::Number, Some("NaN"), plain), "null");
        assert_eq!(v(ValueKind::Number, Some("-Infinity"), plain), "null");
        assert_eq!(v(ValueKind::Number, Some("12.50"), strings), r#""12.50""#);
        assert_eq!(v(ValueKind::Bool, Some("t"), plain), "true");
        assert_eq!(v(ValueKind::Bool, Some("f"), plain), "false");
        assert_eq!(v(ValueKind::Text, Some("a\"b\n"), plain), r#""a\"b\n""#);
        assert_eq!(v(ValueKind::Text, None, plain), "null");
        assert_eq!(v(ValueKind::Bytea, Some(r"\x00ff"), plain), r#""00ff""#);
        assert_eq!(
            v(ValueKind::Number, Some("1e"), plain),
            r#""1e""#,
            "never invalid JSON"
        );
    }

    #[test]
    fn key_text_unquotes_strings_only() {
        let raw = |s: &str| crate::decode::Json::parse(s).unwrap();
        assert_eq!(key_text(&raw("42")), "42");
        assert_eq!(key_text(&raw(r#""a\u0041""#)), "aA");
        assert_eq!(key_text(&raw("true")), "true");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
    }
}
