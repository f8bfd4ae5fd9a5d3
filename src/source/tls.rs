//! TLS to PostgreSQL with rustls: which certificates are trusted and how they are
//! checked for each `sslmode`, the channel-binding hash, and what a failed handshake
//! tells the operator.
//!
//! Owns the rustls `ClientConfig` for both the replication connection and the SQL
//! connections (`tokio-postgres-rustls`), so the two always verify alike. It never
//! falls back to plaintext (the caller decides that from the mode) and never weakens
//! `verify-full`: the permissive verifiers below are only built for `prefer` and
//! `require`, where libpq does not check certificates either.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::Digest;

use crate::config::SslMode;

mod explain;
pub(crate) use explain::explain;

/// Where a rustls config could not be built from.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA bundle {path}: {reason}; sslrootcert must be a PEM file of CA certificates (e.g. the RDS global bundle)")]
    RootCert { path: PathBuf, reason: String },
    #[error("no usable CA certificates in the system trust store ({0}); install ca-certificates or set sslrootcert")]
    NativeRoots(String),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit, so a second rustls provider enabled elsewhere in the dependency tree
    // cannot make the process default ambiguous.
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls client config for `mode` (which must not be `disable`).
pub(crate) fn client_config(
    mode: SslMode,
    rootcert: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        // libpq: prefer/require encrypt without checking, unless a root cert is given
        // to `require` (then it acts as verify-ca).
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(EncryptOnly { provider })
        }
        (SslMode::Require | SslMode::VerifyCa, Some(_)) | (SslMode::VerifyCa, None) => {
            Arc::new(ChainOnly(webpki(roots(rootcert)?, provider)?))
        }
        (SslMode::VerifyFull, _) => webpki(roots(rootcert)?, provider)?,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn webpki(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))
}

fn roots(rootcert: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let bad = |reason: String| TlsSetupError::RootCert {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(bad("it contains no usable certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(TlsSetupError::NativeRoots(errors.join("; ")));
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the full chain check, but any host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // webpki checks the name only after the chain verified, so this error
            // means "trusted, but for another name": exactly what verify-ca allows.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: any certificate, but the handshake itself is
/// still checked, so the session keys belong to whoever holds that certificate.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The name to verify the certificate against (an IP address is matched against the
/// certificate's IP addresses, as libpq does).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// The first `rustls::Error` in an error chain (tokio-rustls wraps it in io::Error).
pub(crate) fn find_rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r);
            }
        }
        cur = err.source();
    }
    None
}

/// tls-server-end-point channel binding (RFC 5929): the server certificate hashed with
/// its signature's hash (SHA-256 for MD5/SHA-1). `None` for algorithms without one
/// (Ed25519) or a certificate we cannot parse: then channel binding is not offered.
pub(crate) fn channel_binding_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(cert)?;
    // DER content bytes of the OIDs.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let hash = match oid {
        [rsa @ .., last] if rsa == RSA => match last {
            0x04 | 0x05 | 0x0b => 256, // md5, sha1, sha256 WithRSAEncryption
            0x0c => 384,
            0x0d => 512,
            _ => return None,
        },
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => 256, // ecdsa-with-SHA1
        [ec @ .., last] if ec == ECDSA => match last {
            0x02 => 256,
            0x03 => 384,
            0x04 => 512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, .. }, .. }
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_tlv(cert)?;
    (tag == 0x30).then_some(())?;
    let (_, _, rest) = der_tlv(body)?; // tbsCertificate
    let (tag, alg, _) = der_tlv(rest)?;
    (tag == 0x30).then_some(())?;
    let (tag, oid, _) = der_tlv(alg)?;
    (tag == 0x06).then_some(oid)
}

/// One DER tag-length-value: (tag, value, rest). `None` on anything malformed.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, rest.get(n..)?)
    };
    let value = rest.get(..len)?;
    Some((tag, value, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_hash_follows_the_signature_algorithm() {
        let der_for = |alg: &'static rcgen::SignatureAlgorithm| {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let der = der_for(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            channel_binding_hash(&der),
            Some(sha2::Sha384::digest(&der).to_vec())
        );
        let der = der_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            channel_binding_hash(&der),
            Some(sha2::Sha256::digest(&der).to_vec())
        );
        // RFC 5929 defines no hash for Ed25519 signatures: no channel binding.
        assert_eq!(channel_binding_hash(&der_for(&rcgen::PKCS_ED25519)), None);
    }

    #[test]
    fn garbage_certificates_do_not_panic() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01],
        ] {
            assert_eq!(channel_binding_hash(bytes), None);
        }
    }

    #[test]
    fn ip_hosts_are_ip_server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("db.example.com"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
