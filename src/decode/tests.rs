//! Unit tests of the decoders' shared helpers, and the fixtures the decoders' tests share.

use super::*;

impl Change {
    /// A change of `public.<table>` keyed by `id`, at no known LSN: the one test
    /// fixture the encoder, backfill and shape tests build on.
    pub fn of_table(kind: Kind, table: &str, columns: Vec<Column>, identity: Vec<Column>) -> Self {
        Change {
            kind,
            schema: "public".into(),
            table: table.into(),
            columns,
            identity,
            pk: ["id".to_string()].into(),
            lsn: None,
            columns_tag: 0,
        }
    }
}

/// One captured message, exactly as `pg_logical_slot_peek_changes` returned it
/// (see `testdata/`): `{"lsn": "X/Y", "data": "..."}` per line, or `"hex"`
/// instead of `"data"` where the bytes are not UTF-8 (`testdata/messages.sql`).
#[derive(serde::Deserialize)]
struct Captured {
    lsn: String,
    data: Option<String>,
    hex: Option<String>,
}

pub(crate) fn fixture_lines(fixture: &str) -> Vec<(Lsn, Vec<u8>)> {
    fixture
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Captured = serde_json::from_str(l).unwrap();
            let data = match (c.data, c.hex) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(hex)) => hex::decode(hex).unwrap(),
                _ => panic!("a fixture line needs `data` or `hex`: {l}"),
            };
            (c.lsn.parse().unwrap(), data)
        })
        .collect()
}

pub(crate) fn decode_fixture(mut decoder: Box<dyn Decode>, fixture: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for (lsn, data) in fixture_lines(fixture) {
        decoder
            .feed(lsn, &data, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

/// Events in one line each, for whole-stream comparisons: `B xid`, `I table id`,
/// `C end_lsn`, `M prefix transactional lsn`.
pub(crate) fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Begin { xid, .. } => format!("B {}", xid.unwrap_or_default()),
            Event::Change(c) => format!(
                "{} {} {}",
                c.kind.as_str(),
                c.table,
                value_of(&c.columns, "id")
            ),
            Event::Commit { end_lsn } => format!("C {end_lsn}"),
            Event::Message {
                prefix,
                transactional,
                lsn,
                ..
            } => format!("M {prefix} {transactional} {lsn}"),
        })
        .collect()
}

/// The `nth` change of `kind` on `table`.
pub(crate) fn find_change<'a>(
    events: &'a [Event],
    kind: Kind,
    table: &str,
    nth: usize,
) -> &'a Change {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Change(c) if c.kind == kind && c.table == table => Some(c),
            _ => None,
        })
        .nth(nth)
        .unwrap_or_else(|| panic!("no {kind:?} #{nth} on {table}"))
}

pub(crate) fn value_of<'a>(cols: &'a [Column], name: &str) -> &'a str {
    cols.iter()
        .find(|c| c.name == name)
        .map(|c| c.value.get())
        .unwrap_or_else(|| panic!("no column {name} in {cols:?}"))
}

const FIXTURES: [&str; 10] = [
    include_str!("testdata/v2_interleaved.jsonl"),
    include_str!("testdata/v2.jsonl"),
    include_str!("testdata/v2_bare.jsonl"),
    include_str!("testdata/v2_messages.jsonl"),
    include_str!("testdata/v1.jsonl"),
    include_str!("testdata/v1_chunks.jsonl"),
    include_str!("testdata/v1_chunks_pretty.jsonl"),
    include_str!("testdata/v1_messages.jsonl"),
    include_str!("testdata/v1_chunks_messages.jsonl"),
    include_str!("testdata/v1_chunks_pretty_messages.jsonl"),
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"{}[],:\"\\ 0-e.nulltruefalse\xff\xc3";
    let mut d = data.to_vec();
    match rng.below(6) {
        0 => d.truncate(rng.below(d.len() + 1)),
        1 => {
            for _ in 0..=rng.below(4) {
                if let Some(b) = d.get_mut(rng.below(data.len())) {
                    *b = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
        }
        2 => {
            let at = rng.below(d.len() + 1);
            d.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
        }
        3 => {
            if !d.is_empty() {
                let at = rng.below(d.len());
                d.remove(at);
            }
        }
        4 => d = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => {
            let cut = rng.below(d.len() + 1);
            d.drain(..cut);
        }
    }
    d
}

/// Random, truncated and mutated input through both decoders: every call
/// returns (Ok or Err) and every error names its LSN.
#[test]
fn never_panics_on_garbage() {
    let lines: Vec<(Lsn, Vec<u8>)> = FIXTURES.iter().flat_map(|f| fixture_lines(f)).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut oks, mut errs) = (0usize, 0usize);
    for format in [FormatVersion::V1, FormatVersion::V2] {
        for _round in 0..40 {
            let mut decoder = decoder_for(format);
            let mut out = Vec::new();
            for (lsn, data) in &lines {
                let input = if rng.below(3) == 0 {
                    mutate(&mut rng, data)
                } else {
                    data.clone()
                };
                match decoder.feed(*lsn, &input, &mut out) {
                    Ok(()) => oks += 1,
                    Err(e) => {
                        errs += 1;
                        assert!(e.to_string().contains(&lsn.to_string()), "{e}");
                    }
                }
                out.clear();
            }
        }
    }
    assert!(oks > 1000 && errs > 1000, "ok {oks}, err {errs}");
}

#[test]
fn column_types_are_classified_from_format_type_names() {
    for (name, ty) in [
        ("json", ColumnType::Json),
        ("jsonb", ColumnType::Json),
        ("jsonb[]", ColumnType::JsonArray),
        ("json[]", ColumnType::JsonArray),
        ("timestamp without time zone", ColumnType::Timestamp),
        ("timestamp(3) without time zone", ColumnType::Timestamp),
        ("timestamp with time zone", ColumnType::TimestampTz),
        ("timestamp(0) with time zone", ColumnType::TimestampTz),
        ("date", ColumnType::Date),
        ("time with time zone", ColumnType::TimeTz),
        ("time(2) with time zone", ColumnType::TimeTz),
        ("time without time zone", ColumnType::Other),
        ("timestamp with time zone[]", ColumnType::Other),
        ("timestamp(x) with time zone", ColumnType::Other),
        ("text", ColumnType::Other),
        ("", ColumnType::Other),
    ] {
        assert_eq!(ColumnType::of(name), ty, "{name}");
    }
}

#[test]
fn both_formats_carry_the_column_types() {
    for (decoder, fixture) in [
        (
            decoder_for(FormatVersion::V1),
            include_str!("testdata/v1.jsonl"),
        ),
        (
            decoder_for(FormatVersion::V2),
            include_str!("testdata/v2.jsonl"),
        ),
    ] {
        let events = decode_fixture(decoder, fixture);
        let ins = find_change(&events, Kind::Insert, "t_all", 0);
        let ty = |n: &str| ins.columns.iter().find(|c| c.name == n).unwrap().ty;
        assert_eq!(ty("doc"), ColumnType::Json);
        assert_eq!(ty("ts"), ColumnType::TimestampTz);
        assert_eq!(ty("num"), ColumnType::Other);
    }
}

#[test]
fn excerpts_are_short_and_safe() {
    let long = "é".repeat(500);
    let e = excerpt(long.as_bytes());
    assert!(e.len() < EXCERPT_BYTES + 8 && e.ends_with('…'), "{e}");
    assert_eq!(excerpt(b"{}"), "{}");
    assert_eq!(excerpt(b""), "");
}
