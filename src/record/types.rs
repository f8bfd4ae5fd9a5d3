//! Consumer-friendly column values: `numeric_as_string`, `json_as_object` and
//! `timestamps: iso8601`.
//!
//! Owns the rewrite of one column's value, as wal2json printed it (or as a backfill
//! printed it the same way), into the form a slot's options ask for. It never loses
//! a digit and never panics: a value it cannot rewrite exactly is written as it came
//! (a JSON string), and that is logged.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;

use crate::decode::{Column, ColumnType};

/// Which rewrites a slot asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueOptions {
    /// Numbers as JSON strings of the same digits. wal2json prints only the numeric
    /// types (`int2`/`int4`/`int8`/`oid`/`float4`/`float8`/`numeric`) as bare JSON
    /// numbers, so a column value that is a bare number is one of them: no column
    /// types are needed. (wal2json 2.6's `numeric-data-types-as-string`; 2.5 lacks it.)
    pub numeric_as_string: bool,
    /// `json`/`jsonb` (and arrays of them) as JSON values, not escaped strings.
    pub json_as_object: bool,
    /// `timestamp`, `timestamptz`, `date` and `timetz` text as ISO 8601.
    pub iso8601: bool,
}

/// Values an option applied to but could not rewrite (kept as strings): one warning
/// for the first and then one per [`WARN_EVERY`], so a bad column cannot flood the log.
static KEPT: AtomicU64 = AtomicU64::new(0);
const WARN_EVERY: u64 = 10_000;

/// Write `column`'s value onto `out` as `options` ask.
pub fn push_value(out: &mut Vec<u8>, column: &Column, options: ValueOptions) {
    let raw = column.value.get();
    if options.numeric_as_string && raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        // A JSON number's text needs no escaping inside a string.
        out.push(b'"');
        out.extend_from_slice(raw.as_bytes());
        out.push(b'"');
        return;
    }
    let rewritten = match column.ty {
        ColumnType::Other => None,
        _ if raw == "null" || !raw.starts_with('"') => None,
        ColumnType::Json | ColumnType::JsonArray if options.json_as_object => {
            let kept = rewrite_json(raw, column.ty);
            if kept.is_none() {
                note_kept(column, "json_as_object", "it is not valid JSON");
            }
            kept
        }
        ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Date | ColumnType::TimeTz
            if options.iso8601 =>
        {
            let text = raw[1..raw.len() - 1].to_string();
            match iso8601(&text, column.ty) {
                Rewrite::To(iso) => Some(quoted(&iso)),
                Rewrite::Same => None,
                Rewrite::Unknown => {
                    note_kept(
                        column,
                        "timestamps: iso8601",
                        "its text is not in PostgreSQL's ISO DateStyle",
                    );
                    None
                }
            }
        }
        _ => None,
    };
    match rewritten {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => out.extend_from_slice(raw.as_bytes()),
    }
}

