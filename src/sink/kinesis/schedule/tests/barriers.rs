//! Scheduler tests of truncate barriers: a truncate waits for its tables' earlier
//! changes, holds later ones, and releases them once Kinesis accepted it.

use super::*;

#[test]
fn truncate_waits_for_its_tables_earlier_changes_and_holds_later_ones() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(table_entry(0, "public.t|1", 7, false));
    s.push(table_entry(1, "public.t|2", 7, false));
    s.push(table_entry(2, "public.u|1", 8, false));
    s.push(table_entry(3, "public.t", 7, true));
    s.push(table_entry(4, "public.t|1", 7, false));
    s.push(table_entry(5, "public.u|2", 8, false));
    let now = Instant::now();
    let first = s.next_request(now, plain(500));
    assert_eq!(
        seqs(&first),
        vec![0, 1, 2, 5],
        "truncate and later rows of t wait"
    );
    let mut first = first.into_iter();
    let (t1, t2, u1, u2) = (
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
    );
    s.accepted(u1);
    s.accepted(u2);
    s.accepted(t1);
    s.failed(t2, None);
    let retried = s.next_request(now, plain(500));
    assert_eq!(seqs(&retried), vec![1], "the failed row of t goes again");
    assert!(
        s.next_request(now, plain(500)).is_empty(),
        "the truncate waits for it"
    );
    s.accepted(retried.into_iter().next().unwrap());
    let truncate = s.next_request(now, plain(500));
    assert_eq!(seqs(&truncate), vec![3], "then the truncate goes, alone");
    s.accepted(truncate.into_iter().next().unwrap());
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![4]);
}

#[test]
fn truncate_goes_after_acceptance_then_releases_held_rows() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(table_entry(0, "public.t|1", 7, false));
    s.push(table_entry(1, "public.t", 7, true));
    s.push(table_entry(2, "public.t|1", 7, false));
    s.push(table_entry(3, "public.t|9", 7, false));
    let now = Instant::now();
    let row = s.next_request(now, plain(500));
    assert_eq!(seqs(&row), vec![0]);
    assert!(s.next_request(now, plain(500)).is_empty());
    s.accepted(row.into_iter().next().unwrap());
    let truncate = s.next_request(now, plain(500));
    assert_eq!(seqs(&truncate), vec![1]);
    assert!(
        s.next_request(now, plain(500)).is_empty(),
        "rows after the truncate wait for it"
    );
    s.accepted(truncate.into_iter().next().unwrap());
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![2, 3]);
    assert!(s.is_empty());
}
