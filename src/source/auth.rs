//! The client's authentication policy, applied to each server request in order:
//! `require_auth`, `channel_binding`, and the rule that a SCRAM login is complete only
//! once the server proved it knows the password.
//!
//! Owns the decisions, not the wire: `conn` (the replication connection) and `guard`
//! (under tokio-postgres' SQL connections) feed it what the server asks for and
//! refuse when it says no, before any password leaves the client. It never sees a
//! password.

use crate::config::{AuthMethod, ChannelBinding, RequireAuth};

use super::scram::Binding;

pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub(crate) const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sasl {
    NotStarted,
    /// SASL started; the server has not sent its final message yet.
    Started,
    /// The server sent its final message (its signature).
    Finished,
}

/// The state of one login against the policy.
#[derive(Debug, Clone)]
pub(crate) struct AuthCheck {
    require_auth: RequireAuth,
    channel_binding: ChannelBinding,
    requested: Option<AuthMethod>,
    sasl: Sasl,
    /// The mechanism chosen was SCRAM-SHA-256-PLUS.
    bound: bool,
}

impl AuthCheck {
    pub fn new(require_auth: RequireAuth, channel_binding: ChannelBinding) -> AuthCheck {
        AuthCheck {
            require_auth,
            channel_binding,
            requested: None,
            sasl: Sasl::NotStarted,
            bound: false,
        }
    }

    /// The server asks for the password in cleartext or as md5.
    pub fn password_request(&mut self, method: AuthMethod) -> Result<(), String> {
        let what = match method {
            AuthMethod::Password => "the password in cleartext",
            AuthMethod::Md5 => "an md5 hash of the password",
            _ => "a password",
        };
        self.allowed(method, what)?;
        if self.channel_binding == ChannelBinding::Require {
            return Err(format!(
                "channel_binding is require, but the server asks for {what} ({}), which \
                 cannot be bound to the TLS certificate; use scram-sha-256 in pg_hba.conf",
                method.as_str()
            ));
        }
        self.requested = Some(method);
        Ok(())
    }

    /// The server starts SASL offering `offered`; `tls_hash` is the certificate's
    /// tls-server-end-point hash when the connection is TLS and one exists. Returns the
    /// mechanism and binding to use.
    pub fn sasl_request(
        &mut self,
        offered: &[String],
        tls_hash: Option<Vec<u8>>,
    ) -> Result<(&'static str, Binding), String> {
        self.allowed(AuthMethod::ScramSha256, "SCRAM-SHA-256")?;
        if self.sasl != Sasl::NotStarted {
            return Err("the server started SASL twice".into());
        }
        let has = |m: &str| offered.iter().any(|o| o == m);
        let choice = match (self.channel_binding, tls_hash) {
            (ChannelBinding::Disable, _) if has(SCRAM_SHA_256) => {
                (SCRAM_SHA_256, Binding::Unsupported)
            }
            (ChannelBinding::Prefer | ChannelBinding::Require, Some(hash))
                if has(SCRAM_SHA_256_PLUS) =>
            {
                (SCRAM_SHA_256_PLUS, Binding::TlsServerEndPoint(hash))
            }
            (ChannelBinding::Require, hash) => {
                return Err(format!(
                    "channel_binding is require, but {}",
                    if hash.is_none() {
                        "the connection is not TLS (or the certificate's signature \
                         algorithm has no tls-server-end-point hash); use sslmode verify-full"
                    } else {
                        "the server does not offer SCRAM-SHA-256-PLUS (PostgreSQL 11+ with \
                         scram-sha-256 in pg_hba.conf, over TLS)"
                    }
                ))
            }
            (ChannelBinding::Prefer, Some(_)) if has(SCRAM_SHA_256) => {
                (SCRAM_SHA_256, Binding::NotOffered)
            }
            (ChannelBinding::Prefer, None) if has(SCRAM_SHA_256) => {
                (SCRAM_SHA_256, Binding::Unsupported)
            }
            _ => {
                return Err(format!(
                    "the server offers only SASL mechanisms {offered:?}, none usable"
                ))
            }
        };
        self.requested = Some(AuthMethod::ScramSha256);
        self.sasl = Sasl::Started;
        self.bound = choice.0 == SCRAM_SHA_256_PLUS;
        Ok(choice)
    }

    /// The server sent SASLContinue.
    pub fn sasl_continue(&self) -> Result<(), String> {
        match self.sasl {
            Sasl::Started => Ok(()),
            Sasl::NotStarted => Err("SASL continue before SASL start".into()),
            Sasl::Finished => Err("SASL continue after the final SASL message".into()),
        }
    }

