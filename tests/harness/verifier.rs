//! The delivery verifier detects loss, duplicates and reordering, and reads stub records
//! through an extractor.

use std::time::Instant;

use crate::support::kinesis::{verify, Verdict};
use crate::support::stub::StubRecord;

use super::*;

#[test]
fn verifier_detects_loss_duplicates_and_reordering() {
    let truth = ground_truth(6, 2); // k0: 0,2,4  k1: 1,3,5
    let clean: Vec<(String, u64)> = vec![
        ("k1", 1),
        ("k0", 0),
        ("k1", 3),
        ("k0", 2),
        ("k0", 4),
        ("k1", 5),
    ]
    .into_iter()
    .map(|(k, i)| (k.to_string(), i))
    .collect();
    let v = verify(&truth, &clean, |r| Some(r.clone()));
    assert_eq!(
        v,
        Verdict {
            committed: 6,
            delivered: 6,
            ..Verdict::default()
        }
    );

    let lost: Vec<_> = clean.iter().filter(|r| r.1 != 2).cloned().collect();
    let v = verify(&truth, &lost, |r| Some(r.clone()));
    assert_eq!(
        (v.lost, v.delivered, v.duplicates, v.order_violations),
        (1, 5, 0, 0),
        "{v}"
    );
    assert!(!v.is_at_least_once_in_order());
    assert!(
        v.examples.iter().any(|e| e.contains("\"k0\", 2) was lost")),
        "{v}"
    );

    // A replayed prefix is a duplicate, not a reordering.
    let mut replay = clean.clone();
    replay.extend([("k0".to_string(), 0), ("k0".to_string(), 2)]);
    let v = verify(&truth, &replay, |r| Some(r.clone()));
    assert_eq!((v.lost, v.duplicates, v.order_violations), (0, 2, 0), "{v}");
    assert!(v.is_at_least_once_in_order() && !v.is_exactly_once_in_order());

    let mut swapped = clean.clone();
    swapped.swap(1, 3); // k0:2 before k0:0
    let v = verify(&truth, &swapped, |r| Some(r.clone()));
    assert_eq!((v.lost, v.duplicates, v.order_violations), (0, 0, 1), "{v}");

    let odd: Vec<Option<(String, u64)>> = vec![None, Some(("k9".to_string(), 9))];
    let v = verify(&truth, &odd, |r| r.clone());
    assert_eq!((v.unparsable, v.unexpected, v.lost), (1, 1, 6), "{v}");
}

#[test]
fn verifier_reads_stub_records_through_an_extractor() {
    let record = |key: &str, data: &str| StubRecord {
        partition_key: key.to_string(),
        data: data.as_bytes().to_vec(),
        shard_id: "shardId-000000000000".to_string(),
        sequence_number: "1".to_string(),
        arrived: Instant::now(),
    };
    let records = vec![record("k0", "k0:0"), record("k0", "garbage")];
    let v = verify(&ground_truth(1, 1), &records, |r: &StubRecord| {
        parse(&r.data)
    });
    assert_eq!((v.delivered, v.unparsable), (1, 1), "{v}");
}
