//! What the streamer's log says, read as an operator reads it: each fact once, and
//! fields as words (`address=127.0.0.1:PORT`, not `Some(127.0.0.1:PORT)`).

use std::time::Duration;

use crate::support::kinesis;
use crate::support::pg::{self, SUPERUSER};
use crate::support::process::Streamer;

const STARTUP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_slot_is_logged_once_and_fields_read_as_words() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("msg_db"));
    let table = pg::unique_name("msg_t");
    pg.execute(&db, &format!("CREATE TABLE {table} (id int PRIMARY KEY);"));
    let slot = pg::unique_name("msg_slot");
    let stream = kinesis::unique_stream_name("msg");
    let client = kinesis::kinesalite().client();
    kinesis::create_stream(&client, &stream, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("configs.yml");
    std::fs::write(
        &config,
        format!(
            "http_listen: 127.0.0.1:0\nreplication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      \
             port: {}\n      user: {SUPERUSER}\n      password: {SUPERUSER}_pw\n      db_name: {db}\n      \
             options: {{add-tables: 'public.{table}'}}\n      kns_stream: {stream}\n      \
             checkpoint: false\n",
            pg.port
        ),
    )
    .expect("write config");

    let mut streamer = Streamer::start(&kinesis::kinesalite().endpoint, &config);
    let started = streamer.wait_for_log("streaming from", STARTUP);
    let log = streamer.kill();
    assert!(started, "{log}");
    let created: Vec<&str> = log.lines().filter(|l| l.contains("created")).collect();
    assert_eq!(created.len(), 1, "logged {} times:\n{log}", created.len());
    assert!(created[0].contains(&slot), "{}", created[0]);
    let listening = log
        .lines()
        .find(|l| l.contains("listening on http://"))
        .unwrap_or_else(|| panic!("no HTTP line:\n{log}"));
    assert!(listening.contains("address=127.0.0.1:"), "{listening}");
    assert!(!log.contains("Some("), "a field printed as Debug:\n{log}");

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
