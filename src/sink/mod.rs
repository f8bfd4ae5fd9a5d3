//! Sinks: where records go. There is one, Kinesis.
//!
//! Owns the sink's input type. A sink never confirms anything to PostgreSQL: it
//! reports accepted records to the acknowledgement tracker (`crate::ack`).

pub mod kinesis;

use crate::lsn::Lsn;
use crate::record::Record;

/// Items cross from the reader to the sink in chunks of up to this many: one channel
/// operation (and wake-up) per chunk instead of per row.
pub const CHUNK_ITEMS: usize = 256;

/// What the pipeline hands the sink, in stream order.
#[derive(Debug)]
pub enum Item {
    Record(Record),
    /// The transaction ending at this LSN has handed over all its records.
    Commit(Lsn),
}
