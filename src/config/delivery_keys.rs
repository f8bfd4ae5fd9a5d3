//! The delivery keys of a slot: `aggregation`, `wire_format`, `shard_records_per_sec`,
//! `shard_bytes_per_sec`; and the top-level `memory_budget_bytes`.
//!
//! Owns their defaults and value rules. It never talks to Kinesis.

use super::file::{SlotFile, Value};
use super::value::{choice, number};
use super::{ConfigError, Source};

/// `shard_records_per_sec` default: a provisioned shard's write limit.
pub const DEFAULT_SHARD_RECORDS_PER_SEC: u64 = 1000;
/// `shard_bytes_per_sec` default: a provisioned shard's write limit (1 MiB/s).
pub const DEFAULT_SHARD_BYTES_PER_SEC: u64 = 1024 * 1024;
/// `memory_budget_bytes` default: 64 MiB for the records all slots hold (about
/// 200,000 rows of 330 bytes), well inside the CDK task's 1 GiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// `memory_budget_bytes` upper bound (1 TiB).
pub const MAX_MEMORY_BUDGET_BYTES: u64 = 1 << 40;
/// `memory_budget_bytes` lower bound: room for a few full requests.
pub const MIN_MEMORY_BUDGET_BYTES: u64 = 16 * 1024 * 1024;
/// The least share of the budget one slot gets, whatever the number of slots: one
/// full request of the largest size and its records.
pub const MIN_SLOT_BUFFER_BYTES: usize = 2 * super::DEFAULT_BATCH_MAX_BYTES;

/// How records are packed into Kinesis records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// One Kinesis record per row change. The default.
    #[default]
    None,
    /// KPL aggregated records: many row changes of one shard in one Kinesis record.
    Kpl,
}

/// How `PutRecords` requests are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// CBOR (`application/x-amz-cbor-1.1`): data as bytes. The default.
    #[default]
    Cbor,
    /// awsJson 1.1: data in base64.
    Json,
}

pub(super) struct DeliveryKeys {
    pub aggregation: Aggregation,
    pub wire_format: WireFormat,
    pub shard_records_per_sec: u64,
    pub shard_bytes_per_sec: u64,
}

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
) -> Result<DeliveryKeys, ConfigError> {
    let aggregation = choice(
        src,
        &raw.aggregation,
        &place("aggregation"),
        (("none", Aggregation::None), ("kpl", Aggregation::Kpl)),
        "`kpl` packs many changes into one Kinesis record (consumers de-aggregate with the \
         KCL or the kinesis-aggregation libraries)",
    )?;
    let wire_format = choice(
        src,
        &raw.wire_format,
        &place("wire_format"),
        (("cbor", WireFormat::Cbor), ("json", WireFormat::Json)),
        "`json` is for an endpoint that does not take CBOR requests",
    )?;
    let num = |key: &str, v: &Option<Value>, default: u64| match v {
        None => Ok(default),
        Some(v) => number(src, v, &place(key), 0, u64::from(u32::MAX)),
    };
    Ok(DeliveryKeys {
        aggregation,
        wire_format,
        shard_records_per_sec: num(
            "shard_records_per_sec",
            &raw.shard_records_per_sec,
            DEFAULT_SHARD_RECORDS_PER_SEC,
        )?,
        shard_bytes_per_sec: num(
            "shard_bytes_per_sec",
            &raw.shard_bytes_per_sec,
            DEFAULT_SHARD_BYTES_PER_SEC,
        )?,
    })
}

/// The top-level `memory_budget_bytes`.
pub(super) fn memory_budget(src: &Source<'_>, v: &Option<Value>) -> Result<u64, ConfigError> {
    match v {
        None => Ok(DEFAULT_MEMORY_BUDGET_BYTES),
        Some(v) => number(
            src,
            v,
            "top level, key `memory_budget_bytes`",
            MIN_MEMORY_BUDGET_BYTES,
            MAX_MEMORY_BUDGET_BYTES,
        ),
    }
}

/// Each slot's share of the budget: an even split, never below one full request.
pub(super) fn slot_share(budget: u64, slots: usize) -> usize {
    let share = budget / (slots.max(1) as u64);
    usize::try_from(share)
        .unwrap_or(usize::MAX)
        .max(MIN_SLOT_BUFFER_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_evenly_with_a_floor_of_one_full_request() {
        assert_eq!(slot_share(256 << 20, 1), 256 << 20);
        assert_eq!(slot_share(256 << 20, 8), 32 << 20);
        // 100 slots would get 2.5 MiB each: too little for one full request.
        assert_eq!(slot_share(256 << 20, 100), MIN_SLOT_BUFFER_BYTES);
        assert_eq!(slot_share(256 << 20, 0), 256 << 20);
    }
}
