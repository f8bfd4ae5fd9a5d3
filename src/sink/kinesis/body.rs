//! The `PutRecords` request body, written in one pass from the units: each record's
//! bytes base64-encoded straight into one buffer sized up front.
//!
//! The SDK's own serializer copied each record into a `Blob`, then grew its JSON
//! buffer by doubling: per request that touched about twice the body in fresh
//! memory, and the page faults and copies were a tenth of the streamer's CPU. The
//! request still goes through the SDK (endpoint, credentials, signing, timeouts,
//! errors): it is sent with an empty record list, and [`Body`] puts this body in
//! its place before signing, so the signature covers what is sent.

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use super::schedule::Unit;
use crate::record::push_json_str;

/// `{"StreamName":…,"Records":[{"Data":…,"PartitionKey":…,"ExplicitHashKey":…},…]}`
/// for `units`, in their order: the same document the SDK writes for them.
pub fn put_records(stream: &str, units: &[Unit]) -> Bytes {
    let size = units.iter().fold(32 + stream.len(), |n, u| {
        n + 40
            + u.data().len().div_ceil(3) * 4
            + u.partition_key().len()
            + u.explicit_hash_key().map_or(0, |k| 24 + k.len())
    });
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(br#"{"StreamName":"#);
    push_json_str(&mut out, stream);
    out.extend_from_slice(br#","Records":["#);
    for (i, unit) in units.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"Data":""#);
        base64_simd::STANDARD.encode_append(unit.data(), &mut out);
        out.extend_from_slice(br#"","PartitionKey":"#);
        push_json_str(&mut out, unit.partition_key());
        if let Some(key) = unit.explicit_hash_key() {
            out.extend_from_slice(br#","ExplicitHashKey":"#);
            push_json_str(&mut out, key);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// Puts a prepared body in the request before it is signed, with its length.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl Intercept for Body {
    fn name(&self) -> &'static str {
        "PutRecordsBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        request
            .headers_mut()
            .insert("Content-Length", self.0.len().to_string());
        *request.body_mut() = SdkBody::from(self.0.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
