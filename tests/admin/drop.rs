//! The admin Lambda's `drop`: refused unless confirmed, configured and inactive; it waits
//! for a recently seen streamer and marks the checkpoint so the gap is reported.

use std::time::Duration;

use pg_cdc_to_kinesis::admin;
use pg_cdc_to_kinesis::checkpoint::{ssm_client, Checkpoint, CheckpointStore, SsmStore};
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::{SlotState, SlotStatus};
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::source::{self, ConnectParams};
use serde_json::{json, Value};

use crate::support::moto;
use crate::support::pg::{self, unique_name};

use super::*;

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
