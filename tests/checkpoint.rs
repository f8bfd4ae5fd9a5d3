//! Checkpoints in SSM (moto) beside real PostgreSQL + wal2json and kinesalite: what
//! is written and when, the startup rules, and an SSM outage during streaming.
//! Each test owns its database, slot, stream and parameter names.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::checkpoint::{
    ssm_client, Checkpoint, CheckpointError, CheckpointStore, SsmStore, StoreFuture,
};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::{SlotState, SlotStatus};
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::source;

use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::moto::{self, Moto};
use crate::support::pg::{self, password_for, unique_name, SUPERUSER};

/// One slot, one database, one table `t`, one stream, one parameter.
struct Fixture {
    db: String,
    slot: String,
    stream: String,
    parameter: String,
    _dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(prefix));
        pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        let stream = unique_stream_name(prefix);
        kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
        let slot = unique_name(prefix);
        let parameter = format!("/pg-cdc-tests/{slot}/checkpoint");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("configs.yml");
        Fixture {
            db,
            slot,
            stream,
            parameter,
            _dir: dir,
            config_path,
        }
    }

    fn config(&self, extra: &str) -> Config {
        let yaml = format!(
            "replication_slots:\n  - {}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      password: {}\n      db_name: {}\n      options: {{add-tables: 'public.t'}}\n      kns_stream: {}\n      status_interval_secs: 1\n      checkpoint_parameter: {}\n{extra}",
            self.slot,
            pg::shared().port,
            password_for(SUPERUSER).unwrap_or_default(),
            self.db,
            self.stream,
            self.parameter,
        );
        std::fs::write(&self.config_path, &yaml).unwrap();
        Config::load(&self.config_path).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn start(&self, extra: &str, store: &Arc<SsmStore>) -> Pipeline {
        self.start_with(extra, store.clone())
    }

    fn start_with(&self, extra: &str, store: Arc<dyn CheckpointStore>) -> Pipeline {
        Pipeline::start_with_checkpoints(
            &self.config(extra),
            &RunEnv {
                aws: kinesalite().sdk_config(),
            },
            Some(store),
        )
    }

    fn insert(&self, from: u32, to: u32) {
        pg::shared().execute(
            &self.db,
            &format!("INSERT INTO t SELECT g, 'v' || g FROM generate_series({from}, {to}) g"),
        );
    }

    async fn slot_lsn(&self) -> Option<Lsn> {
        let pg = pg::shared();
        let client = source::sql_connect(&pg.connect_params(SUPERUSER, &self.db))
            .await
            .unwrap();
        source::slot_info(&client, &self.slot)
            .await
            .unwrap()
            .map(|i| i.confirmed_flush_lsn.unwrap_or_default())
    }

    /// Waits for `n` records and returns the highest commit LSN among them.
    async fn delivered(&self, n: usize) -> Lsn {
        let records = kinesis::read_until(
            &kinesalite().client(),
            &self.stream,
            n,
            Duration::from_secs(60),
        )
        .await;
        assert!(
            records.len() >= n,
            "{} of {n} records arrived",
            records.len()
        );
        records
            .iter()
            .filter_map(|r| r.json().ok()?["commit_lsn"].as_str()?.parse().ok())
            .max()
            .unwrap()
    }

    fn drop_slot(&self) {
        let _ = pg::shared().try_psql_in(
            &self.db,
            &format!("SELECT pg_drop_replication_slot('{}')", self.slot),
        );
    }
}

fn ssm_store(m: &Moto) -> Arc<SsmStore> {
    Arc::new(SsmStore::new(ssm_client(&m.sdk_config(), None)))
}

/// How many times the parameter was written (SSM versions count overwrites).
async fn version(m: &Moto, parameter: &str) -> Option<i64> {
    let client = ssm_client(&m.sdk_config(), None);
    let out = client.get_parameter().name(parameter).send().await.ok()?;
    out.parameter().map(|p| p.version())
}

async fn wait_state(status: &SlotStatus, want: impl Fn(&SlotState) -> bool) -> SlotState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = status.state();
        if want(&state) || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_streaming(p: &Pipeline) {
    let state = wait_state(&p.slots[0], |s| *s == SlotState::Streaming).await;
    assert_eq!(state, SlotState::Streaming);
}

