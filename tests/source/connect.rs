//! Connecting and streaming a row as each authentication method's user (SCRAM, MD5,
//! cleartext, trust) and over the Unix socket.

use pg_cdc_to_kinesis::source::ReplicationStream;

use crate::support::pg;

use super::*;

async fn streams_a_row_as(user: &str) {
    let pg = pg::shared();
    let case = SourceCase::new(pg, user).await;
    let mut stream = case.stream(user, &[]).await;
    assert!(stream.backend_pid().is_some());
    case.insert(1, &format!("hello from {user}"));
    let (_, _, text) = recv_containing(&mut stream, &format!("hello from {user}")).await;
    assert!(text.contains(&case.table), "{text}");
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn scram_user_connects_and_streams() {
    streams_a_row_as(pg::SCRAM_USER).await;
}

#[tokio::test]
async fn md5_user_connects_and_streams() {
    streams_a_row_as(pg::MD5_USER).await;
}

#[tokio::test]
async fn cleartext_password_user_connects_and_streams() {
    streams_a_row_as(pg::PASSWORD_USER).await;
}

#[tokio::test]
async fn trust_user_connects_and_streams() {
    streams_a_row_as(pg::TRUST_USER).await;
}

#[tokio::test]
async fn connects_over_unix_socket() {
    let pg = pg::shared();
    let mut params = pg.connect_params(pg::TRUST_USER, "postgres");
    params.host = pg.socket_dir.display().to_string();
    let stream = ReplicationStream::connect(&params)
        .await
        .expect("connect over the Unix socket");
    assert!(stream.backend_pid().is_some());
}
