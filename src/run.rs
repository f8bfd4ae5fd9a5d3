//! The process wiring, above the pipeline: the set of slot workers over the life of
//! the process (starting them, stopping them, changing the set when the config is
//! read again on SIGHUP), the operations server and WAL monitors, and shutdown.
//!
//! Owns which worker runs for which slot name, the per-worker stop signals, the
//! replacement of a changed slot (its old worker ends, flushing and confirming as
//! on shutdown, before the new one starts, because a replication slot takes one
//! reader), and the process-level outcome: `run` returns when shutdown is
//! requested, or with an error when every slot is stopped. It never touches a slot
//! whose config did not change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::checkpoint::CheckpointStore;
use crate::config::{Config, SlotConfig};
use crate::pipeline::restart::Restarts;
use crate::pipeline::{kinesis_client, SlotState, SlotStatus, Worker};

mod reload;
use reload::{note_fixed_settings, note_reloaded_memory};

/// How often `wait` looks whether every slot is stopped.
const ALL_STOPPED_POLL: Duration = Duration::from_millis(200);

/// Everything `run` needs from outside, injected so tests run the real code path.
pub struct RunEnv {
    /// AWS settings (credentials, region, endpoint) for Kinesis.
    pub aws: aws_config::SdkConfig,
}

/// The end of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no slot is left running: {0}")]
    AllSlotsStopped(String),
}

/// A change to the set of slots, for the operations tasks to follow.
#[derive(Debug)]
pub enum SlotChange {
    /// A worker started (a new slot, or the new worker of a changed one).
    Added(Box<SlotConfig>, Arc<SlotStatus>),
    /// A slot's worker ended after a reload removed or changed the slot.
    Removed(String),
}

struct Running {
    config: SlotConfig,
    status: Arc<SlotStatus>,
    stop: watch::Sender<bool>,
}

/// A handle to a running pipeline: per-slot status, and a way to stop it.
pub struct Pipeline {
    /// Every running slot's status, in start order.
    pub slots: Vec<Arc<SlotStatus>>,
    /// Set once on shutdown (`stop`).
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<(String, Result<(), String>)>,
    workers: HashMap<String, Running>,
    /// Slots whose worker is ending after a reload: what to start after it (`None`:
    /// the slot was removed).
    pending: HashMap<String, Option<SlotConfig>>,
    aws: aws_config::SdkConfig,
    store: Option<Arc<dyn CheckpointStore>>,
    timeout: Duration,
    stopped_retry_secs: u64,
    restarts: Arc<Restarts>,
    stopped_by_request: bool,
    errors: Vec<String>,
}

impl Pipeline {
    /// Start one worker per slot.
    pub fn start(config: &Config, env: &RunEnv) -> Pipeline {
        Self::start_with_checkpoints(config, env, None)
    }

    /// [`Pipeline::start`], keeping checkpoints in `store` instead of the SSM of
    /// `env.aws` when given (tests: a private moto that can go down, or memory).
    pub fn start_with_checkpoints(
        config: &Config,
        env: &RunEnv,
        store: Option<Arc<dyn CheckpointStore>>,
    ) -> Pipeline {
        let (shutdown, _) = watch::channel(false);
        let mut pipeline = Pipeline {
            slots: Vec::new(),
            shutdown,
            tasks: tokio::task::JoinSet::new(),
            workers: HashMap::new(),
            pending: HashMap::new(),
            aws: env.aws.clone(),
            store,
            timeout: Duration::from_secs(config.shutdown_timeout_secs),
            stopped_retry_secs: config.stopped_slot_retry_secs,
            restarts: Arc::default(),
            stopped_by_request: false,
            errors: Vec::new(),
        };
        for slot in &config.slots {
            pipeline.spawn(slot.clone());
        }
        pipeline
    }

