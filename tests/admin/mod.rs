//! The admin Lambda's commands against a real PostgreSQL 15 (wal2json) and moto (SSM), called directly (`provision`, `drop`, the config source here; `health`
//! in `health.rs`) and once through the Lambda runtime API (`lambda.rs`).

mod health;
mod lambda;
mod restart;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_cdc_to_kinesis::admin::{self, AdminContext};
use pg_cdc_to_kinesis::checkpoint::{ssm_client, Checkpoint, CheckpointStore, SsmStore};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::{SlotState, SlotStatus};
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::source::{self, ConnectParams};
use serde_json::{json, Value};

use crate::support::moto;
use crate::support::pg::{self, password_for, unique_name, Pg, PgOptions, SUPERUSER};

/// One test's configs.yml with its slots, in a temp dir that lives as long as it.
struct Case {
    dir: tempfile::TempDir,
    config: Config,
}

impl Case {
    fn path(&self) -> PathBuf {
        self.dir.path().join("configs.yml")
    }
}

fn case(pg: &Pg, user: &str, password: Option<&str>, slots: &[&str]) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("replication_slots:\n");
    for slot in slots {
        yaml += &format!(
            "  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {user}\n      db_name: postgres\n      kns_stream: {slot}-stream\n",
            pg.port
        );
        if let Some(pw) = password {
            yaml += &format!("      password: \"{pw}\"\n");
        }
    }
    let path = dir.path().join("configs.yml");
    std::fs::write(&path, yaml).expect("write configs.yml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Case { dir, config }
}

fn admin_case(pg: &Pg, slots: &[&str]) -> Case {
    case(pg, SUPERUSER, password_for(SUPERUSER).as_deref(), slots)
}

fn ctx(namespace: &str) -> AdminContext {
    ctx_with_metrics(namespace).0
}

/// A context whose EMF lines go to the returned buffer.
fn ctx_with_metrics(namespace: &str) -> (AdminContext, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let ctx = AdminContext {
        aws: moto::shared().sdk_config(),
        namespace: namespace.to_string(),
        metrics_out: buf.clone(),
    };
    (ctx, buf)
}

fn slot_row(pg: &Pg, slot: &str) -> String {
    pg.psql(&format!(
        "SELECT plugin, active, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ))
}

fn drop_if_exists(pg: &Pg, slot: &str) {
    pg.psql(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
    ));
}

/// `pg_recvlogical` streaming from `slot`: makes the slot active, as the streamer would.
fn consume(pg: &Pg, slot: &str) -> Child {
    let bin = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    Command::new(bin.join("pg_recvlogical"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            SUPERUSER,
        ])
        .args(["-d", "postgres", "-S", slot, "--start", "-f", "/dev/null"])
        .env("PGPASSWORD", password_for(SUPERUSER).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pg_recvlogical")
}

async fn wait_active(pg: &Pg, slot: &str, active: bool) {
    let want = if active { "t" } else { "f" };
    for _ in 0..200 {
        let row = pg.psql(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ));
        if row.trim() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("slot {slot} never became active={active}");
}

fn check<'a>(slot: &'a Value, name: &str) -> &'a Value {
    slot["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|f| f["check"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {slot}"))
}

#[tokio::test]
async fn provision_creates_missing_slots_and_a_second_run_changes_nothing() {
    let pg = pg::shared();
    let (a, b) = (unique_name("adm_prov"), unique_name("adm_prov"));
    let case = admin_case(pg, &[&a, &b]);
    let ctx = ctx("unused");

    let first = admin::handle(&case.config, &ctx, json!({"action": "provision"}))
        .await
        .expect("provision");
    assert_eq!(first["ok"], true, "{first:#}");
    for (i, slot) in [&a, &b].iter().enumerate() {
        let report = &first["slots"][i];
        assert_eq!(report["slot"], **slot);
        assert_eq!(report["outcome"], "created", "{report:#}");
        for name in [
            "connect",
            "wal_level",
            "privilege",
            "capacity",
            "wal2json",
            "slot",
        ] {
            assert_eq!(check(report, name)["ok"], true, "{name}: {report:#}");
        }
        assert!(
            slot_row(pg, slot).starts_with("wal2json|f|"),
            "{}",
            slot_row(pg, slot)
        );
    }
    let before = (slot_row(pg, &a), slot_row(pg, &b));
    let slots_before = pg.psql("SELECT count(*) FROM pg_replication_slots");

    let second = admin::handle(&case.config, &ctx, json!({"action": "provision"}))
        .await
        .expect("provision again");
    assert_eq!(second["ok"], true, "{second:#}");
    assert_eq!(second["slots"][0]["outcome"], "exists");
    assert_eq!(second["slots"][1]["outcome"], "exists");
    assert_eq!((slot_row(pg, &a), slot_row(pg, &b)), before);
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_replication_slots"),
        slots_before
    );
    drop_if_exists(pg, &a);
    drop_if_exists(pg, &b);
}

