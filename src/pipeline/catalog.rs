//! The catalog lookups behind table shapes: a table's columns (`pg_attribute`) and
//! its partition root (`pg_inherits`, up to the top), and the partitions of a
//! partitioned table named in `add-tables` / `filter-tables`.
//!
//! Owns the SQL and when it runs: only for a table the shape cache lacks or that a
//! change shows to be stale, before the change reaches the encoder, on the slot's
//! SQL connection (re-opened once if it broke). A lookup that fails stops the
//! session before the change is encoded, so nothing past it is confirmed and the
//! next session reads it again. It never writes to the database.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::decode::{tables::table_patterns, Change, Event, Kind, TABLE_LIST_OPTIONS};
use crate::lsn::Lsn;
use crate::record::shape::{ShapeCache, ShapeColumn, ShapeRules, TableShape};
use crate::source::{sql_connect, sql_error, ConnectParams, SourceError};

/// One lookup waits at most this long; a hung connection must not hold the slot.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A catalog lookup a change needed failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "slot {slot:?}: reading the catalog for table {table} (its columns and partition root, needed \
     for the change at LSN {lsn}) failed: {source}; nothing from that change on was confirmed, so \
     it is read again once the lookup succeeds. Check that the user can read pg_catalog and reach \
     the server, or set unchanged_toast: omit and partition_root: false to stream without lookups"
)]
pub struct CatalogError {
    pub slot: String,
    pub table: String,
    pub lsn: Lsn,
    #[source]
    pub source: Box<SourceError>,
}

impl CatalogError {
    /// A reconnect uses the session's credentials, which may have expired since (an
    /// IAM token lasts 15 minutes): a refused login is worth a new session, which
    /// fetches fresh ones (and stops the slot itself if they are wrong).
    pub fn is_transient(&self) -> bool {
        self.source.is_transient() || self.source.is_auth_failure()
    }
}

/// The slot's catalog connection.
pub struct Catalog {
    slot: String,
    params: ConnectParams,
    client: Option<Client>,
}

impl Catalog {
    /// `client`: the session's SQL connection, kept for the lookups.
    pub fn new(slot: impl Into<String>, params: ConnectParams, client: Option<Client>) -> Self {
        Catalog {
            slot: slot.into(),
            params,
            client,
        }
    }

    /// Look up every table the changes in `events` need under `rules`, so that the
    /// encoder finds their shapes. `txn_lsn`: the open transaction's LSN, for errors.
    /// `now`: when the events were read, for the cache's ages, which need no finer
    /// grain than a burst of messages; read again after a lookup, which waits, and
    /// returned (the burst's time from then on).
    pub async fn prepare(
        &mut self,
        shapes: &mut ShapeCache,
        rules: &ShapeRules,
        events: &[Event],
        (mut txn_lsn, mut now): (Lsn, Instant),
    ) -> Result<Instant, CatalogError> {
        if !rules.uses_catalog() {
            return Ok(now);
        }
        let toast = rules.unchanged_toast != crate::config::UnchangedToast::Omit;
        for event in events {
            let change = match event {
                Event::Begin {
                    txn_lsn: Some(lsn), ..
                } => {
                    txn_lsn = *lsn;
                    continue;
                }
                Event::Change(change) => change,
                _ => continue,
            };
            let needs_columns = toast && matches!(change.kind, Kind::Insert | Kind::Update);
            if !needs_columns && !rules.root.any() {
                continue;
            }
            let lsn = change.lsn.unwrap_or(txn_lsn);
            // Checked here rather than in an async call: most changes need nothing.
            let own = (change.schema.as_str(), change.table.as_str());
            if shapes.needs_lookup(own, change, toast, now) {
                self.refresh(shapes, own, (lsn, &mut now)).await?;
            }
            if !rules.root.any() {
                continue;
            }
            let root = shapes
                .get(&change.schema, &change.table)
                .and_then(|s| s.root.clone());
            if let Some((schema, table)) = root {
                if shapes.needs_lookup((&schema, &table), change, toast, now) {
                    self.refresh(shapes, (&schema, &table), (lsn, &mut now))
                        .await?;
                }
            }
        }
        Ok(now)
    }

