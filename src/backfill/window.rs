//! The reader's side of a backfill chunk: the window between the chunk's low and
//! high watermarks in the replication stream, and the chunk's rows buffered by key.
//!
//! Owns the DBLog rule: a change to a buffered row inside the window drops that row
//! (the change is newer); what remains at the high watermark goes on the stream as
//! `read` records. An update that left a TOASTed column out gets the buffered row
//! first, so the column's value is not lost. Nothing here touches SQL or Kinesis.

use std::collections::HashMap;
use std::sync::Arc;

use super::table::key_text;
use crate::decode::{Change, Column, Kind};
use crate::signal::{Mark, Signal};

/// One chunk's rows, read between its watermarks; the backfill task hands them over.
#[derive(Debug)]
pub struct ChunkRows {
    /// `schema.table`.
    pub table: String,
    pub chunk: u64,
    /// `None` when reading failed (logged by the task): the window then emits nothing.
    pub rows: Option<BufferedChunk>,
}

/// The rows of a chunk, as read.
#[derive(Debug)]
pub struct BufferedChunk {
    pub schema: String,
    pub name: String,
    /// The chunking key's columns.
    pub key: Vec<String>,
    /// The primary key (the partition key's columns), empty without one.
    pub pk: Vec<String>,
    pub rows: Vec<Vec<Column>>,
}

/// Rows to put on the stream as `read` records of `chunk`.
#[derive(Debug)]
pub struct Emit {
    pub chunk: u64,
    pub rows: Vec<Change>,
}

/// What a signal message means to the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do (another slot's or another run's message, a request).
    Pass,
    /// A low watermark whose rows have not arrived yet: stop reading until they do.
    NeedRows,
}

/// The open window, if any, and the rows handed over for the next one.
#[derive(Debug, Default)]
pub struct Windows {
    slot: String,
    run: String,
    /// Rows read for a chunk whose low watermark the reader has not reached yet.
    ready: Option<ChunkRows>,
    open: Option<Open>,
    /// A high watermark in the current transaction: (table, chunk, rows emitted).
    closed_in_txn: Option<(String, u64, u64)>,
}

#[derive(Debug)]
struct Open {
    table: String,
    chunk: u64,
    /// Until the rows arrive, `None` (the reader waits).
    buffer: Option<Buffer>,
}

#[derive(Debug)]
struct Buffer {
    schema: String,
    name: String,
    key: Vec<String>,
    /// Shared by the chunk's rows.
    pk: Arc<[String]>,
    rows: Vec<Option<Vec<Column>>>,
    index: HashMap<Vec<String>, usize>,
}

impl Buffer {
    fn new(chunk: BufferedChunk) -> Buffer {
        let mut index = HashMap::with_capacity(chunk.rows.len());
        for (i, row) in chunk.rows.iter().enumerate() {
            if let Some(k) = key_of(row, &chunk.key) {
                index.insert(k, i);
            }
        }
        Buffer {
            schema: chunk.schema,
            name: chunk.name,
            key: chunk.key,
            pk: chunk.pk.into(),
            rows: chunk.rows.into_iter().map(Some).collect(),
            index,
        }
    }

    fn take(&mut self, key: Option<Vec<String>>) -> Option<Vec<Column>> {
        let i = self.index.remove(&key?)?;
        self.rows[i].take()
    }

    fn row_change(&self, columns: Vec<Column>) -> Change {
        Change {
            kind: Kind::Read,
            schema: self.schema.as_str().into(),
            table: self.name.as_str().into(),
            columns,
            identity: Vec::new(),
            pk: Arc::clone(&self.pk),
            lsn: None,
            columns_tag: 0,
        }
    }
}

/// The key of a row (or an identity): each key column's text; `None` if one is missing.
fn key_of(columns: &[Column], key: &[String]) -> Option<Vec<String>> {
    key.iter()
        .map(|k| {
            columns
                .iter()
                .find(|c| c.name == *k)
                .map(|c| key_text(&c.value))
        })
        .collect()
}

