//! The authentication-policy values of a slot: `channel_binding` and `require_auth`.
//!
//! Owns their libpq-compatible spellings and meaning as data. It never talks to a
//! server: `source::auth` checks each server request against these values.

use std::fmt;

/// Whether the SCRAM login is bound to the TLS certificate (libpq's `channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never bind, even when the server offers SCRAM-SHA-256-PLUS.
    Disable,
    /// Bind when TLS is on and the server offers SCRAM-SHA-256-PLUS.
    #[default]
    Prefer,
    /// Bind or fail: refuse password, md5, trust and unbound SCRAM logins.
    Require,
}

/// The `channel_binding` values as written in the config.
pub const CHANNEL_BINDINGS: &[&str] = &["disable", "prefer", "require"];

impl ChannelBinding {
    pub fn parse(s: &str) -> Option<ChannelBinding> {
        Some(match s {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way the server may let the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication at all (`trust`).
    None,
    /// The password in cleartext.
    Password,
    /// The md5 challenge (a replayable hash of the password).
    Md5,
    /// SCRAM-SHA-256, with or without channel binding.
    ScramSha256,
}

impl AuthMethod {
    const ALL: [AuthMethod; 4] = [
        AuthMethod::None,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
    ];

    /// libpq's `require_auth` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The methods the server may use (libpq's `require_auth`): a comma-separated list
/// such as `scram-sha-256` or `scram-sha-256,md5`, or a list of exclusions such as
/// `!password,!md5`. Unset: every method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequireAuth {
    allowed: u8,
}

impl Default for RequireAuth {
    fn default() -> Self {
        RequireAuth {
            allowed: AuthMethod::ALL.iter().fold(0, |acc, m| acc | m.bit()),
        }
    }
}

/// The method names `require_auth` accepts.
pub const REQUIRE_AUTH_METHODS: &[&str] = &["password", "md5", "scram-sha-256", "none"];

impl RequireAuth {
    /// Parse libpq's syntax; the error says what is wrong with which entry.
    pub fn parse(s: &str) -> Result<RequireAuth, String> {
        let mut listed = 0u8;
        let mut negated = None;
        for entry in s.split(',').map(str::trim) {
            let (neg, name) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, entry),
            };
            if name.is_empty() {
                return Err(format!(
                    "empty method in `{s}`; list methods separated by commas"
                ));
            }
            if *negated.get_or_insert(neg) != neg {
                return Err(format!(
                    "`{s}` mixes methods with and without `!`; either list the methods \
                     allowed, or list the ones refused (each with `!`)"
                ));
            }
            let method = match name {
                "password" => AuthMethod::Password,
                "md5" => AuthMethod::Md5,
                "scram-sha-256" => AuthMethod::ScramSha256,
                "none" => AuthMethod::None,
                "gss" | "sspi" => {
                    return Err(format!(
                        "`{name}`: this streamer does not implement GSSAPI or SSPI; use \
                         one of {}",
                        REQUIRE_AUTH_METHODS.join(", ")
                    ))
                }
                _ => {
                    return Err(format!(
                        "unknown method `{name}`; use one of {} (a leading `!` refuses it)",
                        REQUIRE_AUTH_METHODS.join(", ")
                    ))
                }
            };
            if listed & method.bit() != 0 {
                return Err(format!("`{name}` is listed twice in `{s}`"));
            }
            listed |= method.bit();
        }
        let allowed = if negated == Some(true) {
            RequireAuth::default().allowed & !listed
        } else {
            listed
        };
        if allowed == 0 {
            return Err(format!("`{s}` refuses every method"));
        }
        Ok(RequireAuth { allowed })
    }

    pub fn allows(self, method: AuthMethod) -> bool {
        self.allowed & method.bit() != 0
    }

    /// The allowed methods as a list for messages, e.g. `scram-sha-256, none`.
    pub fn describe(self) -> String {
        AuthMethod::ALL
            .iter()
            .filter(|m| self.allows(**m))
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_auth_lists_allow_and_negations_refuse() {
        let scram = RequireAuth::parse("scram-sha-256").unwrap();
        assert!(scram.allows(AuthMethod::ScramSha256));
        assert!(!scram.allows(AuthMethod::Md5) && !scram.allows(AuthMethod::Password));
        assert!(!scram.allows(AuthMethod::None));

        let not_weak = RequireAuth::parse("!password, !md5").unwrap();
        assert!(not_weak.allows(AuthMethod::ScramSha256) && not_weak.allows(AuthMethod::None));
        assert!(!not_weak.allows(AuthMethod::Password) && !not_weak.allows(AuthMethod::Md5));
        assert_eq!(not_weak.describe(), "none, scram-sha-256");

        let default = RequireAuth::default();
        assert!(AuthMethod::ALL.iter().all(|m| default.allows(*m)));
    }

    #[test]
    fn require_auth_mistakes_are_explained() {
        for (text, expect) in [
            ("scram-sha-256,!md5", "mixes methods"),
            ("md5,md5", "listed twice"),
            ("kerberos", "unknown method `kerberos`"),
            ("gss", "does not implement GSSAPI"),
            (
                "!none,!password,!md5,!scram-sha-256",
                "refuses every method",
            ),
            ("md5,", "empty method"),
        ] {
            let err = RequireAuth::parse(text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn channel_binding_uses_libpq_names() {
        for name in CHANNEL_BINDINGS {
            assert_eq!(
                ChannelBinding::parse(name).map(ChannelBinding::as_str),
                Some(*name)
            );
        }
        assert_eq!(ChannelBinding::parse("required"), None);
        assert_eq!(ChannelBinding::default(), ChannelBinding::Prefer);
    }
}
