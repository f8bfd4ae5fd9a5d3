//! RDS IAM authentication tokens: a SigV4-presigned `rds-db:connect` request.
//!
//! Owns the token's form: `<host>:<port>/?Action=connect&DBUser=<user>&X-Amz-...`,
//! the presigned URL without its `https://`, valid for [`TOKEN_LIFETIME`]. It never
//! logs the token or the credentials that signed it; the token leaves this module
//! only inside a [`Secret`].

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

use crate::config::Secret;

/// RDS accepts a token for 15 minutes after signing (and only at connect time).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The SigV4 service name for `rds-db:connect`.
const SERVICE: &str = "rds-db";

/// Sign a token for `user` at `host:port` in `region`, as of `now`.
pub fn auth_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Secret, String> {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot build the signing parameters: {e}"))?
        .into();
    let url = format!(
        "https://{host}:{port}/?Action=connect&DBUser={}",
        query_escape(user)
    );
    let request = SignableRequest::new(
        "GET",
        url.clone(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| format!("cannot sign a request for {host}:{port}: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("cannot sign the IAM token request: {e}"))?
        .into_parts();
    let mut token = url.trim_start_matches("https://").to_string();
    for (name, value) in instructions.params() {
        token.push('&');
        token.push_str(name);
        token.push('=');
        token.push_str(&query_escape(value));
    }
    Ok(Secret::new(token))
}

/// RFC 3986 unreserved characters stay; everything else is %-encoded (SigV4's rule,
/// and what CloudWatch's form encoding accepts).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn query_escape(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(creds: &Credentials) -> String {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        auth_token(
            "db.abc.eu-west-1.rds.amazonaws.com",
            5432,
            "cdc user",
            "eu-west-1",
            creds,
            now,
        )
        .unwrap()
        .expose()
        .to_string()
    }

    #[test]
    fn token_has_the_rds_form() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "test");
        let t = token(&creds);
        let prefix = "db.abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=cdc%20user&";
        assert!(t.starts_with(prefix), "{t}");
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Frds-db%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
        ] {
            assert!(t.contains(part), "missing {part} in {t}");
        }
        let sig = t.split("X-Amz-Signature=").nth(1).expect("a signature");
        assert_eq!(sig.len(), 64, "{sig}");
        assert!(sig.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!t.starts_with("https://"));
        // Deterministic for the same inputs, different for another key.
        assert_eq!(t, token(&creds));
        let other = Credentials::new("AKIDEXAMPLE", "other", None, None, "test");
        assert_ne!(t, token(&other));
    }

    #[test]
    fn session_tokens_are_included() {
        let creds = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("sess/ion+".into()),
            None,
            "test",
        );
        let t = token(&creds);
        assert!(t.contains("X-Amz-Security-Token=sess%2Fion%2B"), "{t}");
    }
}
