//! What the stub learns from each accepted record of a stream: the user records inside
//! (one, or many in a KPL aggregate), the per-key order check, which changes arrived
//! (per commit LSN, for the benchmark's loss check) and, when asked, commit-to-acceptance
//! latency.
//!
//! The order check reads the streamer's record format: `commit_lsn` ("X/Y") and `seq`
//! of each user record. Per partition key, (commit_lsn, seq) must never go backwards
//! from the last accepted record of that key; an equal pair is a duplicate. Records
//! without those fields are counted but not checked. Must never panic on any data.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::SystemTime;

use pg_cdc_to_kinesis::lsn::Lsn;

use super::kpl;

/// Highest `seq` the arrival bitmaps track (a bigger one is checked but not tracked).
const MAX_TRACKED_SEQ: u64 = 1 << 26;

/// Per-stream counters since the stream was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub put_records_requests: u64,
    /// Kinesis records accepted (an aggregate counts once).
    pub accepted_records: u64,
    /// Accepted records that were KPL aggregates.
    pub aggregated_records: u64,
    /// User records inside the accepted records.
    pub user_records: u64,
    /// Records answered ProvisionedThroughputExceededException by the per-shard model.
    pub throttled_records: u64,
    /// User records whose (commit_lsn, seq) went backwards for their partition key.
    pub order_violations: u64,
    /// User records whose (commit_lsn, seq) equals the last one of their key.
    pub duplicates: u64,
    pub first_arrival: Option<SystemTime>,
    pub last_arrival: Option<SystemTime>,
}

#[derive(Default)]
pub(super) struct Ledger {
    pub(super) stats: StreamStats,
    last_by_key: HashMap<String, (u64, u64)>,
    /// Per commit LSN, a bitmap of the `seq`s that arrived.
    arrived: HashMap<u64, Vec<u64>>,
    /// Commit-to-acceptance latencies in µs, when sampling is on for the stream.
    pub(super) latency_us: Vec<i64>,
}

impl Ledger {
    /// Accounts one accepted Kinesis record; returns how many user records it carried.
    pub(super) fn accept(
        &mut self,
        partition_key: &str,
        data: &[u8],
        arrived: SystemTime,
        sample_latency: bool,
    ) -> u64 {
        self.stats.accepted_records += 1;
        self.stats.first_arrival.get_or_insert(arrived);
        self.stats.last_arrival = Some(arrived);
        let inner = if kpl::is_aggregated(data) {
            kpl::deaggregate(partition_key, data).ok()
        } else {
            None
        };
        let Some(inner) = inner else {
            self.user_record(partition_key, data, arrived, sample_latency);
            return 1;
        };
        self.stats.aggregated_records += 1;
        for record in &inner {
            self.user_record(&record.partition_key, &record.data, arrived, sample_latency);
        }
        inner.len() as u64
    }

    fn user_record(&mut self, key: &str, data: &[u8], arrived: SystemTime, sample_latency: bool) {
        self.stats.user_records += 1;
        if sample_latency {
            if let Some(committed) = commit_micros(data) {
                self.latency_us.push(unix_micros(arrived) - committed);
            }
        }
        let Some(position) = order_fields(data) else {
            return;
        };
        match self.last_by_key.get_mut(key) {
            Some(last) if position > *last => *last = position,
            Some(last) if position == *last => self.stats.duplicates += 1,
            Some(_) => self.stats.order_violations += 1,
            None => {
                self.last_by_key.insert(key.to_string(), position);
            }
        }
        let (lsn, seq) = position;
        if seq < MAX_TRACKED_SEQ {
            let bits = self.arrived.entry(lsn).or_default();
            let word = (seq / 64) as usize;
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << (seq % 64);
        }
    }

    /// Distinct (commit_lsn, seq) pairs that arrived, per commit LSN, ascending.
    pub(super) fn distinct_by_commit_lsn(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .arrived
            .iter()
            .map(|(lsn, bits)| (*lsn, bits.iter().map(|w| u64::from(w.count_ones())).sum()))
            .collect();
        out.sort_unstable();
        out
    }
}

