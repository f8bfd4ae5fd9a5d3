//! Slots without a process restart: a stopped slot tried again on its own, SIGHUP
//! re-reading configs.yml (slots added, removed, changed; unchanged ones untouched;
//! an invalid file changing nothing). The admin Lambda's `restart` is tested with
//! the other admin commands (`admin::restart`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::case::{get, local, wait_state};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, password_for, unique_name, SUPERUSER};
use crate::support::process::Streamer;

/// How long a slot, a walsender or a stream may take to show what a test waits for.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// One slot of a test's configs.yml, reading `db` into `stream`.
pub(crate) fn slot_entry(slot: &str, db: &str, stream: &str) -> String {
    format!(
        "  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      password: \"{}\"\n      db_name: {db}\n      kns_stream: {stream}\n      status_interval_secs: 1\n      checkpoint: false\n",
        pg::shared().port,
        password_for(SUPERUSER).unwrap_or_default(),
    )
}

pub(crate) fn write_config(path: &Path, top: &str, slots: &[String]) {
    std::fs::write(path, format!("{top}replication_slots:\n{}", slots.concat()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The walsender pid streaming from `slot`, if one is.
pub(crate) fn walsender_pid(slot: &str) -> Option<i32> {
    pg::shared()
        .psql(&format!(
            "SELECT r.pid FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = '{slot}'"
        ))
        .trim()
        .parse()
        .ok()
}

/// Polls until `want` holds for `slot`'s walsender pid; the last pid seen.
pub(crate) async fn wait_pid(slot: &str, want: impl Fn(Option<i32>) -> bool) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let pid = walsender_pid(slot);
        if want(pid) || Instant::now() > deadline {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `data.id`s of the rows in `stream`, once it holds every id of `want` (or
/// after a minute).
pub(crate) async fn ids_in(stream: &str, want: &BTreeSet<u64>) -> BTreeSet<u64> {
    let client = kinesalite().client();
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: BTreeSet<u64> = kinesis::read_all(&client, stream)
            .await
            .iter()
            .filter_map(|r| r.json().ok()?["data"]["id"].as_u64())
            .collect();
        if want.is_subset(&ids) || Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(crate) fn drop_slots(slots: &[&str]) {
    for slot in slots {
        pg::shared().psql(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
        ));
    }
}

fn insert(db: &str, ids: std::ops::RangeInclusive<u64>) {
    pg::shared().execute(
        db,
        &format!(
            "INSERT INTO t SELECT g, 'v' FROM generate_series({}, {}) g",
            ids.start(),
            ids.end()
        ),
    );
}

fn table_db(prefix: &str) -> String {
    let db = pg::shared().create_database(&unique_name(prefix));
    pg::shared().execute(&db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_stopped_by_a_missing_stream_resumes_by_itself_once_the_stream_exists() {
    let db = table_db("rl_retry");
    let (ok_slot, late_slot) = (unique_name("rl_ok"), unique_name("rl_late"));
    let (ok_stream, late_stream) = (unique_stream_name("rl-ok"), unique_stream_name("rl-late"));
    let client = kinesalite().client();
    kinesis::create_stream(&client, &ok_stream, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    write_config(
        &path,
        "stopped_slot_retry_secs: 1\n",
        &[
            slot_entry(&ok_slot, &db, &ok_stream),
            slot_entry(&late_slot, &db, &late_stream),
        ],
    );
    let config = Config::load(&path).unwrap();
    let p = Pipeline::start(
        &config,
        &RunEnv {
            aws: kinesalite().sdk_config(),
        },
    );
    let late = p.slots[1].clone();
    let state = wait_state(&late, WAIT, |s| matches!(s, SlotState::Stopped { .. })).await;
    let SlotState::Stopped { error } = state else {
        panic!("the slot without a stream did not stop: {state:?}");
    };
    assert!(error.contains(&late_stream), "{error}");
    // Still stopped a few tries later, and the other slot streams on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        late.state(),
        SlotState::Stopped { .. } | SlotState::Starting
    ));
    assert_eq!(p.slots[0].state(), SlotState::Streaming);

    kinesis::create_stream(&client, &late_stream, 1).await;
    let state = wait_state(&late, WAIT, |s| *s == SlotState::Streaming).await;
    assert_eq!(
        state,
        SlotState::Streaming,
        "not resumed once the stream exists"
    );
    insert(&db, 1..=5);
    let want: BTreeSet<u64> = (1..=5).collect();
    assert_eq!(ids_in(&late_stream, &want).await, want);
    assert_eq!(ids_in(&ok_stream, &want).await, want);
    p.stop();
    p.wait().await.unwrap();
    drop_slots(&[&ok_slot, &late_slot]);
    for stream in [&ok_stream, &late_stream] {
        kinesis::delete_stream(&client, stream).await;
    }
}

/// Polls the log until `needle` appears `n` times.
fn wait_count(streamer: &Streamer, needle: &str, n: usize) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if streamer.log().matches(needle).count() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_and_changes_slots_while_an_unchanged_slot_keeps_its_walsender() {
    let db = table_db("rl_hup");
    let [keep, removed, changed, added] = ["rl_keep", "rl_rm", "rl_chg", "rl_add"].map(unique_name);
    let [keep_s, removed_s, old_s, new_s, added_s] =
        ["rl-keep", "rl-rm", "rl-old", "rl-new", "rl-add"].map(unique_stream_name);
    let client = kinesalite().client();
    for stream in [&keep_s, &removed_s, &old_s, &new_s, &added_s] {
        kinesis::create_stream(&client, stream, 1).await;
    }
    let port = kinesis::free_port();
    let top = format!("http_listen: 127.0.0.1:{port}\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    write_config(
        &path,
        &top,
        &[
            slot_entry(&keep, &db, &keep_s),
            slot_entry(&removed, &db, &removed_s),
            slot_entry(&changed, &db, &old_s),
        ],
    );
    let mut streamer = Streamer::start(&kinesalite().endpoint, &path);
    assert!(
        wait_count(&streamer, "streaming from", 3),
        "{}",
        streamer.log()
    );
    let keep_pid = walsender_pid(&keep).expect("keep streams");
    let changed_pid = walsender_pid(&changed).expect("changed streams");
    insert(&db, 1..=3);
    let first: BTreeSet<u64> = (1..=3).collect();
    assert_eq!(ids_in(&removed_s, &first).await, first);

    write_config(
        &path,
        &top,
        &[
            slot_entry(&keep, &db, &keep_s),
            slot_entry(&changed, &db, &new_s),
            slot_entry(&added, &db, &added_s),
        ],
    );
    streamer.signal(libc::SIGHUP);
    let log = |s: &Streamer| s.log();
    assert_eq!(
        wait_pid(&removed, |p| p.is_none()).await,
        None,
        "removed slot still streams:\n{}",
        log(&streamer)
    );
    let new_changed = wait_pid(&changed, |p| p.is_some_and(|p| p != changed_pid)).await;
    assert!(
        new_changed.is_some_and(|p| p != changed_pid),
        "changed slot not restarted:\n{}",
        log(&streamer)
    );
    assert!(
        wait_pid(&added, |p| p.is_some()).await.is_some(),
        "added slot not streaming:\n{}",
        log(&streamer)
    );
    insert(&db, 4..=6);
    let later: BTreeSet<u64> = (4..=6).collect();
    let all: BTreeSet<u64> = (1..=6).collect();
    assert_eq!(ids_in(&keep_s, &all).await, all, "{}", log(&streamer));
    assert_eq!(ids_in(&new_s, &later).await, later, "{}", log(&streamer));
    assert_eq!(ids_in(&added_s, &later).await, later, "{}", log(&streamer));
    // The removed slot stopped cleanly: flushed, confirmed, nothing more sent.
    assert_eq!(ids_in(&removed_s, &first).await, first);
    let text = log(&streamer);
    assert!(
        text.lines()
            .any(|l| l.contains(&removed) && l.contains("stopped; confirmed")),
        "no final confirmation for the removed slot:\n{text}"
    );
    assert_eq!(
        walsender_pid(&keep),
        Some(keep_pid),
        "the unchanged slot reconnected:\n{text}"
    );
    // The endpoints follow: the added slot is reported, the removed one is gone.
    let (_, ready) = get(local(port), "/readyz").await;
    assert!(ready.contains(&added) && ready.contains(&keep), "{ready}");
    assert!(!ready.contains(&removed), "{ready}");
    let (_, metrics) = get(local(port), "/metrics").await;
    assert!(metrics.contains(&added), "{metrics}");

    streamer.signal(libc::SIGTERM);
    let status = streamer.wait_exit(Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", streamer.log());
    drop_slots(&[&keep, &removed, &changed, &added]);
    for stream in [&keep_s, &removed_s, &old_s, &new_s, &added_s] {
        kinesis::delete_stream(&client, stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_on_sighup_is_reported_with_its_line_and_changes_nothing() {
    let db = table_db("rl_bad");
    let slot = unique_name("rl_bad");
    let stream = unique_stream_name("rl-bad");
    let client = kinesalite().client();
    kinesis::create_stream(&client, &stream, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    write_config(&path, "", &[slot_entry(&slot, &db, &stream)]);
    let mut streamer = Streamer::start(&kinesalite().endpoint, &path);
    assert!(
        streamer.wait_for_log("streaming from", WAIT),
        "{}",
        streamer.log()
    );
    let pid = walsender_pid(&slot).expect("streams");
    // A typo in a key, and a slot that would be new: neither may take effect.
    let other = unique_name("rl_bad_new");
    let entry = slot_entry(&slot, &db, &stream).replace("kns_stream", "kns_streem");
    write_config(&path, "", &[entry, slot_entry(&other, &db, &stream)]);
    streamer.signal(libc::SIGHUP);
    assert!(
        streamer.wait_for_log("the running slots are left as they are", WAIT),
        "{}",
        streamer.log()
    );
    let text = streamer.log();
    let line = text
        .lines()
        .find(|l| l.contains("the running slots are left as they are"))
        .unwrap_or_default();
    let at = format!("{}:8:7", path.display());
    assert!(
        line.contains(&at) && line.contains("kns_streem"),
        "want {at} and the key in: {line}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(walsender_pid(&slot), Some(pid), "{}", streamer.log());
    assert_eq!(walsender_pid(&other), None);
    insert(&db, 1..=3);
    let want: BTreeSet<u64> = (1..=3).collect();
    assert_eq!(ids_in(&stream, &want).await, want);
    streamer.signal(libc::SIGTERM);
    let status = streamer.wait_exit(Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", streamer.log());
    drop_slots(&[&slot, &other]);
    kinesis::delete_stream(&client, &stream).await;
}
