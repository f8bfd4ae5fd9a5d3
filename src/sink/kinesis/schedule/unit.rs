//! One Kinesis record of a request (a [`Unit`]): a user record, or a KPL aggregate
//! of several, with the data, keys and sizes the request body and metrics read.

use super::Entry;

/// One Kinesis record of a request: a user record, or an aggregate of several.
#[derive(Debug)]
pub struct Unit {
    pub shard: usize,
    /// The user records, in delivery order.
    pub members: Vec<Entry>,
    /// The KPL aggregate of `members` (two or more), with its outer keys.
    pub aggregate: Option<Aggregate>,
}

#[derive(Debug)]
pub struct Aggregate {
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
}

impl Unit {
    pub fn data(&self) -> &[u8] {
        match &self.aggregate {
            Some(a) => &a.data,
            None => &self.members[0].record.data,
        }
    }

    pub fn partition_key(&self) -> &str {
        match &self.aggregate {
            Some(a) => &a.partition_key,
            None => &self.members[0].record.partition_key,
        }
    }

    pub fn explicit_hash_key(&self) -> Option<&str> {
        self.aggregate
            .as_ref()
            .and_then(|a| a.explicit_hash_key.as_deref())
    }

    /// What Kinesis counts: data plus partition key.
    pub fn wire_size(&self) -> usize {
        self.data().len() + self.partition_key().len()
    }

    /// The user records' own sizes (data plus partition key), for metrics.
    pub fn user_bytes(&self) -> usize {
        self.members.iter().map(|e| e.record.billed_size()).sum()
    }
}
