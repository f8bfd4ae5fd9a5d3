//! How `tail` prints: each user record as JSON, pretty JSON (every token kept as
//! written) or a Debezium envelope, and the shard labels and notes beside them.
//!
//! Owns the output formats and which stream a note goes to; it never reads Kinesis.

use super::{Format, Read, TailOptions};
use crate::record::debezium;

/// Writes records in the chosen format, and the shard labels.
pub(super) struct Printer<'a> {
    format: Format,
    name: String,
    out: &'a mut (dyn std::io::Write + Send),
    notes: &'a mut (dyn std::io::Write + Send),
    shard: Option<String>,
}

impl<'a> Printer<'a> {
    pub(super) fn new(
        opts: &TailOptions,
        out: &'a mut (dyn std::io::Write + Send),
        notes: &'a mut (dyn std::io::Write + Send),
    ) -> Self {
        Printer {
            format: opts.format,
            name: opts.name.clone(),
            out,
            notes,
            shard: None,
        }
    }

    /// A label or note: on `out` for `pretty`, else on `notes`.
    pub(super) fn note(&mut self, text: &str) {
        let _ = self.out.flush();
        let to: &mut dyn std::io::Write = match self.format {
            Format::Pretty => &mut *self.out,
            _ => &mut *self.notes,
        };
        let _ = writeln!(to, "{text}");
        let _ = to.flush();
    }

    pub(super) fn print(&mut self, read: &Read, label: bool) {
        if label && self.shard.as_deref() != Some(read.shard.as_str()) {
            self.shard = Some(read.shard.clone());
            self.note(&format!("== shard {} ==", read.shard));
        }
        let text = String::from_utf8_lossy(&read.data);
        let line = match self.format {
            Format::Json => text.into_owned(),
            Format::Pretty => pretty(&text).unwrap_or_else(|| text.into_owned()),
            Format::Debezium => match debezium::envelope(&text, &self.name, now_ms()) {
                Ok(envelope) => envelope,
                Err(e) => {
                    let _ = writeln!(self.notes, "printing a record as it is: {e}");
                    text.into_owned()
                }
            },
        };
        let _ = writeln!(self.out, "{line}");
    }

    pub(super) fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.notes.flush();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `text` indented two spaces a level, every token kept as written (a
/// `numeric(40,10)` keeps its digits); `None` when it is not JSON.
fn pretty(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(s) = chars.next() {
                    out.push(s);
                    match s {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_indents_and_keeps_every_token() {
        let text = r#"{"kind":"insert","data":{"n":12345678901234567890.0123456789,"s":"a, {b}: \"c\"","e":{},"l":[1,2]},"old":null}"#;
        let expect = "{\n  \"kind\": \"insert\",\n  \"data\": {\n    \"n\": 12345678901234567890.0123456789,\n    \"s\": \"a, {b}: \\\"c\\\"\",\n    \"e\": {},\n    \"l\": [\n      1,\n      2\n    ]\n  },\n  \"old\": null\n}";
        assert_eq!(pretty(text).as_deref(), Some(expect));
        assert_eq!(pretty("not json"), None);
    }
}
