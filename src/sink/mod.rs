//! Sinks: where records go. There is one, Kinesis.
//!
//! Owns the sink's input type. A sink never confirms anything to PostgreSQL: it
//! reports accepted records to the acknowledgement tracker (`crate::ack`).

pub mod kinesis;
pub mod oversize;

use crate::lsn::Lsn;
use crate::record::Record;

/// Items cross from the reader to the sink in chunks of up to this many: one channel
/// operation (and wake-up) per chunk instead of per row.
pub const CHUNK_ITEMS: usize = 256;
/// A chunk closes once its records reach this many bytes, so the queue between reader
/// and sink holds at most (queue_capacity / CHUNK_ITEMS) chunks of about 1 MiB.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// What the pipeline hands the sink, in stream order.
#[derive(Debug)]
pub enum Item {
    Record(Record),
    /// The transaction ending at this LSN has handed over all its records.
    Commit(Lsn),
}
