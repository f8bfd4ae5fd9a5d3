//! The `backfill` command and the admin Lambda's action reach the running streamer for
//! the named tables only, a keyless table included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::case::{drop_slot, streaming};
use crate::support::kinesis::{self, kinesalite, ReadRecord};
use crate::support::pg;

use super::*;

/// A fixture's rows on the stream: `(table, id)` of each read record, and the
/// error lines of the log.
fn reads_by_table(records: &[ReadRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, v) in user_records(records) {
        if v["kind"] == "read" {
            let table = format!(
                "{}.{}",
                v["schema"].as_str().unwrap(),
                v["table"].as_str().unwrap()
            );
            out.entry(table)
                .or_default()
                .push(v["data"]["id"].as_i64().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_from_the_cli_and_the_lambda_reaches_the_streamer_for_the_named_tables_only() {
    let f = Fixture::new("snap_cli", &["a", "b", "nokey"], 300).await;
    let pg = pg::shared();
    // A table with neither a primary key nor a unique index on NOT NULL columns.
    pg.execute(&f.db, "ALTER TABLE nokey DROP CONSTRAINT nokey_pkey");
    let (config, dir) = f.config("      checkpoint: false\n      snapshot_chunk_rows: 100\n");
    let pipeline = streaming(&config, kinesalite().sdk_config()).await;

    // The command line: table a, rows with id > 250 only, and the keyless table.
    let path = dir.path().join("configs.yml");
    let done = crate::support::process::run(
        crate::support::process::command(
            &kinesalite().endpoint,
            &[
                "backfill",
                "--config",
                path.to_str().unwrap(),
                "--slot",
                &f.slot,
                "--table",
                "public.nokey",
                "--table",
                "public.a",
                "--where",
                "id > 250",
            ],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(0), "{}", done.describe());
    assert!(
        done.stdout.contains("backfill signalled"),
        "{}",
        done.describe()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = BTreeMap::new();
    while Instant::now() < deadline {
        reads = reads_by_table(&kinesis::read_all(&kinesalite().client(), &f.stream).await);
        if reads.get("public.a").is_some_and(|ids| ids.len() >= 50) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut a = reads.get("public.a").cloned().unwrap_or_default();
    a.sort();
    assert_eq!(
        a,
        (251..=300).collect::<Vec<_>>(),
        "only table a's rows with id > 250"
    );
    assert!(!reads.contains_key("public.b"), "b was not named");
    assert!(
        !reads.contains_key("public.nokey"),
        "nokey cannot be read in key order"
    );
    let lines = pipeline.slots[0].metrics.backfill_lines();
    assert!(
        lines.iter().any(|l| l.contains("public.nokey")
            && l.contains("failed")
            && l.contains("has no primary key")
            && l.contains("ADD PRIMARY KEY")),
        "{lines:?}"
    );

    // The admin Lambda: table b, all rows.
    let ctx = pg_cdc_to_kinesis::admin::AdminContext {
        aws: kinesalite().sdk_config(),
        namespace: "Test".into(),
        metrics_out: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    let report = pg_cdc_to_kinesis::admin::handle(
        &config,
        &ctx,
        serde_json::json!({"action": "backfill", "slot": f.slot, "tables": ["public.b"]}),
    )
    .await
    .unwrap();
    assert_eq!(report["requested"], true, "{report}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        reads = reads_by_table(&kinesis::read_all(&kinesalite().client(), &f.stream).await);
        if reads.get("public.b").is_some_and(|ids| ids.len() >= 300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut b = reads.get("public.b").cloned().unwrap_or_default();
    b.sort();
    assert_eq!(b, (1..=300).collect::<Vec<_>>());
    assert_eq!(reads["public.a"].len(), 50, "a was not read again");
    // A slot that is not configured is refused without writing anything.
    let refused = pg_cdc_to_kinesis::admin::handle(
        &config,
        &ctx,
        serde_json::json!({"action": "backfill", "slot": "nope", "tables": ["public.b"]}),
    )
    .await
    .unwrap();
    assert_eq!(refused["requested"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("no slot"),
        "{refused}"
    );
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);
}
