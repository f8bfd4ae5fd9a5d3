//! One slot, several streams: the records of a slot whose `tables:` entries route
//! to other streams are split by stream, each stream delivered by its own
//! [`KinesisSink`] (its own shard map, pacing, per-key queues and retries).
//!
//! Owns the acknowledgement across streams: every transaction end goes to every
//! stream's tracker, and the position published is the lowest of the streams'. A
//! stream's tracker confirms a prefix of the (shared) sequence of transaction ends,
//! and the highest LSN over a prefix grows with the prefix, so the lowest of the
//! streams' positions is exactly what one tracker over all records would confirm:
//! a position is confirmed only once every stream accepted every record up to it.
//! A slot with one stream runs its sink directly, as before. It never reorders the
//! records of one stream.

use std::sync::Arc;

use futures_util::future::select_all;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{replace_if_moved, KinesisSink, SinkError, SinkStats};
use crate::ack::AckTracker;
use crate::config::SlotConfig;
use crate::lsn::Lsn;
use crate::sink::Item;

/// Chunks queued for one stream's sink beyond what it holds: the sink drains its
/// queue into its own bounded buffer, so a short queue is enough.
const STREAM_QUEUE_CHUNKS: usize = 2;

/// The sinks of one slot, one per stream, in [`SlotConfig::streams`] order.
#[derive(Debug, Clone)]
pub struct RoutedSink {
    sinks: Vec<KinesisSink>,
}

impl RoutedSink {
    /// One sink per stream of `slot`; the slot's memory share is split between them.
    pub fn new(client: aws_sdk_kinesis::Client, slot: &SlotConfig) -> Self {
        let streams = slot.streams();
        let mut batch = slot.batch.clone();
        batch.buffer_bytes = (batch.buffer_bytes / streams.len()).max(1);
        RoutedSink {
            sinks: streams
                .iter()
                .map(|s| KinesisSink::new(client.clone(), &slot.name, s, batch.clone()))
                .collect(),
        }
    }

    /// Claim checks' objects go to S3 with `client` (`oversize: s3`), on every stream.
    pub fn with_s3(mut self, client: aws_sdk_s3::Client) -> Self {
        self.sinks = self
            .sinks
            .into_iter()
            .map(|s| s.with_s3(client.clone()))
            .collect();
        self
    }

    /// The streams, in record-index order.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().map(KinesisSink::stream)
    }

    /// Check that every stream exists; the largest record all of them take (a
    /// record's size is checked before its stream is known to the reader).
    pub async fn prepare(&self) -> Result<usize, SinkError> {
        let mut limit = usize::MAX;
        for sink in &self.sinks {
            limit = limit.min(sink.prepare().await?);
        }
        Ok(limit)
    }

    /// Deliver everything from `rx` to its stream until `rx` closes and all is
    /// accepted, publishing on `acked` the position every stream has accepted.
    pub async fn run(
        self,
        rx: mpsc::Receiver<Vec<Item>>,
        tracker: AckTracker,
        acked: watch::Sender<Lsn>,
        stats: Arc<SinkStats>,
    ) -> Result<(), SinkError> {
        let mut sinks = self.sinks;
        if sinks.len() == 1 {
            let sink = sinks.remove(0);
            return sink.run(rx, tracker, acked, stats).await;
        }
        let start = tracker.acked();
        let mut queues = Vec::with_capacity(sinks.len());
        let mut positions = Vec::with_capacity(sinks.len());
        let mut tasks = JoinSet::new();
        for sink in sinks {
            let (tx, stream_rx) = mpsc::channel(STREAM_QUEUE_CHUNKS);
            let (ack_tx, ack_rx) = watch::channel(start);
            let stream_tracker = tracker.sharing_count(start);
            let stats = stats.clone();
            let name = sink.stream().to_string();
            tasks.spawn(async move {
                let result = sink.run(stream_rx, stream_tracker, ack_tx, stats).await;
                (name, result)
            });
            queues.push(tx);
            positions.push(ack_rx);
        }
        let (delivered, ()) =
            tokio::join!(dispatch(rx, queues, &mut tasks), lowest(positions, &acked));
        delivered
    }
}

