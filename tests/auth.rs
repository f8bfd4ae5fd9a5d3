//! The authentication policy on both kinds of connection (the replication connection
//! and tokio-postgres' SQL connection): a server that cannot prove it knows the
//! password (a fake), and `require_auth` against real PostgreSQL users that log in
//! with md5, cleartext and trust. Channel binding over TLS is in `tls`.

use pg_cdc_to_kinesis::config::{ChannelBinding, RequireAuth};
use pg_cdc_to_kinesis::source::{self, ConnectParams, ReplicationStream, SourceError};

use crate::support::fake_pg::{FakePg, Misbehaviour};
use crate::support::pg::{self, SCRAM_USER};

/// The error from the SQL connection and from the replication connection.
async fn both_refused(p: &ConnectParams) -> Vec<SourceError> {
    let sql = source::sql_connect(p)
        .await
        .expect_err("SQL connect must fail");
    let repl = ReplicationStream::connect(p)
        .await
        .expect_err("replication connect must fail");
    vec![sql, repl]
}

/// Connects on both kinds of connection.
async fn both_connect(p: &ConnectParams) {
    source::sql_connect(p)
        .await
        .unwrap_or_else(|e| panic!("SQL connect: {e}"));
    ReplicationStream::connect(p)
        .await
        .unwrap_or_else(|e| panic!("replication connect: {e}"));
}

fn fake_params(fake: &FakePg) -> ConnectParams {
    ConnectParams {
        port: fake.port,
        ..pg::shared().connect_params(SCRAM_USER, "postgres")
    }
}

#[tokio::test]
async fn a_wrong_scram_server_signature_is_refused_on_both_connections() {
    let fake = FakePg::start(Misbehaviour::BadSignature).await;
    for e in both_refused(&fake_params(&fake)).await {
        let text = e.to_string();
        assert!(matches!(e, SourceError::Auth { .. }), "{text}");
        assert!(
            text.contains("signature is wrong") && text.contains("does not know the password"),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
}

#[tokio::test]
async fn authentication_ok_before_the_final_scram_message_is_refused_on_both_connections() {
    let fake = FakePg::start(Misbehaviour::OkWithoutFinal).await;
    for e in both_refused(&fake_params(&fake)).await {
        let text = e.to_string();
        assert!(matches!(e, SourceError::Auth { .. }), "{text}");
        assert!(
            text.contains("reported success before proving it knows the password"),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
}

fn with_require_auth(user: &str, require_auth: &str) -> ConnectParams {
    ConnectParams {
        require_auth: RequireAuth::parse(require_auth).expect("valid require_auth"),
        ..pg::shared().connect_params(user, "postgres")
    }
}

#[tokio::test]
async fn require_auth_scram_refuses_md5_and_cleartext_users_before_sending_the_password() {
    for (user, method) in [(pg::MD5_USER, "md5"), (pg::PASSWORD_USER, "password")] {
        let p = with_require_auth(user, "scram-sha-256");
        for e in both_refused(&p).await {
            let text = e.to_string();
            assert!(matches!(e, SourceError::Auth { .. }), "{user}: {text}");
            assert!(
                text.contains(&format!("(`{method}`)"))
                    && text.contains("require_auth allows only scram-sha-256")
                    && text.contains("the password was not sent"),
                "{user}: {text}"
            );
            assert!(!e.is_transient(), "{text}");
            assert!(!text.contains(&format!("{user}_pw")), "{text}");
        }
        // The SCRAM user still gets in under the same rule.
        both_connect(&with_require_auth(SCRAM_USER, "scram-sha-256")).await;
    }
}

#[tokio::test]
async fn require_auth_negations_refuse_only_what_they_name() {
    // `!password` lets md5 through but not cleartext.
    both_connect(&with_require_auth(pg::MD5_USER, "!password")).await;
    for e in both_refused(&with_require_auth(pg::PASSWORD_USER, "!password,!md5")).await {
        assert!(e.to_string().contains("(`password`)"), "{e}");
    }
    // Trust is the method `none`.
    for e in both_refused(&with_require_auth(pg::TRUST_USER, "!none")).await {
        let text = e.to_string();
        assert!(text.contains("no authentication (trust)"), "{text}");
    }
    both_connect(&with_require_auth(pg::TRUST_USER, "none,scram-sha-256")).await;
}

#[tokio::test]
async fn channel_binding_require_without_tls_is_refused_clearly() {
    let p = ConnectParams {
        channel_binding: ChannelBinding::Require,
        ..pg::shared().connect_params(SCRAM_USER, "postgres")
    };
    for e in both_refused(&p).await {
        let text = e.to_string();
        assert!(
            text.contains("channel_binding is require") && text.contains("not TLS"),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
    // The md5 user cannot be bound at all.
    let p = ConnectParams {
        channel_binding: ChannelBinding::Require,
        ..pg::shared().connect_params(pg::MD5_USER, "postgres")
    };
    for e in both_refused(&p).await {
        assert!(e.to_string().contains("cannot be bound"), "{e}");
    }
}
