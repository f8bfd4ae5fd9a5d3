//! `pg-cdc-to-kinesis status`: one row per configured slot from
//! `pg_replication_slots` (active, active pid, `wal_status`, lag) and the slot's SSM
//! checkpoint, as a table or as JSON.
//!
//! Owns the row and its rendering. It only reads: it never creates, advances or
//! drops a slot, and never writes a checkpoint.

use std::time::SystemTime;

use serde::Serialize;

use crate::checkpoint::{ssm_client, CheckpointStore, SsmStore};
use crate::config::{Config, SlotConfig};
use crate::credentials::Credentials;
use crate::monitor::{human_bytes, sample};
use crate::source;

/// One slot's status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusRow {
    pub slot: String,
    pub database: String,
    /// `false` when the slot does not exist.
    pub exists: bool,
    pub active: Option<bool>,
    pub active_pid: Option<i32>,
    pub wal_status: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    /// Server WAL position minus the confirmed position.
    pub lag_bytes: Option<i64>,
    pub lag: Option<String>,
    /// WAL the slot holds back (current position minus `restart_lsn`).
    pub retained_bytes: Option<i64>,
    pub safe_wal_size: Option<i64>,
    /// The checkpoint's LSN, when checkpoints are on and one exists.
    pub checkpoint_lsn: Option<String>,
    pub checkpoint_time: Option<String>,
    pub checkpoint_age_secs: Option<u64>,
    /// Each backfilled table's progress, from the checkpoint (running jobs and the
    /// one that ended last).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub backfill: Vec<String>,
    /// What could not be read (connection, SSM), if anything.
    pub error: Option<String>,
}

impl StatusRow {
    /// A row is healthy when the slot exists, is not lost and could be read.
    pub fn ok(&self) -> bool {
        self.exists && self.error.is_none() && self.wal_status.as_deref() != Some("lost")
    }
}

/// Read every slot's status, in config order.
pub async fn status(config: &Config, aws: &aws_config::SdkConfig) -> Vec<StatusRow> {
    let mut rows = Vec::with_capacity(config.slots.len());
    for slot in &config.slots {
        rows.push(slot_status(slot, aws).await);
    }
    rows
}

