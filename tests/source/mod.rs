//! The replication source against a real PostgreSQL 15 + wal2json: authentication
//! methods, streaming, acknowledgement, option quoting and error classification.
//!
//! Shared here: the test case (database, table, slot) and the receive loops; the tests
//! sit in one submodule per theme.

mod connect;
mod errors;
mod streaming;

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::{
    create_slot, sql_connect, ConnectParams, ReplicationMessage, ReplicationStream,
};
use tokio::time::timeout;

use crate::support::case::{wraps_case, Case};
use crate::support::pg::{self, Pg};

const WAIT: Duration = Duration::from_secs(30);

/// One test's [`Case`] with table `t_...(id int primary key, note text)` and a
/// wal2json slot, cleaned up by [`SourceCase::cleanup`].
struct SourceCase<'a> {
    case: Case<'a>,
    table: String,
}

wraps_case!(SourceCase<'a>);

impl<'a> SourceCase<'a> {
    /// A fresh database with the table and a slot created by `user` through
    /// [`create_slot`].
    async fn new(pg: &'a Pg, user: &str) -> SourceCase<'a> {
        let table = pg::unique_name("t");
        let case = Case::new(pg, "src").with_sql(&format!(
            "CREATE TABLE {table} (id int primary key, note text);"
        ));
        let client = sql_connect(&pg.connect_params(user, &case.db))
            .await
            .expect("sql_connect");
        let lsn = create_slot(&client, &case.slot).await.expect("create_slot");
        assert!(lsn > Lsn::ZERO);
        SourceCase { case, table }
    }

    fn params(&self, user: &str) -> ConnectParams {
        self.pg.connect_params(user, &self.db)
    }

    async fn stream(&self, user: &str, options: &[(&str, &str)]) -> ReplicationStream {
        let mut stream = ReplicationStream::connect(&self.params(user))
            .await
            .expect("connect");
        let options: Vec<(String, String)> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stream
            .start(&self.slot, Lsn::ZERO, &options)
            .await
            .expect("start");
        stream
    }

    fn insert(&self, id: i32, note: &str) {
        self.pg.execute(
            &self.db,
            &format!("INSERT INTO {} VALUES ({id}, '{note}');", self.table),
        );
    }

    fn cleanup(self) {
        self.case.cleanup();
    }
}

/// Receive until an XLogData payload contains `needle`; answers keepalives that ask.
async fn recv_containing(stream: &mut ReplicationStream, needle: &str) -> (Lsn, Lsn, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = timeout(left, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("no XLogData with {needle:?} within {WAIT:?}"));
        match msg.expect("recv") {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
            } => {
                let text = String::from_utf8(data.to_vec()).expect("wal2json output is UTF-8");
                if text.contains(needle) {
                    return (wal_start, wal_end, text);
                }
            }
            ReplicationMessage::Keepalive {
                reply_requested: true,
                ..
            } => {
                stream
                    .send_status(Lsn::ZERO, false)
                    .await
                    .expect("send_status");
            }
            ReplicationMessage::Keepalive { .. } => {}
        }
    }
}
