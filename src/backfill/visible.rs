//! The chunk's snapshot sees every transaction that committed before its low
//! watermark.
//!
//! PostgreSQL writes a transaction's commit record, then marks it committed, and only
//! then makes it visible to new snapshots. A transaction whose commit record precedes
//! the low watermark in the WAL can therefore still be invisible to the `SELECT` that
//! follows the watermark: for a moment on a busy host, or until a synchronous standby
//! answers. Its change then sits before the window, where it cannot drop the chunk's
//! older copy of the row, and the `read` record would put the old row back after it.
//! SQL cannot tell such a transaction from one still running (both are "in
//! progress"), so after the low watermark the chunk waits until every transaction in
//! progress at the watermark has ended, except those that cannot have committed: a
//! session idle in its transaction, and a prepared transaction (their commit comes
//! after the watermark, inside the window or later, where the window handles it).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// How long between two looks.
const POLL: Duration = Duration::from_millis(2);
/// After this long waiting, the chunk says for what.
const WARN_AFTER: Duration = Duration::from_secs(5);

/// The transactions in progress at the low watermark that may have committed before
/// it and are not visible yet: running (not idle in their transaction) and not
/// prepared. `$1` lists the candidates (txids).
const UNSETTLED: &str = "SELECT x, (SELECT a.pid FROM pg_stat_activity a \
       WHERE a.backend_xid::text::bigint = x % 4294967296 LIMIT 1) \
     FROM unnest($1::bigint[]) x \
     WHERE txid_status(x) = 'in progress' \
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
         WHERE a.backend_xid::text::bigint = x % 4294967296 \
           AND a.state LIKE 'idle in transaction%') \
       AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts p \
         WHERE p.transaction::text::bigint = x % 4294967296)";

/// Run right after the low watermark (`table` for the message): returns once every
/// transaction that could have committed before the watermark is visible.
///
/// A snapshot lists the running transactions below its `xmax`, which is one past the
/// latest to *complete*: a running transaction above it is invisible without being
/// listed. So a transaction of our own completes first (its id above every one
/// assigned before the watermark); then every transaction that could have committed
/// before the watermark and still runs is listed.
pub(super) async fn after_low_watermark(
    c: &Client,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    let horizon: i64 = c.query_one("SELECT txid_current()", &[]).await?.get(0);
    let pending: Vec<i64> = c
        .query(
            "SELECT x FROM txid_snapshot_xip(txid_current_snapshot()) x WHERE x < $1",
            &[&horizon],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut warned = false;
    loop {
        let rows = c.query(UNSETTLED, &[&pending]).await?;
        if rows.is_empty() {
            return Ok(());
        }
        if !warned && started.elapsed() > WARN_AFTER {
            warned = true;
            let waits: Vec<String> = rows
                .iter()
                .map(|r| {
                    let pid: Option<i32> = r.get(1);
                    let xid: i64 = r.get(0);
                    pid.map_or(format!("transaction {xid}"), |p| {
                        format!("transaction {xid} (backend pid {p})")
                    })
                })
                .collect();
            tracing::warn!(table, "the backfill's next chunk of {table} waits for {} to end: it was running at the chunk's low watermark and may have committed before it (a long statement, or a commit held by a synchronous standby that does not answer); the chunk is read once it ends", waits.join(", "));
        }
        tokio::time::sleep(POLL).await;
    }
}
