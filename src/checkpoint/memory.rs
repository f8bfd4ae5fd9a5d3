//! An in-memory [`CheckpointStore`] for unit tests and for running without SSM.
//!
//! Owns nothing durable: it forgets everything when dropped. It can be told to fail,
//! to exercise the outage paths without a network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreFuture};

#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, Checkpoint>>,
    /// Every successful write, in order (tests count and inspect them).
    writes: Mutex<Vec<Checkpoint>>,
    failing: AtomicBool,
}

impl MemoryStore {
    /// Make every call fail (true) or succeed again (false), like an SSM outage.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    pub fn writes(&self) -> Vec<Checkpoint> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn check(&self, name: &str) -> Result<(), CheckpointError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(CheckpointError::Store {
                name: name.to_string(),
                message: "the in-memory store is set to fail".into(),
            });
        }
        Ok(())
    }
}

impl CheckpointStore for MemoryStore {
    fn read<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>> {
        Box::pin(async move {
            self.check(name)?;
            Ok(self.values.lock().ok().and_then(|v| v.get(name).cloned()))
        })
    }

    fn write<'a>(&'a self, name: &'a str, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.check(name)?;
            if let Ok(mut v) = self.values.lock() {
                v.insert(name.to_string(), checkpoint.clone());
            }
            if let Ok(mut w) = self.writes.lock() {
                w.push(checkpoint.clone());
            }
            Ok(())
        })
    }
}