#[tokio::test]
async fn provision_refuses_without_logical_wal_or_replication_privilege() {
    // wal_level = replica: reported with the fix, and nothing is created.
    let replica = Pg::start(PgOptions::default().set("wal_level", "replica"));
    let slot = unique_name("adm_replica");
    let case1 = admin_case(&replica, &[&slot]);
    let report = admin::provision(&case1.config, &moto::shared().sdk_config()).await;
    let json = serde_json::to_value(&report).unwrap();
    assert!(!report.ok, "{json:#}");
    let wal = check(&json["slots"][0], "wal_level");
    assert_eq!(wal["ok"], false);
    let detail = wal["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("wal_level = replica") && detail.contains("rds.logical_replication = 1"),
        "{detail}"
    );
    assert_eq!(json["slots"][0]["outcome"], "none");
    assert_eq!(
        replica
            .psql("SELECT count(*) FROM pg_replication_slots")
            .trim(),
        "0"
    );

    // A user without REPLICATION: told how to grant it; nothing is created.
    let pg = pg::shared();
    let user = unique_name("adm_norepl");
    pg.psql(&format!("CREATE ROLE {user} LOGIN PASSWORD 'pw_{user}'"));
    let slot = unique_name("adm_norepl");
    let case2 = case(pg, &user, Some(&format!("pw_{user}")), &[&slot]);
    let json =
        serde_json::to_value(admin::provision(&case2.config, &moto::shared().sdk_config()).await)
            .unwrap();
    let privilege = check(&json["slots"][0], "privilege");
    assert_eq!(privilege["ok"], false, "{json:#}");
    let detail = privilege["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("ALTER ROLE {user} WITH REPLICATION")),
        "{detail}"
    );
    assert!(detail.contains("rds_replication"), "{detail}");
    assert_eq!(slot_row(pg, &slot), "");
    pg.psql(&format!("DROP ROLE {user}"));
}

#[tokio::test]
async fn drop_refuses_unless_confirmed_configured_and_inactive() {
    let pg = pg::shared();
    let slot = unique_name("adm_drop");
    let case = admin_case(pg, &[&slot]);
    pg.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
    ));
    let ctx = ctx("unused");
    let run = |event: Value| {
        let (config, ctx) = (&case.config, &ctx);
        async move { admin::handle(config, ctx, event).await.expect("drop") }
    };

    let wrong = run(json!({"action": "drop", "slot": slot, "confirm": "yes"})).await;
    assert_eq!(wrong["dropped"], false);
    assert!(
        wrong["reason"]
            .as_str()
            .unwrap_or("")
            .contains("does not match"),
        "{wrong}"
    );

    let other = unique_name("adm_other");
    let unknown = run(json!({"action": "drop", "slot": other, "confirm": other})).await;
    assert_eq!(unknown["dropped"], false);
    assert!(
        unknown["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not in configs.yml"),
        "{unknown}"
    );

    let mut consumer = consume(pg, &slot);
    wait_active(pg, &slot, true).await;
    let busy = run(json!({"action": "drop", "slot": slot, "confirm": slot})).await;
    let _ = consumer.kill();
    let _ = consumer.wait();
    assert_eq!(busy["dropped"], false);
    assert!(
        busy["reason"].as_str().unwrap_or("").contains("is active"),
        "{busy}"
    );
    assert!(slot_row(pg, &slot).starts_with("wal2json"));

    wait_active(pg, &slot, false).await;
    let done = run(json!({"action": "drop", "slot": slot, "confirm": slot})).await;
    assert_eq!(done["dropped"], true, "{done}");
    assert_eq!(slot_row(pg, &slot), "");

    let again = run(json!({"action": "drop", "slot": slot, "confirm": slot})).await;
    assert_eq!(again["dropped"], false);
    assert!(
        again["reason"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{again}"
    );

    let bad = admin::handle(&case.config, &ctx, json!({"action": "explode"})).await;
    assert!(bad.unwrap_err().to_string().contains("invalid event"));
}