impl Windows {
    pub fn new(slot: impl Into<String>, run: impl Into<String>) -> Self {
        Windows {
            slot: slot.into(),
            run: run.into(),
            ..Default::default()
        }
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The backfill task is gone: a window waiting for rows opens empty.
    pub fn abandon(&mut self) {
        if let Some(open) = &self.open {
            let (table, chunk) = (open.table.clone(), open.chunk);
            self.deliver(ChunkRows {
                table,
                chunk,
                rows: None,
            });
        }
    }

    /// The reader stopped at a low watermark and waits for its rows.
    pub fn waiting(&self) -> bool {
        self.open.as_ref().is_some_and(|o| o.buffer.is_none()) && self.ready.is_none()
    }

    /// Rows from the backfill task. If the reader waits at their low watermark, the
    /// window opens with them; otherwise they wait for it.
    pub fn deliver(&mut self, rows: ChunkRows) {
        self.ready = Some(rows);
        self.fill_open();
    }

    fn fill_open(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.buffer.is_some() {
            return;
        }
        if let Some(ready) = self.ready.take() {
            if ready.table == open.table && ready.chunk == open.chunk {
                // A failed read opens an empty window: it emits nothing.
                open.buffer = Some(Buffer::new(ready.rows.unwrap_or_else(|| BufferedChunk {
                    schema: String::new(),
                    name: String::new(),
                    key: Vec::new(),
                    pk: Vec::new(),
                    rows: Vec::new(),
                })));
            } else if ready.chunk > open.chunk {
                self.ready = Some(ready);
            }
            // Rows of an older chunk than the open window are stale: dropped.
        }
    }

    /// A signal read from the stream. Watermarks of this run open and close
    /// windows; a high watermark's rows come back as an [`Emit`].
    pub fn on_signal(&mut self, signal: &Signal) -> (Step, Option<Emit>) {
        let Signal::Watermark {
            slot,
            run,
            table,
            chunk,
            mark,
        } = signal
        else {
            return (Step::Pass, None);
        };
        if *slot != self.slot || *run != self.run {
            return (Step::Pass, None);
        }
        match mark {
            Mark::Low => {
                self.open = Some(Open {
                    table: table.clone(),
                    chunk: *chunk,
                    buffer: None,
                });
                self.fill_open();
                let step = if self.waiting() {
                    Step::NeedRows
                } else {
                    Step::Pass
                };
                (step, None)
            }
            Mark::High => {
                let matches = self
                    .open
                    .as_ref()
                    .is_some_and(|o| o.table == *table && o.chunk == *chunk);
                if !matches {
                    return (Step::Pass, None);
                }
                let Some(Open {
                    buffer: Some(buffer),
                    ..
                }) = self.open.take()
                else {
                    return (Step::Pass, None);
                };
                let rows: Vec<Change> = buffer
                    .rows
                    .iter()
                    .flatten()
                    .map(|r| buffer.row_change(r.clone()))
                    .collect();
                self.closed_in_txn = Some((table.clone(), *chunk, rows.len() as u64));
                (
                    Step::Pass,
                    Some(Emit {
                        chunk: *chunk,
                        rows,
                    }),
                )
            }
        }
    }

    /// A change read inside the stream. A change to a buffered row drops it; an
    /// update that left out a column the buffered row has (an unchanged TOASTed
    /// value) returns that row, to be sent before the update.
    pub fn on_change(&mut self, change: &Change) -> Option<Emit> {
        let open = self.open.as_mut()?;
        let buffer = open.buffer.as_mut()?;
        if change.schema != buffer.schema || change.table != buffer.name {
            return None;
        }
        if change.kind == Kind::Truncate {
            buffer.rows.iter_mut().for_each(|r| *r = None);
            buffer.index.clear();
            return None;
        }
        let new_key = match change.kind {
            Kind::Insert | Kind::Update => {
                // A key column wal2json left out of the new row is unchanged.
                buffer
                    .key
                    .iter()
                    .map(|k| {
                        change
                            .columns
                            .iter()
                            .chain(&change.identity)
                            .find(|c| c.name == *k)
                            .map(|c| key_text(&c.value))
                    })
                    .collect::<Option<Vec<String>>>()
            }
            _ => None,
        };
        let old_key = key_of(&change.identity, &buffer.key);
        let mut first = None;
        for key in [old_key, new_key] {
            if let Some(row) = buffer.take(key) {
                let toast_left_out = change.kind == Kind::Update
                    && row
                        .iter()
                        .any(|c| !change.columns.iter().any(|n| n.name == c.name));
                if toast_left_out {
                    first = Some(buffer.row_change(row));
                }
            }
        }
        first.map(|row| Emit {
            chunk: open.chunk,
            rows: vec![row],
        })
    }

    /// The transaction ended: the chunk closed in it, if any (table, chunk, rows).
    pub fn on_commit(&mut self) -> Option<(String, u64, u64)> {
        self.closed_in_txn.take()
    }
}

#[cfg(test)]
mod tests;
