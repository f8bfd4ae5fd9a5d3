//! Secrets Manager secrets: fetching one and reading its value.
//!
//! Owns the two accepted forms: an RDS-style JSON object (`username`, `password`,
//! `host`, `port`, `dbname`; other keys ignored) or a plain string (the password).
//! It never puts any part of a secret's value into an error or a log line: parse
//! errors say where the JSON is wrong, never what it says.

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::config::Secret;

/// What a secret holds. Every field is optional: the config supplies the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretValue {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

/// Read a secret string. JSON objects are RDS-style; anything else is the password.
pub fn parse(text: &str) -> Result<SecretValue, String> {
    if !text.trim_start().starts_with('{') {
        return Ok(SecretValue {
            password: Some(Secret::new(text)),
            ..SecretValue::default()
        });
    }
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        // serde_json's message carries only the position, never the text.
        format!(
            "the secret looks like JSON but does not parse (line {}, column {}); store an RDS-style JSON object or a plain password",
            e.line(),
            e.column()
        )
    })?;
    let string = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("the secret's `{key}` must be a string")),
        }
    };
    let port = match map.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    if map.contains_key("port")
        && port.is_none()
        && map.get("port") != Some(&serde_json::Value::Null)
    {
        return Err("the secret's `port` must be a TCP port (1 to 65535)".into());
    }
    Ok(SecretValue {
        username: string("username")?,
        password: string("password")?.map(Secret::new),
        host: string("host")?,
        port: port.filter(|p| *p > 0),
        dbname: string("dbname")?,
    })
}

/// Why a secret could not be fetched, and whether trying again later can help.
#[derive(Debug)]
pub struct FetchError {
    pub reason: String,
    pub transient: bool,
}

/// Fetch the secret's current value (`AWSCURRENT`).
pub async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, FetchError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| classify(&e))?;
    if let Some(s) = out.secret_string() {
        return Ok(s.to_string());
    }
    match out.secret_binary() {
        Some(b) => String::from_utf8(b.as_ref().to_vec()).map_err(|_| FetchError {
            reason: "the secret is binary and not UTF-8 text; store it as a secret string".into(),
            transient: false,
        }),
        None => Err(FetchError {
            reason: "the secret has no value".into(),
            transient: false,
        }),
    }
}

fn classify<E>(e: &SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("unknown");
            let permanent = matches!(
                code,
                "ResourceNotFoundException"
                    | "AccessDeniedException"
                    | "AccessDenied"
                    | "DecryptionFailure"
                    | "InvalidParameterException"
                    | "InvalidRequestException"
                    | "UnrecognizedClientException"
            );
            FetchError {
                reason: format!(
                    "{code}: {}{}",
                    err.message().unwrap_or("no message"),
                    if permanent {
                        "; check the secret's name or ARN and that the task role may call secretsmanager:GetSecretValue on it (and kms:Decrypt on its key)"
                    } else {
                        ""
                    }
                ),
                transient: !permanent,
            }
        }
        other => FetchError {
            reason: crate::telemetry::aws_error(
                "Secrets Manager",
                "GetSecretValue",
                other,
                "the secret's name or ARN",
            ),
            transient: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rds_json_secrets() {
        let v = parse(r#"{"engine":"postgres","username":"cdc","password":"p@ss","host":"db.x","port":5433,"dbname":"shop","dbInstanceIdentifier":"x"}"#).unwrap();
        assert_eq!(v.username.as_deref(), Some("cdc"));
        assert_eq!(v.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(
            (v.host.as_deref(), v.port, v.dbname.as_deref()),
            (Some("db.x"), Some(5433), Some("shop"))
        );
        let v = parse(r#"{"password":"x","port":"6432"}"#).unwrap();
        assert_eq!((v.port, v.username), (Some(6432), None));
    }

    #[test]
    fn plain_text_is_the_password() {
        let v = parse("hunter2 with spaces").unwrap();
        assert_eq!(
            v.password.as_ref().map(Secret::expose),
            Some("hunter2 with spaces")
        );
        assert_eq!(v.host, None);
    }

    #[test]
    fn errors_never_show_the_value() {
        for bad in [
            r#"{"password":"hunter2""#,
            r#"{"password":["hunter2"]}"#,
            r#"{"password":"hunter2","port":"x"}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(!format!("{:?}", parse("hunter2").unwrap()).contains("hunter2"));
    }
}
