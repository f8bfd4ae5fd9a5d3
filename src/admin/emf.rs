//! The health metrics as CloudWatch Embedded Metric Format lines, one JSON object per
//! slot, written to the function's stdout: Lambda's log pipeline turns them into
//! metrics, as the awslogs driver does for the streamer's lines (`crate::metrics::emf`).
//!
//! Owns the line layout (namespace, dimension `Slot`, units). It never calls
//! CloudWatch, so the function needs no `cloudwatch:PutMetricData` permission and no
//! network path to CloudWatch's API, and it never decides which values to publish.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::AdminError;
use crate::serve::EmfOut;

/// One value of one slot.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Datum {
    pub name: &'static str,
    /// A CloudWatch unit: `Count`, `Bytes`, `Seconds`.
    pub unit: &'static str,
    pub value: f64,
}

/// The EMF line (without newline) for `slot`'s `data`, stamped `at`.
pub(super) fn line(
    namespace: &str,
    dimension: &str,
    slot: &str,
    data: &[Datum],
    at: SystemTime,
) -> String {
    let ts = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut root = Map::new();
    let defs: Vec<Value> = data
        .iter()
        .map(|d| json!({"Name": d.name, "Unit": d.unit}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({"Timestamp": ts, "CloudWatchMetrics": [{
            "Namespace": namespace,
            "Dimensions": [[dimension]],
            "Metrics": defs,
        }]}),
    );
    root.insert(dimension.into(), Value::String(slot.to_string()));
    for d in data {
        root.insert(d.name.into(), number(d.value));
    }
    Value::Object(root).to_string()
}

/// Write `lines` to `out`, one per line, and flush: Lambda may freeze the process
/// right after the invocation returns.
pub(super) fn publish(out: &EmfOut, lines: &[String]) -> Result<(), AdminError> {
    let mut out = out.lock().map_err(|_| AdminError::Metrics {
        reason: "the metrics output lock is poisoned".into(),
    })?;
    for l in lines {
        writeln!(out, "{l}").map_err(|e| AdminError::Metrics {
            reason: e.to_string(),
        })?;
    }
    out.flush().map_err(|e| AdminError::Metrics {
        reason: e.to_string(),
    })
}

/// Whole numbers as JSON integers; others as floats.
fn number(v: f64) -> Value {
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
    use std::sync::{Arc, Mutex};

    #[test]
    fn line_declares_every_value_in_the_namespace_with_the_slot_dimension() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let data = [
            Datum {
                name: "SlotActive",
                unit: "Count",
                value: 1.0,
            },
            Datum {
                name: "CheckpointAgeSeconds",
                unit: "Seconds",
                value: 2.5,
            },
        ];
        let v: Value = serde_json::from_str(&line("Ns/1", "Slot", "a b", &data, at)).unwrap();
        assert_eq!(v["Slot"], "a b");
        assert_eq!(v["SlotActive"], 1);
        assert_eq!(v["CheckpointAgeSeconds"], 2.5);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "Ns/1");
        assert_eq!(d["Dimensions"], json!([["Slot"]]));
        assert_eq!(
            d["Metrics"],
            json!([{"Name": "SlotActive", "Unit": "Count"}, {"Name": "CheckpointAgeSeconds", "Unit": "Seconds"}])
        );
    }

    #[test]
    fn publish_writes_one_line_each() {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let out: EmfOut = buf.clone();
        publish(&out, &["{\"a\":1}".into(), "{\"b\":2}".into()]).unwrap();
        assert_eq!(
            String::from_utf8(buf.lock().unwrap().clone()).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
    }
}
