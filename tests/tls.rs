//! TLS to PostgreSQL: each `sslmode` against a real `ssl=on` cluster whose CA and
//! server certificate (for `localhost`) are generated per run, plus channel binding
//! and the errors an operator sees.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use pg_cdc_to_kinesis::config::{ChannelBinding, SslMode};
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::{
    self, ConnectParams, ReplicationMessage, ReplicationStream, SourceError,
};

use crate::support::certs::{self, Certs};
use crate::support::pg::{self, Pg, SUPERUSER};

/// One TLS cluster for this module (starting clusters is slow); tests use unique names.
fn tls_pg() -> &'static (Certs, Pg) {
    static PG: OnceLock<(Certs, Pg)> = OnceLock::new();
    PG.get_or_init(|| {
        let certs = certs::generate("pg-cdc test CA", &["localhost"]);
        let pg = certs::tls_cluster(&certs);
        (certs, pg)
    })
}

fn params(pg: &Pg, host: &str, db: &str, mode: SslMode, ca: Option<PathBuf>) -> ConnectParams {
    ConnectParams {
        host: host.into(),
        sslmode: mode,
        sslrootcert: ca,
        ..pg.connect_params(SUPERUSER, db)
    }
}

/// Whether the backend `pid` talks TLS, per `pg_stat_ssl`.
fn ssl_of(pg: &Pg, pid: i32) -> String {
    pg.psql(&format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}"))
        .trim()
        .to_string()
}

