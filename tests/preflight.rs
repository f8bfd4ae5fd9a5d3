//! Start-up and `check` agree, and neither leaves a slot behind: a wrong stream or no
//! region fails before a slot exists, a slot of another database or plugin and a
//! dropped slot with a checkpoint are refused by both alike, a missing wal2json stops
//! the slot, and tables without a replica identity are reported and counted.
//! Real PostgreSQL 15 + wal2json, kinesalite, moto; the pipeline and `check` in process.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::check::{self, CheckRow};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::{SlotState, SlotStatus};
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::moto;
use crate::support::pg::{self, password_for, unique_name, Pg, SUPERUSER};
use crate::support::process;

/// One slot on the shared cluster: `user` (password `<user>_pw`), `extra` slot keys.
fn slot_yaml(slot: &str, db: &str, stream: &str, user: &str, extra: &str) -> String {
    format!(
        "replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {user}\n      password: {}\n      db_name: {db}\n      kns_stream: {stream}\n      status_interval_secs: 1\n{extra}",
        pg::shared().port,
        password_for(user).unwrap_or_else(|| format!("{user}_pw")),
    )
}

fn load(yaml: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (config, dir)
}

async fn wait_state(
    status: &SlotStatus,
    timeout: Duration,
    want: impl Fn(&SlotState) -> bool,
) -> SlotState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = status.state();
        if want(&state) || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `config` until its one slot stops for good; the stop message.
async fn stop_message(config: &Config, aws: aws_config::SdkConfig) -> String {
    let pipeline = Pipeline::start(config, &RunEnv { aws });
    let state = wait_state(&pipeline.slots[0], Duration::from_secs(60), |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    pipeline.stop();
    let _ = pipeline.wait().await;
    match state {
        SlotState::Stopped { error } => error,
        other => panic!("the slot did not stop: {other:?}"),
    }
}

fn slot_exists(pg: &Pg, slot: &str) -> bool {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    )) != "0"
}

fn drop_slot(pg: &Pg, slot: &str) {
    let _ = pg.try_psql_in(
        "postgres",
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    );
}