    fn spawn(&mut self, slot: SlotConfig) -> Arc<SlotStatus> {
        let credentials = Arc::new(crate::credentials::Credentials::new(&slot, &self.aws));
        let status = Arc::new(SlotStatus::new(&slot.name, credentials.clone()));
        let checkpoints = match &self.store {
            Some(store) => crate::checkpoint::Checkpointer::with_store(
                &slot,
                store.clone(),
                status.checkpoint.clone(),
            ),
            None => {
                crate::checkpoint::Checkpointer::start(&slot, &self.aws, status.checkpoint.clone())
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let wake: Arc<Notify> = self.restarts.register(&slot);
        let worker = Worker {
            credentials,
            kinesis: kinesis_client(&self.aws, &slot),
            slot: slot.clone(),
            checkpoints,
            status: status.clone(),
            shutdown: stop_rx,
            timeout: self.timeout,
            stopped_retry_secs: self.stopped_retry_secs,
            restarts: self.restarts.clone(),
            wake: wake.clone(),
        };
        let restarts = self.restarts.clone();
        let name = slot.name.clone();
        self.tasks.spawn(async move {
            let result = worker.run().await;
            restarts.unregister(&name, &wake);
            (name, result)
        });
        self.slots.push(status.clone());
        self.workers.insert(
            slot.name.clone(),
            Running {
                config: slot,
                status: status.clone(),
                stop,
            },
        );
        status
    }

    /// Ask every slot to stop (flush, confirm, disconnect).
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        for running in self.workers.values() {
            running.stop.send_replace(true);
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Wait for the next worker to end; `None` when none is left. A worker ended by
    /// a reload gives [`SlotChange`]s; one that ended for good gives none.
    pub async fn next(&mut self) -> Option<Vec<SlotChange>> {
        let joined = self.tasks.join_next().await?;
        let mut changes = Vec::new();
        let (name, result) = match joined {
            Ok(ended) => ended,
            Err(e) => {
                self.errors.push(format!("a slot worker failed: {e}"));
                return Some(changes);
            }
        };
        let Some(running) = self.workers.remove(&name) else {
            return Some(changes);
        };
        match (self.pending.remove(&name), result) {
            (Some(next), _) => {
                // Its status stays in `slots` otherwise: readable until the end.
                self.slots.retain(|s| !Arc::ptr_eq(s, &running.status));
                changes.push(SlotChange::Removed(name.clone()));
                if let Some(config) = next.filter(|_| !self.stopping()) {
                    let status = self.spawn(config.clone());
                    changes.push(SlotChange::Added(Box::new(config), status));
                } else {
                    tracing::info!(slot = %name, "[{name}] stopped and removed");
                }
            }
            (None, Ok(())) => self.stopped_by_request = true,
            (None, Err(e)) => self.errors.push(e),
        }
        Some(changes)
    }

    /// The stop messages when every slot still running waits, stopped, for its next
    /// try, and nothing is being restarted: then no slot is left streaming.
    fn all_stopped(&self) -> Option<Vec<String>> {
        if self.stopping() || !self.pending.is_empty() {
            return None;
        }
        let mut errors = self.errors.clone();
        for running in self.workers.values() {
            match running.status.state() {
                SlotState::Stopped { error } => {
                    errors.push(format!("slot {}: {error}", running.config.name))
                }
                _ => return None,
            }
        }
        (!errors.is_empty()).then_some(errors)
    }

    /// The outcome once no worker is left.
    fn outcome(&self) -> Result<(), RunError> {
        if self.stopped_by_request || self.errors.is_empty() {
            Ok(())
        } else {
            Err(RunError::AllSlotsStopped(self.errors.join("; ")))
        }
    }

    /// Every slot is stopped: end the workers waiting to try again, and fail.
    async fn give_up(&mut self, errors: Vec<String>) -> RunError {
        self.stop();
        while self.next().await.is_some() {}
        RunError::AllSlotsStopped(errors.join("; "))
    }

    /// Wait until every worker has ended, or every slot is stopped. Ok when they
    /// all ended by request.
    pub async fn wait(mut self) -> Result<(), RunError> {
        let mut poll = tokio::time::interval(ALL_STOPPED_POLL);
        loop {
            tokio::select! {
                next = self.next() => {
                    if next.is_none() {
                        return self.outcome();
                    }
                }
                _ = poll.tick() => {
                    if let Some(errors) = self.all_stopped() {
                        return Err(self.give_up(errors).await);
                    }
                }
            }
        }
    }
}

/// Log [`Config::memory_floor_warning`], if any, with its figures as fields (at
/// the start of `run` and of `check`).
pub fn note_memory_floor(config: &Config) {
    if let Some(warning) = config.memory_floor_warning() {
        tracing::warn!(
            held_bytes = config.records_bound_bytes(),
            budget_bytes = config.memory_budget_bytes,
            "{warning}"
        );
    }
}

/// Run every slot until `shutdown` resolves (then flush and exit cleanly) or no
/// slot is left running.
pub async fn run(
    config: &Config,
    env: &RunEnv,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reloads(config, env, shutdown, reloads).await
}

/// [`run`], applying each config received on `reloads` (the binary sends one
/// after each SIGHUP that read a valid file).
pub async fn run_with_reloads(
    config: &Config,
    env: &RunEnv,
    shutdown: impl std::future::Future<Output = ()>,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    note_memory_floor(config);
    let mut pipeline = Pipeline::start(config, env);
    let mut ops = crate::serve::Ops::start(config, &pipeline.slots).await;
    let mut current = config.clone();
    let mut poll = tokio::time::interval(ALL_STOPPED_POLL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            next = pipeline.next() => match next {
                None => return pipeline.outcome(),
                Some(changes) => follow(&mut ops, changes),
            },
            _ = &mut shutdown => {
                tracing::info!("shutdown requested");
                pipeline.stop();
                while let Some(changes) = pipeline.next().await {
                    follow(&mut ops, changes);
                }
                return pipeline.outcome();
            }
            Some(new) = reloads.recv() => {
                note_fixed_settings(&current, &new);
                let changes = pipeline.reload(&new);
                follow(&mut ops, changes);
                note_reloaded_memory(config, &pipeline);
                tracing::info!(slots = new.slots.len(), "config {} read again and applied", new.path.display());
                current = new;
            }
            _ = poll.tick() => {
                if let Some(errors) = pipeline.all_stopped() {
                    return Err(pipeline.give_up(errors).await);
                }
            }
        }
    }
}

fn follow(ops: &mut crate::serve::Ops, changes: Vec<SlotChange>) {
    for change in changes {
        match change {
            SlotChange::Added(config, status) => ops.add_slot(&config, status),
            SlotChange::Removed(name) => ops.remove_slot(&name),
        }
    }
}
