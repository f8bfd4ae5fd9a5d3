//! Everything that runs beside the pipeline to operate it: the HTTP endpoints
//! (`http`), the EMF metric lines on stdout, and one WAL monitor per slot
//! ([`crate::monitor`]).
//!
//! Owns their start and stop. It never stops the process: a port that cannot be
//! bound is logged as an error (the health check then fails and says so) and
//! streaming goes on.

mod http;
mod snapshot;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;

use crate::config::{Config, SlotConfig};
use crate::metrics::emf::EmfWriter;
use crate::monitor::{self, WalSafety};
use crate::pipeline::SlotStatus;

pub use http::readiness;
pub use snapshot::{snapshot, Watched};

/// Where EMF lines go: stdout in the service, a buffer in tests.
pub type EmfOut = Arc<Mutex<dyn Write + Send>>;

/// The slots the endpoints, metric lines and monitors follow.
type WatchedSlots = Arc<RwLock<Vec<Watched>>>;

/// A copy of the slots being watched now.
fn current(slots: &WatchedSlots) -> Vec<Watched> {
    slots.read().map(|s| s.clone()).unwrap_or_default()
}

/// The running operations tasks; dropping it stops them (after a last EMF line).
pub struct Ops {
    http_addr: Option<SocketAddr>,
    tasks: Vec<AbortHandle>,
    emf: Option<(Arc<Mutex<EmfWriter>>, EmfOut)>,
    slots: WatchedSlots,
    /// Each slot's WAL monitor, by slot name.
    monitors: HashMap<String, AbortHandle>,
    safety: WalSafety,
}

impl Ops {
    /// Start the endpoints, the EMF lines on stdout and the WAL monitors.
    pub async fn start(config: &Config, slots: &[Arc<SlotStatus>]) -> Ops {
        let out: EmfOut = Arc::new(Mutex::new(std::io::stdout()));
        Self::start_with(config, slots, out).await
    }

    /// [`Ops::start`] with EMF lines going to `emf_out`.
    pub async fn start_with(config: &Config, slots: &[Arc<SlotStatus>], emf_out: EmfOut) -> Ops {
        let ops_config = &config.ops;
        let watched: Vec<Watched> = slots
            .iter()
            .map(|status| Watched {
                status: status.clone(),
                stream: config
                    .slots
                    .iter()
                    .find(|s| s.name == status.slot)
                    .map(|s| s.kns_stream.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let watched: WatchedSlots = Arc::new(RwLock::new(watched));
        let mut tasks = Vec::new();

        let safety = WalSafety {
            lag_warn_bytes: ops_config.wal_lag_warn_bytes,
        };
        let mut monitors = HashMap::new();
        for status in slots {
            if let Some(slot) = config.slots.iter().find(|s| s.name == status.slot) {
                let task = tokio::spawn(monitor::watch_slot(slot.clone(), status.clone(), safety));
                monitors.insert(slot.name.clone(), task.abort_handle());
            }
        }

        let shared = Arc::new(http::Shared {
            slots: watched.clone(),
            retry_budget: Duration::from_secs(ops_config.ready_retry_budget_secs),
            beat_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        let beat = shared.clone();
        tasks.push(
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    beat.beat();
                }
            })
            .abort_handle(),
        );
        let http_addr = match tokio::net::TcpListener::bind(ops_config.http_listen).await {
            Ok(listener) => {
                let addr = listener.local_addr().ok();
                tracing::info!(
                    address = addr.map(tracing::field::display),
                    "HTTP endpoints /healthz, /readyz and /metrics listening on http://{}",
                    addr.map(|a| a.to_string()).unwrap_or_default()
                );
                tasks.push(tokio::spawn(http::serve(listener, shared)).abort_handle());
                addr
            }
            Err(e) => {
                tracing::error!(address = %ops_config.http_listen, error = %e, "cannot listen on {} for /healthz, /readyz and /metrics: {e}; streaming goes on without them. Free the port or set http_listen to another address (port 0 picks a free one)", ops_config.http_listen);
                None
            }
        };

        let emf = ops_config.metrics_emf.then(|| {
            let writer = Arc::new(Mutex::new(EmfWriter::new(&ops_config.metrics_namespace)));
            let every = Duration::from_secs(ops_config.metrics_interval_secs.max(1));
            let (w, out, slots) = (writer.clone(), emf_out.clone(), watched.clone());
            tasks.push(
                tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        emit(&w, &out, &current(&slots));
                    }
                })
                .abort_handle(),
            );
            (writer, emf_out)
        });

        Ops {
            http_addr,
            tasks,
            emf,
            slots: watched,
            monitors,
            safety,
        }
    }

    /// Follow a slot started after a config reload: endpoints, metrics, monitor.
    pub fn add_slot(&mut self, slot: &SlotConfig, status: Arc<SlotStatus>) {
        self.remove_slot(&slot.name);
        let task = tokio::spawn(monitor::watch_slot(
            slot.clone(),
            status.clone(),
            self.safety,
        ));
        self.monitors.insert(slot.name.clone(), task.abort_handle());
        if let Ok(mut slots) = self.slots.write() {
            slots.push(Watched {
                status,
                stream: slot.kns_stream.clone(),
            });
        }
    }

    /// Stop following a slot whose worker ended after a config reload.
    pub fn remove_slot(&mut self, name: &str) {
        if let Some(monitor) = self.monitors.remove(name) {
            monitor.abort();
        }
        if let Ok(mut slots) = self.slots.write() {
            slots.retain(|w| w.status.slot != name);
        }
    }

    /// The address the endpoints listen on (useful with port 0), if bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.monitors.values()) {
            task.abort();
        }
        // The counters since the last line would otherwise be lost at shutdown.
        if let Some((writer, out)) = &self.emf {
            emit(writer, out, &current(&self.slots));
        }
    }
}

fn emit(writer: &Mutex<EmfWriter>, out: &EmfOut, slots: &[Watched]) {
    let snap = snapshot(slots);
    let lines = match writer.lock() {
        Ok(mut w) => w.lines(&snap),
        Err(_) => return,
    };
    if let Ok(mut out) = out.lock() {
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}