    /// The server sent its final SASL message (the caller checks the signature).
    pub fn sasl_final(&mut self) -> Result<(), String> {
        match self.sasl {
            Sasl::Started => {
                self.sasl = Sasl::Finished;
                Ok(())
            }
            Sasl::NotStarted => Err("SASL final before SASL start".into()),
            Sasl::Finished => Err("a second final SASL message".into()),
        }
    }

    /// The server says the login succeeded (AuthenticationOk).
    pub fn authentication_ok(&self) -> Result<(), String> {
        match (self.sasl, self.requested) {
            (Sasl::Started, _) => Err(
                "the server reported success before proving it knows the password (no \
                 final SCRAM message with the server's signature); something other than \
                 PostgreSQL may be answering: check host, port and the network path"
                    .into(),
            ),
            (Sasl::NotStarted, None) => {
                self.allowed(AuthMethod::None, "no authentication (trust)")?;
                if self.channel_binding == ChannelBinding::Require {
                    return Err(
                        "channel_binding is require, but the server let the client in \
                         without authentication (trust), so nothing was bound to the TLS \
                         certificate"
                            .into(),
                    );
                }
                Ok(())
            }
            (Sasl::Finished, _)
                if self.channel_binding == ChannelBinding::Require && !self.bound =>
            {
                Err("channel_binding is require, but the login was not channel-bound".into())
            }
            _ => Ok(()),
        }
    }

    fn allowed(&self, method: AuthMethod, what: &str) -> Result<(), String> {
        if self.require_auth.allows(method) {
            return Ok(());
        }
        Err(format!(
            "the server asks for {what} (`{}`), but require_auth allows only {}; the \
             password was not sent. Change pg_hba.conf, or require_auth if this is expected",
            method.as_str(),
            self.require_auth.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(require_auth: &str, cb: ChannelBinding) -> AuthCheck {
        let policy = if require_auth.is_empty() {
            RequireAuth::default()
        } else {
            RequireAuth::parse(require_auth).unwrap()
        };
        AuthCheck::new(policy, cb)
    }

    fn offered(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ok_right_after_sasl_start_is_refused() {
        let mut c = check("", ChannelBinding::Prefer);
        c.sasl_request(&offered(&[SCRAM_SHA_256]), None).unwrap();
        c.sasl_continue().unwrap();
        let err = c.authentication_ok().unwrap_err();
        assert!(
            err.contains("before proving it knows the password"),
            "{err}"
        );
        c.sasl_final().unwrap();
        c.authentication_ok().unwrap();
    }

    #[test]
    fn require_auth_refuses_weak_methods_and_trust() {
        let mut c = check("scram-sha-256", ChannelBinding::Prefer);
        let err = c.password_request(AuthMethod::Md5).unwrap_err();
        assert!(
            err.contains("md5") && err.contains("allows only scram-sha-256"),
            "{err}"
        );
        assert!(c.password_request(AuthMethod::Password).is_err());
        let err = c.authentication_ok().unwrap_err();
        assert!(err.contains("trust"), "{err}");

        let mut c = check("!password", ChannelBinding::Prefer);
        c.password_request(AuthMethod::Md5).unwrap();
        c.authentication_ok().unwrap();

        let mut c = check("md5", ChannelBinding::Prefer);
        assert!(c.sasl_request(&offered(&[SCRAM_SHA_256]), None).is_err());
    }

    #[test]
    fn channel_binding_modes_pick_the_mechanism() {
        let both = offered(&[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        let hash = Some(vec![1u8; 32]);
        let pick = |cb, hash: Option<Vec<u8>>, offered: &[String]| {
            check("", cb).sasl_request(offered, hash)
        };
        assert_eq!(
            pick(ChannelBinding::Prefer, hash.clone(), &both).unwrap(),
            (SCRAM_SHA_256_PLUS, Binding::TlsServerEndPoint(vec![1; 32]))
        );
        assert_eq!(
            pick(ChannelBinding::Disable, hash.clone(), &both).unwrap(),
            (SCRAM_SHA_256, Binding::Unsupported)
        );
        assert_eq!(
            pick(
                ChannelBinding::Prefer,
                hash.clone(),
                &offered(&[SCRAM_SHA_256])
            )
            .unwrap(),
            (SCRAM_SHA_256, Binding::NotOffered)
        );
        let err = pick(ChannelBinding::Require, None, &both).unwrap_err();
        assert!(err.contains("not TLS"), "{err}");
        let err = pick(ChannelBinding::Require, hash, &offered(&[SCRAM_SHA_256])).unwrap_err();
        assert!(err.contains("does not offer SCRAM-SHA-256-PLUS"), "{err}");

        let mut c = check("", ChannelBinding::Require);
        assert!(c.password_request(AuthMethod::Password).is_err());
        assert!(c.authentication_ok().is_err(), "trust under require");
    }
}
