//! `health`: the slot report, the SSM checkpoint, and the metrics as moto's CloudWatch
//! stores them.

use std::path::PathBuf;
use std::process::Command;

use pg_cdc_to_kinesis::admin;
use serde_json::{json, Value};

use super::{admin_case, consume, ctx, drop_if_exists, wait_active};
use crate::support::moto;
use crate::support::pg::{self, unique_name};

/// Call one CloudWatch API on moto with boto3 from `.tools/venv`; returns its JSON.
fn boto3_cloudwatch(endpoint: &str, operation: &str, args: Value) -> Value {
    let python = std::env::var_os("MOTO_SERVER_BIN")
        .map(|b| PathBuf::from(b).with_file_name("python"))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python")
        });
    let script = "import boto3, json, sys\n\
        c = boto3.client('cloudwatch', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
        print(json.dumps(getattr(c, sys.argv[2])(**json.loads(sys.argv[3])), default=str))\n";
    let out = Command::new(&python)
        .args(["-c", script, endpoint, operation, &args.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "boto3 {operation}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("boto3 output is JSON")
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
    let out = admin::handle(&case.config, &ctx(&namespace), json!({"action": "health"}))
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

    // The values landed in CloudWatch, per slot. Read back with boto3: this SDK's
    // CloudWatch client speaks only RPC-v2 CBOR, which moto does not.
    let listed = boto3_cloudwatch(
        &moto.endpoint,
        "list_metrics",
        json!({"Namespace": namespace}),
    );
    let mut seen: Vec<(String, String)> = listed["Metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["MetricName"].as_str().unwrap_or_default().to_string(),
                        m["Dimensions"][0]["Value"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    seen.sort();
    seen.dedup();
    for (metric, slot) in [
        ("SlotActive", &active),
        ("SlotActive", &idle),
        ("SlotActive", &missing),
        ("ReplicationLagBytes", &idle),
        ("SlotRetainedWalBytes", &idle),
        ("CheckpointAgeSeconds", &idle),
    ] {
        assert!(
            seen.contains(&(metric.to_string(), slot.to_string())),
            "{metric} for {slot} missing from {seen:?}"
        );
    }
    assert!(!seen.contains(&("CheckpointAgeSeconds".into(), active.clone())));
    let stats = |slot: &str| {
        boto3_cloudwatch(
            &moto.endpoint,
            "get_metric_statistics",
            json!({"Namespace": namespace, "MetricName": "SlotActive",
                   "Dimensions": [{"Name": "Slot", "Value": slot}],
                   "StartTime": "2000-01-01T00:00:00Z", "EndTime": "2100-01-01T00:00:00Z",
                   "Period": 60, "Statistics": ["Maximum"]}),
        )["Datapoints"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|p| p["Maximum"].as_f64())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(stats(&active), [1.0]);
    assert_eq!(stats(&idle), [0.0]);
    let lag = boto3_cloudwatch(
        &moto.endpoint,
        "get_metric_statistics",
        json!({"Namespace": namespace, "MetricName": "ReplicationLagBytes",
               "Dimensions": [{"Name": "Slot", "Value": idle}],
               "StartTime": "2000-01-01T00:00:00Z", "EndTime": "2100-01-01T00:00:00Z",
               "Period": 60, "Statistics": ["Maximum"]}),
    );
    assert_eq!(
        lag["Datapoints"][0]["Maximum"].as_f64(),
        i["lag_bytes"].as_f64(),
        "{lag}"
    );

    wait_active(pg, &active, false).await;
    drop_if_exists(pg, &active);
    drop_if_exists(pg, &idle);
}
