//! The admin Lambda (`bootstrap` in the deployment zip): runs `provision`, `health`,
//! `drop` and `restart` events through the Lambda runtime API. It only wires things up: JSON
//! logs, the AWS config, where configs.yml comes from; the commands live in
//! [`pg_cdc_to_kinesis::admin`].
//!
//! Environment: `PG_CDC_CONFIG_SSM_PARAMETER` (an SSM parameter holding configs.yml)
//! or `PG_CDC_CONFIG` (a path; default: the bundled `configs.yml`), and
//! `PG_CDC_METRICS_NAMESPACE` (default `PgCdcToKinesis`).

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use pg_cdc_to_kinesis::admin::{self, AdminContext, AdminError, ConfigSource};
use pg_cdc_to_kinesis::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(LogFormat::Json);
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let ctx = AdminContext::from_env(aws);
    let source = ConfigSource::from_lookup(&|name| std::env::var(name).ok());
    let (ctx, source) = (&ctx, &source);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Loaded per invocation: an edited SSM parameter applies without a redeploy.
            let result = match source.load(&ctx.aws).await {
                Ok(config) => admin::handle(&config, ctx, event.payload).await,
                Err(e) => Err(e),
            };
            result.map_err(diagnostic)
        },
    ))
    .await
}

/// The error as `aws lambda invoke` shows it: a short type and the full message.
fn diagnostic(e: AdminError) -> Diagnostic {
    tracing::error!(error = %e, "admin command failed");
    let kind = match &e {
        AdminError::BadEvent { .. } => "BadEvent",
        AdminError::Config(_) | AdminError::ConfigParameter { .. } => "ConfigError",
        AdminError::Metrics { .. } => "MetricsError",
        AdminError::Report(_) => "AdminError",
    };
    Diagnostic {
        error_type: kind.to_string(),
        error_message: e.to_string(),
    }
}