/// Polls until the checkpoint reaches `at`, checking on every read that it never
/// exceeds what the slot has confirmed and never moves backwards.
async fn wait_checkpoint(f: &Fixture, store: &SsmStore, at: Lsn) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Lsn::ZERO;
    loop {
        if let Ok(Some(cp)) = store.read(&f.parameter).await {
            let lsn = cp.lsn().unwrap();
            let slot = f.slot_lsn().await.unwrap_or_default();
            assert!(
                lsn <= slot,
                "checkpoint {lsn} is ahead of the slot's confirmed_flush_lsn {slot}"
            );
            assert!(lsn >= seen, "checkpoint moved backwards: {seen} then {lsn}");
            seen = lsn;
            if lsn >= at {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint stuck at {seen}, waiting for {at}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_delivery_and_never_pass_the_slot() {
    let m = moto::shared();
    let store = ssm_store(m);
    let f = Fixture::new("cp_follow").await;
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    for round in 0..3 {
        f.insert(round * 10 + 1, round * 10 + 10);
        let commit = f.delivered((round as usize + 1) * 10).await;
        let cp = wait_checkpoint(&f, &store, commit).await;
        assert_eq!(
            (cp.slot.as_str(), cp.stream.as_str(), cp.database.as_str()),
            (f.slot.as_str(), f.stream.as_str(), f.db.as_str())
        );
        assert!(!cp.is_final);
        assert!(
            cp.time.ends_with('Z') && cp.time.contains('T'),
            "{}",
            cp.time
        );
    }
    assert!(p.slots[0].checkpoint.age().unwrap() < Duration::from_secs(30));
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final, "shutdown writes a final checkpoint: {cp:?}");
    assert_eq!(
        cp.lsn(),
        f.slot_lsn().await,
        "the final checkpoint is the slot's position"
    );
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_rate_limited_with_one_more_on_shutdown() {
    let m = moto::shared();
    let store = ssm_store(m);
    let f = Fixture::new("cp_rate").await;
    let p = f.start("      checkpoint_interval_secs: 60\n", &store);
    wait_streaming(&p).await;
    // The new slot's position is written at once; the interval starts there.
    wait_checkpoint(&f, &store, Lsn(1)).await;
    for i in 0..5 {
        f.insert(i * 10 + 1, i * 10 + 10);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let commit = f.delivered(50).await;
    // Wait until PostgreSQL has the confirmation (status updates every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.slot_lsn().await.unwrap_or_default() <= commit {
        assert!(Instant::now() < deadline, "slot never confirmed {commit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        version(m, &f.parameter).await,
        Some(1),
        "five transactions inside the interval: no second write"
    );
    p.stop();
    p.wait().await.unwrap();
    assert_eq!(
        version(m, &f.parameter).await,
        Some(2),
        "one more write on shutdown"
    );
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final && cp.lsn().unwrap() > commit, "{cp:?}");
    f.drop_slot();
}

/// Streams, stops cleanly (final checkpoint), then loses the slot.
async fn checkpoint_then_lose_slot(f: &Fixture, store: &Arc<SsmStore>) -> Lsn {
    let p = f.start("", store);
    wait_streaming(&p).await;
    f.insert(1, 5);
    f.delivered(5).await;
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final);
    f.drop_slot();
    f.insert(6, 10); // never decoded: the gap
    cp.lsn().unwrap()
}

async fn refused(f: &Fixture, store: &Arc<SsmStore>, checkpoint: Lsn) -> String {
    let p = f.start("", store);
    let state = wait_state(&p.slots[0], |s| matches!(s, SlotState::Stopped { .. })).await;
    let SlotState::Stopped { error } = state else {
        panic!("the slot started despite the gap: {state:?}")
    };
    assert!(p.wait().await.is_err(), "no slot is left running");
    let checkpoint = checkpoint.to_string();
    for want in [
        checkpoint.as_str(),
        f.parameter.as_str(),
        "accept_checkpoint_gap: true",
        "backfill",
    ] {
        assert!(error.contains(want), "{want:?} missing from: {error}");
    }
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_with_a_checkpoint_refuses_to_start_unless_accepted() {
    let store = ssm_store(moto::shared());
    let f = Fixture::new("cp_gap").await;
    let checkpoint = checkpoint_then_lose_slot(&f, &store).await;

    // Missing: refused before creating it, so the refusal holds on every restart.
    let error = refused(&f, &store, checkpoint).await;
    assert!(error.contains("does not exist"), "{error}");
    assert_eq!(f.slot_lsn().await, None, "the slot was not created");

    // Re-created by an operator (at the current WAL): ahead of a final checkpoint.
    pg::shared().execute(
        &f.db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'wal2json')",
            f.slot
        ),
    );
    let recreated = f.slot_lsn().await.unwrap();
    let error = refused(&f, &store, checkpoint).await;
    assert!(error.contains(&recreated.to_string()), "{error}");

    // Accepted: streams, counts the gap, and checkpoints the new slot.
    let p = f.start("      accept_checkpoint_gap: true\n", &store);
    wait_streaming(&p).await;
    assert_eq!(
        p.slots[0].checkpoint.gaps_accepted.load(Ordering::Relaxed),
        1
    );
    f.insert(11, 12);
    let records = kinesis::read_until(
        &kinesalite().client(),
        &f.stream,
        7,
        Duration::from_secs(60),
    )
    .await;
    let ids: Vec<i64> = records
        .iter()
        .filter_map(|r| r.json().ok()?["data"]["id"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 11, 12], "rows 6..10 fell into the gap");
    let cp = wait_checkpoint(&f, &store, recreated).await;
    assert!(cp.lsn().unwrap() >= recreated);
    p.stop();
    p.wait().await.unwrap();
    // Consistent again: a plain restart starts.
    let p = f.start("", &store);
    wait_streaming(&p).await;
    p.stop();
    p.wait().await.unwrap();
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_behind_the_checkpoint_warns_and_streams_without_moving_it_back() {
    let store = ssm_store(moto::shared());
    let f = Fixture::new("cp_behind").await;
    pg::shared().execute(
        &f.db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'wal2json')",
            f.slot
        ),
    );
    let ahead = Lsn(f.slot_lsn().await.unwrap().0 + (1 << 32));
    let planted = Checkpoint {
        lsn: ahead.to_string(),
        slot: f.slot.clone(),
        stream: f.stream.clone(),
        database: f.db.clone(),
        time: "2020-01-01T00:00:00Z".into(),
        is_final: true,
        dropped: false,
        backfill: None,
    };
    store.write(&f.parameter, &planted).await.unwrap();
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    f.insert(1, 20);
    f.delivered(20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert_eq!(cp.lsn(), Some(ahead), "a checkpoint never moves backwards");
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_outage_does_not_stop_streaming() {
    let m = Moto::start().expect("moto");
    let store = ssm_store(&m);
    let f = Fixture::new("cp_outage").await;
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    f.insert(1, 10);
    let commit = f.delivered(10).await;
    wait_checkpoint(&f, &store, commit).await;

    m.stop();
    let status = p.slots[0].clone();
    for i in 0..5 {
        f.insert(11 + i * 10, 20 + i * 10);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let commit = f.delivered(60).await;
    assert_eq!(status.state(), SlotState::Streaming);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.checkpoint.write_failures.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no write was attempted during the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        status.checkpoint.last_lsn().unwrap() < commit,
        "nothing written while down"
    );

    let outage = Instant::now();
    m.start_again().unwrap();
    f.insert(61, 61);
    let commit = f.delivered(61).await;
    let cp = wait_checkpoint(&f, &store, commit).await;
    let recover = outage.elapsed();
    assert_eq!(cp.slot, f.slot);
    assert_eq!(status.state(), SlotState::Streaming);
    // Every committed row is on the stream, in order (one key per row, ids ascending).
    let records = kinesis::read_all(&kinesalite().client(), &f.stream).await;
    let expected: Vec<(u64, u64)> = (1..=61).map(|id| (id, id)).collect();
    let verdict = kinesis::verify(&expected, &records, |r| {
        let id = r.json().ok()?["data"]["id"].as_u64()?;
        Some((id, id))
    });
    eprintln!(
        "fault-suite ssm_outage: committed={} delivered={} lost={} duplicates={} order_violations={} recover={:.2}",
        verdict.committed, verdict.delivered, verdict.lost, verdict.duplicates, verdict.order_violations, recover.as_secs_f64()
    );
    verdict.assert_at_least_once_in_order();
    p.stop();
    p.wait().await.unwrap();
    f.drop_slot();
}

/// SSM that answers reads but whose writes fail (`hang: false`) or never finish
/// (`hang: true`): an outage that begins right after the start's read.
#[derive(Debug)]
struct WritesFail {
    ssm: Arc<SsmStore>,
    hang: bool,
}

impl CheckpointStore for WritesFail {
    fn read<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>> {
        self.ssm.read(name)
    }

    fn write<'a>(&'a self, name: &'a str, _: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(CheckpointError::Store {
                name: name.to_string(),
                message: "writes fail in this test".into(),
            })
        })
    }
}

