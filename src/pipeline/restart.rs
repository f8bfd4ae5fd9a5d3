//! Starting a slot again without restarting the process: the `restart` signal and
//! the retry of stopped slots.
//!
//! Owns the process-wide register of slot workers that a restart can wake, the ids
//! of restart signals already handled, and the capped backoff between tries of a
//! slot stopped by a permanent error. A `restart` signal (admin Lambda) is a logical
//! message in the database's WAL, so every running session of that database reads
//! it: the first one to read it wakes the named slot's worker, whether that slot is
//! streaming, reconnecting or stopped; the others, and the slot's own session when
//! it reads the message after its restart, find the id handled and ignore it. It
//! never ends a session itself: the worker does, flushing and confirming as on
//! shutdown.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use crate::config::SlotConfig;

/// First wait before a stopped slot is tried again; it doubles up to the configured cap.
const STOPPED_RETRY_BASE: Duration = Duration::from_secs(30);
/// Restart ids remembered per process; a replay re-delivers only what follows the
/// confirmed position, so only recent ids can come back.
const HANDLED_IDS: usize = 1024;

/// The wait before try `tries` (0 = the first) to start a stopped slot again, with
/// `cap_secs` the configured `stopped_slot_retry_secs`; `None` when 0 (never).
pub(crate) fn stopped_retry_delay(cap_secs: u64, tries: u32) -> Option<Duration> {
    if cap_secs == 0 {
        return None;
    }
    let cap = Duration::from_secs(cap_secs);
    let exp = STOPPED_RETRY_BASE
        .saturating_mul(1u32 << tries.min(10))
        .min(cap);
    // Up to a tenth less, so slots stopped together do not all retry at once.
    Some(exp - exp.mul_f64(rand::rng().random_range(0.0..0.1)))
}

/// Which database a slot reads: slots with the same connection settings see the
/// same logical messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Database {
    host: String,
    port: u16,
    db_name: String,
    secret: Option<String>,
}

impl Database {
    fn of(slot: &SlotConfig) -> Self {
        Database {
            host: slot.host.clone(),
            port: slot.port,
            db_name: slot.db_name.clone(),
            secret: slot.secret.clone(),
        }
    }
}

/// What became of a restart signal a session read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The named slot's worker was woken.
    Woken,
    /// Its id was handled before (a replay, or another session of the database).
    AlreadyHandled,
    /// No slot of that name reads this database in this process.
    NotHere,
}

#[derive(Default)]
struct Inner {
    workers: HashMap<String, (Database, Arc<Notify>)>,
    handled: HashSet<String>,
    order: VecDeque<String>,
}

/// The register of running slot workers and handled restart ids (one per pipeline).
#[derive(Default)]
pub(crate) struct Restarts {
    inner: Mutex<Inner>,
}

impl Restarts {
    /// Register `slot`'s worker; the handle its worker waits on.
    pub(crate) fn register(&self, slot: &SlotConfig) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        if let Ok(mut inner) = self.inner.lock() {
            inner
                .workers
                .insert(slot.name.clone(), (Database::of(slot), wake.clone()));
        }
        wake
    }

    /// Forget `name`'s worker, if `wake` is still its handle (a replacement may
    /// already have registered under the same name).
    pub(crate) fn unregister(&self, name: &str, wake: &Arc<Notify>) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner
                .workers
                .get(name)
                .is_some_and(|(_, w)| Arc::ptr_eq(w, wake))
            {
                inner.workers.remove(name);
            }
        }
    }

    /// A session of `seen_by` read a restart signal for `slot` with `id`.
    pub(crate) fn request(&self, seen_by: &SlotConfig, slot: &str, id: &str) -> Outcome {
        let Ok(mut inner) = self.inner.lock() else {
            return Outcome::NotHere;
        };
        if inner.handled.contains(id) {
            return Outcome::AlreadyHandled;
        }
        let wake = match inner.workers.get(slot) {
            Some((db, wake)) if slot == seen_by.name || *db == Database::of(seen_by) => {
                wake.clone()
            }
            _ => return Outcome::NotHere,
        };
        inner.handled.insert(id.to_string());
        inner.order.push_back(id.to_string());
        if inner.order.len() > HANDLED_IDS {
            if let Some(old) = inner.order.pop_front() {
                inner.handled.remove(&old);
            }
        }
        // A stored permit: a worker between sessions still sees it.
        wake.notify_one();
        Outcome::Woken
    }
}

