//! `PutRecords` in CBOR (`application/x-amz-cbor-1.1`), the encoding the AWS SDK for
//! Java uses with Kinesis: the request body written in one pass, each record's data as
//! a byte string as it is (no base64: a quarter fewer bytes to send and to sign), and
//! the answer read back, a successful one into its entries, an error into the JSON
//! document the SDK classifies.

use minicbor::data::Type;
use minicbor::Decoder;

use super::request::Answered;
use super::schedule::Unit;
use super::MAX_RECORDS_PER_REQUEST;

/// The content type of a CBOR request, and of Kinesis' answer to one.
pub const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// `{"StreamName":…,"Records":[{"Data":…,"PartitionKey":…,"ExplicitHashKey":…},…]}`
/// for `units`, in their order, as CBOR: definite lengths, each key as its text.
///
/// Written by hand rather than through `minicbor`'s encoder: the document's shape is
/// fixed, its keys are constants encoded once, and the encoder's per-item calls cost
/// more than the rest of the body together (the tests read it back with `minicbor`).
pub fn put_records(stream: &str, units: &[Unit]) -> Vec<u8> {
    let size = units.iter().fold(32 + stream.len(), |n, u| {
        n + 40
            + u.data().len()
            + u.partition_key().len()
            + u.explicit_hash_key().map_or(0, |k| 24 + k.len())
    });
    let mut out = Vec::with_capacity(size);
    out.push(MAP | 2);
    out.extend_from_slice(b"\x6aStreamName");
    push_text(&mut out, stream);
    out.extend_from_slice(b"\x67Records");
    head(&mut out, ARRAY, units.len());
    for unit in units {
        let key = unit.explicit_hash_key();
        out.push(MAP | if key.is_some() { 3 } else { 2 });
        out.extend_from_slice(b"\x64Data");
        head(&mut out, BYTES, unit.data().len());
        out.extend_from_slice(unit.data());
        out.extend_from_slice(b"\x6cPartitionKey");
        push_text(&mut out, unit.partition_key());
        if let Some(key) = key {
            out.extend_from_slice(b"\x6fExplicitHashKey");
            push_text(&mut out, key);
        }
    }
    out
}

/// CBOR's major types, in the high three bits of an item's first byte.
const BYTES: u8 = 2 << 5;
const TEXT: u8 = 3 << 5;
const ARRAY: u8 = 4 << 5;
const MAP: u8 = 5 << 5;