/// Create a slot, stream one inserted row through it over `p`, and return the stream.
async fn stream_one_row(p: &ConnectParams) -> ReplicationStream {
    let sql = source::sql_connect(p)
        .await
        .unwrap_or_else(|e| panic!("SQL connect: {e}"));
    let slot = pg::unique_name("tls_slot");
    let table = pg::unique_name("tls_t");
    sql.batch_execute(&format!("CREATE TABLE {table} (id int primary key)"))
        .await
        .expect("create table");
    source::create_slot(&sql, &slot).await.expect("create slot");
    sql.batch_execute(&format!("INSERT INTO {table} VALUES (42)"))
        .await
        .expect("insert");
    let mut repl = ReplicationStream::connect(p)
        .await
        .unwrap_or_else(|e| panic!("replication connect: {e}"));
    repl.start(&slot, Lsn::ZERO, &[])
        .await
        .expect("START_REPLICATION");
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match repl.recv().await.expect("recv") {
                ReplicationMessage::XLogData { data, .. } => {
                    if String::from_utf8_lossy(&data).contains(&table) {
                        return;
                    }
                }
                _ => continue,
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the inserted row did not arrive over TLS");
    repl
}

#[tokio::test]
async fn verify_full_with_the_right_ca_streams_encrypted_and_channel_bound() {
    let (certs, pg) = tls_pg();
    let db = pg.create_database(&pg::unique_name("tls_db"));
    let p = params(
        pg,
        "localhost",
        &db,
        SslMode::VerifyFull,
        Some(certs.ca.clone()),
    );
    let repl = stream_one_row(&p).await;
    let pid = repl.backend_pid().expect("walsender pid");
    assert_eq!(
        ssl_of(pg, pid),
        "t",
        "the walsender's connection is not encrypted"
    );
    // cdc_admin authenticates with scram-sha-256; over TLS the server offers -PLUS.
    assert!(repl.channel_bound(), "SCRAM-SHA-256-PLUS was not used");
}

#[tokio::test]
async fn require_without_a_ca_streams_encrypted() {
    let (_, pg) = tls_pg();
    let db = pg.create_database(&pg::unique_name("tls_db"));
    let p = params(pg, "127.0.0.1", &db, SslMode::Require, None);
    let repl = stream_one_row(&p).await;
    assert_eq!(ssl_of(pg, repl.backend_pid().expect("pid")), "t");
}

#[tokio::test]
async fn verify_ca_accepts_an_ip_address_but_verify_full_does_not() {
    let (certs, pg) = tls_pg();
    let ca = Some(certs.ca.clone());
    let p = params(pg, "127.0.0.1", "postgres", SslMode::VerifyCa, ca.clone());
    ReplicationStream::connect(&p)
        .await
        .unwrap_or_else(|e| panic!("verify-ca: {e}"));

    let p = params(pg, "127.0.0.1", "postgres", SslMode::VerifyFull, ca);
    for e in both_connections(&p).await {
        let text = e.to_string();
        assert!(
            text.contains("host name mismatch") && text.contains("\"127.0.0.1\""),
            "{text}"
        );
        assert!(!e.is_transient(), "a name mismatch is permanent: {text}");
    }
}

#[tokio::test]
async fn a_wrong_ca_fails_clearly() {
    let (_, pg) = tls_pg();
    let other = certs::generate("some other CA", &["localhost"]);
    let p = params(
        pg,
        "localhost",
        "postgres",
        SslMode::VerifyFull,
        Some(other.ca.clone()),
    );
    for e in both_connections(&p).await {
        let text = e.to_string();
        assert!(
            text.contains("not trusted") && text.contains(&other.ca.display().to_string()),
            "{text}"
        );
        assert!(
            text.contains("localhost"),
            "the error must name the host: {text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
}

/// The certificate `openssl req -x509` makes, served as the server's own and put in
/// `sslrootcert`: rustls refuses a CA certificate as an end entity, and the message
/// says so in words, with the fix, instead of `Other(OtherError(CaUsedAsEndEntity))`.
#[tokio::test]
async fn a_self_signed_ca_certificate_as_the_servers_own_is_explained_in_words() {
    let certs = certs::self_signed_ca_as_server(&["localhost"]);
    let pg = certs::tls_cluster(&certs);
    let p = params(
        &pg,
        "localhost",
        "postgres",
        SslMode::VerifyFull,
        Some(certs.ca.clone()),
    );
    for e in both_connections(&p).await {
        let text = e.to_string();
        assert!(
            text.contains("presents a CA certificate")
                && text.contains("sslmode require without sslrootcert"),
            "{text}"
        );
        assert!(
            !text.contains("OtherError") && !text.contains("Other("),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
    // The fix it names works: encrypted, not verified.
    let p = params(&pg, "localhost", "postgres", SslMode::Require, None);
    source::sql_connect(&p)
        .await
        .unwrap_or_else(|e| panic!("sslmode require: {e}"));
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_clearly() {
    let pg = pg::shared(); // ssl = off
    let p = params(pg, "127.0.0.1", "postgres", SslMode::Require, None);
    for e in both_connections(&p).await {
        let text = e.to_string();
        assert!(matches!(e, SourceError::TlsUnavailable { .. }), "{text}");
        assert!(
            text.contains("does not accept TLS") && text.contains("127.0.0.1"),
            "{text}"
        );
        assert!(!e.is_transient());
    }
    // prefer falls back to plaintext on the same server.
    let p = params(pg, "127.0.0.1", "postgres", SslMode::Prefer, None);
    let repl = ReplicationStream::connect(&p)
        .await
        .expect("prefer connects in plaintext");
    assert_eq!(ssl_of(pg, repl.backend_pid().expect("pid")), "f");
}

#[tokio::test]
async fn channel_binding_require_works_over_tls_and_disable_turns_it_off() {
    let (certs, pg) = tls_pg();
    let db = pg.create_database(&pg::unique_name("tls_cb"));
    let p = ConnectParams {
        channel_binding: ChannelBinding::Require,
        ..params(
            pg,
            "localhost",
            &db,
            SslMode::VerifyFull,
            Some(certs.ca.clone()),
        )
    };
    let repl = stream_one_row(&p).await;
    assert!(repl.channel_bound(), "SCRAM-SHA-256-PLUS was not used");

    // The md5 user over the same TLS: nothing to bind, so `require` refuses it.
    let md5 = ConnectParams {
        user: pg::MD5_USER.into(),
        password: Some(pg_cdc_to_kinesis::config::Secret::new(format!(
            "{}_pw",
            pg::MD5_USER
        ))),
        ..p.clone()
    };
    for e in both_connections(&md5).await {
        let text = e.to_string();
        assert!(
            text.contains("channel_binding is require") && text.contains("cannot be bound"),
            "{text}"
        );
    }

    let p = ConnectParams {
        channel_binding: ChannelBinding::Disable,
        ..p
    };
    source::sql_connect(&p)
        .await
        .expect("SQL connect without binding");
    let repl = ReplicationStream::connect(&p)
        .await
        .expect("replication connect without binding");
    assert!(
        !repl.channel_bound(),
        "bound although channel_binding is disable"
    );
}

/// The error from the SQL connection and from the replication connection.
async fn both_connections(p: &ConnectParams) -> Vec<SourceError> {
    let sql = source::sql_connect(p)
        .await
        .expect_err("SQL connect must fail");
    let repl = ReplicationStream::connect(p)
        .await
        .expect_err("replication connect must fail");
    vec![sql, repl]
}
