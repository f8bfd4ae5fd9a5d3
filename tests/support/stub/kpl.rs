//! KPL de-aggregation for the stub: the crate's own decoder
//! (`sink::kinesis::aggregate`, itself tested against the aws_kinesis_agg library), so
//! the stub counts and order-checks the user records inside each aggregate.
//!
//! A record that starts with the KPL magic bytes but does not decode (wrong digest, bad
//! protobuf) is counted by the stub as one plain user record, never a panic.

pub(super) use pg_cdc_to_kinesis::sink::kinesis::aggregate::{deaggregate, is_aggregated};

/// A KPL aggregate of `(partition key, data)` user records, for the stub's own tests.
#[cfg(test)]
pub fn aggregate_for_tests(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut aggregate = pg_cdc_to_kinesis::sink::kinesis::aggregate::Aggregator::new();
    for (key, data) in records {
        aggregate.push(key, data);
    }
    aggregate.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_reads_aggregates_and_refuses_corrupt_ones() {
        let data = aggregate_for_tests(&[("a", b"one"), ("b", b"two"), ("a", b"three")]);
        assert!(is_aggregated(&data));
        let records = deaggregate("outer", &data).expect("decodes");
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [("a", &b"one"[..]), ("b", &b"two"[..]), ("a", &b"three"[..])]
        );
        let mut bad = data.clone();
        bad[6] ^= 1;
        assert!(deaggregate("outer", &bad).is_err());
        assert!(!is_aggregated(b"{\"plain\":true}"));
    }
}
