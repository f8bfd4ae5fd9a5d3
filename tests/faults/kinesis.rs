//! Faults on the Kinesis side (the scripted stub): throttling, partial failures, 5xx
//! answers, stalls and lost responses, and key changes under partial failures.

use std::time::{Duration, Instant};

use crate::support::pg;
use crate::support::stub::{KinesisStub, RecordError, StallMode};
use crate::support::workload::key_changes;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_throttling_partial_failures_and_5xx_lose_nothing() {
    let s = Scenario::new("kinesis_errors", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(5, RATE);
    let phase = Duration::from_secs(scale(3, 10));
    let mut worst: f64 = 0.0;
    type Fault = fn(&KinesisStub);
    let faults: [(&str, Fault); 4] = [
        ("throttle storm", |k| k.throttle_rate(0.8)),
        ("30% partial failures", |k| {
            k.fail_records(0.3, RecordError::Mixed)
        }),
        ("500s", |k| k.server_error_next(30, 500)),
        ("503s", |k| k.server_error_next(30, 503)),
    ];
    for (what, fault) in faults {
        fault(&s.stub);
        tokio::time::sleep(phase).await;
        s.stub.clear_faults();
        let (cleared, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(cleared, after, &streamer).await;
        eprintln!("fault-suite kinesis_errors: {what}: recovered {rec:.2}s after the fault ended");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_errors", &verdict, worst, &[log]);
    assert!(
        stats.throttled_requests > 0 && stats.failed_records > 0 && stats.server_errors > 0,
        "the faults did not happen: {stats:?}"
    );
    s.cleanup();
}

/// Primary-key changes (`UPDATE … SET id`) and re-inserts of the freed ids under 30%
/// partial failures. The audit table records a key change as the old row's delete and
/// the new row's insert, so every row, old key and new key, is checked on its own:
/// nothing lost, and each row's changes in commit order. Every key-change delete has its
/// insert (same `commit_lsn`, next `seq`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_and_reused_keys_under_partial_failures_keep_each_row_in_order() {
    let s = Scenario::new("key_changes", pg::shared(), pg::shared().port);
    let streamer = s.start();
    // The failures last through the workload and then until everything is on the
    // stream, or for at most FAULTY_DRAIN (the backoff makes a faulty drain slow).
    s.stub.fail_records(0.3, RecordError::Mixed);
    let runner = s.workload_with_key_changes(11, RATE);
    runner.wait_for(scale(6_000, 20_000)).await;
    runner.stop().await;
    let committed = s.wl.truth(s.pg).len();
    let stopped = Instant::now();
    while s.stub.record_count(&s.stream) < committed && stopped.elapsed() < FAULTY_DRAIN {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let under_faults = s.stub.record_count(&s.stream);
    let faulty_drain = stopped.elapsed().as_secs_f64();
    s.stub.clear_faults();
    let (records, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    let kc = key_changes(records.iter().map(|r| r.data.as_slice()));
    eprintln!(
        "fault-suite key_changes: {} key changes, {} ids inserted again after a key change moved them, \
         {} failed records; {under_faults} of {committed} records delivered under the failures, \
         the last {faulty_drain:.1}s after the workload stopped",
        kc.paired, kc.reused, stats.failed_records
    );
    // No fault ends while the workload runs: there is no recovery time to report.
    report("key_changes(30% partial failures)", &verdict, 0.0, &[log]);
    assert!(stats.failed_records > 0, "no record failed: {stats:?}");
    assert!(
        kc.paired > 0 && kc.reused > 0,
        "the workload changed no key or reused none: {kc:?}"
    );
    assert_eq!(
        kc.unpaired, 0,
        "key-change records without their other half: {kc:?}"
    );
    s.cleanup();
}

/// Stalls of 12 s that end in a 503 or in a late success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_stalls_lose_nothing() {
    let s = Scenario::new("kinesis_stall", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(6, RATE);
    let stall = Duration::from_secs(12);
    let mut worst: f64 = 0.0;
    for mode in [StallMode::Unavailable, StallMode::Slow] {
        s.stub.stall_for(stall, mode);
        tokio::time::sleep(stall).await;
        let (ended, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(ended, after, &streamer).await;
        eprintln!("fault-suite kinesis_stall: {mode:?}: recovered {rec:.2}s after the stall");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_stall", &verdict, worst, &[log]);
    assert!(stats.stalled_requests > 0, "nothing stalled: {stats:?}");
    s.cleanup();
}

/// A stall longer than the 30 s request timeout whose requests are stored: the answers
/// are lost, the streamer resends, and Kinesis holds duplicates, but nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_lost_responses_duplicate_but_lose_nothing() {
    let s = Scenario::new("kinesis_lost", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(7, RATE);
    runner.wait_for(1_000).await;
    let stall = Duration::from_secs(35);
    s.stub.stall_for(stall, StallMode::LostResponse);
    tokio::time::sleep(stall).await;
    let (ended, after) = (Instant::now(), s.last_version());
    let rec = s.recovered(ended, after, &streamer).await;
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_lost_response", &verdict, rec, &[log]);
    assert!(stats.stalled_requests > 0, "nothing stalled: {stats:?}");
    assert!(
        verdict.duplicates > 0,
        "requests held past the 30 s timeout were stored and resent, so duplicates were expected: {verdict}"
    );
    s.cleanup();
}
