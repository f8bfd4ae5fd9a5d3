//! wal2json options and output as PostgreSQL 15 + wal2json 2.5 really produce them,
//! through the whole service: format-version 1 around logical messages (its stray
//! `[,` and binary content), `${ENV}` in option values, and the `check` and
//! `provision` warnings for table lists that match nothing. Each test owns its
//! database, slots and streams.

use std::path::Path;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::pg::{self, password_for, unique_name, SUPERUSER};
use crate::support::process::Streamer;

const STARTUP: Duration = Duration::from_secs(30);
const DELIVERY: Duration = Duration::from_secs(30);

/// One slot of a config: connection to the shared server's `db`, then `keys` (one
/// `key: value` per line).
fn slot_yaml(slot: &str, db: &str, keys: &[String]) -> String {
    let pg = pg::shared();
    let mut yaml = format!(
        "  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      \
         password: {}\n      db_name: {db}\n      status_interval_secs: 1\n      checkpoint: false\n",
        pg.port,
        password_for(SUPERUSER).unwrap_or_default(),
    );
    for key in keys {
        yaml += &format!("      {key}\n");
    }
    yaml
}

fn write_config(dir: &Path, slots: &[String]) -> std::path::PathBuf {
    let path = dir.join("configs.yml");
    std::fs::write(&path, format!("replication_slots:\n{}", slots.concat()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn drop_slot(db: &str, slot: &str) {
    let pg = pg::shared();
    let deadline = Instant::now() + STARTUP;
    while pg
        .try_psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"))
        .is_err_and(|e| e.contains("is active") && Instant::now() < deadline)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(table, id)` of each record, sorted by commit position then `seq`.
fn rows(records: &[ReadRecord]) -> Vec<(String, i64)> {
    let mut json: Vec<serde_json::Value> = records
        .iter()
        .map(|r| r.json().unwrap_or_else(|e| panic!("not JSON: {e}")))
        .collect();
    json.sort_by_key(|v| {
        (
            v["commit_lsn"]
                .as_str()
                .map(|s| s.parse::<pg_cdc_to_kinesis::lsn::Lsn>().unwrap_or_default()),
            v["seq"].as_u64(),
        )
    });
    json.iter()
        .map(|v| {
            (
                v["table"].as_str().unwrap_or_default().to_string(),
                v["data"]["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// wal2json 2.5 writes a non-transactional message after a transaction of two or
/// more changes as `{"change":[,{...}]}`, and message content byte for byte. With
/// the streamer's own heartbeats on, that happened on every busy slot; the slot
/// stopped. Both format-version 1 shapes (chunks, the default, and whole
/// documents) must stream every row past such messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_v1_streams_past_wal2json_stray_comma_and_binary_messages() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("v1msg"));
    pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let k = kinesalite();
    let slots: Vec<(String, String, &str)> = ["true", "false"]
        .iter()
        .map(|chunks| (unique_name("v1msg"), unique_stream_name("v1msg"), *chunks))
        .collect();
    let mut yaml = Vec::new();
    for (slot, stream, chunks) in &slots {
        kinesis::create_stream(&k.client(), stream, 1).await;
        yaml.push(slot_yaml(
            slot,
            &db,
            &[
                format!("options: {{format-version: 1, write-in-chunks: {chunks}, add-tables: 'public.t'}}"),
                format!("kns_stream: {stream}"),
                "heartbeat_interval_secs: 1".into(),
            ],
        ));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = Config::load(&write_config(dir.path(), &yaml)).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: k.sdk_config(),
        },
    );
    for status in &pipeline.slots {
        let deadline = Instant::now() + STARTUP;
        while status.state() != SlotState::Streaming && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status.state(), SlotState::Streaming, "{}", status.slot);
    }

    pg.execute(
        &db,
        "BEGIN; INSERT INTO t VALUES (1, 'one'); INSERT INTO t VALUES (2, 'two'); COMMIT;",
    );
    // An application's messages right after it: not UTF-8, then text.
    pg.execute(
        &db,
        r"SELECT pg_logical_emit_message(false, 'app', '\xc328ff'::bytea);",
    );
    pg.execute(&db, "SELECT pg_logical_emit_message(false, 'app', 'text');");
    pg.execute(
        &db,
        r"BEGIN; INSERT INTO t VALUES (3, 'three');
          SELECT pg_logical_emit_message(true, 'app', '\xfffe41'::bytea);
          INSERT INTO t VALUES (4, 'four'); COMMIT;",
    );
    // Let a heartbeat follow the two-change transaction, as it does in production.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.execute(&db, "INSERT INTO t VALUES (5, 'five');");

    let mut results = Vec::new();
    for (_, stream, chunks) in &slots {
        let records = kinesis::read_until(&k.client(), stream, 5, DELIVERY).await;
        results.push((chunks.to_string(), rows(&records)));
    }
    let states: Vec<SlotState> = pipeline.slots.iter().map(|s| s.state()).collect();
    pipeline.stop();
    let stopped = pipeline.wait().await;
    for (slot, stream, _) in &slots {
        drop_slot(&db, slot);
        kinesis::delete_stream(&k.client(), stream).await;
    }
    let expected: Vec<(String, i64)> = (1..=5).map(|id| ("t".to_string(), id)).collect();
    for (chunks, got) in &results {
        assert_eq!(got, &expected, "write-in-chunks: {chunks}");
    }
    assert!(
        states.iter().all(|s| *s == SlotState::Streaming),
        "{states:?}"
    );
    assert!(stopped.is_ok(), "{stopped:?}");
}

/// `add-tables: 'public.${TABLE}'` reached wal2json literally, matched nothing, and
/// the slot confirmed past every row. Now it is expanded like every other value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_tables_with_an_env_var_streams_that_tables_rows() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("envopt"));
    let (wanted, other) = (unique_name("wanted"), unique_name("other"));
    for table in [&wanted, &other] {
        pg.execute(&db, &format!("CREATE TABLE {table} (id int PRIMARY KEY)"));
    }
    let slot = unique_name("envopt");
    let stream = unique_stream_name("envopt");
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &stream, 1).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = write_config(
        dir.path(),
        &[slot_yaml(
            &slot,
            &db,
            &[
                "options: {'add-tables': 'public.${PG_CDC_TEST_TABLE}'}".into(),
                format!("kns_stream: {stream}"),
            ],
        )],
    );
    let mut streamer =
        Streamer::start_with_env(&k.endpoint, &config, &[("PG_CDC_TEST_TABLE", &wanted)]);
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "did not start:\n{}",
        streamer.log()
    );
    pg.execute(
        &db,
        &format!(
            "INSERT INTO {other} VALUES (1); INSERT INTO {wanted} VALUES (1), (2); \
             INSERT INTO {other} VALUES (2); INSERT INTO {wanted} VALUES (3);"
        ),
    );
    let records = kinesis::read_until(&k.client(), &stream, 3, DELIVERY).await;
    // Anything of the other table would have been written by now, before row 3.
    let log = streamer.kill();
    drop_slot(&db, &slot);
    kinesis::delete_stream(&k.client(), &stream).await;
    let expected: Vec<(String, i64)> = (1..=3).map(|id| (wanted.clone(), id)).collect();
    assert_eq!(rows(&records), expected, "{log}");
}

/// `check` and `provision` name table-list entries that match nothing: a missing
/// table, a missing schema, and a partitioned parent (wal2json reports the leaf
/// partitions under their own names), without failing either command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_provision_warn_about_table_lists_that_match_nothing() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("tblwarn"));
    pg.execute(
        &db,
        "CREATE TABLE real_t (id int PRIMARY KEY);
         CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
         CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
    );
    let slot = unique_name("tblwarn");
    let stream = unique_stream_name("tblwarn");
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &stream, 1).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = write_config(
        dir.path(),
        &[slot_yaml(
            &slot,
            &db,
            &[
                "options: {'add-tables': 'public.real_t,public.missing_t,public.parted', 'filter-tables': 'nosuch.*'}".into(),
                format!("kns_stream: {stream}"),
            ],
        )],
    );
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let aws = k.sdk_config();

    let rows = pg_cdc_to_kinesis::check::check(&config, &aws).await;
    let checked = rows[0]
        .checks
        .iter()
        .find(|(name, _)| name == "tables")
        .map(|(_, r)| r.clone());
    let report = pg_cdc_to_kinesis::admin::provision(&config, &aws).await;
    drop_slot(&db, &slot);
    kinesis::delete_stream(&k.client(), &stream).await;

    let Some(Ok(checked)) = checked else {
        panic!("no ok `tables` check: {rows:?}")
    };
    let provisioned = report.slots[0]
        .checks
        .iter()
        .find(|f| f.check == "tables")
        .unwrap_or_else(|| panic!("no `tables` finding: {report:?}"));
    assert!(provisioned.ok, "{provisioned:?}");
    assert_eq!(report.slots[0].outcome, "created", "{report:?}");
    for text in [&checked, &provisioned.detail] {
        assert!(text.starts_with("warning: "), "{text}");
        for needle in [
            "add-tables names `public.missing_t`, which does not exist",
            "add-tables names `public.parted`, a partitioned table",
            "public.parted_2026",
            "filter-tables names schema `nosuch`, which does not exist",
        ] {
            assert!(text.contains(needle), "{needle:?} not in: {text}");
        }
        assert!(!text.contains("real_t"), "{text}");
    }
    assert!(rows[0].ok(), "{rows:?}");
}
