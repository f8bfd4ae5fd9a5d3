//! CloudWatch Embedded Metric Format: one JSON object per slot per interval, written
//! to stdout, where the CloudWatch agent or the awslogs driver turns it into metrics
//! without any API call.
//!
//! Owns the line layout and the counter deltas. It never writes logs (those go to
//! stderr) and never calls CloudWatch.
//!
//! Counters are sent as the increase since the previous line (unit `Count` or
//! `Bytes`), so CloudWatch's `Sum` over a period is the true total for that period
//! and alarms such as "ThrottledRecords Sum > 0 over 5 minutes" work directly.
//! Gauges are sent as they are now.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{Kind, Snapshot};

/// Turns snapshots into EMF lines, remembering the last counter values.
#[derive(Debug)]
pub struct EmfWriter {
    namespace: String,
    previous: HashMap<(String, &'static str), f64>,
}

impl EmfWriter {
    pub fn new(namespace: &str) -> Self {
        EmfWriter {
            namespace: namespace.to_string(),
            previous: HashMap::new(),
        }
    }

    /// One line (without newline) per slot.
    pub fn lines(&mut self, snap: &Snapshot) -> Vec<String> {
        let ts = snap
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut lines = Vec::with_capacity(snap.slots.len());
        for slot in &snap.slots {
            let mut root = Map::new();
            let mut slot_metrics = Vec::new();
            let mut stream_metrics = Vec::new();
            for (metric, value) in &slot.values {
                let value = match metric.kind {
                    Kind::Gauge => *value,
                    Kind::Counter => {
                        let key = (slot.slot.clone(), metric.name);
                        let before = self.previous.insert(key, *value).unwrap_or(0.0);
                        // A counter never shrinks; if it did, count from zero.
                        if *value >= before {
                            *value - before
                        } else {
                            *value
                        }
                    }
                };
                root.insert(metric.name.to_string(), json_number(value));
                let def = json!({"Name": metric.name, "Unit": metric.unit});
                if metric.per_stream {
                    stream_metrics.push(def);
                } else {
                    slot_metrics.push(def);
                }
            }
            let mut directives = Vec::new();
            if !slot_metrics.is_empty() {
                directives.push(json!({
                    "Namespace": self.namespace,
                    "Dimensions": [["Slot"]],
                    "Metrics": slot_metrics,
                }));
            }
            if !stream_metrics.is_empty() {
                directives.push(json!({
                    "Namespace": self.namespace,
                    "Dimensions": [["Slot", "Stream"]],
                    "Metrics": stream_metrics,
                }));
            }
            root.insert(
                "_aws".into(),
                json!({"Timestamp": ts, "CloudWatchMetrics": directives}),
            );
            root.insert("Slot".into(), Value::String(slot.slot.clone()));
            root.insert("Stream".into(), Value::String(slot.stream.clone()));
            lines.push(Value::Object(root).to_string());
        }
        lines
    }
}

/// Whole numbers as JSON integers (easier to read); others as floats.
fn json_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{metric, names, SlotSnapshot};

    fn snap(records: f64, lag: f64) -> Snapshot {
        Snapshot {
            at: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            slots: vec![SlotSnapshot {
                slot: "orders".into(),
                stream: "orders-cdc".into(),
                values: vec![
                    (metric(names::RECORDS_PUT).unwrap(), records),
                    (metric(names::REPLICATION_LAG_BYTES).unwrap(), lag),
                ],
            }],
        }
    }

    #[test]
    fn writes_counters_as_deltas_and_gauges_as_values() {
        let mut w = EmfWriter::new("Ns");
        let first: Value = serde_json::from_str(&w.lines(&snap(10.0, 5.0))[0]).unwrap();
        let second: Value = serde_json::from_str(&w.lines(&snap(25.0, 7.5))[0]).unwrap();
        assert_eq!(first["RecordsPut"], 10);
        assert_eq!(second["RecordsPut"], 15);
        assert_eq!(second["ReplicationLagBytes"], 7.5);
        assert_eq!(second["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let directives = second["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives[0]["Dimensions"], json!([["Slot"]]));
        assert_eq!(
            directives[0]["Metrics"],
            json!([{"Name": "ReplicationLagBytes", "Unit": "Bytes"}])
        );
        assert_eq!(directives[1]["Dimensions"], json!([["Slot", "Stream"]]));
        assert_eq!(directives[1]["Namespace"], "Ns");
        assert_eq!(second["Slot"], "orders");
        assert_eq!(second["Stream"], "orders-cdc");
    }
}
