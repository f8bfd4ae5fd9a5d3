//! Changes wal2json skipped: updates and deletes of tables without a primary key or
//! replica identity, which wal2json drops with a server warning per row.
//!
//! Owns recognising those warnings, counting them (`ChangesSkipped`) and turning a
//! warning per row into one log line per table at most every [`WARN_INTERVAL`], with
//! the count and the fix. It never stops a slot: the change is already gone from the
//! output by the time the warning arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::source::{NoticeHook, ServerError};

/// At most one warning per table per interval; the next one carries the count since.
const WARN_INTERVAL: Duration = Duration::from_secs(300);
/// Tables remembered for rate limiting; past this, every further table's skips are
/// still counted but warned about together, so memory stays bounded.
const MAX_TABLES: usize = 1000;

/// What wal2json 2.5 says when it skips a change (`elog(WARNING, ...)`). Format 1:
/// `table "t" without primary key or replica identity is nothing`, and
/// `no tuple data for UPDATE in table "t"`; format 2 names the schema too:
/// `no tuple identifier for UPDATE in table "s"."t"` (or DELETE), and
/// `no tuple data for UPDATE in table "s"."t"`.
const V1_PREFIX: &str = "table \"";
const V1_SUFFIX: &str = "\" without primary key or replica identity is nothing";
const NO_TUPLE: [&str; 2] = ["no tuple identifier for ", "no tuple data for "];

/// The table a wal2json "skipped" warning names, as `schema.table` (format 2) or
/// `table` (format 1, which gives no schema).
pub fn skipped_table(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix(V1_PREFIX) {
        return rest.strip_suffix(V1_SUFFIX).map(str::to_string);
    }
    let rest = NO_TUPLE.iter().find_map(|p| message.strip_prefix(p))?;
    let (action, quoted) = rest.split_once(" in table ")?;
    if !matches!(action, "INSERT" | "UPDATE" | "DELETE") {
        return None;
    }
    let name = quoted.strip_prefix('"')?.strip_suffix('"')?;
    Some(name.replace("\".\"", "."))
}

/// A slot's skipped-change counter and its per-table warnings.
#[derive(Debug, Default)]
pub struct SkippedChanges {
    total: AtomicU64,
    /// Per table: when it was last warned about, and skips since then.
    tables: Mutex<HashMap<String, (Instant, u64)>>,
}

impl SkippedChanges {
    /// Changes skipped so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts `notice` when it is a wal2json skip warning (true), warning about
    /// the table when it is due.
    pub fn notice(&self, slot: &str, notice: &ServerError) -> bool {
        let Some(table) = skipped_table(&notice.message) else {
            return false;
        };
        let table = table.as_str();
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let Ok(mut tables) = self.tables.lock() else {
            return true;
        };
        let key = if tables.contains_key(table) || tables.len() < MAX_TABLES {
            table
        } else {
            "(other tables)"
        };
        let due = match tables.get_mut(key) {
            None => Some(1),
            Some((last, since)) => {
                *since += 1;
                (now.duration_since(*last) >= WARN_INTERVAL).then_some(*since)
            }
        };
        if let Some(count) = due {
            tables.insert(key.to_string(), (now, 0));
            tracing::warn!(
                slot,
                table = key,
                skipped = count,
                "[{slot}] wal2json skipped {count} update(s)/delete(s) of table {key:?}{}: it has no primary key and no replica identity, so these changes never reach Kinesis; run ALTER TABLE {key} REPLICA IDENTITY FULL, or add a primary key (counted in the ChangesSkipped metric; next warning for this table in {} s at the earliest)",
                if count > 1 { " since the last warning" } else { "" },
                WARN_INTERVAL.as_secs()
            );
        }
        true
    }

    /// A hook for [`crate::source::ReplicationStream::on_notice`].
    pub fn hook(self: &Arc<Self>, slot: &str) -> NoticeHook {
        let me = self.clone();
        let slot = slot.to_string();
        Arc::new(move |notice| me.notice(&slot, notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(message: &str) -> ServerError {
        ServerError {
            severity: "WARNING".into(),
            code: "01000".into(),
            message: message.into(),
            ..ServerError::default()
        }
    }

    #[test]
    fn recognises_wal2json_skip_warnings_only() {
        let table = |m: &str| skipped_table(m);
        assert_eq!(
            table("table \"logs\" without primary key or replica identity is nothing").as_deref(),
            Some("logs")
        );
        assert_eq!(
            table("no tuple data for UPDATE in table \"t\"").as_deref(),
            Some("t")
        );
        assert_eq!(
            table("no tuple identifier for DELETE in table \"public\".\"nokey\"").as_deref(),
            Some("public.nokey")
        );
        assert_eq!(
            table("no tuple identifier for UPDATE in table \"a b\".\"t\"").as_deref(),
            Some("a b.t")
        );
        assert_eq!(table("checkpoint starting: time"), None);
        assert_eq!(table("no tuple identifier for MERGE in table \"t\""), None);
    }

    #[test]
    fn counts_every_skip_and_warns_once_per_table_per_interval() {
        let s = SkippedChanges::default();
        let skip = warning("no tuple identifier for UPDATE in table \"public\".\"a\"");
        for _ in 0..300 {
            assert!(s.notice("slot", &skip));
        }
        assert!(!s.notice("slot", &warning("something else")));
        assert_eq!(s.total(), 300);
        let tables = s.tables.lock().unwrap();
        let (_, since) = tables["public.a"];
        assert_eq!(since, 299, "only the first skip was warned about");
    }

    #[test]
    fn remembers_a_bounded_number_of_tables() {
        let s = SkippedChanges::default();
        for i in 0..(MAX_TABLES + 50) {
            let n = warning(&format!(
                "table \"t{i}\" without primary key or replica identity is nothing"
            ));
            s.notice("slot", &n);
        }
        assert_eq!(s.total() as usize, MAX_TABLES + 50);
        assert!(s.tables.lock().unwrap().len() <= MAX_TABLES + 1);
    }
}
