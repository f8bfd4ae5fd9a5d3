//! The catalog connection that reads table shapes: cut, it is reopened without losing
//! the change that needed it.

use std::time::Duration;

use pg_cdc_to_kinesis::pipeline::SlotState;
use serde_json::json;

use crate::support::case::Live;
use crate::support::pg;

use super::*;

/// The catalog connection is cut between two lookups: the next lookup reconnects
/// and the slot keeps streaming (no session restart), with the columns named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_catalog_connection_is_reopened_without_losing_the_change() {
    let s = Live::new(
        "toast_cut",
        &format!("{DOCS}; CREATE TABLE docs2 (LIKE docs INCLUDING ALL)"),
        "{format-version: 2}",
        "",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs VALUES (1, {BIG}, 'a', 1)"),
    );
    assert_eq!(s.records(1).await.len(), 1);
    let killed = pg.psql_in(
        &s.db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND backend_type = 'client backend'",
    );
    assert!(killed.trim().parse::<u32>().unwrap() >= 1, "{killed}");
    // A session that failed would be `Retrying` for a second or more.
    let status = pipeline.slots[0].clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..600 {
            let state = status.state();
            if state != SlotState::Streaming {
                seen.push(state);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs2 VALUES (1, {BIG}, 'a', 1)"),
    );
    pg.execute(&s.db, "UPDATE docs2 SET small = 'b' WHERE id = 1");
    let records = s.records(3).await;
    let left_streaming = watcher.await.unwrap();
    s.finish(pipeline).await;
    assert_eq!(left_streaming, [], "the session restarted");
    let got = in_commit_order(&records);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["table"], "docs2");
    assert_eq!(got[2]["unchanged_toast"], json!(["big"]));
}
