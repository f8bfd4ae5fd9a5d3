//! The scanner under the fast paths: one pass over a document already checked as
//! UTF-8 and free of control bytes, slicing strings and scalars out of it, and
//! answering `None` for anything outside the subset the fast paths accept.

/// A key as wal2json prints it, `"name":` (at most 16 bytes), to be compared with
/// the 16 bytes at the cursor in one step.
pub(super) struct Key {
    word: u128,
    mask: u128,
    len: usize,
    name: &'static str,
}

impl Key {
    pub(super) const fn new(name: &'static str) -> Key {
        let n = name.as_bytes();
        let len = n.len() + 3;
        assert!(len <= 16, "a key of at most 13 bytes");
        let mut bytes = [0u8; 16];
        bytes[0] = b'"';
        let mut i = 0;
        while i < n.len() {
            bytes[i + 1] = n[i];
            i += 1;
        }
        bytes[len - 2] = b'"';
        bytes[len - 1] = b':';
        let mask = if len == 16 {
            u128::MAX
        } else {
            (1u128 << (len * 8)) - 1
        };
        Key {
            word: u128::from_le_bytes(bytes),
            mask,
            len,
            name,
        }
    }
}

/// A cursor over one document.
pub(super) struct Scanner<'a> {
    pub(super) t: &'a str,
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Scanner {
            t: text,
            b: text.as_bytes(),
            i: 0,
        }
    }

    pub(super) fn skip_ws(&mut self) -> usize {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
        self.i
    }

    pub(super) fn peek(&mut self) -> Option<u8> {
        // wal2json writes no space between a row's tokens: look past spaces only
        // when there is one.
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => {
                self.skip_ws();
                self.b.get(self.i).copied()
            }
        }
    }

    pub(super) fn next_byte(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    pub(super) fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    pub(super) fn text(&self, from: usize, to: usize) -> Option<&'a str> {
        // Both ends sit next to ASCII bytes, so on character boundaries.
        self.t.get(from..to)
    }

    /// A string without escapes, without its quotes.
    pub(super) fn plain_str(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        self.plain_str_body()
    }

    /// The rest of a string without escapes, its opening quote taken.
    pub(super) fn plain_str_body(&mut self) -> Option<&'a str> {
        let start = self.i;
        let rest = self.b.get(start..)?;
        let end = start + crate::decode::bytes::quote_or_backslash(rest)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.text(start, end)
    }

    /// Take `word` if the bytes at the cursor are exactly it.
    pub(super) fn take(&mut self, word: &[u8]) -> bool {
        let hit = self
            .b
            .get(self.i..)
            .is_some_and(|rest| rest.starts_with(word));
        if hit {
            self.i += word.len();
        }
        hit
    }

    /// A scalar value's exact text: a string (escapes other than `\u` allowed),
    /// a number in JSON's grammar, `true`, `false` or `null`.
    pub(super) fn value(&mut self) -> Option<&'a str> {
        let start = self.skip_ws();
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                loop {
                    self.i += crate::decode::bytes::quote_or_backslash(self.b.get(self.i..)?)?;
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

    pub(super) fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    pub(super) fn number(&mut self) -> Option<()> {
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

    pub(super) fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    pub(super) fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// A whole document `{"key": value, ...}` with nothing after it: `field` reads
    /// each key's value and returns the key's bit (0 for a key serde skips). A key
    /// twice is refused, as serde refuses a duplicate field. `order`: the keys the
    /// document usually holds, in the order they usually come, each printed as
    /// `"key":`; a key printed so, where expected, is taken by its bytes.
    pub(super) fn document(
        &mut self,
        order: &[Key],
        mut field: impl FnMut(&mut Self, &'a str) -> Option<u16>,
    ) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            return None;
        }
        let mut seen = 0u16;
        let mut next = 0;
        loop {
            let key = self.key(order, &mut next)?;
            let bit = field(self, key)?;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match self.next_byte()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        (self.skip_ws() == self.b.len()).then_some(())
    }

    /// A key and its colon: one of `order[*next..]` when the bytes at the cursor are
    /// it (moving `next` past it), else read as a string.
    fn key(&mut self, order: &[Key], next: &mut usize) -> Option<&'a str> {
        let rest = self.b.get(self.i..)?;
        if let Some(head) = rest.get(..16) {
            let head = u128::from_le_bytes(head.try_into().ok()?);
            let later = order.get(*next..).unwrap_or_default();
            if let Some(at) = later.iter().position(|k| head & k.mask == k.word) {
                let key = &later[at];
                self.i += key.len;
                *next += at + 1;
                return Some(key.name);
            }
        }
        let key = self.plain_str()?;
        self.expect(b':')?;
        Some(key)
    }

    pub(super) fn array(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
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

    pub(super) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
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
