//! Routing to two streams under kills and Kinesis errors: each stream holds every
//! change of its tables, in per-key order.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::pg;
use crate::support::stub::{KinesisStub, RecordError};

use super::*;

/// Routing on: the slot sends one of the workload's tables to a second stream. Kills
/// and Kinesis errors (throttling, partial failures) hit both streams; each stream
/// must hold every change of its tables, in per-key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_to_two_streams_under_kills_and_kinesis_errors_loses_nothing() {
    let s = Scenario::with_routing("routing", pg::shared(), pg::shared().port, true);
    let mut streamer = s.start();
    let runner = s.workload(13, RATE);
    let mut logs = Vec::new();
    let mut worst: f64 = 0.0;
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..scale(2, 8) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let after = s.last_version();
        let killed = Instant::now();
        logs.push(streamer.kill());
        streamer = s.spawn();
        worst = worst.max(s.recovered(killed, after, &streamer).await);
    }
    type Fault = fn(&KinesisStub);
    let faults: [(&str, Fault); 2] = [
        ("throttle storm", |k| k.throttle_rate(0.8)),
        ("30% partial failures", |k| {
            k.fail_records(0.3, RecordError::Mixed)
        }),
    ];
    for (what, fault) in faults {
        fault(&s.stub);
        tokio::time::sleep(Duration::from_secs(scale(3, 10))).await;
        s.stub.clear_faults();
        let (cleared, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(cleared, after, &streamer).await;
        eprintln!("fault-suite routing: {what}: recovered {rec:.2}s after the fault ended");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (main, side) = s.drain_routed().await;
    logs.push(terminate(s.name, streamer));
    report("routing(main stream)", &main, worst, &logs);
    report("routing(side stream)", &side, worst, &logs);
    let stats = s.stub.stats();
    assert!(
        stats.throttled_requests > 0 && stats.failed_records > 0,
        "the faults did not happen: {stats:?}"
    );
    s.cleanup();
}
