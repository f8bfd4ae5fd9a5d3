//! `oversize: fail` stops the slot naming both fixes, and `oversize: s3` without a valid
//! bucket is a config error with its place (exit 2).

use std::time::Duration;

use crate::support::kinesis::kinesalite;
use crate::support::pg;
use crate::support::process::{self, Streamer};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mode_stops_the_slot_naming_oversize_s3_and_exclude_columns() {
    let pg = pg::shared();
    let case = docs_case("oversize_fail", "", 1).await;
    let (db, slot) = (&case.db, &case.slot);
    let config = write_config(&case, "");
    let mut streamer = Streamer::streaming(&kinesalite().endpoint, &config);
    pg.execute(db, "INSERT INTO docs VALUES (1, 1, 'small')");
    pg.execute(
        db,
        &format!("INSERT INTO docs VALUES (2, 1, repeat('x', {BIG}))"),
    );
    // At or past the big row's commit (other tests' databases write WAL too).
    let after_big = current_lsn(db);
    let stopped = streamer.wait_for_log("over the stream's", STARTUP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let confirmed = case.confirmed_flush();
    let log = streamer.kill();
    pg.drop_slot(slot);
    assert!(stopped, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("over the stream's"))
        .unwrap_or_default();
    for fix in [
        "public.docs",
        "oversize: s3",
        "oversize_bucket",
        "exclude_columns",
        "not dropped",
    ] {
        assert!(line.contains(fix), "{fix} missing from: {line}");
    }
    assert!(
        confirmed < after_big,
        "confirmed {confirmed}, past the row (committed before {after_big})"
    );
}

#[test]
fn oversize_s3_without_a_bucket_is_a_config_error_with_its_place_and_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("configs.yml");
    let slot = "replication_slots:\n  - s1:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n      oversize: s3\n";
    for (yaml, place, problem) in [
        (slot.to_string(), "configs.yml:7:17", "oversize_bucket"),
        (
            format!("{slot}      oversize_bucket: Not_A_Bucket\n"),
            "configs.yml:8:24",
            "invalid S3 bucket name",
        ),
    ] {
        std::fs::write(&path, yaml).unwrap();
        let out = process::run(
            process::command(
                &kinesalite().endpoint,
                &["run", "--config", path.to_str().unwrap()],
            ),
            Duration::from_secs(30),
        );
        assert_eq!(out.code, Some(2), "{}", out.describe());
        assert!(
            out.stderr.contains(place) && out.stderr.contains(problem),
            "{}",
            out.describe()
        );
    }
}
