//! The `sslmode` values and their defaults.
//!
//! Owns the libpq-compatible mode names and the rule that picks the default from the
//! host (loopback and Unix sockets: `prefer`; everything else: `verify-full`). It never
//! opens a connection or reads a certificate: `source::tls` does.

use std::fmt;
use std::net::IpAddr;

/// How TLS to PostgreSQL is negotiated and verified (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not checked.
    Prefer,
    /// TLS or fail. The certificate is checked only when `sslrootcert` is given (then
    /// like `verify-ca`), as libpq does.
    Require,
    /// TLS or fail; the certificate must chain to a trusted CA. The host name is not checked.
    VerifyCa,
    /// TLS or fail; trusted chain and a certificate issued for the host name.
    VerifyFull,
}

/// The mode names as written in the config, strongest last.
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

impl SslMode {
    /// Parse a config value (libpq's spelling).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The mode for `host` when the config names none: `prefer` on loopback and Unix
    /// sockets (local test servers rarely have certificates, and the traffic never
    /// leaves the machine), `verify-full` everywhere else (a network path to a managed
    /// database is exactly where a man in the middle would sit).
    pub fn default_for_host(host: &str) -> SslMode {
        if is_local_host(host) {
            SslMode::Prefer
        } else {
            SslMode::VerifyFull
        }
    }

    /// `configured`, or the default for `host`.
    pub fn resolve(configured: Option<SslMode>, host: &str) -> SslMode {
        configured.unwrap_or_else(|| SslMode::default_for_host(host))
    }

    /// Whether plaintext is forbidden.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Loopback addresses (127.0.0.0/8, ::1), `localhost` and Unix-socket directories.
pub fn is_local_host(host: &str) -> bool {
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    #[test]
    fn loopback_and_sockets_default_to_prefer() {
        for host in [
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
            "/run/postgresql",
        ] {
            assert_eq!(SslMode::default_for_host(host), SslMode::Prefer, "{host}");
        }
        for host in [
            "db.example.com",
            "10.0.0.5",
            "128.0.0.1",
            "::2",
            "localhost.example.com",
        ] {
            assert_eq!(
                SslMode::default_for_host(host),
                SslMode::VerifyFull,
                "{host}"
            );
        }
    }

    #[test]
    fn parses_libpq_names_only() {
        for name in SSL_MODES {
            assert_eq!(SslMode::parse(name).map(SslMode::as_str), Some(*name));
        }
        assert_eq!(SslMode::parse("verify_full"), None);
        assert_eq!(SslMode::parse("allow"), None);
        assert!(SslMode::Require.requires_tls() && !SslMode::Prefer.requires_tls());
    }

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_text(Path::new("t.yml"), yaml, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_remote_host_resolves_to_verify_full_and_explicit_modes_win() {
        let config = load(
            "replication_slots:\n  - remote: {host: db.example.com, user: u, db_name: d, kns_stream: s}\n  \
             - local: {host: 127.0.0.1, user: u, db_name: d, kns_stream: s}\n  \
             - relaxed: {host: db.example.com, user: u, db_name: d, kns_stream: s, sslmode: require}\n",
        )
        .expect("valid config");
        let resolved: Vec<SslMode> = config
            .slots
            .iter()
            .map(|s| SslMode::resolve(s.sslmode, &s.host))
            .collect();
        assert_eq!(
            resolved,
            [SslMode::VerifyFull, SslMode::Prefer, SslMode::Require]
        );
    }

    #[test]
    fn secret_makes_connection_keys_optional() {
        let config = load("replication_slots:\n  - s: {secret: 'arn:aws:secretsmanager:eu-west-1:1:secret:x', kns_stream: k}\n")
            .expect("valid config");
        let slot = &config.slots[0];
        assert_eq!(
            slot.secret.as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:1:secret:x")
        );
        assert_eq!((slot.host.as_str(), slot.user.as_str()), ("", ""));
        let err =
            load("replication_slots:\n  - s: {user: u, db_name: d, kns_stream: k}\n").unwrap_err();
        assert!(
            err.contains("missing required key `host`") && err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn bad_tls_and_credential_keys_are_explained() {
        let cases = [
            (
                "sslmode: verify_full",
                "key `sslmode`: unknown mode `verify_full`",
            ),
            ("iam_auth: true, sslmode: prefer", "`iam_auth` needs TLS"),
            (
                "iam_auth: true, password: x",
                "`iam_auth` and `password` exclude each other",
            ),
            (
                "iam_auth: 'yes'",
                "key `iam_auth`: must be `true` or `false`",
            ),
            (
                "sslrootcert: /nonexistent/ca.pem",
                "cannot read /nonexistent/ca.pem",
            ),
            ("secret: ''", "key `secret`: must not be empty"),
        ];
        for (keys, expect) in cases {
            let yaml = format!(
                "replication_slots:\n  - s: {{host: db.example.com, user: u, db_name: d, kns_stream: k, {keys}}}\n"
            );
            let err = load(&yaml).unwrap_err();
            assert!(err.contains(expect), "{keys}: {err}");
            assert!(!err.contains("password: x"), "{err}");
        }
    }
}
