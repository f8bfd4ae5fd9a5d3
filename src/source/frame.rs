//! Backend message framing: one message (type byte, length, body) cut off the front of
//! the read buffer without copying, NUL-terminated strings, and the fields of an
//! `ErrorResponse` / `NoticeResponse`.
//!
//! Owns the byte layout only: it never reads a socket (that is `conn`) and refuses an
//! impossible length instead of waiting for a gigabyte.

use bytes::{Buf, BytesMut};

use super::ServerError;

/// PostgreSQL never sends a message larger than 1 GB; anything longer is garbage.
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// One backend message: its type byte and its body (header stripped), cut out of the
/// read buffer without copying.
pub(crate) struct Frame {
    pub tag: u8,
    pub body: BytesMut,
}

/// Cut one complete message off the front of `buf`, or `None` if more bytes are needed.
pub(crate) fn take_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(format!(
            "message {:?} has impossible length {len}",
            tag as char
        ));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut body = buf.split_to(total);
    body.advance(5);
    Ok(Some(Frame { tag, body }))
}

/// Read a NUL-terminated string off the front of `buf`.
pub(crate) fn take_cstr(buf: &mut BytesMut) -> Option<String> {
    let end = buf.iter().position(|&b| b == 0)?;
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end + 1);
    Some(s)
}

/// Parse the body of an `ErrorResponse` / `NoticeResponse`: (type byte, cstring) pairs
/// ending with a zero byte.
pub(crate) fn parse_error_fields(mut body: BytesMut) -> ServerError {
    let mut e = ServerError::default();
    let mut localized_severity = None;
    while let Some(&kind) = body.first() {
        body.advance(1);
        if kind == 0 {
            break;
        }
        let Some(value) = take_cstr(&mut body) else {
            break;
        };
        match kind {
            b'V' => e.severity = value,
            b'S' => localized_severity = Some(value),
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity.unwrap_or_else(|| "ERROR".into());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_split_across_reads() {
        let mut wire = frame(b'd', b"hello");
        wire.extend(frame(b'Z', b"I"));
        let mut buf = BytesMut::new();
        buf.put_slice(&wire[..3]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.put_slice(&wire[3..8]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.put_slice(&wire[8..]);
        let f = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'd', &b"hello"[..]));
        let f = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'Z', &b"I"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_impossible_lengths() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(take_frame(&mut buf).is_err());
        let mut buf = BytesMut::from(&[b'd', 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert!(take_frame(&mut buf).is_err());
    }

    #[test]
    fn parses_error_fields() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0Hcheck it\0Rauth_failed\0\0";
        let e = parse_error_fields(BytesMut::from(&body[..]));
        assert_eq!(e.severity, "FATAL");
        assert_eq!(e.code, "28P01");
        assert_eq!(e.message, "password authentication failed for user \"x\"");
        assert_eq!(e.hint.as_deref(), Some("check it"));
        assert_eq!(e.detail, None);
    }

    #[test]
    fn truncated_error_fields_do_not_panic() {
        let e = parse_error_fields(BytesMut::from(&b"SERROR\0Mno termin"[..]));
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.message, "");
    }
}
