//! The chunk's snapshot sees every transaction that committed before its low
//! watermark; and whether this role can tell the sessions idle in a transaction,
//! which it need not wait for, from running ones (for `check` and the wait's warning).
//!
//! PostgreSQL writes a transaction's commit record, then marks it committed, and only
//! then makes it visible to new snapshots. A transaction whose commit record precedes
//! the low watermark in the WAL can therefore still be invisible to the `SELECT` that
//! follows the watermark: for a moment on a busy host, or until a synchronous standby
//! answers. Its change then sits before the window, where it cannot drop the chunk's
//! older copy of the row, and the `read` record would put the old row back after it.
//! SQL cannot tell such a transaction from one still running (both are "in
//! progress"), so after the low watermark the chunk waits until every transaction in
//! progress at the watermark is visible or has ended, except a session idle in its
//! transaction (it cannot have committed: its commit comes after the watermark, inside
//! the window or later, where the window handles it) and a transaction of another
//! database. A prepared transaction is waited for: while `COMMIT PREPARED` writes its
//! commit, it is still listed as prepared.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

/// The first wait between two looks; it doubles up to [`POLL_MAX`].
const POLL: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(200);
/// After this long waiting, the chunk says for what.
const WARN_AFTER: Duration = Duration::from_secs(5);

/// The transactions in progress at the low watermark (`$1`, txids) that may have
/// committed before it and are not visible yet: those the current snapshot still
/// counts as running (the rule the chunk's `SELECT` applies), but not a session idle
/// in its transaction, nor one in another database (it cannot change this one's
/// tables). Each with what to call it in a message.
const UNSETTLED: &str = "SELECT x, coalesce('backend pid ' || a.pid, \
       'prepared transaction ' || quote_literal(p.gid), 'no session') \
     FROM unnest($1::bigint[]) x \
     LEFT JOIN pg_stat_activity a ON a.backend_xid::text::bigint = x % 4294967296 \
     LEFT JOIN pg_prepared_xacts p ON p.transaction::text::bigint = x % 4294967296 \
     WHERE NOT txid_visible_in_snapshot(x, txid_current_snapshot()) \
       AND NOT coalesce(a.state LIKE 'idle in transaction%' \
         OR a.datname <> current_database(), false) \
       AND NOT coalesce(p.database <> current_database(), false)";

/// A transaction of our own, committed: its id is above every one assigned before.
/// Only its end matters, not its durability, so it does not wait for the disk or a
/// standby.
const HORIZON: &str =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT txid_current()::text; COMMIT";

/// Why this role cannot tell the sessions of other roles that sit idle in a
/// transaction from running ones, each with its fix; empty when it can. It reads their
/// state in `pg_stat_activity`, which PostgreSQL shows only to a superuser or a member
/// of `pg_read_all_stats`, and only with `track_activities` on. `check` reports these,
/// and a chunk that waits long says them beside what it waits for.
pub(crate) async fn unseen_session_states(
    c: &Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT quote_ident(current_user::text), \
                    r.rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'), \
                    current_setting('track_activities')::bool \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (user, sees, tracked): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let mut unseen = Vec::new();
    if !sees {
        unseen.push(format!(
            "role {user} is neither a superuser nor a member of pg_read_all_stats, so it cannot see other roles' sessions' state in pg_stat_activity and a backfill chunk also waits for their transactions that sit idle: GRANT pg_read_all_stats TO {user}"
        ));
    }
    if !tracked {
        unseen.push(
            "track_activities is off, so pg_stat_activity shows no session's state and a backfill chunk also waits for transactions that sit idle: set track_activities = on".into(),
        );
    }
    Ok(unseen)
}

/// Run right after the low watermark (`table` for the message): returns once every
/// transaction that could have committed before the watermark is visible.
///
/// A snapshot lists the running transactions below its `xmax`, which is one past the
/// latest to *complete*: a running transaction above it is invisible without being
/// listed. So a transaction of our own completes first ([`HORIZON`]); then every
/// transaction that could have committed before the watermark and still runs is
/// listed.
pub(super) async fn after_low_watermark(
    c: &Client,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    let horizon: i64 = c
        .simple_query(HORIZON)
        .await?
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|t| t.parse().ok()),
            _ => None,
        })
        .unwrap_or(i64::MAX);
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
    let (mut warned, mut pause) = (false, POLL);
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
                    format!(
                        "transaction {} ({})",
                        r.get::<_, i64>(0),
                        r.get::<_, String>(1)
                    )
                })
                .collect();
            // A session it waits for (UNSETTLED's `backend pid` label) may sit idle
            // where this role cannot see it: a hint only; if the question fails, the
            // next look reports the error.
            let mut hint = String::new();
            if rows
                .iter()
                .any(|r| r.get::<_, String>(1).starts_with("backend pid "))
            {
                for unseen in unseen_session_states(c).await.unwrap_or_default() {
                    hint.push_str("; ");
                    hint.push_str(&unseen);
                }
            }
            tracing::warn!(table, "the backfill's next chunk of {table} waits for {} to end: it was running at the chunk's low watermark and may have committed before it (a long statement, a prepared transaction, or a commit held by a synchronous standby that does not answer); the chunk is read once it ends{hint}", waits.join(", "));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}
