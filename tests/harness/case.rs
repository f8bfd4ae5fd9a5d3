//! The case builder's clean-up: a test that fails before `Case::cleanup` still drops
//! its slot (even one a walsender holds) and its database; one that passes keeps them
//! for its own clean-up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::case::Case;
use crate::support::pg;

/// How many slots and databases of these names the shared cluster has.
fn left(slot: &str, db: &str) -> (String, String) {
    let pg = pg::shared();
    (
        pg.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )),
        pg.psql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{db}'"
        )),
    )
}

/// Creates the case's slot.
fn create_slot(case: &Case) {
    case.pg.execute(
        &case.db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'wal2json')",
            case.slot
        ),
    );
}

#[test]
fn a_case_whose_test_panics_drops_its_slot_even_while_streamed_and_its_database() {
    let pg = pg::shared();
    let names = std::sync::Mutex::new(None);
    let reader = std::sync::Mutex::new(None);
    let failed = std::panic::catch_unwind(|| {
        let case = Case::new(pg, "harness_leak");
        create_slot(&case);
        *names.lock().unwrap() = Some((case.slot.clone(), case.db.clone()));
        // A walsender holds the slot, as a streamer still running would.
        let child = Command::new(pg.program("pg_recvlogical"))
            .args(["--start", "--no-loop", "-f", "/dev/null", "-U", "postgres"])
            .arg("-h")
            .arg(&pg.socket_dir)
            .args(["-p", &pg.port.to_string(), "-d", &case.db, "-S", &case.slot])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run pg_recvlogical");
        *reader.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let active = format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active",
            case.slot
        );
        while pg.psql(&active) != "1" {
            assert!(
                Instant::now() < deadline,
                "pg_recvlogical never took the slot"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test fails before its clean-up");
    });
    let mut child = reader
        .into_inner()
        .unwrap()
        .expect("pg_recvlogical started");
    let _ = child.kill();
    let _ = child.wait();
    let message = failed.expect_err("the closure panics");
    assert_eq!(
        message.downcast_ref::<&str>(),
        Some(&"the test fails before its clean-up"),
        "the case's own set-up failed"
    );
    let (slot, db) = names.into_inner().unwrap().expect("the case was made");
    assert_eq!(
        left(&slot, &db),
        ("0".into(), "0".into()),
        "{slot} or {db} left behind"
    );
}

#[test]
fn a_case_that_passes_keeps_what_it_made_until_cleanup() {
    let pg = pg::shared();
    let case = Case::new(pg, "harness_keep");
    create_slot(&case);
    let (slot, db) = (case.slot.clone(), case.db.clone());
    drop(case);
    assert_eq!(
        left(&slot, &db),
        ("1".into(), "1".into()),
        "dropped without a panic"
    );
    pg.drop_slot(&slot);
    pg.drop_database(&db);
}