/// (commit_lsn, seq) of a record in the streamer's format. The two fields close the
/// object (`..."commit_lsn":"0/16B3748","xid":747,"seq":3}`), so they are read from
/// the end without parsing the row; anything else falls back to a JSON parse.
fn order_fields(data: &[u8]) -> Option<(u64, u64)> {
    fast_order_fields(data).or_else(|| {
        if !contains(data, b"\"seq\"") {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Fields {
            commit_lsn: Option<String>,
            seq: Option<u64>,
        }
        let f: Fields = serde_json::from_slice(data).ok()?;
        Some((Lsn::from_str(f.commit_lsn.as_deref()?).ok()?.0, f.seq?))
    })
}

fn fast_order_fields(data: &[u8]) -> Option<(u64, u64)> {
    const SEQ: &[u8] = b",\"seq\":";
    const COMMIT: &[u8] = b",\"commit_lsn\":\"";
    let body = data.strip_suffix(b"}")?;
    let at = rfind(body, SEQ)?;
    let digits = body.get(at + SEQ.len()..)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits.len() > 19 {
        return None;
    }
    let seq: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let before = body.get(..at)?;
    let c = rfind(before, COMMIT)?;
    let rest = before.get(c + COMMIT.len()..)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let lsn = Lsn::from_str(std::str::from_utf8(rest.get(..end)?).ok()?).ok()?;
    Some((lsn.0, seq))
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(super) fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The commit time of a record, from its `"timestamp":"..."` field (near the start).
pub(super) fn commit_micros(data: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"timestamp\":\"";
    let head = data.get(..data.len().min(512))?;
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = head.get(start..)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    parse_pg_timestamp(std::str::from_utf8(rest.get(..end)?).ok()?)
}

/// `2026-11-23 23:29:15.677976+00` (PostgreSQL's ISO style, any offset such as `+05:30`
/// or `-08`) as microseconds since the Unix epoch.
pub(super) fn parse_pg_timestamp(text: &str) -> Option<i64> {
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, time) = text.split_once(' ')?;
    let mut ymd = date.splitn(3, '-');
    let (y, m, d) = (num(ymd.next()?)?, num(ymd.next()?)?, num(ymd.next()?)?);
    let sign_at = time.find(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let mut hms = clock.splitn(3, ':');
    let (h, mi, s) = (num(hms.next()?)?, num(hms.next()?)?, hms.next()?);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let padded = format!("{frac:0<6}");
    let frac_us = num(padded.get(..6)?)?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut off = offset.get(1..)?.splitn(3, ':');
    let off_secs = num(off.next()?)? * 3600 + off.next().map_or(Some(0), num)? * 60;
    let days = days_from_civil(y, m, d);
    let local = ((days * 24 + h) * 60 + mi) * 60 + num(whole)?;
    Some((local - sign * off_secs) * 1_000_000 + frac_us)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(commit: &str, seq: u64) -> Vec<u8> {
        format!(
            "{{\"kind\":\"insert\",\"timestamp\":\"1970-01-01 00:00:02+00\",\"data\":{{\"seq\":99,\"commit_lsn\":\"F/F\"}},\"lsn\":\"0/1\",\"commit_lsn\":\"{commit}\",\"xid\":7,\"seq\":{seq}}}"
        )
        .into_bytes()
    }

    #[test]
    fn order_fields_come_from_the_top_level_of_the_record() {
        assert_eq!(order_fields(&rec("1/A", 3)), Some(((1 << 32) + 10, 3)));
        // Same fields in another order: the JSON fallback.
        assert_eq!(
            order_fields(b"{\"seq\":5,\"commit_lsn\":\"0/20\"}"),
            Some((0x20, 5))
        );
        assert_eq!(order_fields(b"{\"seq\":5,\"commit_lsn\":null}"), None);
        assert_eq!(order_fields(b"k0:17"), None);
        assert_eq!(order_fields(b"}"), None);
    }

    #[test]
    fn per_key_order_counts_violations_and_duplicates() {
        let mut ledger = Ledger::default();
        let now = SystemTime::now();
        for (key, commit, seq) in [
            ("a", "0/10", 0),
            ("b", "0/10", 1),
            ("a", "0/10", 2),
            ("a", "0/10", 2), // duplicate of the last
            ("a", "0/10", 0), // backwards
            ("b", "0/20", 0), // later transaction, seq restarts: forward
            ("b", "0/10", 1), // backwards across transactions
        ] {
            ledger.accept(key, &rec(commit, seq), now, false);
        }
        ledger.accept("c", b"not json", now, false);
        let s = &ledger.stats;
        assert_eq!(
            (s.user_records, s.duplicates, s.order_violations),
            (8, 1, 2)
        );
        assert_eq!(ledger.distinct_by_commit_lsn(), vec![(0x10, 3), (0x20, 1)]);
    }

    #[test]
    fn aggregates_count_their_user_records_and_are_order_checked() {
        let mut ledger = Ledger::default();
        let (r0, r1, r2) = (rec("0/10", 0), rec("0/10", 1), rec("0/10", 2));
        let data = kpl::aggregate_for_tests(&[("k", &r0), ("k", &r2), ("k", &r1)]);
        let n = ledger.accept("outer", &data, SystemTime::now(), false);
        assert_eq!(n, 3);
        let s = &ledger.stats;
        assert_eq!(
            (
                s.accepted_records,
                s.aggregated_records,
                s.user_records,
                s.order_violations
            ),
            (1, 1, 3, 1)
        );
    }

    #[test]
    fn latency_is_sampled_from_the_commit_timestamp() {
        let mut ledger = Ledger::default();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(2_500);
        ledger.accept("a", &rec("0/1", 0), at, true);
        ledger.accept("a", &rec("0/1", 1), at, false);
        assert_eq!(ledger.latency_us, vec![500_000]);
    }

    #[test]
    fn parses_postgres_timestamps_with_any_offset() {
        assert_eq!(parse_pg_timestamp("1970-01-01 00:00:00+00"), Some(0));
        assert_eq!(
            parse_pg_timestamp("1970-01-01 00:00:01.5+00"),
            Some(1_500_000)
        );
        // 2026-11-23 23:29:15.677976 UTC, checked with `date -d ... +%s`: 1795476555.
        assert_eq!(
            parse_pg_timestamp("2026-11-23 23:29:15.677976+00"),
            Some(1_795_476_555_677_976)
        );
        assert_eq!(
            parse_pg_timestamp("2026-11-24 05:29:15.677976+05:30"),
            Some(1_795_476_555_677_976 + 30 * 60 * 1_000_000)
        );
        assert_eq!(
            parse_pg_timestamp("2026-11-23 15:29:15.677976-08"),
            Some(1_795_476_555_677_976)
        );
        assert_eq!(parse_pg_timestamp("not a time"), None);
        assert_eq!(parse_pg_timestamp("2026-11-23 23:29:15"), None);
    }
}