async fn slot_status(slot: &SlotConfig, aws: &aws_config::SdkConfig) -> StatusRow {
    let mut row = StatusRow {
        slot: slot.name.clone(),
        database: slot.db_name.clone(),
        exists: false,
        active: None,
        active_pid: None,
        wal_status: None,
        confirmed_flush_lsn: None,
        lag_bytes: None,
        lag: None,
        retained_bytes: None,
        safe_wal_size: None,
        checkpoint_lsn: None,
        checkpoint_time: None,
        checkpoint_age_secs: None,
        backfill: Vec::new(),
        error: None,
    };
    let mut errors = Vec::new();
    let connected = match Credentials::new(slot, aws).connect_params().await {
        Ok(params) => source::sql_connect(&params)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match connected {
        Ok(client) => match sample(&client, &slot.name).await {
            Ok(Some(s)) => {
                row.exists = true;
                row.active = Some(s.active);
                row.active_pid = s.active_pid;
                row.wal_status = s.wal_status;
                row.confirmed_flush_lsn = s.confirmed_flush_lsn.map(|l| l.to_string());
                row.lag_bytes = s.lag_bytes;
                row.lag = s.lag_bytes.map(|b| human_bytes(b as f64));
                row.retained_bytes = s.retained_bytes;
                row.safe_wal_size = s.safe_wal_size;
            }
            Ok(None) => errors.push("the slot does not exist".to_string()),
            Err(e) => errors.push(e.to_string()),
        },
        Err(e) => errors.push(e.to_string()),
    }
    if slot.checkpoint.enabled {
        let store = SsmStore::new(ssm_client(aws, slot.region.as_deref()));
        match store.read(&slot.checkpoint.parameter).await {
            Ok(Some(c)) => {
                row.checkpoint_age_secs = time::OffsetDateTime::parse(
                    &c.time,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .map(|t| {
                    let written = SystemTime::from(t);
                    SystemTime::now()
                        .duration_since(written)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                });
                row.checkpoint_lsn = Some(c.lsn);
                row.checkpoint_time = Some(c.time);
                if let Some(b) = &c.backfill {
                    row.backfill = crate::backfill::status_lines(b);
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        row.error = Some(errors.join("; "));
    }
    row
}

/// A fixed-width table, one row per slot, then the errors.
pub fn render(rows: &[StatusRow]) -> String {
    let dash = || "-".to_string();
    let header = [
        "SLOT",
        "ACTIVE",
        "PID",
        "WAL_STATUS",
        "LAG_BYTES",
        "LAG",
        "RETAINED",
        "CHECKPOINT",
        "CKPT_AGE",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        table.push(vec![
            r.slot.clone(),
            r.active
                .map(|a| if a { "yes" } else { "no" }.to_string())
                .unwrap_or_else(dash),
            r.active_pid.map(|p| p.to_string()).unwrap_or_else(dash),
            r.wal_status.clone().unwrap_or_else(dash),
            r.lag_bytes.map(|b| b.to_string()).unwrap_or_else(dash),
            r.lag.clone().unwrap_or_else(dash),
            r.retained_bytes
                .map(|b| human_bytes(b as f64))
                .unwrap_or_else(dash),
            r.checkpoint_lsn.clone().unwrap_or_else(dash),
            r.checkpoint_age_secs
                .map(|s| format!("{s}s"))
                .unwrap_or_else(dash),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    for r in rows {
        for line in &r.backfill {
            out += &format!("{}: {line}\n", r.slot);
        }
        if let Some(e) = &r.error {
            out += &format!("{}: {e}\n", r.slot);
        }
        if r.wal_status.as_deref() == Some("lost") {
            out += &format!("{}: the slot is lost (invalidated): drop and re-create it, then backfill the tables\n", r.slot);
        }
    }
    out
}

/// The rows as one JSON array.
pub fn render_json(rows: &[StatusRow]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_row_per_slot_with_dashes_for_unknowns() {
        let row = StatusRow {
            slot: "orders".into(),
            database: "shop".into(),
            exists: true,
            active: Some(true),
            active_pid: Some(4242),
            wal_status: Some("reserved".into()),
            confirmed_flush_lsn: Some("0/16B3748".into()),
            lag_bytes: Some(12_897_485),
            lag: Some(human_bytes(12_897_485.0)),
            retained_bytes: Some(2048),
            safe_wal_size: None,
            checkpoint_lsn: None,
            checkpoint_time: None,
            checkpoint_age_secs: None,
            backfill: Vec::new(),
            error: None,
        };
        let text = render(std::slice::from_ref(&row));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "orders", "yes", "4242", "reserved", "12897485", "12.3", "MiB", "2.0", "KiB", "-",
                "-"
            ]
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_json(std::slice::from_ref(&row))).unwrap();
        assert_eq!(json[0]["lag_bytes"], 12_897_485);
        assert_eq!(json[0]["lag"], "12.3 MiB");
        assert!(json[0].get("backfill").is_none());
    }

    #[test]
    fn shows_each_backfilled_tables_progress_from_the_checkpoint() {
        use crate::checkpoint::backfill::{BackfillJob, BackfillState, TableProgress, TableState};
        let mut state = BackfillState::default();
        let mut orders = TableProgress::new("public.orders");
        (orders.chunks, orders.rows, orders.estimate) = (12, 120_000, 1_000_000);
        let mut items = TableProgress::new("public.items");
        (items.state, items.rows) = (TableState::Done, 5);
        state.add(BackfillJob {
            id: "x".into(),
            initial: false,
            filter: None,
            tables: vec![items, orders],
        });
        let row = StatusRow {
            slot: "orders".into(),
            backfill: crate::backfill::status_lines(&state),
            ..Default::default()
        };
        let text = render(&[row]);
        assert!(
            text.contains("orders: backfill public.orders: 120000 of ~1000000 rows (12%)"),
            "{text}"
        );
        assert!(
            text.contains("orders: backfill public.items: done, 5 rows"),
            "{text}"
        );
    }
}
