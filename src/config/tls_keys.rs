//! The connection-security keys of a slot: `sslmode`, `sslrootcert`, `iam_auth`,
//! `hostaddr`, `channel_binding`, `require_auth`, `iam_token_to_unverified_server`.
//!
//! Owns their value rules and how they constrain each other (IAM tokens only to a
//! server whose certificate is verified for its name, never together with a password;
//! channel binding only over TLS). It never opens the CA file beyond checking that it
//! can be read, and never echoes a password.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::auth::{AuthMethod, ChannelBinding, RequireAuth, CHANNEL_BINDINGS};
use super::file::SlotFile;
use super::tls::{is_local_host, SSL_MODES};
use super::value::text;
use super::{ConfigError, Source, SslMode};

/// The parsed keys.
pub(super) struct TlsKeys {
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
    pub iam_auth: bool,
    pub hostaddr: Option<IpAddr>,
    pub channel_binding: ChannelBinding,
    pub require_auth: RequireAuth,
    pub iam_token_to_unverified_server: bool,
}

/// Why an IAM token must not go to this server, or `None` when its certificate is
/// verified for its host name. A token is a password for 15 minutes: whoever
/// terminates the TLS connection can replay it. `sslmode` must be `verify-full`, and a
/// loopback peer (a tunnel, a port forward, a sidecar) needs an explicit CA bundle:
/// the system store would accept any public certificate that a local process shows.
pub fn iam_peer_problem(
    sslmode: SslMode,
    host: &str,
    hostaddr: Option<IpAddr>,
    sslrootcert: Option<&Path>,
) -> Option<String> {
    let loopback = is_local_host(host) || hostaddr.is_some_and(|a| a.is_loopback());
    if sslmode != SslMode::VerifyFull {
        let tunnel = if loopback {
            format!(
                "; for a tunnel, set `host` to the database's real name, `hostaddr` to \
                 {}, `sslmode: verify-full` and `sslrootcert` to its CA bundle",
                hostaddr.map_or(host.to_string(), |a| a.to_string())
            )
        } else {
            String::new()
        };
        return Some(format!(
            "`iam_auth` sends a login token, but sslmode {sslmode} does not verify that the \
             server's certificate is issued for {host:?}, so a man in the middle could take \
             the token{tunnel}; or set `iam_token_to_unverified_server: true` to accept \
             that risk"
        ));
    }
    if loopback && sslrootcert.is_none() {
        return Some(format!(
            "`iam_auth` to the loopback address of {host:?} (a tunnel?) needs `sslrootcert`: \
             verify the database's certificate with its CA bundle (e.g. the RDS global \
             bundle), through the tunnel, by its real name in `host` with `hostaddr` \
             pointing at the tunnel; or set `iam_token_to_unverified_server: true` to \
             accept that anything listening there may take the token"
        ));
    }
    None
}

