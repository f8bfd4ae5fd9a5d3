//! Certificates generated at test time (rcgen) and PostgreSQL clusters with `ssl=on`.
//!
//! Owns a throwaway CA, a server certificate it signs for `localhost`, and writing
//! them where the `postgres` OS user can read them (key mode 0600, as PostgreSQL
//! insists). It never reuses keys between runs and never touches system trust stores.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::pg::{Pg, PgOptions};

/// A CA and the server certificate it signed, as PEM files in `dir`.
pub struct Certs {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what `sslrootcert` points at).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A fresh CA named `cn` and a server certificate for `names` signed by it.
pub fn generate(cn: &str, names: &[&str]) -> Certs {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "pg-cdc test server");
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("sign the server cert");

    let dir = tempfile::Builder::new()
        .prefix("pgcdc-certs-")
        .tempdir()
        .expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let certs = Certs {
        ca: write("ca.pem", &ca_cert.pem()),
        server_cert: write("server.crt", &server_cert.pem()),
        server_key: write("server.key", &server_key.serialize_pem()),
        dir,
    };
    give_to_postgres(&certs);
    certs
}

/// A self-signed CA certificate for `names` that the server presents as its own (what
/// `openssl req -x509` makes by default): `ca` and `server_cert` are the same file.
pub fn self_signed_ca_as_server(names: &[&str]) -> Certs {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "pg-cdc self-signed server");
    let cert = params.self_signed(&key).expect("self-sign");
    let dir = tempfile::Builder::new()
        .prefix("pgcdc-certs-")
        .tempdir()
        .expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let certs = Certs {
        ca: write("ca.pem", &cert.pem()),
        server_cert: write("server.crt", &cert.pem()),
        server_key: write("server.key", &key.serialize_pem()),
        dir,
    };
    give_to_postgres(&certs);
    certs
}

/// PostgreSQL reads the key as the `postgres` user and refuses group/world access.
fn give_to_postgres(c: &Certs) {
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    for f in [&c.ca, &c.server_cert] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod cert");
    }
    std::fs::set_permissions(&c.server_key, std::fs::Permissions::from_mode(0o600))
        .expect("chmod key");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&c.server_key)
            .arg(&c.server_cert)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown of the server key failed");
    }
}

/// A private cluster with `ssl = on` serving `certs`' server certificate.
pub fn tls_cluster(certs: &Certs) -> Pg {
    Pg::start(ssl_options(certs))
}

pub fn ssl_options(certs: &Certs) -> PgOptions {
    PgOptions::default()
        .set("ssl", "on")
        .set("ssl_cert_file", &quoted(&certs.server_cert))
        .set("ssl_key_file", &quoted(&certs.server_key))
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}
