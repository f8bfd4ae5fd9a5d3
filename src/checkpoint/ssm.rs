//! The SSM Parameter Store [`CheckpointStore`]: one String parameter per slot,
//! overwritten on every write.
//!
//! Owns the SSM client settings (short timeouts, few retries: the writer has its own
//! backoff and must notice an outage quickly) and the mapping of SSM errors. It never
//! creates SecureString or advanced parameters and never deletes anything.

use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreFuture};

/// One call may take this long; a hanging SSM must not delay startup much.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 2;

/// An SSM client from the shared AWS settings. The endpoint can be overridden for SSM
/// alone with the standard `AWS_ENDPOINT_URL_SSM` variable.
pub fn ssm_client(aws: &aws_config::SdkConfig, region: Option<&str>) -> aws_sdk_ssm::Client {
    let mut builder = aws_sdk_ssm::config::Builder::from(aws)
        .retry_config(
            aws_sdk_ssm::config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS),
        )
        .timeout_config(
            aws_sdk_ssm::config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(region) = region {
        builder = builder.region(aws_sdk_ssm::config::Region::new(region.to_string()));
    }
    aws_sdk_ssm::Client::from_conf(builder.build())
}

#[derive(Debug, Clone)]
pub struct SsmStore {
    client: aws_sdk_ssm::Client,
}

impl SsmStore {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmStore { client }
    }
}

/// One line naming the operation and the cause (the SDK's dump goes to the debug log).
fn store_error<E>(
    name: &str,
    operation: &str,
    e: &aws_sdk_ssm::error::SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
) -> CheckpointError
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    CheckpointError::Store {
        name: name.to_string(),
        message: crate::telemetry::aws_error(
            "SSM",
            operation,
            e,
            "the parameter name and that the task role allows ssm:GetParameter and ssm:PutParameter on it",
        ),
    }
}

impl CheckpointStore for SsmStore {
    fn read<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>> {
        Box::pin(async move {
            let out = match self.client.get_parameter().name(name).send().await {
                Ok(out) => out,
                Err(e) => {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_parameter_not_found())
                    {
                        return Ok(None);
                    }
                    return Err(store_error(name, "GetParameter", &e));
                }
            };
            let value = out.parameter().and_then(|p| p.value()).unwrap_or_default();
            let checkpoint: Checkpoint =
                serde_json::from_str(value).map_err(|e| CheckpointError::Malformed {
                    name: name.to_string(),
                    problem: e.to_string(),
                })?;
            if checkpoint.lsn().is_none() {
                return Err(CheckpointError::Malformed {
                    name: name.to_string(),
                    problem: format!("lsn {:?} is not an LSN", checkpoint.lsn),
                });
            }
            Ok(Some(checkpoint))
        })
    }

    fn write<'a>(&'a self, name: &'a str, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let value =
                serde_json::to_string(checkpoint).map_err(|e| CheckpointError::Malformed {
                    name: name.to_string(),
                    problem: e.to_string(),
                })?;
            self.client
                .put_parameter()
                .name(name)
                .value(value)
                .r#type(ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .map_err(|e| store_error(name, "PutParameter", &e))?;
            Ok(())
        })
    }
}
