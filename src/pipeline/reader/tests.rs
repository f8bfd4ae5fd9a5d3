//! Unit tests of the session reader: chunks bounded by count and bytes, and the
//! keepalive positions it confirms (never past pending records, never backwards).

use super::*;
use crate::ack::{AckTracker, Confirmed};
use crate::decode;

#[test]
fn chunks_are_bounded_by_count_and_bytes() {
    let record = |size: usize| Item::Record(Record::new("k", vec![b'x'; size]));
    let mut r = Reader::new(Lsn(0));
    for _ in 0..5 {
        r.out_bytes += 600 * 1024 + 1;
        r.out.push_back(record(600 * 1024));
    }
    r.out.push_back(Item::Commit(Lsn(9)));
    // Two wide records pass 1 MiB: the chunk closes there.
    assert_eq!(r.take_chunk().len(), 2);
    assert_eq!(r.out_bytes, 3 * (600 * 1024 + 1));
    let mut small = Reader::new(Lsn(0));
    for _ in 0..(CHUNK_ITEMS + 10) {
        small.out_bytes += 11;
        small.out.push_back(record(10));
    }
    assert_eq!(small.take_chunk().len(), CHUNK_ITEMS);
    assert_eq!(small.take_chunk().len(), 10);
    assert_eq!(small.out_bytes, 0);
}

#[test]
fn confirms_keepalive_position_only_when_nothing_is_pending() {
    let mut tracker = AckTracker::new(Lsn(100));
    let mut r = Reader::new(Lsn(100));
    r.accepted = tracker.accepted_count();
    r.server_wal_end = Lsn(500);
    assert_eq!(
        r.confirmable(Lsn(100)),
        Lsn(500),
        "idle slot follows the server"
    );
    r.in_txn = true;
    assert_eq!(
        r.confirmable(Lsn(100)),
        Lsn(100),
        "an open transaction holds the position"
    );
    r.in_txn = false;
    r.records_handed = 1;
    let seq = tracker.register_record();
    tracker.register_commit(Lsn(300));
    assert_eq!(
        r.confirmable(tracker.acked()),
        Lsn(100),
        "an unaccepted record holds the position"
    );
    tracker.accept(seq);
    assert_eq!(r.confirmable(tracker.acked()), Lsn(500));
}

/// Hands the reader's next chunk to `tracker` as the sink does; the records' seqs.
fn hand_over(r: &mut Reader, tracker: &mut AckTracker) -> Vec<u64> {
    let mut seqs = Vec::new();
    for item in r.take_chunk() {
        match item {
            Item::Record(_) => seqs.push(tracker.register_record()),
            Item::Commit(lsn) => tracker.register_commit(lsn),
        }
    }
    seqs
}

#[test]
fn keepalive_is_not_confirmed_past_a_v1_transaction_labelled_below_an_accepted_one() {
    use crate::decode::FormatVersion;
    // format-version 1 without write-in-chunks and include-lsn: the walsender
    // labels each whole transaction with its first LSN. T1 began at 0/100 and
    // committed after T2, which began at 0/200: T2 arrives first.
    let doc = |xid: u32| {
        format!(
            r#"{{"xid":{xid},"timestamp":"2026-01-01 00:00:00+00","change":[{{"kind":"insert","schema":"public","table":"t","columnnames":["id"],"columntypes":["integer"],"columnvalues":[{xid}]}}]}}"#
        )
    };
    let mut decoder = decode::decoder_for(FormatVersion::V1);
    let mut encoder = TableRouter::new(
        crate::record::RecordEncoder::new("db", Default::default()),
        &Default::default(),
        "stream",
    );
    let mut tracker = AckTracker::new(Lsn(0x50));
    let mut r = Reader::new(Lsn(0x50));
    r.accepted = tracker.accepted_count();
    let mut events = Vec::new();
    let mut read = |r: &mut Reader, label: u64, xid: u32| {
        decoder
            .feed(Lsn(label), doc(xid).as_bytes(), &mut events)
            .unwrap();
        r.pending.extend(events.drain(..));
        r.absorb(&mut encoder, 1 << 20).unwrap();
    };
    read(&mut r, 0x200, 2);
    for seq in hand_over(&mut r, &mut tracker) {
        tracker.accept(seq);
    }
    read(&mut r, 0x100, 1);
    let in_flight = hand_over(&mut r, &mut tracker);
    r.server_wal_end = Lsn(0x500);
    assert_eq!(tracker.acked(), Lsn(0x200));
    assert_eq!(
        r.confirmable(tracker.acked()),
        Lsn(0x200),
        "T1's record is still in flight: the keepalive position would skip it after a restart"
    );
    tracker.accept(in_flight[0]);
    assert_eq!(r.confirmable(tracker.acked()), Lsn(0x500), "now idle");
}

#[test]
fn status_updates_never_go_below_an_idle_keepalive_confirmation() {
    let mut tracker = AckTracker::new(Lsn(100));
    let mut r = Reader::new(Lsn(100));
    r.accepted = tracker.accepted_count();
    let mut sent = Confirmed::new(Lsn(100));
    // Idle: the server's position is confirmed.
    r.server_wal_end = Lsn(500);
    assert_eq!(sent.next(r.confirmable(tracker.acked()), None), Lsn(500));
    // A transaction arrives and is in flight: the tracker still says 100.
    r.records_handed = 1;
    let seq = tracker.register_record();
    tracker.register_commit(Lsn(700));
    assert_eq!(r.confirmable(tracker.acked()), Lsn(100));
    assert_eq!(
        sent.next(r.confirmable(tracker.acked()), None),
        Lsn(500),
        "a status update below an earlier one moves the slot backwards"
    );
    tracker.accept(seq);
    assert_eq!(sent.next(r.confirmable(tracker.acked()), None), Lsn(700));
}
