//! The fast path for format-version 2 row documents (`I`, `U`, `D`): one pass over
//! the bytes, no serde machinery, names and values sliced out of the document.
//!
//! It accepts only what it fully understands: a UTF-8 document whose keys and
//! names have no escapes, whose values are JSON scalars (strings without `\u`
//! escapes, numbers, `true`, `false`, `null`), with no key twice. Anything else
//! (`B`, `C`, `M`, `T`, an odd table name, a syntax error) returns `None` and goes
//! to the serde path in `v2.rs`, which decodes it or reports the error. It changes
//! how fast a row is decoded, never what it decodes to: its tests hold it to the
//! serde path's output on the fixtures and on generated rows. `fast/chunk.rs` does
//! the same for format-version 1 change chunks, with this scanner.

use super::{Change, Column, ColumnType, Json, Kind};
use crate::lsn::Lsn;

/// A row change, or `None` to let the serde path decide.
pub(super) fn row(data: &[u8]) -> Option<Change> {
    // wal2json writes `action` first: a begin, commit, message or truncate defers
    // before any scanning.
    if data.starts_with(br#"{"action":""#) && !matches!(data.get(11), Some(b'I' | b'U' | b'D')) {
        return None;
    }
    // One validation of the whole document: every slice below is then a `str`.
    let text = std::str::from_utf8(data).ok()?;
    // wal2json escapes control characters inside strings and writes no newlines
    // between a row's tokens, so a document without any needs no check per string.
    // `plain_str` and `value` rely on this check: serde refuses a raw control
    // character inside a string, and they do not look for one.
    if has_control_byte(data) {
        return None;
    }
    let mut s = Scanner {
        t: text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut seen = 0u16;
    let mut kind = None;
    let mut lsn = None;
    let (mut schema, mut table) = (None, None);
    let (mut columns, mut identity, mut pk) = (None, None, None);
    s.expect(b'{')?;
    if s.peek()? == b'}' {
        return None;
    }
    loop {
        let key = s.plain_str()?;
        s.expect(b':')?;
        let bit = match key {
            "action" => {
                kind = Some(match s.plain_str()? {
                    "I" => Kind::Insert,
                    "U" => Kind::Update,
                    "D" => Kind::Delete,
                    _ => return None,
                });
                1
            }
            "lsn" => {
                lsn = Some(s.plain_str()?.parse::<Lsn>().ok()?);
                2
            }
            "schema" => {
                schema = Some(s.plain_str()?);
                4
            }
            "table" => {
                table = Some(s.plain_str()?);
                8
            }
            "columns" => {
                columns = Some(s.columns()?);
                16
            }
            "identity" => {
                identity = Some(s.columns()?);
                32
            }
            "pk" => {
                pk = Some(s.pk()?);
                64
            }
            // Unused by a row, but typed in the serde path: the same types here.
            "xid" => {
                s.value()?.parse::<u64>().ok()?;
                128
            }
            "timestamp" => {
                s.plain_str()?;
                256
            }
            // Fields of other actions, which this path does not decode.
            "prefix" | "content" | "transactional" | "nextlsn" => return None,
            // `origin`, `typeoid` ...: skipped, as the serde path skips them.
            _ => {
                s.value()?;
                0
            }
        };
        if seen & bit != 0 {
            return None; // serde refuses a duplicate field
        }
        seen |= bit;
        match s.next_byte()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if s.skip_ws() != s.b.len() {
        return None;
    }
    Some(Change {
        kind: kind?,
        // The serde path treats a missing schema as empty (include-schemas off) and
        // a missing table as an error: leave the error to it.
        schema: schema.unwrap_or_default().into(),
        table: table?.into(),
        columns: columns.unwrap_or_default(),
        identity: identity.unwrap_or_default(),
        pk: pk.unwrap_or_default(),
        lsn,
    })
}

/// Whether any byte is below 0x20, in blocks of 32 that compile to vector compares.
fn has_control_byte(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &c| any | (c < 0x20)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&c| c < 0x20)
}

struct Scanner<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) -> usize {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
        self.i
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    fn text(&self, from: usize, to: usize) -> Option<&'a str> {
        // Both ends sit next to ASCII bytes, so on character boundaries.
        self.t.get(from..to)
    }

    /// A string without escapes, without its quotes.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        self.plain_str_body()
    }

    /// The rest of a string without escapes, its opening quote taken: short keys and
    /// names are scanned bytewise, then memchr takes the rest.
    fn plain_str_body(&mut self) -> Option<&'a str> {
        let start = self.i;
        let rest = self.b.get(start..)?;
        let end = match rest.iter().take(16).position(|&c| c == b'"' || c == b'\\') {
            Some(n) => start + n,
            None if rest.len() > 16 => 16 + start + memchr::memchr2(b'"', b'\\', &rest[16..])?,
            None => return None,
        };
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.text(start, end)
    }

    /// Take `word` if the bytes at the cursor are exactly it.
    fn take(&mut self, word: &[u8]) -> bool {
        let hit = self
            .b
            .get(self.i..)
            .is_some_and(|rest| rest.starts_with(word));
        if hit {
            self.i += word.len();
        }
        hit
    }

    /// A column as wal2json prints it, `{"name":"..","type":"..","value":..}` with
    /// no spaces and no other keys: read without matching keys. `None` leaves the
    /// cursor where it was, for the general reading.
    fn printed_column(&mut self) -> Option<(&'a str, &'a str, &'a str)> {
        let start = self.i;
        let column = (|| {
            if !self.take(br#"{"name":""#) {
                return None;
            }
            let name = self.plain_str_body()?;
            if !self.take(br#","type":""#) {
                return None;
            }
            let ty = self.plain_str_body()?;
            if !self.take(br#","value":"#) {
                return None;
            }
            let value = self.value()?;
            self.take(b"}").then_some((name, ty, value))
        })();
        if column.is_none() {
            self.i = start;
        }
        column
    }

    /// A scalar value's exact text: a string (escapes other than `\u` allowed),
    /// a number in JSON's grammar, `true`, `false` or `null`.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.skip_ws();
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                loop {
                    self.i += memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
                    match *self.b.get(self.i + 1)? {
                        _ if self.b[self.i] == b'"' => break,
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        _ => return None,
                    }
                }
                self.i += 1;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        self.text(start, self.i)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match *self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// `[{"name": .., "type": .., "value": .., ...}, ...]`
    fn columns(&mut self) -> Option<Vec<Column>> {
        let mut out = Vec::with_capacity(8);
        self.array(|s| {
            if let Some((name, ty, value)) = s.printed_column() {
                out.push(Column {
                    name: name.into(),
                    value: Json::scanned(value),
                    ty: ColumnType::of(ty),
                });
                return Some(());
            }
            let (mut name, mut ty, mut value) = (None, None, None);
            s.object(|s, key| {
                match key {
                    "name" if name.is_none() => name = Some(s.plain_str()?),
                    "type" if ty.is_none() => ty = Some(s.plain_str()?),
                    "value" if value.is_none() => value = Some(s.value()?),
                    "name" | "type" | "value" => return None,
                    _ => {
                        s.value()?;
                    }
                }
                Some(())
            })?;
            out.push(Column {
                name: name?.into(),
                value: Json::scanned(value?),
                ty: ty.map_or(ColumnType::Other, ColumnType::of),
            });
            Some(())
        })?;
        Some(out)
    }

    /// `[{"name": .., "type": ..}, ...]`: the names.
    fn pk(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        self.array(|s| {
            let mut name = None;
            s.object(|s, key| {
                match key {
                    "name" if name.is_none() => name = Some(s.plain_str()?),
                    "name" => return None,
                    _ => {
                        s.value()?;
                    }
                }
                Some(())
            })?;
            out.push(name?.to_owned());
            Some(())
        })?;
        Some(out)
    }

    fn array(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.next_byte()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_str()?;
            self.expect(b':')?;
            field(self, key)?;
            match self.next_byte()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// Format-version 1 change chunks.
pub(super) mod chunk;

#[cfg(test)]
mod tests;
