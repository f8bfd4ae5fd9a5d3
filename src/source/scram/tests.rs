//! Unit tests of the SCRAM-SHA-256 client: the RFC 7677 test vector, refused server
//! messages (flipped signatures, out of order, hostile), channel binding in the proof,
//! and HMAC against RFC 4231.

use super::*;

/// RFC 7677 section 3: user "user", password "pencil".
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_client() -> ScramClient {
    ScramClient::with_nonce("user", "pencil", Binding::Unsupported, CLIENT_NONCE.into())
}

#[test]
fn rfc7677_vector_proof_and_server_signature_verify() {
    let mut c = rfc_client();
    assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_eq!(
        c.client_final(SERVER_FIRST.as_bytes()).unwrap(),
        CLIENT_FINAL
    );
    assert!(!c.is_verified(), "verified before the server's signature");
    c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    assert!(c.is_verified());
}

#[test]
fn rfc7677_vector_with_one_flipped_signature_bit_is_refused() {
    let mut sig = BASE64.decode(&SERVER_FINAL[2..]).unwrap();
    sig[31] ^= 1;
    let mut c = rfc_client();
    c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    let err = c
        .verify_server_final(format!("v={}", BASE64.encode(sig)).as_bytes())
        .unwrap_err();
    assert_eq!(err, ScramError::BadSignature);
    assert!(!c.is_verified());
    // A truncated signature is refused too, not compared as a prefix.
    let mut c = rfc_client();
    c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl9"),
        Err(ScramError::BadSignature)
    );
}

#[test]
fn server_final_before_the_proof_or_twice_is_refused() {
    let mut c = rfc_client();
    assert!(matches!(
        c.verify_server_final(SERVER_FINAL.as_bytes()),
        Err(ScramError::Order(_))
    ));
    let mut c = rfc_client();
    c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    assert!(c.verify_server_final(SERVER_FINAL.as_bytes()).is_err());
    assert!(!c.is_verified());
}

#[test]
fn hostile_server_first_messages_are_refused() {
    type Expect = fn(&ScramError) -> bool;
    let cases: [(&str, Expect); 5] = [
        ("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", |e| {
            *e == ScramError::Nonce
        }),
        (
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            |e| *e == ScramError::Nonce,
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
            |e| *e == ScramError::Iterations(4_000_000_000),
        ),
        ("m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=AA==,i=1", |e| {
            matches!(e, ScramError::Malformed(_))
        }),
        ("r=rOprNGfwEbeRWgbNEkqOx,s=AA==,i=0", |e| {
            matches!(e, ScramError::Malformed(_))
        }),
    ];
    for (msg, expect) in cases {
        let err = rfc_client().client_final(msg.as_bytes()).unwrap_err();
        assert!(expect(&err), "{msg}: {err:?}");
    }
}

#[test]
fn channel_binding_goes_into_the_proof() {
    let hash = vec![7u8; 32];
    let mut c = ScramClient::with_nonce(
        "",
        "pencil",
        Binding::TlsServerEndPoint(hash.clone()),
        CLIENT_NONCE.into(),
    );
    assert!(c
        .client_first()
        .starts_with("p=tls-server-end-point,,n=,r="));
    let fin = c.client_final(SERVER_FIRST.as_bytes()).unwrap();
    let mut expected = b"p=tls-server-end-point,,".to_vec();
    expected.extend_from_slice(&hash);
    assert!(
        fin.starts_with(&format!("c={},", BASE64.encode(expected))),
        "{fin}"
    );
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    let mac = hmac(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
