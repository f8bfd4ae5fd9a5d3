//! The connection-security keys of a slot: `sslmode`, `sslrootcert`, `iam_auth`.
//!
//! Owns their value rules and how they constrain each other (IAM tokens only over
//! TLS, never together with a password). It never opens the CA file beyond checking
//! that it can be read, and never echoes a password.

use std::path::PathBuf;

use super::file::SlotFile;
use super::slot::text;
use super::tls::SSL_MODES;
use super::{ConfigError, Source, SslMode};

/// The parsed keys.
pub(super) struct TlsKeys {
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
    pub iam_auth: bool,
}

/// `iam_auth` default: passwords (or trust) unless asked.
pub const DEFAULT_IAM_AUTH: bool = false;

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    lookup: &dyn Fn(&str) -> Option<String>,
    has_password: bool,
) -> Result<TlsKeys, ConfigError> {
    let sslmode = match &raw.sslmode {
        None => None,
        Some(v) => {
            let name = text(src, v, &place("sslmode"), lookup)?;
            Some(SslMode::parse(name.trim()).ok_or_else(|| {
                src.at(
                    v,
                    format!(
                        "{}: unknown mode `{name}`; use one of {}",
                        place("sslmode"),
                        SSL_MODES.join(", ")
                    ),
                )
            })?)
        }
    };
    let sslrootcert = match &raw.sslrootcert {
        None => None,
        Some(v) => {
            let path = PathBuf::from(text(src, v, &place("sslrootcert"), lookup)?);
            // Reading it now reports a wrong path before anything connects.
            if let Err(e) = std::fs::metadata(&path) {
                return Err(src.at(
                    v,
                    format!(
                        "{}: cannot read {}: {e}; give the path of a PEM file of CA \
                         certificates (e.g. the RDS global bundle)",
                        place("sslrootcert"),
                        path.display()
                    ),
                ));
            }
            Some(path)
        }
    };
    let iam_auth = src.flag(&raw.iam_auth, &place("iam_auth"), DEFAULT_IAM_AUTH)?;
    if let (true, Some(v)) = (iam_auth, &raw.iam_auth) {
        if has_password {
            return Err(src.at(
                v,
                format!(
                    "{}: `iam_auth` and `password` exclude each other; remove the password \
                     (the IAM token replaces it)",
                    place("iam_auth")
                ),
            ));
        }
        if sslmode.is_some_and(|m| !m.requires_tls()) {
            return Err(src.at(
                v,
                format!(
                    "{}: `iam_auth` needs TLS (RDS refuses IAM tokens in plaintext); set \
                     `sslmode` to `require`, `verify-ca` or `verify-full`",
                    place("iam_auth")
                ),
            ));
        }
    }
    Ok(TlsKeys {
        sslmode,
        sslrootcert,
        iam_auth,
    })
}