    /// Look up a backfilled table (and its root) before its rows are encoded.
    pub async fn prepare_table(
        &mut self,
        shapes: &mut ShapeCache,
        rules: &ShapeRules,
        schema: &str,
        table: &str,
        lsn: Lsn,
    ) -> Result<(), CatalogError> {
        if !rules.root.any() {
            return Ok(());
        }
        let probe = Change {
            kind: Kind::Read,
            schema: schema.into(),
            table: table.into(),
            columns: Vec::new(),
            identity: Vec::new(),
            pk: Default::default(),
            lsn: None,
            columns_tag: 0,
        };
        self.prepare(
            shapes,
            rules,
            &[Event::Change(probe)],
            (lsn, Instant::now()),
        )
        .await
        .map(drop)
    }

    /// Read `schema.table`'s shape into the cache, which lacks it or holds it stale
    /// ([`ShapeCache::needs_lookup`]). `(lsn, now)`: the position for errors, and the
    /// batch's time, moved to the answer's time (the lookup waits).
    async fn refresh(
        &mut self,
        shapes: &mut ShapeCache,
        (schema, table): (&str, &str),
        (lsn, now): (Lsn, &mut Instant),
    ) -> Result<(), CatalogError> {
        let shape = self
            .lookup(schema, table)
            .await
            .map_err(|source| CatalogError {
                slot: self.slot.clone(),
                table: format!("{schema}.{table}"),
                lsn,
                source: Box::new(source),
            })?;
        match &shape {
            Some(shape) => {
                tracing::debug!(slot = %self.slot, table = %format!("{schema}.{table}"), columns = shape.columns.len(), root = ?shape.root, "read the table's shape from the catalog")
            }
            None => {
                tracing::warn!(slot = %self.slot, table = %format!("{schema}.{table}"), lsn = %lsn, "table {schema}.{table} is not in the catalog (dropped or renamed since the change was written): its changes go out without unchanged_toast and under their own name")
            }
        }
        *now = Instant::now();
        shapes.insert(schema, table, shape, *now);
        Ok(())
    }

    /// One lookup, on a fresh connection once more if the first try failed transiently.
    async fn lookup(
        &mut self,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableShape>, SourceError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.lookup_once(schema, table).await;
            match result {
                Err(e) if attempt == 1 && e.is_transient() => {
                    tracing::info!(slot = %self.slot, "catalog lookup failed ({e}); reconnecting once");
                    self.client = None;
                }
                other => return other,
            }
        }
    }

    async fn lookup_once(
        &mut self,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableShape>, SourceError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(sql_connect(&self.params).await?);
        }
        let Some(client) = &self.client else {
            unreachable!("connected above")
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, fetch_shape(client, schema, table)).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::Connect {
                at: self.params.endpoint(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the catalog lookup got no answer within {LOOKUP_TIMEOUT:?}"),
                ),
            }),
        }
    }
}

/// The shape of `schema.table` (names as wal2json prints them, unquoted); `None`
/// when the catalog has no such table.
pub async fn fetch_shape(
    c: &Client,
    schema: &str,
    table: &str,
) -> Result<Option<TableShape>, SourceError> {
    // Stored generated columns are kept: wal2json 2.5 prints them like any other
    // (checked in tests/shape.rs). The root is the last ancestor reached through
    // partitions (`relispartition`): plain inheritance children stay themselves.
    let row = c
        .query_opt(
            "WITH RECURSIVE rel AS ( \
               SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1::text AND c.relname = $2::text), \
             up(oid, depth) AS ( \
               SELECT i.inhparent, 1 FROM rel JOIN pg_class c ON c.oid = rel.oid \
                 JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relispartition \
               UNION ALL \
               SELECT i.inhparent, up.depth + 1 FROM up JOIN pg_class c ON c.oid = up.oid \
                 JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relispartition), \
             top AS (SELECT n.nspname::text AS schema, c.relname::text AS name \
               FROM up JOIN pg_class c ON c.oid = up.oid \
               JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY up.depth DESC LIMIT 1) \
             SELECT \
               ARRAY(SELECT a.attname::text FROM pg_attribute a \
                     WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum), \
               ARRAY(SELECT a.attlen = -1 AND a.attstorage <> 'p' FROM pg_attribute a \
                     WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum), \
               (SELECT schema FROM top), (SELECT name FROM top) \
             FROM rel",
            &[&schema, &table],
        )
        .await
        .map_err(|e| {
            sql_error(
                "the server",
                "reading a table's columns and partition root",
                e,
            )
        })?;
    let Some(row) = row else {
        return Ok(None);
    };
    let col = |e| {
        sql_error(
            "the server",
            "reading a table's columns and partition root",
            e,
        )
    };
    let names: Vec<String> = row.try_get(0).map_err(col)?;
    let toastable: Vec<bool> = row.try_get(1).map_err(col)?;
    let root_schema: Option<String> = row.try_get(2).map_err(col)?;
    let root_name: Option<String> = row.try_get(3).map_err(col)?;
    Ok(Some(TableShape {
        columns: names
            .into_iter()
            .zip(toastable)
            .map(|(name, toastable)| ShapeColumn { name, toastable })
            .collect(),
        root: root_schema.zip(root_name),
    }))
}