/// `iam_auth` default: passwords (or trust) unless asked.
pub const DEFAULT_IAM_AUTH: bool = false;

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    lookup: &dyn Fn(&str) -> Option<String>,
    host: &str,
    has_password: bool,
    (env_sslmode, env_sslrootcert): (Option<SslMode>, Option<PathBuf>),
) -> Result<TlsKeys, ConfigError> {
    let sslmode = match &raw.sslmode {
        None => env_sslmode,
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
        None => env_sslrootcert,
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
    let hostaddr = match &raw.hostaddr {
        None => None,
        Some(v) => {
            let addr = text(src, v, &place("hostaddr"), lookup)?;
            let bare = addr.trim().trim_start_matches('[').trim_end_matches(']');
            Some(bare.parse::<IpAddr>().map_err(|_| {
                src.at(
                    v,
                    format!(
                        "{}: `{addr}` is not an IP address; `hostaddr` is the numeric \
                         address to connect to (e.g. 127.0.0.1 for a tunnel), `host` the \
                         name the certificate carries",
                        place("hostaddr")
                    ),
                )
            })?)
        }
    };
    if let (Some(_), Some(v)) = (hostaddr, &raw.hostaddr) {
        if host.starts_with('/') {
            return Err(src.at(
                v,
                format!(
                    "{}: `host` is a Unix-socket directory, so there is no address to \
                     replace; remove `hostaddr`",
                    place("hostaddr")
                ),
            ));
        }
    }
    let channel_binding = match &raw.channel_binding {
        None => ChannelBinding::default(),
        Some(v) => {
            let name = text(src, v, &place("channel_binding"), lookup)?;
            let mode = ChannelBinding::parse(name.trim()).ok_or_else(|| {
                src.at(
                    v,
                    format!(
                        "{}: unknown value `{name}`; use one of {}",
                        place("channel_binding"),
                        CHANNEL_BINDINGS.join(", ")
                    ),
                )
            })?;
            if mode == ChannelBinding::Require {
                if sslmode == Some(SslMode::Disable) || host.starts_with('/') {
                    return Err(src.at(
                        v,
                        format!(
                            "{}: channel binding ties the login to the TLS certificate, but \
                             this slot connects without TLS (sslmode disable or a Unix \
                             socket); use TCP with `sslmode: verify-full`",
                            place("channel_binding")
                        ),
                    ));
                }
                if iam_auth {
                    return Err(src.at(
                        v,
                        format!(
                            "{}: `iam_auth` logs in with a token sent as a password, which \
                             cannot be channel-bound; use `channel_binding: prefer`",
                            place("channel_binding")
                        ),
                    ));
                }
            }
            mode
        }
    };
    let require_auth = match &raw.require_auth {
        None => RequireAuth::default(),
        Some(v) => {
            let list = text(src, v, &place("require_auth"), lookup)?;
            let policy = RequireAuth::parse(list.trim())
                .map_err(|e| src.at(v, format!("{}: {e}", place("require_auth"))))?;
            if iam_auth && !policy.allows(AuthMethod::Password) {
                return Err(src.at(
                    v,
                    format!(
                        "{}: `iam_auth` sends its token by the `password` method, which \
                         this list refuses; allow `password` or turn `iam_auth` off",
                        place("require_auth")
                    ),
                ));
            }
            policy
        }
    };
    let iam_token_to_unverified_server = src.flag(
        &raw.iam_token_to_unverified_server,
        &place("iam_token_to_unverified_server"),
        false,
    )?;
    // The host may come from a `secret`; then the rule is checked at connect time.
    if let (true, Some(v), false, false) = (
        iam_auth,
        &raw.iam_auth,
        iam_token_to_unverified_server,
        host.is_empty(),
    ) {
        let mode = SslMode::resolve(sslmode, host);
        if let Some(problem) = iam_peer_problem(mode, host, hostaddr, sslrootcert.as_deref()) {
            return Err(src.at(v, format!("{}: {problem}", place("iam_auth"))));
        }
    }
    Ok(TlsKeys {
        sslmode,
        sslrootcert,
        iam_auth,
        hostaddr,
        channel_binding,
        require_auth,
        iam_token_to_unverified_server,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn load(keys: &str) -> Result<Config, String> {
        let yaml =
            format!("replication_slots:\n  - s: {{user: u, db_name: d, kns_stream: k, {keys}}}\n");
        Config::from_text(Path::new("t.yml"), &yaml, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn iam_tokens_go_only_to_servers_verified_by_name() {
        for (keys, expect) in [
            (
                "host: 127.0.0.1, iam_auth: true",
                "sslmode prefer does not verify",
            ),
            (
                "host: localhost, iam_auth: true, sslmode: require",
                "sslmode require does not verify",
            ),
            (
                "host: 127.0.0.1, iam_auth: true, sslmode: verify-full",
                "needs `sslrootcert`",
            ),
            (
                "host: db.example.com, hostaddr: 127.0.0.1, iam_auth: true",
                "needs `sslrootcert`",
            ),
            (
                "host: db.example.com, iam_auth: true, sslmode: verify-ca",
                "sslmode verify-ca does not verify",
            ),
        ] {
            let err = load(keys).unwrap_err();
            assert!(err.contains(expect), "{keys}: {err}");
            assert!(err.contains("iam_token_to_unverified_server"), "{err}");
        }
        // Through a tunnel, verified by the database's real name: allowed.
        let config = load(
            "host: db.example.com, hostaddr: 127.0.0.1, iam_auth: true, sslrootcert: /dev/null",
        )
        .expect("tunnel with verify-full");
        let slot = &config.slots[0];
        assert_eq!(slot.hostaddr, Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            SslMode::resolve(slot.sslmode, &slot.host),
            SslMode::VerifyFull
        );
        // A remote host defaults to verify-full; the opt-out says the risk.
        load("host: db.example.com, iam_auth: true").expect("remote default");
        let config = load(
            "host: 127.0.0.1, iam_auth: true, sslmode: require, iam_token_to_unverified_server: true",
        )
        .expect("explicit opt-out");
        assert!(config.slots[0].iam_token_to_unverified_server);
    }

    #[test]
    fn channel_binding_and_require_auth_load_and_conflicts_are_explained() {
        let config =
            load("host: db.example.com, channel_binding: require, require_auth: '!password,!md5'")
                .expect("valid");
        let slot = &config.slots[0];
        assert_eq!(slot.channel_binding, ChannelBinding::Require);
        assert!(!slot.require_auth.allows(AuthMethod::Md5));
        assert!(slot.require_auth.allows(AuthMethod::ScramSha256));
        let defaults = load("host: db.example.com").expect("valid");
        assert_eq!(defaults.slots[0].channel_binding, ChannelBinding::Prefer);
        assert_eq!(defaults.slots[0].require_auth, RequireAuth::default());

        for (keys, expect) in [
            (
                "host: /run/postgresql, channel_binding: require",
                "connects without TLS",
            ),
            (
                "host: db.example.com, iam_auth: true, channel_binding: require",
                "cannot be channel-bound",
            ),
            (
                "host: db.example.com, iam_auth: true, require_auth: scram-sha-256",
                "sends its token by the `password` method",
            ),
            (
                "host: db.example.com, require_auth: kerberos",
                "unknown method `kerberos`",
            ),
            (
                "host: /run/postgresql, hostaddr: 127.0.0.1",
                "remove `hostaddr`",
            ),
        ] {
            let err = load(keys).unwrap_err();
            assert!(err.contains(expect), "{keys}: {err}");
        }
    }
}
