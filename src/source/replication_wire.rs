//! The replication sub-protocol's messages: the `START_REPLICATION ... LOGICAL` command
//! with safe quoting, XLogData (`w`) and primary keepalive (`k`) parsed out of
//! CopyData, and standby status updates (`r`) framed for sending.
//!
//! Owns the byte layout and the quoting rules only; it never reads or writes a socket
//! (that is [`super::ReplicationStream`]) and never decides which LSN to confirm.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::SourceError;
use crate::lsn::Lsn;

/// One message from the walsender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// A chunk of decoded output (one wal2json message). `data` is a view into the
    /// read buffer: holding it keeps that buffer chunk alive.
    ///
    /// `wal_start` and `wal_end` are equal: the position PostgreSQL attached when the
    /// plugin prepared the message. For wal2json v1 (one message per transaction) that
    /// is the transaction's *first* LSN, not its commit; the commit end is the JSON
    /// `nextlsn` (option `include-lsn`). For v2 it is the change's LSN, and the commit
    /// end for the `"C"` message. Confirm commit ends (or a keepalive's `wal_end` once
    /// everything received before it is delivered), never a v1 header.
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// The server's heartbeat. When `reply_requested`, answer with
    /// [`ReplicationStream::send_status`] promptly or `wal_sender_timeout` kills the stream.
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// `w` + wal_start + wal_end + send time.
const XLOG_HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// `k` + wal_end + send time + reply flag.
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// PostgreSQL's NAMEDATALEN - 1.
const MAX_SLOT_NAME_LEN: usize = 63;

/// Build the command. Slot names are restricted by PostgreSQL to `[a-z0-9_]`, so one
/// that is not is a config error, not something to escape. Option names become quoted
/// identifiers (keeping case and `-`) and values string literals. The replication
/// scanner has no backslash escapes, so doubling `'` is all a value needs; it has no
/// escape for `"` inside an identifier at all, so such a name is refused.
pub(crate) fn start_replication_command(
    slot: &str,
    start: Lsn,
    options: &[(String, String)],
) -> Result<String, SourceError> {
    validate_slot_name(slot)?;
    let mut cmd = format!("START_REPLICATION SLOT \"{slot}\" LOGICAL {start}");
    if !options.is_empty() {
        let mut parts = Vec::with_capacity(options.len());
        for (name, value) in options {
            if name.is_empty() || name.contains(['"', '\0']) || value.contains('\0') {
                return Err(SourceError::InvalidInput(format!(
                    "slot {slot:?}: option {name:?} = {value:?} is not allowed: a name must be non-empty without '\"', and neither may contain a NUL byte"
                )));
            }
            parts.push(format!("\"{name}\" '{}'", value.replace('\'', "''")));
        }
        cmd.push_str(" (");
        cmd.push_str(&parts.join(", "));
        cmd.push(')');
    }
    Ok(cmd)
}

pub(crate) fn validate_slot_name(slot: &str) -> Result<(), SourceError> {
    let ok_chars = slot
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if slot.is_empty() || slot.len() > MAX_SLOT_NAME_LEN || !ok_chars {
        return Err(SourceError::InvalidInput(format!(
            "invalid replication slot name {slot:?}: PostgreSQL allows 1 to {MAX_SLOT_NAME_LEN} lower-case letters, digits and underscores"
        )));
    }
    Ok(())
}

/// Parse a CopyData body from the walsender.
pub(crate) fn parse_copy_data(mut body: BytesMut) -> Result<ReplicationMessage, String> {
    match body.first() {
        Some(b'w') => {
            if body.len() < XLOG_HEADER_LEN {
                return Err(format!(
                    "XLogData message of {} bytes is shorter than its header",
                    body.len()
                ));
            }
            body.advance(1);
            let wal_start = Lsn(body.get_u64());
            let wal_end = Lsn(body.get_u64());
            let _send_time = body.get_i64();
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data: body.freeze(),
            })
        }
        Some(b'k') => {
            if body.len() < KEEPALIVE_LEN {
                return Err(format!(
                    "keepalive message of {} bytes is too short",
                    body.len()
                ));
            }
            body.advance(1);
            let wal_end = Lsn(body.get_u64());
            let _send_time = body.get_i64();
            let reply_requested = body.get_u8() != 0;
            Ok(ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
            })
        }
        Some(&other) => Err(format!("unknown CopyData message type {:?}", other as char)),
        None => Err("empty CopyData message".into()),
    }
}

