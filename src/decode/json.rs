//! A column's name and value (and a table's name hash) as the decoder keeps them: the exact JSON text wal2json
//! printed, in a string that holds short texts inline, so that the common column (a
//! short name, a number or a short string) costs no allocation.
//!
//! A [`Json`] is valid JSON by construction: it is built from serde_json's own parse
//! ([`Json::parse`], [`Json::from_raw`]), from text the streamer printed itself as
//! JSON ([`Json::printed`]), or by the fast decoder from a scalar whose grammar it
//! checked ([`Json::scanned`]).

use std::fmt;

use compact_str::CompactString;
use serde_json::value::RawValue;

/// A column name; names of up to 24 bytes are held inline.
pub type Name = CompactString;

/// A table's schema and name as one hash, stable within the process: the scope of a
/// record's truncate barrier, and the key of the fast path's column headers. Two
/// tables sharing a hash would only share those, so FxHash suffices.
pub fn table_hash(schema: &str, table: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    schema.hash(&mut h);
    table.hash(&mut h);
    h.finish()
}

/// A value's exact JSON text.
#[derive(Clone, PartialEq, Eq)]
pub struct Json(CompactString);

impl Json {
    /// Check `text` with serde_json and keep it as it is.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str::<&RawValue>(text)?;
        Ok(Json(text.into()))
    }

    /// A value serde_json has already parsed.
    pub fn from_raw(raw: &RawValue) -> Json {
        Json(raw.get().into())
    }

    /// JSON the streamer printed itself (a quoted string, a number): valid by how it
    /// was built, so not checked again. Debug builds check it.
    pub(crate) fn printed(text: impl Into<CompactString>) -> Json {
        let text = text.into();
        debug_assert!(
            serde_json::from_str::<&RawValue>(&text).is_ok(),
            "printed JSON is valid: {text}"
        );
        Json(text)
    }

    /// A scalar the fast decoder scanned against JSON's grammar (see `fast.rs`).
    pub(super) fn scanned(text: &str) -> Json {
        Json::printed(text)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }
}

/// JSON `null`, as `Box<RawValue>` defaults to.
impl Default for Json {
    fn default() -> Self {
        Json(CompactString::const_new("null"))
    }
}

/// As `RawValue` prints itself, so that logs and test output keep their shape.
impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue")
            .field(&format_args!("{}", self.0))
            .finish()
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_the_text_and_refuses_what_is_not_json() {
        for text in ["1", "-0.5e3", r#""a\"b""#, "null", r#"{"a": [1, 2]}"#] {
            assert_eq!(Json::parse(text).unwrap().get(), text);
        }
        for text in ["", "01", "'a'", "[1,", "nul"] {
            assert!(Json::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn debug_and_default_read_as_raw_value_did() {
        let raw = RawValue::from_string("\"x\"".into()).unwrap();
        assert_eq!(format!("{:?}", Json::from_raw(&raw)), format!("{raw:?}"));
        assert_eq!(Json::default().get(), Box::<RawValue>::default().get());
    }
}
