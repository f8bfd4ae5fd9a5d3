//! `health`: the slot report, the SSM checkpoint, and the metrics as the EMF lines the
//! function writes.

use std::collections::HashMap;
use std::sync::Mutex;

use pg_cdc_to_kinesis::admin;
use serde_json::{json, Value};

use crate::support::moto;
use crate::support::pg::{self, unique_name};

use super::{admin_case, consume, ctx_with_metrics, drop_if_exists, wait_active};

/// The EMF lines written to `buf`, parsed, by slot.
fn emf_by_slot(buf: &Mutex<Vec<u8>>) -> HashMap<String, Value> {
    let text = String::from_utf8(buf.lock().unwrap().clone()).expect("EMF lines are UTF-8");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["Slot"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

#[tokio::test]
async fn health_reports_slot_state_and_checkpoint_and_publishes_metrics() {
    let pg = pg::shared();
    let (active, idle, missing) = (
        unique_name("adm_health"),
        unique_name("adm_health"),
        unique_name("adm_health"),
    );
    let case = admin_case(pg, &[&active, &idle, &missing]);
    for slot in [&active, &idle] {
        pg.psql(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
        ));
    }
    // WAL written after the slots: the idle slot lags behind it.
    pg.psql("SELECT pg_switch_wal(); CREATE TEMP TABLE t AS SELECT generate_series(1, 1000) g;");
    let mut consumer = consume(pg, &active);
    wait_active(pg, &active, true).await;

    let moto = moto::shared();
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    let written = time::OffsetDateTime::now_utc() - time::Duration::seconds(120);
    let time_text = written
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ssm.put_parameter()
        .name(format!("/pg-cdc-to-kinesis/{idle}/checkpoint"))
        .value(
            json!({"lsn": "0/16B3748", "slot": idle, "stream": "s", "database": "postgres", "time": time_text, "final": false})
                .to_string(),
        )
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("put checkpoint");

    let namespace = unique_name("AdminHealth");
    let (ctx, metrics) = ctx_with_metrics(&namespace);
    let out = admin::handle(&case.config, &ctx, json!({"action": "health"}))
        .await
        .expect("health");
    let _ = consumer.kill();
    let _ = consumer.wait();
    assert_eq!(out["ok"], false, "a missing slot is not healthy: {out:#}");
    let [a, i, m] = [&out["slots"][0], &out["slots"][1], &out["slots"][2]];
    assert_eq!(
        (a["exists"].clone(), a["active"].clone()),
        (json!(true), json!(true)),
        "{a:#}"
    );
    assert!(a["active_pid"].as_i64().is_some_and(|p| p > 0), "{a:#}");
    assert_eq!(i["active"], false);
    assert_eq!(i["wal_status"], "reserved");
    assert!(i["lag_bytes"].as_u64().is_some_and(|l| l > 0), "{i:#}");
    assert!(
        i["retained_wal_bytes"].as_u64().is_some_and(|r| r > 0),
        "{i:#}"
    );
    assert_eq!(i["checkpoint_lsn"], "0/16B3748");
    let age = i["checkpoint_age_seconds"].as_f64().unwrap_or(-1.0);
    assert!((119.0..600.0).contains(&age), "checkpoint age {age}");
    assert_eq!(m["exists"], false);
    assert!(
        m["errors"][0].as_str().unwrap_or("").contains("provision"),
        "{m:#}"
    );

    // One EMF line per slot, in the namespace, with the report's values.
    let lines = emf_by_slot(&metrics);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (slot, expected) in [
        (
            &active,
            vec!["SlotActive", "ReplicationLagBytes", "SlotRetainedWalBytes"],
        ),
        (
            &idle,
            vec![
                "SlotActive",
                "ReplicationLagBytes",
                "SlotRetainedWalBytes",
                "CheckpointAgeSeconds",
            ],
        ),
        (&missing, vec!["SlotActive"]),
    ] {
        let line = &lines[slot.as_str()];
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], namespace.as_str(), "{line}");
        assert_eq!(directive["Dimensions"], json!([["Slot"]]), "{line}");
        let declared: Vec<&str> = directive["Metrics"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| m["Name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(declared, expected, "{line}");
        for name in expected {
            assert!(line[name].is_number(), "{name} has no value: {line}");
        }
    }
    assert_eq!(lines[active.as_str()]["SlotActive"], 1);
    assert_eq!(lines[idle.as_str()]["SlotActive"], 0);
    assert_eq!(lines[missing.as_str()]["SlotActive"], 0);
    assert_eq!(lines[idle.as_str()]["ReplicationLagBytes"], i["lag_bytes"]);
    assert_eq!(
        lines[idle.as_str()]["SlotRetainedWalBytes"],
        i["retained_wal_bytes"]
    );

    wait_active(pg, &active, false).await;
    drop_if_exists(pg, &active);
    drop_if_exists(pg, &idle);
}
