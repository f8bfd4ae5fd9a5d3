//! `tail` as a developer runs it, against real changes: the streamer puts a real
//! table's inserts, updates, deletes and a truncate on a four-shard kinesalite stream,
//! and `tail` reads them back. It ends at the end of the stream (`--limit` larger than
//! the stream included), `--ordered` sorts by `(commit_lsn, seq)`, shard order is
//! labelled with the shard, `--format debezium` and `pretty` print what they promise,
//! and `--timeout` ends a `--follow`. The streamer sends JSON (`wire_format: json`),
//! as the README advises with kinesalite: `tail`, like any SDK, cannot read back what
//! kinesalite took in CBOR.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use serde_json::Value;

use crate::support::kinesis;
use crate::support::pg::{self, SUPERUSER};
use crate::support::process::{self, Finished, Streamer};

const STARTUP: Duration = Duration::from_secs(30);
const TAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// 20 inserts, 5 updates, 3 deletes, 1 truncate.
const RECORDS: usize = 29;

fn tail(stream: &str, args: &[&str]) -> Finished {
    let mut all = vec!["tail", "--stream", stream];
    all.extend_from_slice(args);
    process::run(
        process::command(&kinesis::kinesalite().endpoint, &all),
        TAIL_TIMEOUT,
    )
}

fn order_key(line: &str) -> (Lsn, u64) {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let lsn = v["commit_lsn"].as_str().unwrap_or_default();
    (
        lsn.parse().unwrap_or_else(|e| panic!("{e:?}: {line}")),
        v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {line}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_ends_at_the_end_sorts_with_ordered_and_prints_debezium() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("tail_db"));
    let table = pg::unique_name("tail_t");
    pg.execute(
        &db,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v text);"),
    );
    let slot = pg::unique_name("tail_slot");
    let stream = kinesis::unique_stream_name("tail");
    let client = kinesis::kinesalite().client();
    kinesis::create_stream(&client, &stream, 4).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("configs.yml");
    std::fs::write(
        &config,
        format!(
            "http_listen: 127.0.0.1:0\nmetrics_emf: false\nreplication_slots:\n  - {slot}:\n      \
             host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      password: {SUPERUSER}_pw\n      \
             db_name: {db}\n      options: {{add-tables: 'public.{table}'}}\n      kns_stream: {stream}\n      \
             checkpoint: false\n      wire_format: json\n",
            pg.port
        ),
    )
    .expect("write config");
    let mut streamer = Streamer::start(&kinesis::kinesalite().endpoint, &config);
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "{}",
        streamer.log()
    );
    // Each transaction touches rows on every shard, so shard order is not commit order.
    pg.execute(
        &db,
        &format!("INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, 20) g;"),
    );
    pg.execute(
        &db,
        &format!("UPDATE {table} SET v = 'u' WHERE id % 4 = 0;"),
    );
    pg.execute(&db, &format!("DELETE FROM {table} WHERE id IN (3, 7, 11);"));
    pg.execute(&db, &format!("TRUNCATE {table};"));
    let read = kinesis::read_until(&client, &stream, RECORDS, STARTUP).await;
    let log = streamer.kill();
    assert_eq!(read.len(), RECORDS, "{log}");

    // A limit larger than the stream: tail reads every shard to its end and stops.
    let started = Instant::now();
    let all = tail(&stream, &["--from-start", "--limit", "1000"]);
    assert_eq!(all.code, Some(0), "{}", all.describe());
    assert_eq!(all.stdout.lines().count(), RECORDS, "{}", all.describe());
    assert!(started.elapsed() < Duration::from_secs(30));
    // Shard order, each shard labelled (on stderr, so stdout stays JSON lines).
    let labels = all
        .stderr
        .lines()
        .filter(|l| l.starts_with("== shard shardId-"))
        .count();
    assert!(labels >= 2, "{}", all.describe());

    // --ordered: the same records, sorted by (commit_lsn, seq), and it says so.
    let ordered = tail(&stream, &["--from-start", "--ordered"]);
    assert_eq!(ordered.code, Some(0), "{}", ordered.describe());
    let keys: Vec<(Lsn, u64)> = ordered.stdout.lines().map(order_key).collect();
    assert_eq!(keys.len(), RECORDS);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{}", ordered.stdout);
    let mut unordered: Vec<(Lsn, u64)> = all.stdout.lines().map(order_key).collect();
    assert_ne!(
        unordered, sorted,
        "four shards should interleave the transactions"
    );
    unordered.sort();
    assert_eq!(unordered, sorted, "the same records either way");
    assert!(
        ordered.stderr.contains(&format!(
            "== {RECORDS} records from 4 shards, sorted by (commit_lsn, seq) =="
        )),
        "{}",
        ordered.describe()
    );
    let kinds: Vec<String> = ordered
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.last().map(String::as_str), Some("truncate"));

    // --format debezium: one envelope per record, ops in commit order.
    let dbz = tail(
        &stream,
        &[
            "--from-start",
            "--ordered",
            "--format",
            "debezium",
            "--slot",
            &slot,
        ],
    );
    assert_eq!(dbz.code, Some(0), "{}", dbz.describe());
    let envelopes: Vec<Value> = dbz
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ops: String = envelopes
        .iter()
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        format!("{}{}{}t", "c".repeat(20), "u".repeat(5), "d".repeat(3))
    );
    let update = &envelopes[20];
    assert_eq!(update["after"]["v"], "u");
    assert_eq!(update["before"]["id"], update["after"]["id"]);
    let delete = &envelopes[25];
    assert!(delete["after"].is_null() && delete["before"]["id"].is_u64());
    let source = &envelopes[0]["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], slot.as_str());
    assert_eq!(
        (source["db"].as_str(), source["table"].as_str()),
        (Some(db.as_str()), Some(table.as_str()))
    );
    assert!(source["lsn"].is_u64() && source["txId"].is_u64() && source["ts_ms"].is_i64());
    assert_eq!(source["snapshot"], "false");

    // --format pretty: labels and indented JSON, for people.
    let pretty = tail(
        &stream,
        &["--from-start", "--limit", "1", "--format", "pretty"],
    );
    assert_eq!(pretty.code, Some(0), "{}", pretty.describe());
    assert!(
        pretty.stdout.starts_with("== shard shardId-")
            && pretty.stdout.contains("\n{\n  \"kind\": \""),
        "{}",
        pretty.describe()
    );

    pg.execute(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = '{slot}' AND active_pid IS NOT NULL;"
        ),
    );
    for _ in 0..100 {
        if pg
            .try_psql_in(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{slot}');"),
            )
            .is_ok()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kinesis::delete_stream(&client, &stream).await;
    pg.execute("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE);"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_stops_at_the_tip_without_follow_and_at_the_timeout_with_it() {
    let client = kinesis::kinesalite().client();
    let stream = kinesis::unique_stream_name("tail-timeout");
    kinesis::create_stream(&client, &stream, 2).await;

    // From the tip and without --follow there is nothing to wait for: it ends, and says
    // how to read more.
    let at_tip = tail(&stream, &[]);
    assert_eq!(at_tip.code, Some(0), "{}", at_tip.describe());
    assert!(
        at_tip.stdout.is_empty() && at_tip.stderr.contains("--from-start"),
        "{}",
        at_tip.describe()
    );

    let started = Instant::now();
    let follow = tail(&stream, &["--follow", "--timeout", "1.5"]);
    let took = started.elapsed();
    assert_eq!(follow.code, Some(0), "{}", follow.describe());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(20),
        "took {took:?}"
    );
    kinesis::delete_stream(&client, &stream).await;
}