/// Split each chunk by stream (every transaction end to every stream), then wait
/// for every stream's sink to finish.
async fn dispatch(
    mut rx: mpsc::Receiver<Vec<Item>>,
    queues: Vec<mpsc::Sender<Vec<Item>>>,
    tasks: &mut JoinSet<(String, Result<(), SinkError>)>,
) -> Result<(), SinkError> {
    let result = async {
        loop {
            tokio::select! {
                // A sink only ends early with an error.
                Some(done) = tasks.join_next() => return ended(done),
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { return Ok(()) };
                    let mut parts: Vec<Vec<Item>> = queues.iter().map(|_| Vec::new()).collect();
                    for item in chunk {
                        match item {
                            Item::Record(record) => {
                                let i = usize::from(record.stream).min(parts.len() - 1);
                                parts[i].push(Item::Record(record));
                            }
                            Item::Commit(lsn) => parts.iter_mut().for_each(|p| p.push(Item::Commit(lsn))),
                        }
                    }
                    for (queue, part) in queues.iter().zip(parts) {
                        if part.is_empty() {
                            continue;
                        }
                        if queue.send(part).await.is_err() {
                            // Its sink ended: its error says why.
                            if let Some(done) = tasks.join_next().await {
                                ended(done)?;
                            }
                        }
                    }
                }
            }
        }
    }
    .await;
    if result.is_err() {
        tasks.abort_all();
        return result;
    }
    // The slot's queue closed: close every stream's, and wait for them to drain.
    drop(queues);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            other => {
                tasks.abort_all();
                return ended(other);
            }
        }
    }
    Ok(())
}

fn ended(
    done: Result<(String, Result<(), SinkError>), tokio::task::JoinError>,
) -> Result<(), SinkError> {
    match done {
        Ok((_, Err(e))) => Err(e),
        Ok((stream, Ok(()))) => Err(SinkError::Permanent {
            stream,
            reason: "its sink stopped while the slot's queue was open".into(),
        }),
        Err(e) => Err(SinkError::Permanent {
            stream: String::new(),
            reason: format!("a stream's sink task failed: {e}"),
        }),
    }
}

/// Publish the lowest of the streams' accepted positions whenever one moves, until
/// every stream's sink has ended.
async fn lowest(mut positions: Vec<watch::Receiver<Lsn>>, acked: &watch::Sender<Lsn>) {
    let mut open: Vec<bool> = positions.iter().map(|_| true).collect();
    loop {
        if let Some(low) = positions.iter().map(|p| *p.borrow()).min() {
            acked.send_if_modified(|a| replace_if_moved(a, low));
        }
        let waiting: Vec<usize> = (0..positions.len()).filter(|&i| open[i]).collect();
        if waiting.is_empty() {
            return;
        }
        let live = positions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| open[*i])
            .map(|(_, p)| Box::pin(p.changed()));
        let (changed, which, _) = select_all(live).await;
        if changed.is_err() {
            open[waiting[which]] = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lowest_position_is_published_and_follows_the_slowest_stream() {
        let (a_tx, a_rx) = watch::channel(Lsn(10));
        let (b_tx, b_rx) = watch::channel(Lsn(10));
        let (out_tx, mut out_rx) = watch::channel(Lsn(10));
        let task = tokio::spawn(async move { lowest(vec![a_rx, b_rx], &out_tx).await });
        a_tx.send(Lsn(50)).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            *out_rx.borrow_and_update(),
            Lsn(10),
            "b accepted nothing yet"
        );
        b_tx.send(Lsn(40)).unwrap();
        out_rx.changed().await.unwrap();
        assert_eq!(*out_rx.borrow_and_update(), Lsn(40));
        b_tx.send(Lsn(60)).unwrap();
        out_rx.changed().await.unwrap();
        assert_eq!(*out_rx.borrow(), Lsn(50));
        drop(a_tx);
        drop(b_tx);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("ends once every stream's sink ended")
            .unwrap();
    }
}
