//! `run` as it streams: a million-row transaction under a memory bound, the console
//! progress lines, and exit 1 with JSON logs once no slot is left running.

use std::time::{Duration, Instant};

use crate::support::kinesis::{self, verify};
use crate::support::pg;
use crate::support::process::{self, assert_no_panic, Stopped, Streamer, STARTUP};
use crate::support::stub::StubRecord;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_streams_in_bounded_memory() {
    const ROWS: u64 = 1_000_000;
    const RSS_LIMIT_KIB: u64 = 200 * 1024;
    let case = CliCase::new(pg::shared());
    let stub = case.stub(4);
    let config = case.config(&[]);
    let mut streamer = Streamer::streaming(stub.endpoint(), &config);

    let started = Instant::now();
    case.insert(1..=ROWS);
    let committed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last_report = Instant::now();
    while stub.record_count(&case.stream) < ROWS as usize && Instant::now() < deadline {
        let peak = streamer.sample_peak_rss_kib();
        assert!(
            peak < RSS_LIMIT_KIB,
            "peak RSS {} MiB while streaming:\n{}",
            peak / 1024,
            streamer.log()
        );
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "million: {} records after {:.0?}, peak RSS {} MiB",
                stub.record_count(&case.stream),
                started.elapsed(),
                peak / 1024
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let streamed = started.elapsed();
    let peak = streamer.sample_peak_rss_kib();
    let Stopped { code, log, .. } = streamer.terminate();

    let records = stub.records(&case.stream);
    let truth: Vec<(String, u64)> = (1..=ROWS)
        .map(|id| (format!("public.{}|{id}", case.table), id))
        .collect();
    let verdict = verify(&truth, &records, |r: &StubRecord| {
        key_and_id(&r.partition_key, &r.data)
    });
    eprintln!(
        "million: insert committed in {committed:.1?}, all records in the stub after {streamed:.1?}; \
         peak RSS (VmHWM) {:.1} MiB; {verdict}",
        peak as f64 / 1024.0
    );
    assert_no_panic("streamer", &log);
    assert_eq!(verdict.delivered, ROWS as usize, "{verdict}\n{log}");
    verdict.assert_at_least_once_in_order();
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {:.1} MiB, limit {} MiB",
        peak as f64 / 1024.0,
        RSS_LIMIT_KIB / 1024
    );
    assert_eq!(code, Some(0), "{log}");
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_prints_the_original_progress_lines() {
    let case = CliCase::new(pg::shared());
    let config = case.config(&["batch_max_records: 50"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    case.kinesalite_stream(1).await;
    let mut streamer = Streamer::streaming(&endpoint, &config);
    case.insert(1..=500);

    let sending = format!("[{}] Sending changes to Kinesis: ", case.slot);
    let waiting = format!(
        "[{}] Waiting records to process. (Queue length: ",
        case.slot
    );
    let found =
        streamer.wait_for_log(&sending, STARTUP) && streamer.wait_for_log(&waiting, STARTUP);
    let log = streamer.terminate().log;
    assert!(found, "missing progress lines:\n{log}");
    // `[slot] Sending changes to Kinesis: <i> of <n> chunks. (Queue length: <q>)`
    let line = log
        .lines()
        .find_map(|l| l.split(&sending).nth(1))
        .unwrap_or_default();
    let numbers: Vec<u64> = line
        .replace(" of ", " ")
        .replace(" chunks. (Queue length: ", " ")
        .split([' ', ')'])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        line.contains(" chunks. (Queue length: ") && numbers.len() == 3,
        "{line:?}"
    );
    assert!(
        numbers[0] >= 1 && numbers[0] <= numbers[1],
        "chunk i of n: {line:?}"
    );
    assert!(
        log.lines().any(|l| l.contains(&waiting) && l.contains(')')),
        "{log}"
    );
    case.delete_kinesalite_stream().await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_1_with_json_logs_when_no_slot_is_left_running() {
    let case = CliCase::new(pg::shared());
    let config = case.config(&[]);
    // The stream does not exist: the only slot stops for good, so the process ends.
    let endpoint = kinesis::kinesalite().endpoint.clone();
    let config_arg = config.to_string_lossy().into_owned();
    let cmd = process::command(
        &endpoint,
        &["run", "--config", &config_arg, "--log-format", "json"],
    );
    let done = process::run(cmd, Duration::from_secs(60));
    assert_eq!(done.code, Some(1), "{}", done.describe());
    let lines: Vec<serde_json::Value> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let stopped = lines
        .iter()
        .find(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("slot stopped"))
        })
        .unwrap_or_else(|| panic!("no error line about the stopped slot:\n{}", done.stderr));
    let message = stopped["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&case.stream) && message.contains("does not exist"),
        "{message}"
    );
    assert_eq!(stopped["slot"], case.slot.as_str());
    assert_no_panic("run", &done.stderr);
    case.cleanup();
}
