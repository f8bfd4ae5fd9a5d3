//! Which changes read from the slot Kinesis has not acknowledged yet, and since when:
//! the source of `ReplicationLagMs` and `OldestUnackedAgeMs`.
//!
//! Owns only bookkeeping about time. It never influences what is confirmed (that is
//! `ack`), and it never fails: a commit timestamp it cannot parse just leaves the lag
//! unknown.

use std::collections::VecDeque;
use std::time::Instant;

use crate::decode::Event;
use crate::lsn::Lsn;

/// A transaction with changes, read and not yet acknowledged.
#[derive(Debug)]
struct Pending {
    end_lsn: Lsn,
    commit_ms: Option<i64>,
    first_read: Instant,
}

#[derive(Debug, Default)]
struct Open {
    commit_ms: Option<i64>,
    first_read: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Progress {
    pending: VecDeque<Pending>,
    open: Option<Open>,
    acked: Lsn,
    newest_acked_commit_ms: Option<i64>,
}

impl Progress {
    /// Returns how many row changes the events hold.
    pub(super) fn observe(&mut self, events: &[Event], now: Instant) -> u64 {
        let mut changes = 0;
        for event in events {
            match event {
                Event::Begin { timestamp, .. } => {
                    self.open = Some(Open {
                        commit_ms: timestamp.as_deref().and_then(parse_pg_timestamp_ms),
                        first_read: None,
                    });
                }
                Event::Change(_) => {
                    changes += 1;
                    if let Some(open) = &mut self.open {
                        open.first_read.get_or_insert(now);
                    }
                }
                Event::Commit { end_lsn } => {
                    let open = self.open.take().unwrap_or_default();
                    // A transaction without changes leaves nothing to wait for.
                    if let Some(first_read) = open.first_read {
                        if *end_lsn > self.acked {
                            self.pending.push_back(Pending {
                                end_lsn: *end_lsn,
                                commit_ms: open.commit_ms,
                                first_read,
                            });
                        }
                    }
                }
                Event::Message { .. } => {}
            }
        }
        changes
    }

    pub(super) fn acked(&mut self, lsn: Lsn) {
        self.acked = self.acked.max(lsn);
        while let Some(front) = self.pending.front() {
            if front.end_lsn > self.acked {
                break;
            }
            if front.commit_ms.is_some() {
                self.newest_acked_commit_ms = front.commit_ms;
            }
            self.pending.pop_front();
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.open.as_ref().is_some_and(|o| o.first_read.is_some())
    }

    /// Now minus the commit time of the oldest pending transaction: everything
    /// committed before it is on the stream. (The newest acknowledged commit would
    /// report a spike when the first change after a long idle period arrives.)
    pub(super) fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        if !self.has_pending() {
            return Some(0);
        }
        let oldest = self
            .pending
            .front()
            .map(|p| p.commit_ms)
            .unwrap_or_else(|| self.open.as_ref().and_then(|o| o.commit_ms));
        oldest
            .or(self.newest_acked_commit_ms)
            .map(|c| (now_ms - c).max(0))
    }

    pub(super) fn oldest_unacked_ms(&self, now: Instant) -> Option<i64> {
        let oldest = self
            .pending
            .front()
            .map(|p| p.first_read)
            .or_else(|| self.open.as_ref().and_then(|o| o.first_read));
        Some(
            oldest
                .map(|t| {
                    i64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(i64::MAX)
                })
                .unwrap_or(0),
        )
    }
}

/// A timestamp as PostgreSQL prints a `timestamptz` (wal2json's `timestamp`):
/// `2026-11-23 23:29:15.677976+00`, offsets `+05:30` or `-08`, fraction optional.
pub(crate) fn parse_pg_timestamp_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let zone_at = rest.find(['+', '-'])?;
    let (time, zone) = rest.split_at(zone_at);
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let sec_text = t.next()?;
    let (whole, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let second: i64 = whole.parse().ok()?;
    let millis: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        digits.parse().ok()?
    };
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let mut z = zone.get(1..)?.split(':');
    let zh: i64 = z.next()?.parse().ok()?;
    let zm: i64 = z.next().map(|m| m.parse().ok()).unwrap_or(Some(0))?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = ((days * 24 + hour) * 60 + minute) * 60 + second;
    Some((local - sign * (zh * 3600 + zm * 60)) * 1000 + millis)
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_postgres_timestamps() {
        assert_eq!(parse_pg_timestamp_ms("1970-01-01 00:00:00+00"), Some(0));
        assert_eq!(
            parse_pg_timestamp_ms("2026-11-23 23:29:15.677976+00"),
            Some(1_795_476_555_677)
        );
        assert_eq!(
            parse_pg_timestamp_ms("2026-11-24 05:00:15.677+05:30"),
            Some(1_795_476_555_677 + 60_000)
        );
        assert_eq!(
            parse_pg_timestamp_ms("2000-02-29 16:00:00-08"),
            Some(951_868_800_000)
        );
        for bad in [
            "",
            "infinity",
            "2026-13-01 00:00:00+00",
            "2026-01-01T00:00:00Z",
            "x y+z",
        ] {
            assert_eq!(parse_pg_timestamp_ms(bad), None, "{bad}");
        }
    }

    fn begin(ts: &str) -> Event {
        Event::Begin {
            xid: None,
            timestamp: Some(ts.to_string()),
            txn_lsn: None,
        }
    }

    fn change() -> Event {
        Event::Change(crate::decode::Change {
            kind: crate::decode::Kind::Insert,
            schema: "public".into(),
            table: "t".into(),
            columns: Vec::new(),
            identity: Vec::new(),
            pk: Default::default(),
            lsn: None,
            columns_tag: 0,
        })
    }

    #[test]
    fn tracks_pending_transactions_until_acknowledged() {
        let mut p = Progress::default();
        let t0 = Instant::now();
        assert_eq!(p.lag_ms(5_000), Some(0));
        assert_eq!(p.oldest_unacked_ms(t0), Some(0));
        let n = p.observe(
            &[
                begin("1970-01-01 00:00:01+00"),
                change(),
                change(),
                Event::Commit { end_lsn: Lsn(100) },
                begin("1970-01-01 00:00:03+00"),
                Event::Commit { end_lsn: Lsn(150) },
                begin("1970-01-01 00:00:04+00"),
                change(),
                Event::Commit { end_lsn: Lsn(200) },
            ],
            t0,
        );
        assert_eq!(n, 3);
        assert_eq!(
            p.lag_ms(10_000),
            Some(9_000),
            "oldest pending committed at 1 s"
        );
        assert_eq!(
            p.oldest_unacked_ms(t0 + Duration::from_millis(70)),
            Some(70)
        );
        p.acked(Lsn(150));
        assert_eq!(
            p.lag_ms(10_000),
            Some(6_000),
            "the 4 s transaction is pending"
        );
        p.acked(Lsn(200));
        assert_eq!(p.lag_ms(10_000), Some(0));
        assert_eq!(p.newest_acked_commit_ms, Some(4_000));
    }
}