/// Append a CopyData-wrapped standby status update to `out`.
pub(crate) fn put_status_update(
    out: &mut BytesMut,
    flushed: Lsn,
    now_micros: i64,
    reply_requested: bool,
) {
    const BODY: usize = 1 + 8 + 8 + 8 + 8 + 1;
    out.reserve(1 + 4 + BODY);
    out.put_u8(b'd');
    out.put_u32((4 + BODY) as u32);
    out.put_u8(b'r');
    out.put_u64(flushed.0); // written
    out.put_u64(flushed.0); // flushed
    out.put_u64(flushed.0); // applied
    out.put_i64(now_micros);
    out.put_u8(u8::from(reply_requested));
}

/// Now, in microseconds since 2000-01-01 UTC (the protocol's clock).
pub(super) fn pg_now_micros() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    i64::try_from(unix).unwrap_or(i64::MAX) - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn builds_start_replication_with_quoted_options() {
        let cmd = start_replication_command(
            "cdc_slot",
            Lsn(0x16_B374_D848),
            &opts(&[
                ("include-xids", "true"),
                ("add-tables", "public.o'brien"),
                ("Mixed Case", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cmd,
            "START_REPLICATION SLOT \"cdc_slot\" LOGICAL 16/B374D848 (\"include-xids\" 'true', \"add-tables\" 'public.o''brien', \"Mixed Case\" 'x')"
        );
        assert_eq!(
            start_replication_command("s", Lsn::ZERO, &[]).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 0/0"
        );
    }

    #[test]
    fn rejects_bad_slot_names_and_options() {
        for bad in [
            "",
            "Upper",
            "has space",
            "semi;colon",
            "quote\"",
            &"a".repeat(64),
        ] {
            let err = start_replication_command(bad, Lsn::ZERO, &[]).unwrap_err();
            assert!(!err.is_transient());
            assert!(
                err.to_string().contains("invalid replication slot name"),
                "{err}"
            );
        }
        assert!(start_replication_command("s", Lsn::ZERO, &opts(&[("", "v")])).is_err());
        assert!(start_replication_command("s", Lsn::ZERO, &opts(&[("we\"ird", "v")])).is_err());
        assert!(start_replication_command("s", Lsn::ZERO, &opts(&[("k", "v\0")])).is_err());
    }

    #[test]
    fn parses_xlogdata_without_copying_payload() {
        let mut body = BytesMut::new();
        body.put_u8(b'w');
        body.put_u64(0x10);
        body.put_u64(0x20);
        body.put_i64(123);
        body.put_slice(b"{\"change\":[]}");
        let msg = parse_copy_data(body).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::XLogData {
                wal_start: Lsn(0x10),
                wal_end: Lsn(0x20),
                data: Bytes::from_static(b"{\"change\":[]}")
            }
        );
    }

    #[test]
    fn parses_keepalive() {
        let mut body = BytesMut::new();
        body.put_u8(b'k');
        body.put_u64(0xABCD);
        body.put_i64(1);
        body.put_u8(1);
        assert_eq!(
            parse_copy_data(body).unwrap(),
            ReplicationMessage::Keepalive {
                wal_end: Lsn(0xABCD),
                reply_requested: true
            }
        );
    }

    #[test]
    fn rejects_short_or_unknown_copy_data() {
        assert!(parse_copy_data(BytesMut::from(&b"w\0\0"[..])).is_err());
        assert!(parse_copy_data(BytesMut::from(&b"k\0"[..])).is_err());
        assert!(parse_copy_data(BytesMut::from(&b"x"[..])).is_err());
        assert!(parse_copy_data(BytesMut::new()).is_err());
    }

    #[test]
    fn frames_status_update() {
        let mut out = BytesMut::new();
        put_status_update(&mut out, Lsn(0x1_0000_0002), 7, true);
        let mut expected = vec![b'd', 0, 0, 0, 38, b'r'];
        for _ in 0..3 {
            expected.extend_from_slice(&0x1_0000_0002u64.to_be_bytes());
        }
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.push(1);
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn clock_is_relative_to_2000() {
        // 2020-01-01 is 631_152_000 s after 2000-01-01; any sane clock is past it.
        assert!(pg_now_micros() > 631_152_000_000_000);
    }
}
