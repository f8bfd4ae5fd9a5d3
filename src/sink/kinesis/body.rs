//! The `PutRecords` request body, written in one pass from the units into one buffer
//! sized up front: in CBOR (`cbor`), or in JSON with each record's bytes
//! base64-encoded straight into it.
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
use std::sync::atomic::{AtomicBool, Ordering};

use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use super::cbor;
use super::schedule::Unit;
use crate::config::WireFormat;
use crate::record::push_json_str;

/// The body for `units` in `format`, with its content type.
pub fn prepare(format: WireFormat, stream: &str, units: &[Unit]) -> Body {
    match format {
        WireFormat::Cbor => Body {
            bytes: Bytes::from(cbor::put_records(stream, units)),
            content_type: cbor::CONTENT_TYPE,
        },
        WireFormat::Json => Body {
            bytes: put_records(stream, units),
            content_type: JSON_CONTENT_TYPE,
        },
    }
}

/// A slot's wire format: as configured, until a successful answer to a CBOR request
/// cannot be read; JSON from then on, for the rest of the run. kinesalite, for one,
/// cuts its CBOR answers after 16 KiB (about 150 records), so the records of every
/// larger request would be sent again and again.
#[derive(Debug)]
pub struct Wire {
    configured: WireFormat,
    json_only: AtomicBool,
}

impl Wire {
    pub fn new(configured: WireFormat) -> Self {
        Wire {
            configured,
            json_only: AtomicBool::new(false),
        }
    }

    pub fn format(&self) -> WireFormat {
        match self.json_only.load(Ordering::Relaxed) {
            true => WireFormat::Json,
            false => self.configured,
        }
    }

    /// JSON from now on, after an unreadable answer to a CBOR request; `true` the
    /// first time only (to say so once).
    pub fn fall_back(&self) -> bool {
        self.configured == WireFormat::Cbor && !self.json_only.swap(true, Ordering::Relaxed)
    }
}

/// The SDK's own content type for `PutRecords` (awsJson 1.1).
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

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

/// Puts a prepared body in the request before it is signed, with its length and
/// content type.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    pub content_type: &'static str,
}

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
        let headers = request.headers_mut();
        headers.insert("Content-Length", self.bytes.len().to_string());
        headers.insert("Content-Type", self.content_type);
        *request.body_mut() = SdkBody::from(self.bytes.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
