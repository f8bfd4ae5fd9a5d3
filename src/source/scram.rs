//! The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), with optional
//! `tls-server-end-point` channel binding (RFC 5929), as PostgreSQL speaks it.
//!
//! Owns the three client steps and their order: the first message, the proof, and
//! the check of the server's signature. [`ScramClient::is_verified`] is true only after
//! the server proved that it knows the password, so the caller can refuse a server
//! that claims success earlier. It never logs or returns the password or any key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// PostgreSQL's default is 4096. A server could ask for billions of rounds to pin a
/// CPU for minutes; no real configuration comes close to this.
const MAX_ITERATIONS: u32 = 10_000_000;
/// Random bytes in the client nonce (base64 makes 24 printable characters).
const NONCE_BYTES: usize = 18;

/// How this client stands on channel binding, sent in the GS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// `n`: the client cannot bind (no TLS), or was told not to.
    Unsupported,
    /// `y`: the client could bind but the server did not offer `-PLUS`. A server that
    /// did offer it then knows a man in the middle removed it.
    NotOffered,
    /// `p=tls-server-end-point`: bound to this hash of the server's certificate.
    TlsServerEndPoint(Vec<u8>),
}

impl Binding {
    fn gs2_header(&self) -> &'static str {
        match self {
            Binding::Unsupported => "n,,",
            Binding::NotOffered => "y,,",
            Binding::TlsServerEndPoint(_) => "p=tls-server-end-point,,",
        }
    }
}

/// What went wrong in the exchange; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    #[error("malformed SCRAM message from the server: {0}")]
    Malformed(String),
    #[error("the server's SCRAM nonce does not extend ours (a replayed or forged exchange)")]
    Nonce,
    #[error("the server asks for {0} SCRAM iterations, more than the {MAX_ITERATIONS} this client accepts")]
    Iterations(u32),
    #[error("the server reports a SCRAM error: {0}")]
    Server(String),
    #[error("the server's SCRAM signature is wrong: it does not know the password (is something intercepting the connection?)")]
    BadSignature,
    #[error("SCRAM message out of order: {0}")]
    Order(&'static str),
}

enum State {
    /// Client-first sent; waiting for server-first.
    First,
    /// Client-final sent; waiting for server-final, which must carry this signature.
    Final { server_signature: [u8; 32] },
    /// The server's signature checked out.
    Verified,
    /// Something failed; every further step fails.
    Failed,
}

/// One SCRAM-SHA-256 login.
pub(crate) struct ScramClient {
    password: Vec<u8>,
    binding: Binding,
    nonce: String,
    client_first_bare: String,
    state: State,
}

impl ScramClient {
    /// Start a login for `user` (PostgreSQL ignores it and sends an empty name: the
    /// startup packet already carries the user) with a fresh random nonce.
    pub fn new(user: &str, password: &str, binding: Binding) -> ScramClient {
        let mut raw = [0u8; NONCE_BYTES];
        rand::fill(&mut raw);
        Self::with_nonce(user, password, binding, BASE64.encode(raw))
    }

    fn with_nonce(user: &str, password: &str, binding: Binding, nonce: String) -> ScramClient {
        // RFC 5802 section 5.1: `=` and `,` in the name are escaped.
        let name = user.replace('=', "=3D").replace(',', "=2C");
        // As PostgreSQL does: SASLprep when the password is valid for it, else raw.
        let password = match stringprep::saslprep(password) {
            Ok(p) => p.into_owned().into_bytes(),
            Err(_) => password.as_bytes().to_vec(),
        };
        ScramClient {
            password,
            binding,
            client_first_bare: format!("n={name},r={nonce}"),
            nonce,
            state: State::First,
        }
    }

    /// The client-first message (GS2 header and bare part).
    pub fn client_first(&self) -> String {
        format!("{}{}", self.binding.gs2_header(), self.client_first_bare)
    }

    /// Take the server-first message; return the client-final message with the proof.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::First) {
            self.state = State::Failed;
            return Err(ScramError::Order("a second server-first message"));
        }
        self.state = State::Failed;
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8".into()))?;
        let fields = Fields::parse(server_first)?;
        let nonce = fields.get('r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = BASE64
            .decode(fields.get('s')?)
            .map_err(|_| ScramError::Malformed("salt is not base64".into()))?;
        let iterations: u32 = fields
            .get('i')?
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| ScramError::Malformed("bad iteration count".into()))?;
        if iterations > MAX_ITERATIONS {
            return Err(ScramError::Iterations(iterations));
        }

        let mut cbind = self.binding.gs2_header().as_bytes().to_vec();
        if let Binding::TlsServerEndPoint(hash) = &self.binding {
            cbind.extend_from_slice(hash);
        }
        let without_proof = format!("c={},r={nonce}", BASE64.encode(cbind));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);

        let salted = hi(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        let server_key = hmac(&salted, b"Server Key");
        self.state = State::Final {
            server_signature: hmac(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
    }

    /// Check the server-final message: the server's signature proves it knows the
    /// password (or its SCRAM verifier), so it is the real server, not a relay.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), ScramError> {
        let State::Final { server_signature } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(ScramError::Order(
                "server-final before the client's proof was sent",
            ));
        };
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final is not UTF-8".into()))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError::Server(e.chars().take(100).collect()));
        }
        let fields = Fields::parse(text)?;
        let got = BASE64
            .decode(fields.get('v')?)
            .map_err(|_| ScramError::Malformed("signature is not base64".into()))?;
        // Compare in constant time: the difference must not leak through timing.
        let differs = got.len() != server_signature.len()
            || got
                .iter()
                .zip(server_signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0;
        if differs {
            return Err(ScramError::BadSignature);
        }
        self.state = State::Verified;
        Ok(())
    }

    /// True once the server's signature has been checked.
    pub fn is_verified(&self) -> bool {
        matches!(self.state, State::Verified)
    }
}

/// `k=v` attributes separated by commas.
struct Fields<'a>(Vec<(char, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(text: &'a str) -> Result<Fields<'a>, ScramError> {
        let mut out = Vec::new();
        for part in text.split(',') {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => out.push((k, &part[2..])),
                _ => {
                    return Err(ScramError::Malformed(format!(
                        "attribute {:?} is not k=value",
                        part.chars().take(20).collect::<String>()
                    )))
                }
            }
        }
        // RFC 5802: an unknown mandatory extension must make the client fail.
        if out.first().is_some_and(|(k, _)| *k == 'm') {
            return Err(ScramError::Malformed(
                "the server requires an unsupported extension".into(),
            ));
        }
        Ok(Fields(out))
    }

    fn get(&self, key: char) -> Result<&'a str, ScramError> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| ScramError::Malformed(format!("no `{key}=` attribute")))
    }
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    Hmac::new(key).sign(message)
}

/// The two padded-key states of HMAC-SHA-256, reusable for many messages with one key.
#[derive(Clone)]
struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    const BLOCK: usize = 64;

    fn new(key: &[u8]) -> Hmac {
        let mut block = [0u8; Self::BLOCK];
        if key.len() > Self::BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        Hmac { inner, outer }
    }

    fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(message);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mac = Hmac::new(password);
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = mac.sign(&first);
    let mut out = u;
    for _ in 1..iterations {
        u = mac.sign(&u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests;
