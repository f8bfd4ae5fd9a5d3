//! When a request that is not full waits (up to `linger_ms`) for more records, and
//! when it goes at once.
//!
//! Every request costs signing, a round trip and an answer to parse, so a fuller one
//! costs less per record; but a record that waits for company is late. Waiting pays
//! only while more records are certainly on their way and can join the request.

/// What the sink loop knows when it could send a request that is not full.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    /// The next request would be full (records, or an aggregate's backlog).
    pub full: bool,
    /// The slot's queue closed: nothing more comes.
    pub closed: bool,
    /// Requests in flight: their answers wake the loop, and a request sent now
    /// would only queue behind them.
    pub in_flight: usize,
    /// The last item taken was a record, not a commit: the rest of its transaction
    /// is on its way.
    pub open_txn: bool,
    /// Records go as KPL aggregates, which take a key's whole backlog anyway.
    pub aggregated: bool,
    /// Some key holds records behind its next one (a hot key, or a key waiting for
    /// an answer): records that waiting cannot send sooner.
    pub backlog: bool,
    /// The slot's memory budget is half used: what waits should go.
    pub pressed: bool,
}

impl Moment {
    /// Whether the partial request waits. With requests in flight, yes (their
    /// answers come first anyway). With none, only inside a transaction whose records
    /// are still arriving, each of a key of its own: at a commit its records go at
    /// once (its acknowledgement waits on them), and behind a key's backlog waiting
    /// only delays what can go.
    pub(super) fn waits(self) -> bool {
        if self.full || self.closed {
            return false;
        }
        let arriving = self.open_txn && !self.aggregated && !self.backlog && !self.pressed;
        self.in_flight > 0 || arriving
    }
}

#[cfg(test)]
mod tests {
    use super::Moment;

    const ARRIVING: Moment = Moment {
        full: false,
        closed: false,
        in_flight: 0,
        open_txn: true,
        aggregated: false,
        backlog: false,
        pressed: false,
    };

    #[test]
    fn a_transaction_still_arriving_fills_its_request_even_with_nothing_in_flight() {
        assert!(ARRIVING.waits());
    }

    #[test]
    fn a_full_request_or_a_closed_queue_never_waits() {
        for m in [
            ARRIVING,
            Moment {
                in_flight: 3,
                ..ARRIVING
            },
        ] {
            assert!(!Moment { full: true, ..m }.waits());
            assert!(!Moment { closed: true, ..m }.waits());
        }
    }

    #[test]
    fn with_nothing_in_flight_a_commit_a_backlog_aggregation_or_memory_pressure_sends_at_once() {
        for m in [
            Moment {
                open_txn: false,
                ..ARRIVING
            },
            Moment {
                backlog: true,
                ..ARRIVING
            },
            Moment {
                aggregated: true,
                ..ARRIVING
            },
            Moment {
                pressed: true,
                ..ARRIVING
            },
        ] {
            assert!(!m.waits(), "{m:?}");
            // With a request in flight the partial one waits for its answer, as before.
            assert!(Moment { in_flight: 1, ..m }.waits(), "{m:?}");
        }
    }
}