#[tokio::test]
async fn the_config_can_come_from_an_ssm_parameter() {
    let pg = pg::shared();
    let slot = unique_name("adm_ssm");
    let case = admin_case(pg, &[&slot]);
    let moto = moto::shared();
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    let name = format!("/pg-cdc-to-kinesis-config/test/{}", unique_name("cfg"));
    let put = |value: String| {
        let (ssm, name) = (ssm.clone(), name.clone());
        async move {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .expect("put config parameter")
        }
    };
    put(std::fs::read_to_string(case.path()).unwrap()).await;
    let source = admin::ConfigSource::SsmParameter(name.clone());
    let config = source
        .load(&moto.sdk_config())
        .await
        .expect("load from SSM");
    assert_eq!(config.slots.len(), 1);
    assert_eq!(config.slots[0].name, slot);
    assert_eq!(config.slots[0].port, pg.port);

    // A mistake in the parameter is reported like one in a file, naming the parameter.
    put("replication_slots:\n  - x:\n      kns_strem: s\n".into()).await;
    let err = source
        .load(&moto.sdk_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pg-cdc-to-kinesis-config-test-cfg"), "{err}");
    assert!(err.contains("kns_strem"), "{err}");

    let missing = admin::ConfigSource::SsmParameter(format!("{name}-missing"));
    let err = missing
        .load(&moto.sdk_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssm:GetParameter"), "{err}");
}

async fn wait_stopped(status: &SlotStatus) -> String {
    for _ in 0..600 {
        if let SlotState::Stopped { error } = status.state() {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the slot never stopped: {:?}", status.state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_waits_for_a_recently_seen_streamer_and_marks_the_checkpoint_so_the_gap_is_reported() {
    let pg = pg::shared();
    let slot = unique_name("adm_seen");
    let case = admin_case(pg, &[&slot]);
    let cfg = &case.config.slots[0];
    pg.psql(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
    ));
    let slot_lsn: Lsn = pg
        .psql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .trim()
        .parse()
        .unwrap();
    let ctx = ctx("unused");
    let store = SsmStore::new(ssm_client(&moto::shared().sdk_config(), None));
    let checkpoint = |time: &str| Checkpoint {
        lsn: slot_lsn.to_string(),
        slot: slot.clone(),
        stream: cfg.kns_stream.clone(),
        database: cfg.db_name.clone(),
        time: time.to_string(),
        is_final: false,
        dropped: false,
        backfill: None,
    };
    let drop_event =
        |force: bool| json!({"action": "drop", "slot": slot, "confirm": slot, "force": force});
    let reason = |report: &Value| report["reason"].as_str().unwrap_or_default().to_string();

    // The streamer checkpointed a moment ago and is reconnecting: the slot is inactive.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    store
        .write(&cfg.checkpoint.parameter, &checkpoint(&now))
        .await
        .unwrap();
    let refused = admin::handle(&case.config, &ctx, drop_event(false))
        .await
        .unwrap();
    assert_eq!(refused["dropped"], false, "{refused}");
    for want in [
        "ready_retry_budget_secs (120s)",
        "force",
        &cfg.checkpoint.parameter,
    ] {
        assert!(
            reason(&refused).contains(want),
            "{want:?} missing: {refused}"
        );
    }
    assert!(slot_row(pg, &slot).starts_with("wal2json"), "still there");

    // An old checkpoint, but the streamer's monitor session is connected.
    store
        .write(
            &cfg.checkpoint.parameter,
            &checkpoint("2020-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    let monitor = source::sql_connect(&ConnectParams::from_slot(cfg))
        .await
        .unwrap();
    let refused = admin::handle(&case.config, &ctx, drop_event(false))
        .await
        .unwrap();
    drop(monitor);
    assert_eq!(refused["dropped"], false, "{refused}");
    assert!(
        reason(&refused).contains(&format!("pg-cdc-to-kinesis/{slot}")),
        "{refused}"
    );

    // Forced: dropped, and the checkpoint says so at the slot's position.
    store
        .write(&cfg.checkpoint.parameter, &checkpoint(&now))
        .await
        .unwrap();
    let done = admin::handle(&case.config, &ctx, drop_event(true))
        .await
        .unwrap();
    assert_eq!(done["dropped"], true, "{done}");
    assert!(reason(&done).contains("marked dropped"), "{done}");
    assert_eq!(slot_row(pg, &slot), "");
    let mark = store
        .read(&cfg.checkpoint.parameter)
        .await
        .unwrap()
        .unwrap();
    assert!(mark.dropped && mark.is_final, "{mark:?}");
    assert_eq!(mark.lsn(), Some(slot_lsn));

    // Changes the dropped slot would have streamed, then provision re-creates it.
    pg.psql("SELECT pg_logical_emit_message(true, 'adm-seen-test', 'lost')");
    let provisioned = admin::handle(&case.config, &ctx, json!({"action": "provision"}))
        .await
        .unwrap();
    assert_eq!(
        provisioned["slots"][0]["outcome"], "created",
        "{provisioned:#}"
    );

    // The streamer's next start names the gap instead of streaming on silently.
    let p = Pipeline::start(
        &case.config,
        &RunEnv {
            aws: moto::shared().sdk_config(),
        },
    );
    let error = wait_stopped(&p.slots[0]).await;
    assert!(p.wait().await.is_err());
    for want in [
        "admin Lambda's drop",
        &slot_lsn.to_string(),
        "accept_checkpoint_gap: true",
    ] {
        assert!(error.contains(want), "{want:?} missing from: {error}");
    }
    drop_if_exists(pg, &slot);
}