/// Pass a restart signal that `seen_by`'s session read to [`Restarts::request`],
/// and log what became of it.
pub(crate) fn note(restarts: &Restarts, seen_by: &SlotConfig, slot: &str, id: &str) {
    let from = &seen_by.name;
    match restarts.request(seen_by, slot, id) {
        Outcome::Woken if slot == from.as_str() => {
            tracing::info!(slot = %from, signal = %id, "[{from}] restart signal {id} read")
        }
        Outcome::Woken => tracing::info!(
            slot = %slot,
            seen_by = %from,
            signal = %id,
            "[{slot}] restart signal {id} read by slot {from} of the same database: restarting {slot}"
        ),
        Outcome::AlreadyHandled => {
            tracing::debug!(slot = %from, signal = %id, "restart signal {id} for {slot} already handled")
        }
        Outcome::NotHere => {
            tracing::debug!(slot = %from, signal = %id, "restart signal {id} is for {slot}, not run here")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, db: &str) -> SlotConfig {
        let yaml = format!(
            "replication_slots:\n  - {name}:\n      host: h\n      user: u\n      db_name: {db}\n      kns_stream: s\n"
        );
        let dir = std::env::temp_dir().join(format!("restart-{}", crate::signal::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("configs.yml");
        std::fs::write(&path, yaml).unwrap();
        let config = crate::config::Config::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        config.slots[0].clone()
    }

    #[tokio::test]
    async fn a_restart_id_wakes_its_slot_once_even_when_read_by_every_session() {
        let restarts = Restarts::default();
        let a = slot("a", "shop");
        let b = slot("b", "shop");
        let wake_a = restarts.register(&a);
        let _wake_b = restarts.register(&b);
        // b's session reads the signal for a first: it wakes a's worker.
        assert_eq!(restarts.request(&b, "a", "1"), Outcome::Woken);
        tokio::time::timeout(Duration::from_secs(1), wake_a.notified())
            .await
            .expect("a's worker was woken");
        // a's own session reads it after (or on a replay): nothing more happens.
        assert_eq!(restarts.request(&a, "a", "1"), Outcome::AlreadyHandled);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wake_a.notified())
                .await
                .is_err(),
            "a handled id must not restart the slot again"
        );
        assert_eq!(restarts.request(&a, "a", "2"), Outcome::Woken);
    }

    #[test]
    fn a_session_of_another_database_does_not_wake_a_slot() {
        let restarts = Restarts::default();
        let a = slot("a", "shop");
        let other = slot("c", "billing");
        let wake = restarts.register(&a);
        assert_eq!(restarts.request(&other, "a", "1"), Outcome::NotHere);
        assert_eq!(restarts.request(&a, "nobody", "2"), Outcome::NotHere);
        restarts.unregister("a", &wake);
        assert_eq!(restarts.request(&a, "a", "3"), Outcome::NotHere);
    }

    #[test]
    fn stopped_slots_wait_longer_each_try_up_to_the_cap_and_0_is_never() {
        assert_eq!(stopped_retry_delay(0, 0), None);
        let first = stopped_retry_delay(300, 0).unwrap();
        assert!(first <= STOPPED_RETRY_BASE && first >= STOPPED_RETRY_BASE.mul_f64(0.9));
        let late = stopped_retry_delay(300, 20).unwrap();
        assert!(late <= Duration::from_secs(300) && late >= Duration::from_secs(270));
        assert!(stopped_retry_delay(1, 5).unwrap() <= Duration::from_secs(1));
    }
}
