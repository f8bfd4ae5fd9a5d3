//! The generated side of the decoders' property tests: random transactions (columns
//! with exact JSON value text, rows of every kind) and the wal2json documents they
//! render to, format-version 2 and format-version 1 whole and in chunks.
//!
//! Owns what a generated transaction looks like on the wire; it never decodes (the
//! properties in `proptests` do and compare).

use proptest::prelude::*;

use super::super::Kind;
use crate::lsn::Lsn;

/// The messages of one stream, each with its WAL start.
pub(super) type Messages = Vec<(Lsn, Vec<u8>)>;

/// One generated column: its name (as text) and its value as the exact JSON text
/// wal2json would print.
#[derive(Debug, Clone)]
pub(super) struct Col {
    pub(super) name: String,
    pub(super) type_name: &'static str,
    pub(super) value: String,
}

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) kind: Kind,
    pub(super) schema: String,
    pub(super) table: String,
    pub(super) columns: Vec<Col>,
    pub(super) identity: Vec<Col>,
    pub(super) pk: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Txn {
    pub(super) xid: u64,
    pub(super) timestamp: String,
    pub(super) rows: Vec<Row>,
    /// The WAL position of the first message; rows and the commit follow it.
    pub(super) start: u64,
    /// Whitespace put between every token, as `pretty-print` does (or nothing).
    pub(super) space: &'static str,
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

pub(super) fn txn() -> impl Strategy<Value = Txn> {
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
    pub(super) fn lsn(&self, i: usize) -> Lsn {
        Lsn(self.start + 0x100 * i as u64)
    }

    /// The commit's end: the last message's position.
    pub(super) fn next_lsn(&self) -> Lsn {
        self.lsn(self.rows.len() + 1)
    }

    /// Format-version 2: `B`, one message per row, `C`, each with its WAL start.
    pub(super) fn v2_messages(&self) -> Messages {
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
    pub(super) fn v1_whole(&self) -> Messages {
        let mut fields = self.v1_header_fields();
        let items = self.rows.iter().map(|r| self.v1_item(r));
        fields.push(("change", array(self.space, items)));
        vec![(self.lsn(0), object(self.space, &fields).into_bytes())]
    }

    /// Format-version 1 with `write-in-chunks`: the header up to `[`, one chunk per
    /// change (later ones after a `,`), and `]}` at the commit.
    pub(super) fn v1_chunks(&self) -> Messages {
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
