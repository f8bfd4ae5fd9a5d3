//! The `PutRecords` answer read in one pass: each record's shard id or error code
//! taken from the body as it stands.
//!
//! The SDK's own reader built an output with two strings a record (sequence number
//! and shard id) through its generic JSON deserializer: about a tenth of the
//! streamer's instructions per row. [`Answer`] goes with each request as an
//! interceptor. Before the request is serialized, it puts a reader in front of the
//! operation's own deserializer:
//! - a successful answer (2xx) is read here into the request's [`Outcome`], and the
//!   SDK gets an output without records;
//! - anything else (an error answer, or a body this reader cannot read) goes to the
//!   SDK's deserializer as before, so errors and their classification do not change.
//!
//! A CBOR answer (to a CBOR request) is read the same way (`cbor::answer`); the SDK
//! reads only JSON, so a CBOR error answer reaches it as the same fields in JSON.
//!
//! The fields the sink does not use are still typed as the SDK types them, so a body
//! the SDK would refuse is refused here too and left to it. Each deserialization
//! sets the outcome afresh, so only the attempt the SDK returns counts (the sink's
//! client makes one attempt; the sink itself retries).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::config::interceptors::BeforeSerializationInterceptorContextMut;
use aws_sdk_kinesis::config::{
    ConfigBag, FrozenLayer, Intercept, RuntimeComponents, RuntimePlugin,
};
use aws_sdk_kinesis::error::BoxError;
use aws_sdk_kinesis::operation::put_records::{PutRecords, PutRecordsOutput};
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::body::SdkBody;
use serde::Deserialize;

use super::cbor;
use super::request::{self, Outcome};

/// Reads the answer to one request of `sent` records; [`Answer::take`] gives its
/// outcome once the SDK has returned.
#[derive(Debug, Clone)]
pub struct Answer {
    sent: usize,
    outcome: Arc<Mutex<Option<Outcome>>>,
    /// A successful answer in CBOR that this reader could not read.
    cbor_unreadable: Arc<AtomicBool>,
}

impl Answer {
    pub fn new(sent: usize) -> Self {
        Answer {
            sent,
            outcome: Arc::default(),
            cbor_unreadable: Arc::default(),
        }
    }

    /// Whether the answer was a successful one in CBOR that could not be read (the
    /// request is then sent again, see `body::Wire`).
    pub fn cbor_unreadable(&self) -> bool {
        self.cbor_unreadable.load(Ordering::Relaxed)
    }

    /// The outcome read from a successful answer, if this reader read one. A
    /// poisoned lock gives `None`: the SDK's output, which has no records, then
    /// sends the whole request again.
    pub fn take(&self) -> Option<Outcome> {
        self.outcome.lock().map_or(None, |mut o| o.take())
    }
}

impl Intercept for Answer {
    fn name(&self) -> &'static str {
        "PutRecordsAnswer"
    }

    /// Once per operation (before the SDK's retry loop): the reader takes the
    /// place of the operation's deserializer, and falls back on it. Should the SDK's
    /// operation ever hold none, the reader stays out and the SDK reads the answer.
    fn modify_before_serialization(
        &self,
        _: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(sdk) = SDK
            .as_ref()
            .and_then(|layer| layer.load::<SharedResponseDeserializer>())
        {
            cfg.interceptor_state()
                .store_put(SharedResponseDeserializer::new(Reader {
                    sdk,
                    answer: self.clone(),
                }));
        }
        Ok(())
    }
}

/// The `PutRecords` operation's own configuration (the SDK's runtime plugin for it),
/// which holds its response deserializer.
static SDK: LazyLock<Option<FrozenLayer>> = LazyLock::new(|| PutRecords::new().config());

/// The part of the answer the sink uses: `{"Records":[{"ShardId":…}|{"ErrorCode":…,
/// "ErrorMessage":…},…]}`. Other fields (`SequenceNumber`, `FailedRecordCount`,
/// `EncryptionType`) are skipped.
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<Entry<'a>>,
    #[serde(rename = "FailedRecordCount", default)]
    _failed: Option<i32>,
    #[serde(rename = "EncryptionType", borrow, default)]
    _encryption: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "SequenceNumber", borrow, default)]
    _sequence_number: Option<Cow<'a, str>>,
    #[serde(rename = "ShardId", borrow, default)]
    shard_id: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorCode", borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorMessage", borrow, default)]
    error_message: Option<Cow<'a, str>>,
}

#[derive(Debug)]
struct Reader {
    /// The SDK's deserializer for `PutRecords`.
    sdk: &'static SharedResponseDeserializer,
    answer: Answer,
}

impl Reader {
    /// The outcome of a successful answer, or `None` when this is not one this
    /// reader reads (the SDK's deserializer then has it).
    fn read(&self, response: &HttpResponse) -> Option<Outcome> {
        if !response.status().is_success() {
            return None;
        }
        let body = response.body().bytes()?;
        if is_cbor(response) {
            let entries = cbor::answer(body)?;
            return Some(request::classify_records(
                self.answer.sent,
                entries.into_iter(),
            ));
        }
        if let Some(shards) = all_accepted(body) {
            return Some(request::classify_records(
                self.answer.sent,
                shards.into_iter().map(|shard| request::Answered {
                    shard_id: Some(shard),
                    error_code: None,
                    error_message: None,
                }),
            ));
        }
        let doc: Document<'_> = serde_json::from_slice(body).ok()?;
        Some(request::classify_records(
            self.answer.sent,
            doc.records.iter().map(|e| request::Answered {
                shard_id: e.shard_id.as_deref(),
                error_code: e.error_code.as_deref(),
                error_message: e.error_message.as_deref(),
            }),
        ))
    }
}

