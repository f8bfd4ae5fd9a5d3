//! Publishing metric data to CloudWatch.
//!
//! Owns the wire format of `PutMetricData`: the SDK builds, signs and sends the
//! request, but its body is rewritten to CloudWatch's query protocol (see
//! [`put_metric_data`]). It never decides which values to publish.

use aws_sdk_cloudwatch::types::MetricDatum;

use super::AdminError;

/// Datums per PutMetricData request: CloudWatch's classic limit, safe everywhere.
const METRICS_PER_REQUEST: usize = 20;

/// Publish `data` in `namespace`, in requests of at most [`METRICS_PER_REQUEST`].
pub(super) async fn put_metric_data(
    aws: &aws_config::SdkConfig,
    namespace: &str,
    data: &[MetricDatum],
) -> Result<(), AdminError> {
    let client = aws_sdk_cloudwatch::Client::new(aws);
    for chunk in data.chunks(METRICS_PER_REQUEST) {
        let body = query_body(namespace, chunk);
        client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .customize()
            // The SDK speaks CloudWatch's newer RPC-v2 CBOR protocol; CloudWatch also
            // accepts its original query protocol, which moto and other emulators
            // understand too. The request is rewritten before signing, so endpoint,
            // credentials, retries and SigV4 stay the SDK's; PutMetricData's reply has
            // no fields, so the reply format does not matter.
            .mutate_request(move |req| {
                let uri = req.uri().to_string();
                let root = uri
                    .split_once("/service/")
                    .map(|(root, _)| format!("{root}/"))
                    .unwrap_or(uri);
                let _ = req.set_uri(root);
                let headers = req.headers_mut();
                headers.remove("smithy-protocol");
                headers.insert("content-type", "application/x-www-form-urlencoded");
                headers.insert("accept", "text/xml");
                headers.insert("content-length", body.len().to_string());
                *req.body_mut() = body.clone().into();
            })
            .send()
            .await
            .map_err(|e| AdminError::Metrics {
                namespace: namespace.to_string(),
                reason: metrics_error(&e),
            })?;
    }
    Ok(())
}

/// The error with the HTTP status and the start of the reply when CloudWatch
/// answered: query-protocol errors are XML the SDK cannot decode.
fn metrics_error<E: std::error::Error + 'static>(
    e: &aws_sdk_cloudwatch::error::SdkError<E, aws_sdk_cloudwatch::config::http::HttpResponse>,
) -> String {
    match e.raw_response() {
        Some(raw) => {
            let body = raw
                .body()
                .bytes()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
            format!("HTTP {}: {body}", raw.status().as_u16())
        }
        None => crate::telemetry::error_chain(e),
    }
}

/// `PutMetricData` in the query protocol (form-encoded).
fn query_body(namespace: &str, data: &[MetricDatum]) -> String {
    let mut fields = vec![
        ("Action".to_string(), "PutMetricData".to_string()),
        ("Version".to_string(), "2010-08-01".to_string()),
        ("Namespace".to_string(), namespace.to_string()),
    ];
    for (i, d) in data.iter().enumerate() {
        let p = format!("MetricData.member.{}", i + 1);
        fields.push((
            format!("{p}.MetricName"),
            d.metric_name().unwrap_or_default().to_string(),
        ));
        for (j, dim) in d.dimensions().iter().enumerate() {
            let q = format!("{p}.Dimensions.member.{}", j + 1);
            fields.push((
                format!("{q}.Name"),
                dim.name().unwrap_or_default().to_string(),
            ));
            fields.push((
                format!("{q}.Value"),
                dim.value().unwrap_or_default().to_string(),
            ));
        }
        if let Some(v) = d.value() {
            fields.push((format!("{p}.Value"), v.to_string()));
        }
        if let Some(u) = d.unit() {
            fields.push((format!("{p}.Unit"), u.as_str().to_string()));
        }
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 unreserved characters stay; everything else is %-encoded (SigV4's rule,
/// and what CloudWatch's form encoding accepts).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn form_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::{Dimension, StandardUnit};

    #[test]
    fn query_body_encodes_every_datum() {
        let dim = Dimension::builder().name("Slot").value("a b").build();
        let datum = |name: &str, value: f64, unit: StandardUnit| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(dim.clone())
                .value(value)
                .unit(unit)
                .build()
        };
        let body = query_body(
            "Ns/1",
            &[
                datum("SlotActive", 1.0, StandardUnit::Count),
                datum("ReplicationLagBytes", 7.0, StandardUnit::Bytes),
            ],
        );
        assert_eq!(
            body,
            "Action=PutMetricData&Version=2010-08-01&Namespace=Ns%2F1\
             &MetricData.member.1.MetricName=SlotActive\
             &MetricData.member.1.Dimensions.member.1.Name=Slot\
             &MetricData.member.1.Dimensions.member.1.Value=a%20b\
             &MetricData.member.1.Value=1&MetricData.member.1.Unit=Count\
             &MetricData.member.2.MetricName=ReplicationLagBytes\
             &MetricData.member.2.Dimensions.member.1.Name=Slot\
             &MetricData.member.2.Dimensions.member.1.Value=a%20b\
             &MetricData.member.2.Value=7&MetricData.member.2.Unit=Bytes"
        );
    }
}
