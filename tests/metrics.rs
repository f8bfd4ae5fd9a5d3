//! Metrics: the EMF lines checked against the Embedded Metric Format rules, and the
//! same metrics on `GET /metrics`, while real changes stream to the Kinesis stub.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::checkpoint::MemoryStore;
use pg_cdc_to_kinesis::metrics::{Kind, METRICS, PROMETHEUS_PREFIX};
use serde_json::Value;

use crate::support::case::{get, Case, Running};
use crate::support::pg;

/// Checks one EMF line against the spec; returns the metric names it declares.
fn check_emf(line: &str, namespace: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let aws = &v["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{line}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty(), "{line}");
    let mut names = Vec::new();
    for d in directives {
        assert_eq!(d["Namespace"], namespace, "{line}");
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(!set.is_empty() && set.len() <= 30, "{line}");
            for dim in set {
                let dim = dim.as_str().expect("dimension name");
                assert!(
                    v[dim].is_string(),
                    "dimension {dim} has no string member: {line}"
                );
            }
        }
        for m in d["Metrics"].as_array().expect("Metrics") {
            let name = m["Name"].as_str().expect("Name");
            let unit = m["Unit"].as_str().expect("Unit");
            assert!(
                ["Count", "Bytes", "Milliseconds", "Seconds", "None"].contains(&unit),
                "{line}"
            );
            assert!(
                v[name].is_number(),
                "metric {name} has no numeric value: {line}"
            );
            names.push(name.to_string());
        }
    }
    assert_eq!(v["Slot"].as_str().map(str::is_empty), Some(false));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_in_emf_and_on_the_metrics_endpoint() {
    let pg = pg::shared();
    let case = Case::new(pg, "metrics").with_sql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    let (db, slot, stream) = (&case.db, &case.slot, &case.stream);
    let stub = case.stub(2);
    // Checkpoints in memory, so that CheckpointAgeSeconds has something to report.
    let yaml = case
        .ops_yaml("metrics_namespace: Test/Cdc\n", "")
        .replace("checkpoint: false", "checkpoint: true");
    let store: Arc<dyn pg_cdc_to_kinesis::checkpoint::CheckpointStore> =
        Arc::new(MemoryStore::default());
    let running = Running::start_with_checkpoints(&yaml, stub.sdk_config(), Some(store)).await;
    let (emf, addr) = (&running.emf, running.addr());

    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.execute(db, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 300) g; UPDATE t SET v = 'w' WHERE id <= 10");
    let got = stub
        .wait_for_records(stream, 310, Duration::from_secs(30))
        .await;
    assert_eq!(got.len(), 310, "records did not arrive");

    // Every metric appears (in some line) once the WAL monitor and a checkpoint ran.
    let all: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (seen, records_put, changes_read) = loop {
        let text = emf.text();
        let mut seen = BTreeSet::new();
        let (mut records_put, mut changes_read) = (0.0, 0.0);
        for line in text.lines() {
            for name in check_emf(line, "Test/Cdc") {
                seen.insert(name);
            }
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["Stream"], stream.as_str());
            records_put += v["RecordsPut"].as_f64().unwrap_or(0.0);
            changes_read += v["ChangesRead"].as_f64().unwrap_or(0.0);
        }
        if seen.len() == all.len() && records_put >= 310.0 || Instant::now() > deadline {
            break (seen, records_put, changes_read);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seen: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(seen, all, "{}", emf.text());
    // Counters are per-interval deltas: their sum over all lines is the total.
    assert_eq!(records_put, 310.0, "{}", emf.text());
    assert_eq!(changes_read, 310.0, "{}", emf.text());

    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for m in METRICS {
        let name = match m.kind {
            Kind::Counter => format!("{PROMETHEUS_PREFIX}{}_total", m.prom),
            Kind::Gauge => format!("{PROMETHEUS_PREFIX}{}", m.prom),
        };
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
        let sample = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no sample of {name}:\n{text}"));
        assert!(sample.contains(&format!("slot=\"{slot}\"")), "{sample}");
        if m.per_stream {
            assert!(sample.contains(&format!("stream=\"{stream}\"")), "{sample}");
        }
    }
    assert!(
        text.contains(&format!(
            "{PROMETHEUS_PREFIX}records_put_total{{slot=\"{slot}\",stream=\"{stream}\"}} 310\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{PROMETHEUS_PREFIX}slot_status{{slot=\"{slot}\"}} 1\n"
        )),
        "{text}"
    );

    running.stop().await;
    let _ = pg.try_psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
}
