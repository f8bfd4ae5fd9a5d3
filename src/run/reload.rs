//! Reading the config again on SIGHUP: which slots to start, stop or restart, and
//! what the change leaves that needs saying (settings that wait for the next start,
//! memory shares that are not split again). It never touches a slot whose settings
//! did not change, and never changes the share of the budget a running slot has.

use std::collections::HashMap;

use crate::config::{Config, SlotConfig};

use super::{Pipeline, SlotChange};

impl Pipeline {
    /// Apply a config read again: start new slots, stop removed ones, restart
    /// changed ones (once their old worker has ended), leave the others alone.
    /// Returns the slots started at once; the rest follow from [`Pipeline::next`].
    pub fn reload(&mut self, config: &Config) -> Vec<SlotChange> {
        if self.stopping() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let wanted: HashMap<&str, &SlotConfig> =
            config.slots.iter().map(|s| (s.name.as_str(), s)).collect();
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for name in names {
            let Some(running) = self.workers.get(&name) else {
                continue;
            };
            match wanted.get(name.as_str()) {
                None => {
                    if !self.pending.contains_key(&name) {
                        tracing::info!(slot = %name, "[{name}] removed from the config: stopping it");
                    }
                    self.pending.insert(name.clone(), None);
                    running.stop.send_replace(true);
                }
                Some(new) if !same_slot(&running.config, new) => {
                    tracing::info!(slot = %name, "[{name}] changed in the config: stopping it to start it again with the new settings");
                    self.pending.insert(name.clone(), Some((*new).clone()));
                    running.stop.send_replace(true);
                }
                Some(new) if self.pending.contains_key(&name) => {
                    // Changed back (or removed and added back) while the old worker
                    // is still ending: start it again, with this file's share.
                    self.pending.insert(name.clone(), Some((*new).clone()));
                }
                Some(_) => {}
            }
        }
        for slot in &config.slots {
            if !self.workers.contains_key(&slot.name) {
                tracing::info!(slot = %slot.name, "[{}] added to the config: starting it", slot.name);
                let status = self.spawn(slot.clone());
                changes.push(SlotChange::Added(Box::new(slot.clone()), status));
            }
        }
        changes
    }

    /// What the slots may hold together once a reload's restarts are done: a slot
    /// left running keeps the share of the budget it started with, and one changed
    /// or added gets its share of the file it was read from.
    pub fn records_bound_bytes(&self) -> u64 {
        let share = |c: &SlotConfig| c.batch.buffer_bytes as u64;
        self.workers
            .iter()
            .filter_map(|(name, running)| match self.pending.get(name) {
                Some(None) => None,
                Some(Some(next)) => Some(share(next)),
                None => Some(share(&running.config)),
            })
            .sum()
    }
}

/// The same slot settings, leaving out the memory share that depends on how many
/// slots the file has (a running slot keeps the share it started with).
fn same_slot(a: &SlotConfig, b: &SlotConfig) -> bool {
    let mut b = b.clone();
    b.batch.buffer_bytes = a.batch.buffer_bytes;
    *a == b
}

/// A reload splits nothing again: say so when the slots it leaves may hold more than
/// the budget the process started with.
pub(super) fn note_reloaded_memory(started: &Config, pipeline: &Pipeline) {
    let held = pipeline.records_bound_bytes();
    let budget = started.memory_budget_bytes;
    if held > budget {
        tracing::warn!(
            held_bytes = held,
            budget_bytes = budget,
            "after the reload the slots may hold up to {held} bytes of records together, more than memory_budget_bytes ({budget} bytes) at start: a slot left running keeps the share it started with, and a changed or added one gets its share of the file it was read from. Restart the process to split memory_budget_bytes between the slots again"
        );
    }
}

/// Settings outside the slots apply from the next start; say so when they changed.
pub(super) fn note_fixed_settings(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.ops != new.ops {
        changed.push("the metrics and HTTP keys");
    }
    if old.shutdown_timeout_secs != new.shutdown_timeout_secs {
        changed.push("shutdown_timeout_secs");
    }
    if old.stopped_slot_retry_secs != new.stopped_slot_retry_secs {
        changed.push("stopped_slot_retry_secs");
    }
    if old.memory_budget_bytes != new.memory_budget_bytes {
        changed.push("memory_budget_bytes");
    }
    if !changed.is_empty() {
        tracing::warn!(
            "config {}: {} changed; only slot changes apply on SIGHUP, these apply at the next start",
            new.path.display(),
            changed.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::run::RunEnv;

    fn config(slots: &[(&str, &str)]) -> Config {
        let mut yaml = String::from("replication_slots:\n");
        for (name, stream) in slots {
            // Port 1 refuses connections: a worker that runs retries, and the test
            // reads the shares only.
            yaml += &format!(
                "  - {name}: {{host: 127.0.0.1, port: 1, user: u, db_name: d, kns_stream: {stream}, checkpoint: false}}\n"
            );
        }
        Config::from_text(std::path::Path::new("reload.yml"), &yaml, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next worker to end (a stopped one ends at its next await).
    async fn next_ended(pipeline: &mut Pipeline) -> Vec<SlotChange> {
        tokio::time::timeout(Duration::from_secs(30), pipeline.next())
            .await
            .unwrap_or_else(|_| panic!("no worker ended within 30 s"))
            .unwrap_or_else(|| panic!("no worker left"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reload_splits_nothing_again_and_counts_what_the_slots_may_hold() {
        let env = RunEnv {
            aws: aws_config::SdkConfig::builder().build(),
        };
        let mut pipeline = Pipeline::start(&config(&[("a", "s")]), &env);
        assert_eq!(pipeline.records_bound_bytes(), 64 << 20);
        // `a` keeps its 64 MiB; `b` gets half of the file it came in.
        let _ = pipeline.reload(&config(&[("a", "s"), ("b", "s")]));
        assert_eq!(pipeline.records_bound_bytes(), (64 + 32) << 20);
        // `a` changed: its next worker gets the share of the file it was read from,
        // and holds it once the old worker has ended and the new one started.
        let _ = pipeline.reload(&config(&[("a", "t"), ("b", "s")]));
        assert_eq!(pipeline.records_bound_bytes(), (32 + 32) << 20);
        let changes = next_ended(&mut pipeline).await;
        assert!(
            matches!(changes.as_slice(), [SlotChange::Removed(a), SlotChange::Added(c, _)] if a == "a" && c.kns_stream == "t"),
            "{changes:?}"
        );
        assert_eq!(pipeline.records_bound_bytes(), (32 + 32) << 20);
        // Back to one slot: `b` is removed and `a`, unchanged, keeps its 32 MiB.
        let _ = pipeline.reload(&config(&[("a", "t")]));
        assert_eq!(pipeline.records_bound_bytes(), 32 << 20);
        // `a` changed, then changed back before its worker ended: it restarts with
        // the share of the last file, 64 MiB.
        let _ = pipeline.reload(&config(&[("a", "s")]));
        let _ = pipeline.reload(&config(&[("a", "t")]));
        assert_eq!(pipeline.records_bound_bytes(), 64 << 20);
        // `a` removed (ending, it holds nothing after) and `b` added back while its
        // worker is still ending: `b` restarts with this file's share.
        let _ = pipeline.reload(&config(&[("b", "s")]));
        assert_eq!(pipeline.records_bound_bytes(), 64 << 20);
        pipeline.stop();
    }
}
