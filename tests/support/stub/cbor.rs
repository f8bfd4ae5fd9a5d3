//! CBOR (`application/x-amz-cbor-1.1`) as the stub speaks it: a PutRecords request
//! read into the same entries as its JSON form, and any answer's JSON written again as
//! CBOR, the way Kinesis answers a CBOR request.
//!
//! Must never panic on malformed input: a request it cannot read is an `Err` with the
//! reason, which the stub answers as `SerializationException`.

use minicbor::data::Type;
use minicbor::Decoder;

/// The content type of a CBOR request and its answer.
pub(super) const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// One record of a PutRecords request, its data as sent.
pub(super) struct Put {
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
}

/// A PutRecords request: `(StreamName, StreamARN, Records)`.
pub(super) type Request = (Option<String>, Option<String>, Vec<Put>);

type Fail = String;

fn fail(e: impl std::fmt::Display) -> Fail {
    format!("not a PutRecords document in CBOR: {e}")
}

/// Calls `each` with each key of the map at `d` (definite or indefinite length).
fn each_key<'b>(
    d: &mut Decoder<'b>,
    mut each: impl FnMut(&mut Decoder<'b>, &'b str) -> Result<(), Fail>,
) -> Result<(), Fail> {
    match d.map().map_err(fail)? {
        Some(n) => {
            for _ in 0..n {
                let key = d.str().map_err(fail)?;
                each(d, key)?;
            }
        }
        None => loop {
            if d.datatype().map_err(fail)? == Type::Break {
                d.set_position(d.position() + 1);
                break;
            }
            let key = d.str().map_err(fail)?;
            each(d, key)?;
        },
    }
    Ok(())
}

/// Calls `each` for each item of the array at `d`.
fn each_item<'b>(
    d: &mut Decoder<'b>,
    mut each: impl FnMut(&mut Decoder<'b>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    match d.array().map_err(fail)? {
        Some(n) => (0..n).try_for_each(|_| each(d)),
        None => loop {
            if d.datatype().map_err(fail)? == Type::Break {
                d.set_position(d.position() + 1);
                return Ok(());
            }
            each(d)?;
        },
    }
}

pub(super) fn put_records(body: &[u8]) -> Result<Request, Fail> {
    let mut d = Decoder::new(body);
    let (mut name, mut arn, mut records) = (None, None, Vec::new());
    each_key(&mut d, |d, key| {
        match key {
            "StreamName" => name = Some(d.str().map_err(fail)?.to_string()),
            "StreamARN" => arn = Some(d.str().map_err(fail)?.to_string()),
            "Records" => each_item(d, |d| {
                let mut put = Put {
                    data: Vec::new(),
                    partition_key: String::new(),
                    explicit_hash_key: None,
                };
                each_key(d, |d, key| {
                    match key {
                        "Data" => put.data = d.bytes().map_err(fail)?.to_vec(),
                        "PartitionKey" => put.partition_key = d.str().map_err(fail)?.to_string(),
                        "ExplicitHashKey" => {
                            put.explicit_hash_key = Some(d.str().map_err(fail)?.to_string())
                        }
                        _ => d.skip().map_err(fail)?,
                    }
                    Ok(())
                })?;
                records.push(put);
                Ok(())
            })?,
            _ => d.skip().map_err(fail)?,
        }
        Ok(())
    })?;
    if d.position() != body.len() {
        return Err(fail("bytes after the document"));
    }
    Ok((name, arn, records))
}

/// `json` (an answer's body) as CBOR: maps, arrays, text, integers, floats,
/// booleans and null as themselves.
pub(super) fn from_json(json: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let mut out = Vec::with_capacity(json.len());
    write(&mut minicbor::Encoder::new(&mut out), &value).ok()?;
    Some(out)
}

fn write(
    e: &mut minicbor::Encoder<&mut Vec<u8>>,
    value: &serde_json::Value,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    use serde_json::Value;
    match value {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => {
                e.u64(u)?;
            }
            (None, Some(i)) => {
                e.i64(i)?;
            }
            _ => {
                e.f64(n.as_f64().unwrap_or_default())?;
            }
        },
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            items.iter().try_for_each(|v| write(e, v))?;
        }
        Value::Object(fields) => {
            e.map(fields.len() as u64)?;
            for (k, v) in fields {
                e.str(k)?;
                write(e, v)?;
            }
        }
    }
    Ok(())
}