/// `options` with each partitioned table named in `add-tables` / `filter-tables`
/// followed by its leaf partitions (wal2json matches a change by its leaf's name),
/// and the leaves added, as `schema.table`. Partitions attached later are not in
/// the list: the next session start reads it again.
pub async fn expand_partitioned(
    c: &Client,
    options: Vec<(String, String)>,
) -> Result<(Vec<(String, String)>, Vec<String>), SourceError> {
    let mut added = Vec::new();
    let mut out = Vec::with_capacity(options.len());
    for (name, value) in options {
        if !TABLE_LIST_OPTIONS.contains(&name.as_str()) {
            out.push((name, value));
            continue;
        }
        let mut value = value;
        for pattern in table_patterns(&value.clone()).into_iter().flatten() {
            let (Some(schema), Some(table)) = (&pattern.schema, &pattern.table) else {
                continue;
            };
            let rows = c
                .query(
                    "WITH RECURSIVE down(oid) AS ( \
                       SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = $1::text AND c.relname = $2::text AND c.relkind = 'p' \
                       UNION ALL \
                       SELECT i.inhrelid FROM down JOIN pg_inherits i ON i.inhparent = down.oid) \
                     SELECT n.nspname::text, c.relname::text FROM down \
                       JOIN pg_class c ON c.oid = down.oid \
                       JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind = 'r' ORDER BY 1, 2",
                    &[schema, table],
                )
                .await
                .map_err(|e| {
                    sql_error("the server", "listing a partitioned table's partitions", e)
                })?;
            for row in rows {
                let (s, t): (String, String) = (row.get(0), row.get(1));
                value.push(',');
                value.push_str(&escape(&s));
                value.push('.');
                value.push_str(&escape(&t));
                added.push(format!("{s}.{t}"));
            }
        }
        out.push((name, value));
    }
    Ok((out, added))
}

/// A name as one part of a wal2json table list (`\` before its special characters).
fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for ch in part.chars() {
        if matches!(ch, ',' | '.' | '*' | '\\' | ' ' | '\'') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_lookup_names_slot_table_and_lsn_and_is_retried_when_transient() {
        let err = CatalogError {
            slot: "orders_slot".into(),
            table: "public.docs".into(),
            lsn: "0/16B3748".parse().unwrap(),
            source: Box::new(SourceError::Connect {
                at: "postgres://cdc@db:5432/shop".into(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"),
            }),
        };
        let text = err.to_string();
        for part in ["\"orders_slot\"", "public.docs", "0/16B3748", "read again"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(err.is_transient());
    }

    #[test]
    fn an_expanded_name_reads_back_as_itself() {
        let name = "we.ird, *na'me\\";
        let list = format!("public.t,{}.{}", escape("s p"), escape(name));
        let patterns: Vec<_> = table_patterns(&list).into_iter().flatten().collect();
        assert_eq!(patterns.len(), 2);
        assert_eq!(patterns[1].schema.as_deref(), Some("s p"));
        assert_eq!(patterns[1].table.as_deref(), Some(name));
    }
}