fn note_kept(column: &Column, option: &str, why: &str) {
    let n = KEPT.fetch_add(1, Ordering::Relaxed);
    if n % WARN_EVERY == 0 {
        tracing::warn!(column = %column.name, option, kept = n + 1,
            "{option}: a value of column {:?} is kept as a JSON string because {why} ({} such value(s) so far)",
            column.name, n + 1);
    }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A `json`/`jsonb` value (a JSON string holding JSON text) as that JSON; an array of
/// them (a JSON string holding PostgreSQL's array literal) as a JSON array, SQL NULL
/// elements as `null`. `None` if the text is not that.
fn rewrite_json(raw: &str, ty: ColumnType) -> Option<String> {
    let text: String = serde_json::from_str(raw).ok()?;
    match ty {
        ColumnType::Json => json_text(&text),
        _ => json_array(&text),
    }
}

/// `text` if it is one JSON value, without surrounding blanks (a `json` column keeps
/// its input's); every digit and the inner spacing as written.
fn json_text(text: &str) -> Option<String> {
    let value: &RawValue = serde_json::from_str(text).ok()?;
    Some(value.get().to_string())
}

/// PostgreSQL's array literal (`{"{\"a\": 1}",NULL,{...}}`) of JSON elements as a
/// JSON array. Arrays with explicit bounds (`[0:1]={...}`) are refused: the bounds
/// would be lost.
fn json_array(text: &str) -> Option<String> {
    let mut p = ArrayParser {
        b: text.as_bytes(),
        i: 0,
    };
    let mut out = String::with_capacity(text.len());
    p.level(&mut out, 0)?;
    (p.i == p.b.len()).then_some(out)
}

/// Nesting PostgreSQL allows in an array (MAXDIM).
const MAX_ARRAY_DIMS: usize = 6;

struct ArrayParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn level(&mut self, out: &mut String, depth: usize) -> Option<()> {
        if depth >= MAX_ARRAY_DIMS || self.peek()? != b'{' {
            return None;
        }
        self.i += 1;
        out.push('[');
        if self.peek()? == b'}' {
            self.i += 1;
            out.push(']');
            return Some(());
        }
        loop {
            match self.peek()? {
                b'{' => self.level(out, depth + 1)?,
                b'"' => {
                    let element = self.quoted()?;
                    out.push_str(&json_text(&element)?);
                }
                _ => {
                    let start = self.i;
                    while !matches!(self.peek()?, b',' | b'}') {
                        self.i += 1;
                    }
                    let element = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                    if element.eq_ignore_ascii_case("NULL") {
                        out.push_str("null");
                    } else {
                        out.push_str(&json_text(element)?);
                    }
                }
            }
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    out.push(',');
                }
                b'}' => {
                    self.i += 1;
                    out.push(']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A double-quoted element; `\` escapes the next byte.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(bytes).ok();
                }
                b'\\' => {
                    bytes.push(*self.b.get(self.i + 1)?);
                    self.i += 2;
                }
                b => {
                    bytes.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

/// What [`iso8601`] made of a value's text.
#[derive(Debug, PartialEq, Eq)]
enum Rewrite {
    To(String),
    /// Already ISO 8601, or without an ISO form (`infinity`).
    Same,
    /// Not PostgreSQL's ISO DateStyle output: left as it is.
    Unknown,
}

/// PostgreSQL's ISO DateStyle text of a `ty` value → ISO 8601, every fractional digit
/// kept:
/// - `2024-01-02 03:04:05.123456+00` → `2024-01-02T03:04:05.123456Z`; `+05:30` stays,
///   `+05` becomes `+05:00`, an offset with seconds (`-04:56:02`, local mean time
///   before 1900) stays as PostgreSQL prints it;
/// - `timestamp` without time zone gets the `T` and no zone (it has none);
/// - BC years become ISO 8601's astronomical years: `0044-03-15 BC` → `-0043-03-15`
///   (1 BC is `0000`), years past 9999 get a `+`;
/// - `date`: only BC dates change; `timetz`: only the zone; `infinity` and
///   `-infinity` stay.
fn iso8601(text: &str, ty: ColumnType) -> Rewrite {
    if text == "infinity" || text == "-infinity" {
        return Rewrite::Same;
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let mut out = String::with_capacity(text.len() + 2);
    let ok = match ty {
        ColumnType::Date => date(body, bc, &mut out),
        ColumnType::TimeTz if !bc => time(body, true, &mut out),
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            body.split_once(' ').and_then(|(d, t)| {
                date(d, bc, &mut out)?;
                out.push('T');
                time(t, ty == ColumnType::TimestampTz, &mut out)
            })
        }
        _ => None,
    };
    match ok {
        Some(()) if out == text => Rewrite::Same,
        Some(()) => Rewrite::To(out),
        None => Rewrite::Unknown,
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` (four or more year digits), BC years as astronomical ones.
fn date(text: &str, bc: bool, out: &mut String) -> Option<()> {
    let (year, month_day) = text.split_once('-')?;
    let (month, day) = month_day.split_once('-')?;
    if year.len() < 4 || year.len() > 9 || !digits(year) {
        return None;
    }
    if month.len() != 2 || day.len() != 2 || !digits(month) || !digits(day) {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let year = if bc { 1 - year } else { year };
    if year < 0 {
        out.push_str(&format!("-{:04}", -year));
    } else if year > 9999 {
        out.push_str(&format!("+{year}"));
    } else {
        out.push_str(&format!("{year:04}"));
    }
    out.push('-');
    out.push_str(month_day);
    Some(())
}

/// `HH:MM:SS[.fff…]`, then with `zone` an offset `±HH[:MM[:SS]]`.
fn time(text: &str, zone: bool, out: &mut String) -> Option<()> {
    let clock = text.get(..8).filter(|c| c.is_ascii())?;
    let b = clock.as_bytes();
    if b[2] != b':' || b[5] != b':' || !digits(&clock[..2]) || !digits(&clock[3..5]) {
        return None;
    }
    if !digits(&clock[6..8]) {
        return None;
    }
    let mut rest = &text[8..];
    out.push_str(clock);
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        out.push('.');
        out.push_str(&fraction[..n]);
        rest = &fraction[n..];
    }
    if !zone {
        return rest.is_empty().then_some(());
    }
    let sign = rest.get(..1)?;
    if sign != "+" && sign != "-" {
        return None;
    }
    let parts: Vec<&str> = rest[1..].split(':').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2 || !digits(p)) {
        return None;
    }
    if parts.iter().all(|p| *p == "00") {
        out.push('Z');
    } else if parts.len() == 1 {
        out.push_str(rest);
        out.push_str(":00");
    } else {
        out.push_str(rest);
    }
    Some(())
}

#[cfg(test)]
mod tests;
