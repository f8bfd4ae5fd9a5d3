//! Property tests of both decoders: generated wal2json transactions (format-version 2,
//! format-version 1 whole and in chunks) decode to exactly what was generated, every
//! column value byte for byte as its JSON text; random bytes and truncated, flipped or
//! padded documents give `Ok` or a typed [`DecodeError`] naming the message's LSN,
//! never a panic, and never half a document's events.
//!
//! Case counts are bounded (256 per property) so the suite stays fast in CI.

use proptest::prelude::*;

use super::{decoder_for, Change, DecodeError, Event, FormatVersion, Kind};
use crate::lsn::Lsn;

const CASES: u32 = 256;

/// The messages of one stream, each with its WAL start.
type Messages = Vec<(Lsn, Vec<u8>)>;

/// One generated column: its name (as text) and its value as the exact JSON text
/// wal2json would print.
#[derive(Debug, Clone)]
struct Col {
    name: String,
    type_name: &'static str,
    value: String,
}

#[derive(Debug, Clone)]
struct Row {
    kind: Kind,
    schema: String,
    table: String,
    columns: Vec<Col>,
    identity: Vec<Col>,
    pk: Vec<String>,
}

#[derive(Debug, Clone)]
struct Txn {
    xid: u64,
    timestamp: String,
    rows: Vec<Row>,
    /// The WAL position of the first message; rows and the commit follow it.
    start: u64,
    /// Whitespace put between every token, as `pretty-print` does (or nothing).
    space: &'static str,
}

/// A JSON string's text, built from pieces that include every kind of escape, so a
/// decoder that unescaped and re-escaped a value would be caught.
fn json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>()
            .prop_filter("not a quote, backslash or control", |c| {
                *c != '"' && *c != '\\' && (*c as u32) >= 0x20
            })
            .prop_map(|c| c.to_string()),
        1 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u001f",
            "\\u00e9", "\\u2603", "\\uD83D\\uDE00", "\\uFFFF",
        ])
        .prop_map(str::to_string),
        1 => (0x20u32..0xD800).prop_map(|u| format!("\\u{u:04x}")),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// A column value as wal2json prints it: null, booleans, integers, numerics of any
/// precision (never through f64), exponents, and strings (text, jsonb, arrays, bytea).
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("null".to_string()),
        1 => Just("true".to_string()),
        1 => Just("false".to_string()),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => "-?(0|[1-9][0-9]{0,39})(\\.[0-9]{1,30})?",
        1 => "-?[1-9](\\.[0-9]{1,17})?[eE][+-]?[0-9]{1,3}",
        3 => json_string(),
    ]
}

/// A name (column, table, schema): any text, JSON-encoded when written.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_][a-z0-9_]{0,10}", 1 => "\\PC{0,12}"]
}

fn col() -> impl Strategy<Value = Col> {
    (
        name(),
        prop::sample::select(vec!["integer", "text", "numeric(40,10)", "jsonb", "bytea"]),
        json_value(),
    )
        .prop_map(|(name, type_name, value)| Col {
            name,
            type_name,
            value,
        })
}

fn row() -> impl Strategy<Value = Row> {
    (
        prop::sample::select(vec![Kind::Insert, Kind::Update, Kind::Delete]),
        name(),
        name(),
        prop::collection::vec(col(), 0..6),
        prop::collection::vec(col(), 0..3),
        prop::collection::vec(name(), 0..3),
    )
        .prop_map(|(kind, schema, table, columns, identity, pk)| {
            let (columns, identity) = match kind {
                Kind::Insert => (columns, Vec::new()),
                Kind::Delete => (Vec::new(), identity),
                _ => (columns, identity),
            };
            Row {
                kind,
                schema,
                table,
                columns,
                identity,
                pk,
            }
        })
}

