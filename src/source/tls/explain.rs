//! What a failed TLS handshake means, in words: what is wrong with the server's
//! certificate (or the handshake) and what the operator can do about it.
//!
//! Owns only the wording. It never decides whether a failure is retried (every
//! certificate problem is permanent until someone changes a certificate or the config).

use std::path::Path;

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

use crate::config::SslMode;

/// What the server's TLS set-up needs instead, said once for the fixes below.
const SELF_SIGNED_FIX: &str = "issue the server a certificate signed by a CA (keep the \
    CA, not the server's certificate, in sslrootcert), or for a test server use sslmode \
    require without sslrootcert (encrypted, not verified)";

/// The operator's reading of a failed handshake. `host` and `rootcert` name what
/// was checked against what.
pub(crate) fn explain(
    e: &rustls::Error,
    host: &str,
    mode: SslMode,
    rootcert: Option<&Path>,
) -> String {
    let trust = match rootcert {
        Some(p) => format!("the CA bundle {}", p.display()),
        None => "the system trust store".to_string(),
    };
    match e {
        rustls::Error::InvalidCertificate(cert) => {
            format!("{} (sslmode {mode})", certificate(cert, host, &trust))
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
            if mode != SslMode::Disable =>
        {
            format!(
                "the server at {host:?} ended the TLS handshake ({}): it may require a client \
                 certificate (clientcert in pg_hba.conf), which the streamer does not send; \
                 use a pg_hba.conf line without clientcert for this user, with a password, \
                 SCRAM or IAM login",
                alert(e)
            )
        }
        rustls::Error::AlertReceived(_) => format!(
            "the server at {host:?} ended the TLS handshake ({}); its log says why",
            alert(e)
        ),
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => format!(
            "the server at {host:?} and the streamer share no TLS version or cipher suite \
             (the streamer speaks TLS 1.2 and 1.3 with modern ciphers); check \
             ssl_min_protocol_version, ssl_max_protocol_version and ssl_ciphers on the server"
        ),
        rustls::Error::NoCertificatesPresented => {
            format!("the server at {host:?} sent no certificate; set ssl_cert_file on the server")
        }
        other => format!(
            "the TLS handshake with {host:?} failed: {other} (sslmode {mode}); check the \
             server's ssl settings and its log"
        ),
    }
}

/// What is wrong with the certificate, and the fix.
fn certificate(e: &CertificateError, host: &str, trust: &str) -> String {
    match e {
        CertificateError::NotValidForName => format!(
            "host name mismatch: the server's certificate is not valid for {host:?}; connect \
             with a host name the certificate lists, or use sslmode verify-ca"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "host name mismatch: the server's certificate is not valid for {host:?} (it is for \
             {}); connect with a host name the certificate lists, or use sslmode verify-ca",
            if presented.is_empty() {
                "no name at all".to_string()
            } else {
                presented.join(", ")
            }
        ),
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not trusted: no chain to a CA in {trust}; set \
             sslrootcert to the CA that issued it (for RDS, the global bundle). A self-signed \
             server certificate cannot be trusted this way: {SELF_SIGNED_FIX}"
        ),
        CertificateError::Expired => format!(
            "the server's certificate has expired or is not valid yet (checked against \
             {trust}); renew it on the server (ssl_cert_file, then reload PostgreSQL), and \
             check the clock on this machine"
        ),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "the server's certificate expired on {}; renew it on the server (ssl_cert_file, \
             then reload PostgreSQL), and check the clock on this machine",
            date(*not_after)
        ),
        CertificateError::NotValidYet => "the server's certificate is not valid yet; check the \
             clock on this machine and on the server"
            .to_string(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "the server's certificate is not valid before {}; check the clock on this machine \
             and on the server",
            date(*not_before)
        ),
        CertificateError::BadSignature => format!(
            "the server's certificate chain has a signature that does not verify: the \
             certificate was not issued by the CA in {trust} that carries its issuer's name, \
             or it is corrupt; set sslrootcert to the CA that really issued it"
        ),
        CertificateError::BadEncoding => "the server's certificate cannot be parsed (bad DER); \
             replace ssl_cert_file on the server with a valid PEM certificate"
            .to_string(),
        CertificateError::Revoked => "the server's certificate was revoked by its CA; the \
             server needs a new certificate"
            .to_string(),
        CertificateError::UnhandledCriticalExtension => "the server's certificate has a \
             critical extension the streamer does not understand; issue it without that \
             extension"
            .to_string(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not issued for TLS servers (its extended key usage \
             lacks serverAuth); issue it with extendedKeyUsage = serverAuth"
                .to_string()
        }
        #[allow(deprecated)]
        CertificateError::UnsupportedSignatureAlgorithm
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server's certificate is signed with an algorithm the streamer does not \
             accept (such as SHA-1 or MD5); issue it with SHA-256 or better"
                .to_string()
        }
        CertificateError::Other(other) => webpki_problem(&other.to_string(), trust),
        other => format!(
            "the server's certificate was rejected ({other}) when checked against {trust}; \
             check that sslrootcert holds the CA that issued it"
        ),
    }
}