/// An item's head: its major type and `len`, in the fewest bytes.
fn head(out: &mut Vec<u8>, major: u8, len: usize) {
    match len {
        0..=23 => out.push(major | len as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, len as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

fn push_text(out: &mut Vec<u8>, s: &str) {
    head(out, TEXT, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The entries of a successful answer, `{"FailedRecordCount":…,"Records":[{
/// "SequenceNumber":…,"ShardId":…}|{"ErrorCode":…,"ErrorMessage":…},…],…}`, in
/// order: maps and arrays of definite or indefinite length, fields in any order, other
/// fields skipped, a null field absent. `None` if the body is not such a document.
pub fn answer(body: &[u8]) -> Option<Vec<Answered<'_>>> {
    let mut d = Decoder::new(body);
    let mut records = None;
    each_key(&mut d, |d, key| {
        match key {
            "Records" if records.is_none() => {
                // Room for a definite array's entries, as many as a request can hold at most.
                let room = d.probe().array().ok().flatten().unwrap_or(0);
                let room = usize::try_from(room)
                    .map_or(MAX_RECORDS_PER_REQUEST, |n| n.min(MAX_RECORDS_PER_REQUEST));
                let mut entries = Vec::with_capacity(room);
                let mut shard = "";
                each_item(d, |d| {
                    entries.push(accepted(d, &mut shard).or_else(|| entry(d))?);
                    Some(())
                })?;
                records = Some(entries);
            }
            "FailedRecordCount" => {
                d.i32().ok()?;
            }
            "EncryptionType" => {
                text(d)?;
            }
            _ => d.skip().ok()?,
        }
        Some(())
    })?;
    (d.position() == body.len()).then_some(records)?
}

/// An accepted record's entry as Kinesis writes it, `{"SequenceNumber": text,
/// "ShardId": text}` (a definite map, in that order), read without walking its keys
/// one by one; `None`, the decoder untouched, for any other entry, which [`entry`]
/// reads. Nearly every entry of nearly every answer is one of these. `shard` is the
/// shard named last: the same bytes again (the usual case) are not checked as UTF-8
/// again.
fn accepted<'b>(d: &mut Decoder<'b>, shard: &mut &'b str) -> Option<Answered<'b>> {
    const SEQUENCE: &[u8] = b"\xa2\x6eSequenceNumber";
    const SHARD: &[u8] = b"\x67ShardId";
    let at = d.position();
    let mut read = || {
        let start = d.position();
        d.input()
            .get(start..)?
            .starts_with(SEQUENCE)
            .then_some(())?;
        d.set_position(start + SEQUENCE.len());
        definite_text(d)?;
        let next = d.position();
        d.input().get(next..)?.starts_with(SHARD).then_some(())?;
        d.set_position(next + SHARD.len());
        let bytes = definite_text(d)?;
        if bytes != shard.as_bytes() {
            *shard = std::str::from_utf8(bytes).ok()?;
        }
        Some(*shard)
    };
    match read() {
        Some(shard) => Some(Answered {
            shard_id: Some(shard),
            error_code: None,
            error_message: None,
        }),
        None => {
            d.set_position(at);
            None
        }
    }
}

fn entry<'b>(d: &mut Decoder<'b>) -> Option<Answered<'b>> {
    let mut entry = Answered {
        shard_id: None,
        error_code: None,
        error_message: None,
    };
    each_key(d, |d, key| {
        match key {
            "ShardId" => entry.shard_id = text(d)?,
            "ErrorCode" => entry.error_code = text(d)?,
            "ErrorMessage" => entry.error_message = text(d)?,
            "SequenceNumber" => {
                definite_text(d).map(drop).or_else(|| text(d).map(drop))?;
            }
            _ => d.skip().ok()?,
        }
        Some(())
    })?;
    Some(entry)
}

/// An error answer's fields that are text (`__type`, `message`, …) as the awsJson
/// document the SDK reads errors from; `None` if the body is not a CBOR map.
pub fn error_as_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut d = Decoder::new(body);
    let mut fields = serde_json::Map::new();
    each_key(&mut d, |d, key| {
        match text(d) {
            Some(Some(value)) => {
                fields.insert(key.to_string(), value.into());
            }
            Some(None) => {}
            None => d.skip().ok()?,
        }
        Some(())
    })?;
    (d.position() == body.len()).then_some(())?;
    serde_json::to_vec(&fields).ok()
}

/// A text field (definite length), or `Some(None)` for null or undefined; `None`
/// (the decoder untouched) for anything else. Told by the item's first byte.
fn text<'b>(d: &mut Decoder<'b>) -> Option<Option<&'b str>> {
    let at = d.position();
    match *d.input().get(at)? {
        NULL | UNDEFINED => {
            d.set_position(at + 1);
            Some(None)
        }
        first if first & 0xe0 == TEXT => d.str().ok().map(Some),
        _ => None,
    }
}

/// The bytes of a definite-length text string (of fewer than 65,536 bytes), the
/// decoder moved past them, not checked as UTF-8: `SequenceNumber`, which the sink
/// has no use for, and `ShardId`, checked by the caller. `None`, the decoder
/// untouched, for anything else.
fn definite_text<'b>(d: &mut Decoder<'b>) -> Option<&'b [u8]> {
    let (input, at) = (d.input(), d.position());
    let head = *input.get(at)?;
    let (header, len) = match head {
        0x60..=0x77 => (1, usize::from(head & 0x1f)),
        0x78 => (2, usize::from(*input.get(at + 1)?)),
        0x79 => (
            3,
            usize::from(u16::from_be_bytes(
                input.get(at + 1..at + 3)?.try_into().ok()?,
            )),
        ),
        _ => return None,
    };
    let bytes = input.get(at + header..at + header + len)?;
    d.set_position(at + header + len);
    Some(bytes)
}

/// CBOR's null and undefined (simple values 22 and 23).
const NULL: u8 = 0xf6;
const UNDEFINED: u8 = 0xf7;

/// Calls `each` with each key of the map at `d`, definite or indefinite, its keys
/// text.
fn each_key<'b>(
    d: &mut Decoder<'b>,
    mut each: impl FnMut(&mut Decoder<'b>, &'b str) -> Option<()>,
) -> Option<()> {
    match d.map().ok()? {
        Some(n) => (0..n).try_for_each(|_| {
            let key = d.str().ok()?;
            each(d, key)
        }),
        None => loop {
            if d.datatype().ok()? == Type::Break {
                d.set_position(d.position() + 1);
                return Some(());
            }
            let key = d.str().ok()?;
            each(d, key)?;
        },
    }
}

/// Calls `each` for each item of the array at `d`, definite or indefinite.
fn each_item<'b>(
    d: &mut Decoder<'b>,
    mut each: impl FnMut(&mut Decoder<'b>) -> Option<()>,
) -> Option<()> {
    match d.array().ok()? {
        Some(n) => (0..n).try_for_each(|_| each(d)),
        None => loop {
            if d.datatype().ok()? == Type::Break {
                d.set_position(d.position() + 1);
                return Some(());
            }
            each(d)?;
        },
    }
}

#[cfg(test)]
pub(in crate::sink::kinesis) mod tests;