impl DeserializeResponse for Reader {
    fn deserialize_streaming_with_config(
        &self,
        response: &mut HttpResponse,
        cfg: &ConfigBag,
    ) -> Option<Result<Output, OrchestratorError<Error>>> {
        self.sdk.deserialize_streaming_with_config(response, cfg)
    }

    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        let outcome = self.read(response);
        let read = outcome.is_some();
        if let Ok(mut slot) = self.answer.outcome.lock() {
            *slot = outcome;
        }
        if !read {
            if response.status().is_success() && is_cbor(response) {
                self.answer.cbor_unreadable.store(true, Ordering::Relaxed);
            }
            return match as_json(response) {
                Some(json) => self.sdk.deserialize_nonstreaming_with_config(&json, cfg),
                None => self.sdk.deserialize_nonstreaming_with_config(response, cfg),
            };
        }
        let output = PutRecordsOutput::builder()
            .set_records(Some(Vec::new()))
            .build()
            .map_err(OrchestratorError::other)?;
        Ok(Output::erase(output))
    }
}

fn is_cbor(response: &HttpResponse) -> bool {
    response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.starts_with(cbor::CONTENT_TYPE))
}

/// A CBOR error answer as the SDK reads one: its text fields (`__type`, `message`)
/// in JSON, with the same status and headers. `None` for any other answer.
fn as_json(response: &HttpResponse) -> Option<HttpResponse> {
    if response.status().is_success() || !is_cbor(response) {
        return None;
    }
    let json = cbor::error_as_json(response.body().bytes()?)?;
    let mut out = HttpResponse::new(response.status(), SdkBody::from(json));
    for (name, value) in response.headers() {
        if !name.eq_ignore_ascii_case("content-type")
            && !name.eq_ignore_ascii_case("content-length")
        {
            out.headers_mut()
                .append(name.to_string(), value.to_string());
        }
    }
    out.headers_mut()
        .insert("content-type", super::body::JSON_CONTENT_TYPE);
    Some(out)
}

/// The usual answer, read without serde: every record accepted, in compact form:
/// `{"FailedRecordCount":N,"Records":[{"SequenceNumber":"…","ShardId":
/// "…"},…],"EncryptionType":"…"}`, top-level fields in any order, no whitespace, no
/// escapes. Gives the shard ids in order; anything else is `None` (serde reads it).
fn all_accepted(body: &[u8]) -> Option<Vec<&str>> {
    // One check of the whole body: every string below is then ASCII without a
    // control byte, and its text is its value once it has no backslash.
    let text = std::str::from_utf8(body).ok().filter(|t| t.is_ascii())?;
    if crate::decode::bytes::has_control_byte(body) {
        return None;
    }
    let mut c = Cursor { t: text, i: 0 };
    c.eat(b"{")?;
    let mut shards = None;
    loop {
        c.eat(b"\"")?;
        match c.plain()? {
            "Records" if shards.is_none() => {
                c.eat(b":[")?;
                shards = Some(c.accepted_entries()?);
            }
            "FailedRecordCount" => {
                c.eat(b":")?;
                c.count()?;
            }
            "EncryptionType" => {
                c.eat(b":\"")?;
                c.plain()?;
            }
            _ => return None,
        }
        if c.eat(b",").is_none() {
            break;
        }
    }
    c.eat(b"}")?;
    (c.i == body.len()).then_some(())?;
    shards
}

/// A position in an answer (ASCII without control bytes).
struct Cursor<'a> {
    t: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn b(&self) -> &'a [u8] {
        self.t.as_bytes()
    }

    /// Step over `bytes` if they come next.
    fn eat(&mut self, bytes: &[u8]) -> Option<()> {
        self.b()[self.i..]
            .starts_with(bytes)
            .then(|| self.i += bytes.len())
    }

    /// The rest of a string up to its closing quote (stepped over), without a
    /// backslash, so its text is its value.
    fn plain(&mut self) -> Option<&'a str> {
        let end = crate::decode::bytes::quote_or_backslash(&self.b()[self.i..])?;
        if self.b()[self.i + end] != b'"' {
            return None;
        }
        let text = self.t.get(self.i..self.i + end)?;
        self.i += end + 1;
        Some(text)
    }

    /// A count as the SDK reads it: a JSON number (no leading zero) within `i32`.
    fn count(&mut self) -> Option<()> {
        let n = self.b()[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let digits = self.t.get(self.i..self.i + n)?;
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        digits.parse::<i32>().ok()?;
        self.i += n;
        Some(())
    }

    /// `{"SequenceNumber":"…","ShardId":"…"},…]` (after the `[`): the shard ids.
    fn accepted_entries(&mut self) -> Option<Vec<&'a str>> {
        let mut shards = Vec::new();
        if self.eat(b"]").is_some() {
            return Some(shards);
        }
        loop {
            self.eat(br#"{"SequenceNumber":""#)?;
            self.plain()?;
            self.eat(br#","ShardId":""#)?;
            shards.push(self.plain()?);
            self.eat(b"}")?;
            if self.eat(b",").is_none() {
                self.eat(b"]")?;
                return Some(shards);
            }
        }
    }
}

#[cfg(test)]
mod tests;
