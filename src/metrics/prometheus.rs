//! Prometheus text exposition format 0.0.4 for `GET /metrics`.
//!
//! Owns names (`pg_cdc_to_kinesis_` prefix, `_total` for counters) and label
//! escaping. Counters are cumulative since the process started, as Prometheus
//! expects (`rate()` does the rest). It never blocks and never fails.

use std::fmt::Write;

use super::{Kind, Snapshot, METRICS, PROMETHEUS_PREFIX};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    for metric in METRICS {
        let name = match metric.kind {
            Kind::Counter => format!("{PROMETHEUS_PREFIX}{}_total", metric.prom),
            Kind::Gauge => format!("{PROMETHEUS_PREFIX}{}", metric.prom),
        };
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {} ({}).", metric.help, metric.name);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for slot in &snap.slots {
            let Some(value) = slot.get(metric.name) else {
                continue;
            };
            let mut labels = format!("slot=\"{}\"", escape(&slot.slot));
            if metric.per_stream {
                let _ = write!(labels, ",stream=\"{}\"", escape(&slot.stream));
            }
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{metric, names, SlotSnapshot};

    #[test]
    fn renders_counters_gauges_and_labels() {
        let snap = Snapshot {
            at: std::time::SystemTime::now(),
            slots: vec![SlotSnapshot {
                slot: "orders".into(),
                stream: "a\"b".into(),
                values: vec![
                    (metric(names::RECORDS_PUT).unwrap(), 42.0),
                    (metric(names::SLOT_STATUS).unwrap(), -1.0),
                ],
            }],
        };
        let text = render(&snap);
        assert!(text.contains("# TYPE pg_cdc_to_kinesis_records_put_total counter\n"));
        assert!(text.contains(
            "pg_cdc_to_kinesis_records_put_total{slot=\"orders\",stream=\"a\\\"b\"} 42\n"
        ));
        assert!(text.contains("pg_cdc_to_kinesis_slot_status{slot=\"orders\"} -1\n"));
        assert!(
            !text.contains("pg_cdc_to_kinesis_checkpoint_age_seconds{"),
            "unknown values are left out"
        );
    }
}
