//! A clean restart after checkpoint writes that failed or were interrupted starts again
//! where the slot confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, SsmStore, StoreFuture,
};
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::run::Pipeline;

use crate::support::kinesis::{self, kinesalite};
use crate::support::moto;

use super::*;

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