fn txn() -> impl Strategy<Value = Txn> {
    (
        any::<u32>(),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?\\+00",
        prop::collection::vec(row(), 0..5),
        1u64..u64::MAX / 2,
        prop::sample::select(vec!["", " ", "\n\t", "\r\n  "]),
    )
        .prop_map(|(xid, timestamp, rows, start, space)| Txn {
            xid: u64::from(xid),
            timestamp,
            rows,
            start,
            space,
        })
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

/// `{k: v, ...}` with `space` around every token.
fn object(space: &str, fields: &[(&str, String)]) -> String {
    let s = space;
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{s}\"{k}\"{s}:{s}{v}{s}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn array(space: &str, items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|i| format!("{space}{i}{space}"))
        .collect();
    format!("[{}]", items.join(","))
}

impl Txn {
    fn lsn(&self, i: usize) -> Lsn {
        Lsn(self.start + 0x100 * i as u64)
    }

    /// The commit's end: the last message's position.
    fn next_lsn(&self) -> Lsn {
        self.lsn(self.rows.len() + 1)
    }

    /// Format-version 2: `B`, one message per row, `C`, each with its WAL start.
    fn v2_messages(&self) -> Messages {
        let s = self.space;
        let mut out = Vec::new();
        let (xid, ts) = (self.xid.to_string(), quoted(&self.timestamp));
        let next = quoted(&self.next_lsn().to_string());
        out.push((
            self.lsn(0),
            object(
                s,
                &[
                    ("action", quoted("B")),
                    ("xid", xid.clone()),
                    ("timestamp", ts.clone()),
                    ("lsn", quoted(&self.lsn(0).to_string())),
                    ("nextlsn", next.clone()),
                ],
            ),
        ));
        for (i, row) in self.rows.iter().enumerate() {
            let at = self.lsn(i + 1);
            let cols = |cols: &[Col]| {
                array(
                    s,
                    cols.iter().map(|c| {
                        object(
                            s,
                            &[
                                ("name", quoted(&c.name)),
                                ("type", quoted(c.type_name)),
                                ("value", c.value.clone()),
                            ],
                        )
                    }),
                )
            };
            let action = match row.kind {
                Kind::Insert => "I",
                Kind::Update => "U",
                _ => "D",
            };
            let mut fields = vec![
                ("action", quoted(action)),
                ("xid", xid.clone()),
                ("lsn", quoted(&at.to_string())),
                ("schema", quoted(&row.schema)),
                ("table", quoted(&row.table)),
            ];
            if row.kind != Kind::Delete {
                fields.push(("columns", cols(&row.columns)));
            }
            if row.kind != Kind::Insert {
                fields.push(("identity", cols(&row.identity)));
            }
            let pk = row
                .pk
                .iter()
                .map(|p| object(s, &[("name", quoted(p)), ("type", quoted("integer"))]));
            fields.push(("pk", array(s, pk)));
            out.push((at, object(s, &fields)));
        }
        out.push((
            self.next_lsn(),
            object(
                s,
                &[
                    ("action", quoted("C")),
                    ("xid", xid),
                    ("timestamp", ts),
                    ("lsn", quoted(&self.lsn(0).to_string())),
                    ("nextlsn", next),
                ],
            ),
        ));
        out.into_iter().map(|(l, t)| (l, t.into_bytes())).collect()
    }

    fn v1_item(&self, row: &Row) -> String {
        let s = self.space;
        let kind = match row.kind {
            Kind::Insert => "insert",
            Kind::Update => "update",
            _ => "delete",
        };
        let mut fields = vec![
            ("kind", quoted(kind)),
            ("schema", quoted(&row.schema)),
            ("table", quoted(&row.table)),
        ];
        if row.kind != Kind::Delete {
            fields.push((
                "columnnames",
                array(s, row.columns.iter().map(|c| quoted(&c.name))),
            ));
            fields.push((
                "columntypes",
                array(s, row.columns.iter().map(|c| quoted(c.type_name))),
            ));
            fields.push((
                "columnvalues",
                array(s, row.columns.iter().map(|c| c.value.clone())),
            ));
        }
        if row.kind != Kind::Insert {
            let keys = object(
                s,
                &[
                    (
                        "keynames",
                        array(s, row.identity.iter().map(|c| quoted(&c.name))),
                    ),
                    (
                        "keytypes",
                        array(s, row.identity.iter().map(|c| quoted(c.type_name))),
                    ),
                    (
                        "keyvalues",
                        array(s, row.identity.iter().map(|c| c.value.clone())),
                    ),
                ],
            );
            fields.push(("oldkeys", keys));
        }
        let pk = object(
            s,
            &[
                ("pknames", array(s, row.pk.iter().map(|p| quoted(p)))),
                (
                    "pktypes",
                    array(s, row.pk.iter().map(|_| quoted("integer"))),
                ),
            ],
        );
        fields.push(("pk", pk));
        object(s, &fields)
    }

    fn v1_header_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("xid", self.xid.to_string()),
            ("nextlsn", quoted(&self.next_lsn().to_string())),
            ("timestamp", quoted(&self.timestamp)),
        ]
    }

    /// Format-version 1, the whole transaction in one document, labelled (as the
    /// walsender does) with its first position.
    fn v1_whole(&self) -> Messages {
        let mut fields = self.v1_header_fields();
        let items = self.rows.iter().map(|r| self.v1_item(r));
        fields.push(("change", array(self.space, items)));
        vec![(self.lsn(0), object(self.space, &fields).into_bytes())]
    }

    /// Format-version 1 with `write-in-chunks`: the header up to `[`, one chunk per
    /// change (later ones after a `,`), and `]}` at the commit.
    fn v1_chunks(&self) -> Messages {
        let s = self.space;
        let mut fields = self.v1_header_fields();
        fields.push(("change", "[".to_string()));
        let mut header = object(s, &fields);
        // `{..."change": [ }` → `{..."change": [`: the header stops at the bracket.
        header.truncate(header.rfind('[').expect("the header has its bracket") + 1);
        let mut out = vec![(self.lsn(0), header)];
        for (i, row) in self.rows.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            out.push((self.lsn(i + 1), format!("{s}{comma}{}", self.v1_item(row))));
        }
        out.push((self.next_lsn(), format!("{s}]{s}}}")));
        out.into_iter().map(|(l, t)| (l, t.into_bytes())).collect()
    }
}

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
    prop_assert_eq!(&c.pk, &row.pk);
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