/// Stops cleanly and returns the final checkpoint, which must be the slot's position.
async fn stop_cleanly(f: &Fixture, p: Pipeline, store: &SsmStore) -> Lsn {
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final, "{cp:?}");
    assert_eq!(cp.lsn(), f.slot_lsn().await);
    cp.lsn().unwrap()
}

/// Streams rows `from..=to` (until the stream holds `total` records) with checkpoint
/// writes failing, then stops cleanly; or with writes that never finish (`hang`), then
/// is killed. Either way the slot must still be at the final checkpoint.
async fn stream_without_checkpoints(
    f: &Fixture,
    store: &Arc<SsmStore>,
    hang: bool,
    (from, to): (u32, u32),
    total: usize,
) {
    let failing = Arc::new(WritesFail {
        ssm: store.clone(),
        hang,
    });
    let final_lsn = store.read(&f.parameter).await.unwrap().unwrap().lsn();
    let p = f.start_with("", failing);
    wait_streaming(&p).await;
    f.insert(from, to);
    f.delivered(total).await;
    // Status updates go out every second; give several the chance to pass it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.slot_lsn().await,
        final_lsn,
        "the slot was confirmed past the final checkpoint before a non-final one was stored"
    );
    if hang {
        drop(p); // Killed: no final status update, no final write.
    } else {
        p.stop();
        p.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_starts_again_after_failed_or_interrupted_checkpoint_writes() {
    let store = ssm_store(moto::shared());
    let f = Fixture::new("cp_restart").await;
    let p = f.start("", &store);
    wait_streaming(&p).await;
    f.insert(1, 5);
    f.delivered(5).await;
    stop_cleanly(&f, p, &store).await;

    // Every checkpoint write fails, then a clean stop (whose final write fails too).
    stream_without_checkpoints(&f, &store, false, (6, 10), 10).await;
    let p = f.start("", &store);
    wait_streaming(&p).await;
    // The restart replaces the final checkpoint with a non-final one before moving on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.read(&f.parameter).await.unwrap().unwrap().is_final {
        assert!(
            Instant::now() < deadline,
            "the final checkpoint was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.insert(11, 12);
    // Rows 6..=10 were never confirmed: sent again (at least once), then 11 and 12.
    f.delivered(17).await;
    stop_cleanly(&f, p, &store).await;

    // Checkpoint writes never finish, and the process is killed.
    stream_without_checkpoints(&f, &store, true, (13, 14), 19).await;
    let p = f.start("", &store);
    wait_streaming(&p).await;
    f.insert(15, 15);
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = kinesis::read_all(&kinesalite().client(), &f.stream).await;
        if records
            .iter()
            .any(|r| r.json().ok().and_then(|j| j["data"]["id"].as_u64()) == Some(15))
        {
            break records;
        }
        assert!(Instant::now() < deadline, "row 15 never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected: Vec<(u64, u64)> = (1..=15).map(|id| (id, id)).collect();
    let verdict = kinesis::verify(&expected, &records, |r| {
        let id = r.json().ok()?["data"]["id"].as_u64()?;
        Some((id, id))
    });
    verdict.assert_at_least_once_in_order();
    p.stop();
    p.wait().await.unwrap();
    f.drop_slot();
}
