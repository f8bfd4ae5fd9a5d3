//! Property tests of both decoders: generated wal2json transactions (format-version 2,
//! format-version 1 whole and in chunks) decode to exactly what was generated, every
//! column value byte for byte as its JSON text; random bytes and truncated, flipped or
//! padded documents give `Ok` or a typed [`DecodeError`] naming the message's LSN,
//! never a panic, and never half a document's events.
//!
//! Case counts are bounded (256 per property) so the suite stays fast in CI. The
//! generated transactions and their wal2json rendering are `txn`'s.

mod txn;

use proptest::prelude::*;

use super::{decoder_for, Change, DecodeError, Event, FormatVersion};
use crate::lsn::Lsn;
use txn::{txn, Col, Messages, Row, Txn};

const CASES: u32 = 256;

fn check_columns(got: &[super::Column], want: &[Col]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        prop_assert_eq!(&g.name, &w.name);
        // Byte-exact: the JSON text as written, escapes and digits untouched.
        prop_assert_eq!(g.value.get(), w.value.as_str());
    }
    Ok(())
}

fn check_change(c: &Change, row: &Row, lsn: Option<Lsn>) -> Result<(), TestCaseError> {
    prop_assert_eq!(c.kind, row.kind);
    prop_assert_eq!(&c.schema, &row.schema);
    prop_assert_eq!(&c.table, &row.table);
    prop_assert_eq!(&c.pk[..], &row.pk[..]);
    prop_assert_eq!(c.lsn, lsn);
    check_columns(&c.columns, &row.columns)?;
    check_columns(&c.identity, &row.identity)
}

/// Feed `messages` to a fresh decoder for `format` and check the events against `txn`.
fn decodes_to(
    format: FormatVersion,
    messages: &[(Lsn, Vec<u8>)],
    txn: &Txn,
    row_lsns: bool,
) -> Result<(), TestCaseError> {
    let mut decoder = decoder_for(format);
    let mut events = Vec::new();
    for (lsn, data) in messages {
        if let Err(e) = decoder.feed(*lsn, data, &mut events) {
            return Err(TestCaseError::fail(format!(
                "{e}\nmessage: {}",
                String::from_utf8_lossy(data)
            )));
        }
    }
    prop_assert_eq!(events.len(), txn.rows.len() + 2);
    match &events[0] {
        Event::Begin {
            xid,
            timestamp,
            txn_lsn,
        } => {
            prop_assert_eq!(*xid, Some(txn.xid));
            prop_assert_eq!(timestamp.as_deref(), Some(txn.timestamp.as_str()));
            prop_assert_eq!(*txn_lsn, Some(txn.next_lsn()));
        }
        other => prop_assert!(false, "first event {:?}", other),
    }
    for (i, row) in txn.rows.iter().enumerate() {
        match &events[i + 1] {
            Event::Change(c) => check_change(c, row, row_lsns.then(|| txn.lsn(i + 1)))?,
            other => prop_assert!(false, "event {} is {:?}", i + 1, other),
        }
    }
    match events.last() {
        Some(Event::Commit { end_lsn }) => prop_assert_eq!(*end_lsn, txn.next_lsn()),
        other => prop_assert!(false, "last event {:?}", other),
    }
    Ok(())
}

/// How a document is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                prop::sample::select(vec![
                    b"{".to_vec(),
                    b"]".to_vec(),
                    b",".to_vec(),
                    b"\"".to_vec(),
                    b"\\".to_vec(),
                    b"]}".to_vec(),
                    b"\xff".to_vec(),
                    b"\xc3".to_vec(),
                    b"null".to_vec(),
                    b"\\u".to_vec(),
                    b"1e99999".to_vec(),
                ]),
            ],
        )
            .prop_map(|(i, g)| Mutation::Insert(i, g)),
    ]
}

fn apply(m: &Mutation, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    match m {
        Mutation::Truncate(i) => d.truncate(i.index(data.len() + 1)),
        Mutation::Flip(i, b) if !d.is_empty() => {
            let at = i.index(d.len());
            d[at] = if d[at] == *b { !*b } else { *b };
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, garbage) => {
            let at = i.index(data.len() + 1);
            d.splice(at..at, garbage.iter().copied());
        }
    }
    d
}

/// Feed every message (the chosen ones damaged) and require of each call: `Ok`, or a
/// typed error naming the message's LSN that added no event.
fn never_panics(format: FormatVersion, messages: &[(Lsn, Vec<u8>)]) -> Result<(), TestCaseError> {
    let mut decoder = decoder_for(format);
    let mut events = Vec::new();
    for (lsn, data) in messages {
        let before = events.len();
        match decoder.feed(*lsn, data, &mut events) {
            Ok(()) => {}
            Err(e) => {
                let at = match &e {
                    DecodeError::Json { lsn, .. } | DecodeError::Shape { lsn, .. } => *lsn,
                };
                prop_assert_eq!(at, *lsn);
                prop_assert!(e.to_string().contains(&lsn.to_string()), "{}", e);
                prop_assert_eq!(events.len(), before, "events added before the error {}", e);
            }
        }
    }
    Ok(())
}

fn formats_and_messages(txn: &Txn) -> [(FormatVersion, Messages); 3] {
    [
        (FormatVersion::V2, txn.v2_messages()),
        (FormatVersion::V1, txn.v1_whole()),
        (FormatVersion::V1, txn.v1_chunks()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn generated_v2_transactions_decode_to_the_exact_values(txn in txn()) {
        decodes_to(FormatVersion::V2, &txn.v2_messages(), &txn, true)?;
    }

    #[test]
    fn generated_v1_documents_whole_and_chunked_decode_to_the_exact_values(txn in txn()) {
        decodes_to(FormatVersion::V1, &txn.v1_whole(), &txn, false)?;
        decodes_to(FormatVersion::V1, &txn.v1_chunks(), &txn, false)?;
    }

    #[test]
    fn damaged_documents_give_a_typed_error_or_decode_never_a_panic(
        txn in txn(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
    ) {
        for (format, mut messages) in formats_and_messages(&txn) {
            for (which, m) in &damage {
                let i = which.index(messages.len());
                messages[i].1 = apply(m, &messages[i].1);
            }
            never_panics(format, &messages)?;
        }
    }

    #[test]
    fn random_bytes_give_a_typed_error_or_decode_never_a_panic(
        inputs in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                "[\\[\\]{}:,\"\\\\ a-z0-9.eE+-]{0,120}".prop_map(String::into_bytes),
            ],
            1..6,
        ),
    ) {
        let messages: Messages = inputs
            .into_iter()
            .enumerate()
            .map(|(i, d)| (Lsn(0x1000 + i as u64), d))
            .collect();
        for format in [FormatVersion::V1, FormatVersion::V2] {
            never_panics(format, &messages)?;
        }
    }
}