/// Path-building errors rustls passes through from webpki, whose text is the name.
fn webpki_problem(name: &str, trust: &str) -> String {
    let has = |n: &str| name.contains(n);
    if has("CaUsedAsEndEntity") {
        format!(
            "the server presents a CA certificate (self-signed, or marked CA:TRUE) as its own \
             certificate, which verification refuses; {SELF_SIGNED_FIX}"
        )
    } else if has("EndEntityUsedAsCa") {
        format!(
            "the server's certificate chain is signed by a certificate that is not a CA (its \
             basicConstraints say CA:FALSE), in {trust}; set sslrootcert to the real CA"
        )
    } else if has("PathLenConstraintViolated") || has("MaximumPathDepthExceeded") {
        "the server's certificate chain is longer than its CAs allow; send a shorter chain \
         from the server (ssl_cert_file)"
            .to_string()
    } else if has("NameConstraintViolation") {
        "the server's certificate names a host its CA may not issue for (name constraints); \
         issue it from a CA allowed to name that host"
            .to_string()
    } else if has("RequiredEkuNotFound") {
        "the server's certificate is not issued for TLS servers (its extended key usage lacks \
         serverAuth); issue it with extendedKeyUsage = serverAuth"
            .to_string()
    } else {
        let bare = name.trim_start_matches("OtherError(").trim_end_matches(')');
        format!(
            "the server's certificate was rejected ({bare}) when checked against {trust}; check \
             that the server's certificate is issued by a CA in sslrootcert"
        )
    }
}

fn alert(e: &rustls::Error) -> String {
    e.to_string()
}

/// `2026-11-30 04:59:00 UTC`, or the seconds when the date is out of range.
fn date(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{secs} s after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn text(e: CertificateError) -> String {
        explain(
            &rustls::Error::InvalidCertificate(e),
            "db.example.com",
            SslMode::VerifyFull,
            Some(Path::new("/ca.pem")),
        )
    }

    #[derive(Debug)]
    struct Named(&'static str);
    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Named {}

    #[test]
    fn every_certificate_failure_says_what_is_wrong_and_what_to_do_without_debug_text() {
        let other = |name| CertificateError::Other(rustls::OtherError(Arc::new(Named(name))));
        let cases = [
            (CertificateError::NotValidForName, "host name mismatch"),
            (CertificateError::UnknownIssuer, "not trusted"),
            (CertificateError::Expired, "renew it"),
            (
                CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        1_700_000_000,
                    )),
                },
                "expired on 2023-11-14 22:13:20 UTC",
            ),
            (CertificateError::NotValidYet, "clock"),
            (CertificateError::BadSignature, "does not verify"),
            (CertificateError::BadEncoding, "cannot be parsed"),
            (CertificateError::Revoked, "revoked"),
            (CertificateError::InvalidPurpose, "serverAuth"),
            (other("CaUsedAsEndEntity"), "presents a CA certificate"),
            (other("EndEntityUsedAsCa"), "not a CA"),
            (other("SomethingNew"), "(SomethingNew)"),
        ];
        for (error, expect) in cases {
            let message = text(error);
            assert!(message.contains(expect), "{message}");
            assert!(message.contains("sslmode verify-full"), "{message}");
            assert!(!message.contains("Other("), "Debug text leaked: {message}");
            assert!(
                !message.contains("OtherError"),
                "Debug text leaked: {message}"
            );
        }
        let message = text(other("CaUsedAsEndEntity"));
        assert!(
            message.contains("sslmode require without sslrootcert"),
            "the fix is named: {message}"
        );
    }

    #[test]
    fn a_name_mismatch_lists_the_names_the_certificate_has() {
        let message = text(CertificateError::NotValidForNameContext {
            expected: rustls::pki_types::ServerName::try_from("db.example.com")
                .unwrap()
                .to_owned(),
            presented: vec!["DnsName(\"localhost\")".into()],
        });
        assert!(
            message.contains("localhost") && message.contains("verify-ca"),
            "{message}"
        );
    }

    #[test]
    fn handshake_failures_name_the_server_setting_to_check() {
        let message = explain(
            &rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered),
            "db",
            SslMode::Require,
            None,
        );
        assert!(message.contains("ssl_min_protocol_version"), "{message}");
    }
}