/// The finding of check `name` in the report's only row.
fn finding<'a>(rows: &'a [CheckRow], name: &str) -> &'a Result<String, String> {
    rows[0]
        .checks
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no {name} check in {}", check::render(rows)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_stops_the_slot_before_creating_it() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_stream"));
    let slot = unique_name("pf_stream");
    let yaml = slot_yaml(
        &slot,
        &db,
        &unique_stream_name("pf_typo"),
        SUPERUSER,
        "      checkpoint: false\n",
    );
    let (config, _dir) = load(&yaml);
    let error = stop_message(&config, kinesalite().sdk_config()).await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(
        !slot_exists(pg, &slot),
        "a replication slot was left behind: {error}"
    );
    drop_slot(pg, &slot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_aws_region_stops_the_slot_before_creating_it() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_region"));
    let slot = unique_name("pf_region");
    let stream = unique_stream_name("pf_region");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let (config, _dir) = load(&slot_yaml(
        &slot,
        &db,
        &stream,
        SUPERUSER,
        "      checkpoint: false\n",
    ));
    let credentials = aws_credential_types::Credentials::new("AKIDTEST", "x", None, None, "t");
    let no_region = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&kinesalite().endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build();
    let error = stop_message(&config, no_region).await;
    assert!(
        error.contains("region") && error.contains("AWS_REGION"),
        "{error}"
    );
    assert!(
        !slot_exists(pg, &slot),
        "a replication slot was left behind"
    );
    drop_slot(pg, &slot);
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_created_before_a_permanent_failure_is_named_in_the_error() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_left"));
    let slot = unique_name("pf_left");
    let stream = unique_stream_name("pf_left");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    // wal2json refuses the option value at START_REPLICATION, after the slot exists.
    let (config, _dir) = load(&slot_yaml(
        &slot,
        &db,
        &stream,
        SUPERUSER,
        "      checkpoint: false\n      options: {actions: 'bogus'}\n",
    ));
    let error = stop_message(&config, kinesalite().sdk_config()).await;
    assert!(slot_exists(pg, &slot));
    assert!(
        error.contains(&format!("pg_drop_replication_slot('{slot}')"))
            && error.contains("holding WAL"),
        "{error}"
    );
    drop_slot(pg, &slot);
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_refuse_a_slot_of_another_database_or_plugin_alike() {
    let pg = pg::shared();
    let owner = pg.create_database(&unique_name("pf_owner"));
    let db = pg.create_database(&unique_name("pf_other"));
    let stream = unique_stream_name("pf_other");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let aws = kinesalite().sdk_config();
    let cases = [
        (
            unique_name("pf_otherdb"),
            owner.as_str(),
            "wal2json",
            owner.as_str(),
        ),
        (
            unique_name("pf_plugin"),
            db.as_str(),
            "test_decoding",
            "test_decoding",
        ),
    ];
    for (slot, created_in, plugin, named) in &cases {
        pg.execute(
            created_in,
            &format!("SELECT pg_create_logical_replication_slot('{slot}', '{plugin}')"),
        );
        let (config, _dir) = load(&slot_yaml(
            slot,
            &db,
            &stream,
            SUPERUSER,
            "      checkpoint: false\n",
        ));
        let rows = check::check(&config, &aws).await;
        let checked = finding(&rows, "slot")
            .clone()
            .expect_err("check passed a slot run refuses");
        assert!(checked.contains(named), "{checked}");
        let stopped = stop_message(&config, aws.clone()).await;
        assert_eq!(stopped, checked, "check and run disagree");
        drop_slot(pg, slot);
    }
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_refuse_a_dropped_slot_whose_checkpoint_remains() {
    let pg = pg::shared();
    let m = moto::shared();
    let aws = m.sdk_config();
    let db = pg.create_database(&unique_name("pf_gap"));
    let slot = unique_name("pf_gap");
    let stream = unique_stream_name("pf_gap");
    let kinesis_client = aws_sdk_kinesis::Client::new(&aws);
    kinesis::create_stream(&kinesis_client, &stream, 1).await;
    let parameter = format!("/pg-cdc-tests/{slot}/checkpoint");
    // What a run that confirmed 0/1000 and then lost its slot leaves in SSM.
    let checkpoint = format!(
        r#"{{"lsn":"0/1000","slot":"{slot}","stream":"{stream}","database":"{db}","time":"2024-01-01T00:00:00Z","final":false}}"#
    );
    pg_cdc_to_kinesis::checkpoint::ssm_client(&aws, None)
        .put_parameter()
        .name(&parameter)
        .value(checkpoint)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let (config, _dir) = load(&slot_yaml(
        &slot,
        &db,
        &stream,
        SUPERUSER,
        &format!("      checkpoint_parameter: {parameter}\n"),
    ));

    let rows = check::check(&config, &aws).await;
    let checked = finding(&rows, "checkpoint")
        .clone()
        .expect_err("check passed a checkpoint run refuses");
    assert!(
        checked.contains("0/1000") && checked.contains("accept_checkpoint_gap"),
        "{checked}"
    );
    let stopped = stop_message(&config, aws.clone()).await;
    assert_eq!(stopped, checked, "check and run disagree");
    assert!(!slot_exists(pg, &slot), "the refused slot was created");
    drop_slot(pg, &slot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_in_one_line_when_ssm_is_unreachable_with_checkpoints_on() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_ssm"));
    let slot = unique_name("pf_ssm");
    // Nothing listens there: every AWS call fails to connect.
    let unreachable = kinesis::sdk_config(&format!("http://127.0.0.1:{}", kinesis::free_port()));
    let (config, _dir) = load(&slot_yaml(&slot, &db, "s", SUPERUSER, ""));
    let rows = check::check(&config, &unreachable).await;
    let checked = finding(&rows, "checkpoint")
        .clone()
        .expect_err("check passed although SSM is unreachable");
    assert!(
        checked.contains("SSM GetParameter failed") && checked.contains("reachable"),
        "{checked}"
    );
    assert!(
        checked.len() < 600 && !checked.contains('\n'),
        "not one short line: {checked}"
    );
    let (off, _dir) = load(&slot_yaml(
        &slot,
        &db,
        "s",
        SUPERUSER,
        "      checkpoint: false\n",
    ));
    let rows = check::check(&off, &unreachable).await;
    assert!(
        rows[0].checks.iter().all(|(n, _)| n != "checkpoint"),
        "{}",
        check::render(&rows)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wal2json_stops_the_slot_and_says_to_install_it() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_nolib"));
    let stream = unique_stream_name("pf_nolib");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    // A role whose sessions look for libraries in an empty place: to its server
    // processes wal2json is not installed (SQLSTATE 58P01).
    let user = unique_name("pf_nolib_user");
    pg.execute(
        "postgres",
        &format!(
            "CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{user}_pw'; \
             ALTER ROLE {user} SET dynamic_library_path = '/nonexistent'"
        ),
    );
    let existing = unique_name("pf_nolib_old");
    pg.execute(
        &db,
        &format!("SELECT pg_create_logical_replication_slot('{existing}', 'wal2json')"),
    );
    // A slot to create (the SQL call fails) and one to stream (the walsender fails).
    for (slot, what) in [
        (unique_name("pf_nolib_new"), "creating"),
        (existing.clone(), "streaming"),
    ] {
        let (config, _dir) = load(&slot_yaml(
            &slot,
            &db,
            &stream,
            &user,
            "      checkpoint: false\n",
        ));
        let error = stop_message(&config, kinesalite().sdk_config()).await;
        assert!(
            error.contains("58P01") && error.contains("install wal2json"),
            "{what}: {error}"
        );
        drop_slot(pg, &slot);
    }
    pg.execute("postgres", &format!("DROP ROLE {user}"));
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_decoded_tables_without_a_replica_identity() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_ident"));
    pg.execute(
        &db,
        "CREATE TABLE keyed (id int PRIMARY KEY); \
         CREATE TABLE nokey (v text); \
         CREATE TABLE full_ident (v text); ALTER TABLE full_ident REPLICA IDENTITY FULL; \
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING; \
         CREATE TABLE ignored (v text)",
    );
    let slot = unique_name("pf_ident");
    let stream = unique_stream_name("pf_ident");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let (config, _dir) = load(&slot_yaml(
        &slot,
        &db,
        &stream,
        SUPERUSER,
        "      checkpoint: false\n      options: {filter-tables: 'public.ignored'}\n",
    ));
    let rows = check::check(&config, &kinesalite().sdk_config()).await;
    let found = finding(&rows, "replident")
        .clone()
        .expect_err("tables without a replica identity passed");
    assert!(
        found.contains("public.nokey") && found.contains("public.nothing"),
        "{found}"
    );
    assert!(
        !found.contains("keyed,") && !found.contains("full_ident") && !found.contains("ignored"),
        "{found}"
    );
    assert!(found.contains("REPLICA IDENTITY FULL"), "{found}");
    pg.execute(
        &db,
        "ALTER TABLE nokey REPLICA IDENTITY FULL; ALTER TABLE nothing REPLICA IDENTITY DEFAULT",
    );
    let rows = check::check(&config, &kinesalite().sdk_config()).await;
    assert!(
        finding(&rows, "replident").is_ok(),
        "{}",
        check::render(&rows)
    );
    assert!(rows[0].ok(), "{}", check::render(&rows));
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_updates_are_counted_and_warned_about_once_per_table() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_skip"));
    pg.execute(
        &db,
        "CREATE TABLE nokey (id int, v text); INSERT INTO nokey SELECT g, 'a' FROM generate_series(1, 300) g",
    );
    let slot = unique_name("pf_skip");
    let stream = unique_stream_name("pf_skip");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let port = kinesis::free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(
        &path,
        format!(
            "http_listen: 127.0.0.1:{port}\n{}",
            slot_yaml(&slot, &db, &stream, SUPERUSER, "      checkpoint: false\n")
        ),
    )
    .unwrap();
    let mut streamer = process::Streamer::start(&kinesalite().endpoint, &path);
    assert!(
        streamer.wait_for_log("streaming from", Duration::from_secs(60)),
        "{}",
        streamer.log()
    );
    pg.execute(&db, "UPDATE nokey SET v = 'b'; DELETE FROM nokey WHERE id <= 10; INSERT INTO nokey VALUES (0, 'c')");
    // The insert comes through; the 310 updates and deletes before it cannot.
    let records =
        kinesis::read_until(&kinesalite().client(), &stream, 1, Duration::from_secs(60)).await;
    assert_eq!(records.len(), 1, "{}", streamer.log());
    let metrics = loop_metric(port, "pg_cdc_to_kinesis_changes_skipped_total", 310.0).await;
    assert_eq!(metrics, Some(310.0), "{}", streamer.log());
    let log = streamer.kill();
    // Lines about the skipped changes (the start-up note that the table has no
    // primary key is another matter).
    let lines = log
        .lines()
        .filter(|l| l.contains("nokey") && l.contains("skipped"))
        .count();
    assert_eq!(
        lines, 1,
        "one warning for the table, not one per row:\n{log}"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("nokey") && l.contains("skipped"))
        .unwrap_or_default();
    assert!(warning.contains("REPLICA IDENTITY FULL"), "{warning}");
    drop_slot(pg, &slot);
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

/// Polls `/metrics` until `name` reaches `want` (or 30 s pass); its last value.
async fn loop_metric(port: u16, name: &str, want: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(body) = http_get(port, "/metrics").await {
            last = body
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok());
            if last == Some(want) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}
