//! The record-format keys of a slot: `record_format`, `numeric_as_string`,
//! `json_as_object`, `timestamps`.
//!
//! Owns their defaults, value rules and their agreement with the slot's wal2json
//! `options` (the type options need the column types wal2json prints). It never
//! talks to PostgreSQL and never changes an option the user wrote.

use super::file::SlotFile;
use super::value::choice;
use super::{ConfigError, Source};

/// The envelope of a slot's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// This project's record (`kind`, `data`, `old`, `commit_lsn`, `seq`, ...).
    #[default]
    Native,
    /// The Debezium PostgreSQL connector's change-event value, schema-less JSON.
    Debezium,
}

/// How `timestamp`, `timestamptz`, `date` and `timetz` values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timestamps {
    /// As PostgreSQL prints them (`2024-01-02 03:04:05.123456+00`).
    #[default]
    Postgres,
    /// ISO 8601 (`2024-01-02T03:04:05.123456Z`), every digit kept.
    Iso8601,
}

/// A slot's record format and value options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatConfig {
    pub record_format: RecordFormat,
    /// Numbers as JSON strings, every digit as wal2json printed it. Done here, not by
    /// wal2json's `numeric-data-types-as-string`, which 2.5 lacks.
    pub numeric_as_string: bool,
    /// `json`/`jsonb` values as JSON, not as escaped strings.
    pub json_as_object: bool,
    pub timestamps: Timestamps,
}

/// Read the keys, checked against the slot's wal2json `options`.
pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    options: &[(String, String)],
) -> Result<FormatConfig, ConfigError> {
    let record_format = choice(
        src,
        &raw.record_format,
        &place("record_format"),
        (("native", RecordFormat::Native), ("debezium", RecordFormat::Debezium)),
        "`debezium` writes the Debezium PostgreSQL connector's envelope (before, after, source, op, ts_ms)",
    )?;
    let timestamps = choice(
        src,
        &raw.timestamps,
        &place("timestamps"),
        (("postgres", Timestamps::Postgres), ("iso8601", Timestamps::Iso8601)),
        "`iso8601` writes `2024-01-02T03:04:05.123456Z` for PostgreSQL's `2024-01-02 03:04:05.123456+00`",
    )?;
    let json_as_object = src.flag(&raw.json_as_object, &place("json_as_object"), false)?;
    let numeric_as_string = src.flag(&raw.numeric_as_string, &place("numeric_as_string"), false)?;

    // The type options read the column types wal2json prints unless told not to.
    let needs_types = [
        (json_as_object, "json_as_object", &raw.json_as_object),
        (
            timestamps == Timestamps::Iso8601,
            "timestamps",
            &raw.timestamps,
        ),
    ];
    if let Some((_, key, Some(v))) = needs_types.iter().find(|(on, _, _)| *on) {
        if option_value(options, "include-types").and_then(pg_bool) == Some(false) {
            return Err(src.at(
                v,
                format!(
                    "{}: needs the column types wal2json prints, but `options` sets \
                     `include-types: false`; remove that option (or this key)",
                    place(key)
                ),
            ));
        }
    }
    Ok(FormatConfig {
        record_format,
        numeric_as_string,
        json_as_object,
        timestamps,
    })
}

/// The value of a wal2json option that wal2json uses: the last one written.
pub fn option_value<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// PostgreSQL's `parse_bool`, as wal2json reads an option's text: case-insensitive,
/// surrounding blanks ignored, unique prefixes of true/false/yes/no, `on`/`off`, `1`/`0`.
pub fn pg_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || v == "on" || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn load(keys: &str) -> Result<Config, String> {
        let text = format!(
            "replication_slots:\n  - s:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n{keys}"
        );
        Config::from_text(Path::new("c.yml"), &text, &|_| None).map_err(|e| e.to_string())
    }

    fn format(keys: &str) -> FormatConfig {
        load(keys).unwrap().slots[0].format
    }

    #[test]
    fn defaults_are_the_native_record_with_values_as_wal2json_prints_them() {
        assert_eq!(format(""), FormatConfig::default());
        assert_eq!(FormatConfig::default().record_format, RecordFormat::Native);
        assert_eq!(FormatConfig::default().timestamps, Timestamps::Postgres);
    }

    #[test]
    fn every_key_is_read() {
        let f = format(
            "      record_format: debezium\n      numeric_as_string: true\n      json_as_object: true\n      timestamps: iso8601\n",
        );
        assert_eq!(
            f,
            FormatConfig {
                record_format: RecordFormat::Debezium,
                numeric_as_string: true,
                json_as_object: true,
                timestamps: Timestamps::Iso8601,
            }
        );
        assert_eq!(
            format("      record_format: native\n      timestamps: postgres\n"),
            FormatConfig::default()
        );
    }

    #[test]
    fn bad_values_are_reported_at_their_line_and_column_with_the_choices() {
        let e = load("      record_format: avro\n").unwrap_err();
        assert!(
            e.contains("c.yml:7:22") && e.contains("`native` or `debezium`"),
            "{e}"
        );
        let e = load("      timestamps: iso\n").unwrap_err();
        assert!(e.contains("c.yml:7:19") && e.contains("`iso8601`"), "{e}");
        let e = load("      json_as_object: 1\n").unwrap_err();
        assert!(e.contains("`true` or `false`"), "{e}");
    }

    #[test]
    fn type_options_need_the_column_types_wal2json_prints() {
        let off = "      options: {include-types: false}\n";
        let e = load(&format!("{off}      timestamps: iso8601\n")).unwrap_err();
        assert!(
            e.contains("`timestamps`") && e.contains("include-types"),
            "{e}"
        );
        let e = load(&format!("{off}      json_as_object: true\n")).unwrap_err();
        assert!(e.contains("`json_as_object`"), "{e}");
        // Numbers are recognised without types; the options off need nothing.
        assert!(load(&format!("{off}      numeric_as_string: true\n")).is_ok());
        assert!(load(&format!("{off}      json_as_object: false\n")).is_ok());
        assert!(load("      options: {include-types: true}\n      json_as_object: true\n").is_ok());
    }
}
