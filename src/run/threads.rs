//! How many worker threads the async runtime gets for a config's slots.

/// The async runtime's worker threads for `slots` slots on `cpus` CPUs: one per
/// slot, within the CPUs (at least one). A slot's reader hands records to its sink
/// task and the sink hands acknowledgements back; on one thread neither hand-off
/// wakes another thread, which `scripts/bench` measured as about a tenth of the
/// streamer's CPU per row, and one thread keeps up with its slot's walsender, which
/// spends more CPU per row than the streamer. Slots added by a reload share the
/// threads the process started with. `TOKIO_WORKER_THREADS` overrides this.
pub fn worker_threads(slots: usize, cpus: usize) -> usize {
    slots.clamp(1, cpus.max(1))
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn one_thread_per_slot_within_the_cpus() {
        assert_eq!(worker_threads(1, 2), 1);
        assert_eq!(worker_threads(8, 2), 2);
        assert_eq!(worker_threads(3, 16), 3);
        assert_eq!(worker_threads(0, 4), 1, "no slot yet: one thread");
        assert_eq!(worker_threads(5, 0), 1, "at least one thread");
    }
}
