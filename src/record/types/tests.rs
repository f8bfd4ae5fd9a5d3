//! Unit tests of the consumer-friendly value forms: numerics, JSON and timestamps
//! rewritten without losing a digit, and the values left as they came.

use super::*;

fn col(ty: ColumnType, raw: &str) -> Column {
    let mut c = Column::new("c", crate::decode::Json::parse(raw).unwrap());
    c.ty = ty;
    c
}

fn push(ty: ColumnType, raw: &str, options: ValueOptions) -> String {
    let mut out = Vec::new();
    push_value(&mut out, &col(ty, raw), options);
    let text = String::from_utf8(out).unwrap();
    serde_json::from_str::<&RawValue>(&text).expect("always valid JSON");
    text
}

const JSON: ValueOptions = ValueOptions {
    numeric_as_string: false,
    json_as_object: true,
    iso8601: false,
};
const ISO: ValueOptions = ValueOptions {
    numeric_as_string: false,
    json_as_object: false,
    iso8601: true,
};
const NUM: ValueOptions = ValueOptions {
    numeric_as_string: true,
    json_as_object: false,
    iso8601: false,
};

#[test]
fn numbers_become_strings_of_the_same_digits() {
    for (raw, expect) in [
        (
            "123456789012345678901.1234567890",
            r#""123456789012345678901.1234567890""#,
        ),
        ("-0.0000000001", r#""-0.0000000001""#),
        ("9223372036854775807", r#""9223372036854775807""#),
        ("1.5e+300", r#""1.5e+300""#),
        ("null", "null"),
        ("true", "true"),
        (r#""12""#, r#""12""#),
    ] {
        assert_eq!(push(ColumnType::Other, raw, NUM), expect, "{raw}");
    }
    assert_eq!(
        push(ColumnType::Other, "12.50", JSON),
        "12.50",
        "option off"
    );
}

#[test]
fn json_values_become_json_keeping_every_digit() {
    let raw = r#""{\"a\": [1, 2.50, null], \"n\": 123456789012345678901.1234567890}""#;
    assert_eq!(
        push(ColumnType::Json, raw, JSON),
        r#"{"a": [1, 2.50, null], "n": 123456789012345678901.1234567890}"#
    );
    assert_eq!(push(ColumnType::Json, raw, ISO), raw, "option off");
    assert_eq!(push(ColumnType::Json, r#""  [1,\n2] ""#, JSON), "[1,\n2]");
    assert_eq!(push(ColumnType::Json, r#""\"s\"""#, JSON), r#""s""#);
    assert_eq!(push(ColumnType::Json, "null", JSON), "null", "SQL NULL");
    assert_eq!(
        push(ColumnType::Json, r#""null""#, JSON),
        "null",
        "JSON null"
    );
    assert_eq!(push(ColumnType::Other, r#""{}""#, JSON), r#""{}""#);
}

#[test]
fn text_that_is_not_json_stays_a_string() {
    for raw in [r#""{not json""#, r#""""#, r#""1 2""#, "12", "true"] {
        assert_eq!(push(ColumnType::Json, raw, JSON), raw);
    }
    let deep = format!("\"{}{}\"", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        push(ColumnType::Json, &deep, JSON),
        deep[1..deep.len() - 1],
        "deep but valid"
    );
    for raw in [
        r#""{1,{2}""#,
        r#""[0:1]={1,2}""#,
        r#""{\"x}""#,
        r#""{1,}""#,
        r#""{{{{{{{1}}}}}}}""#,
    ] {
        assert_eq!(push(ColumnType::JsonArray, raw, JSON), raw, "{raw}");
    }
}

#[test]
fn arrays_of_json_become_json_arrays() {
    // As array_out prints a jsonb[]: objects quoted, scalars bare, SQL NULL bare,
    // a JSON null quoted (it would read as NULL).
    let raw = r#""{\"{\\\"a\\\": 1}\",2.50,NULL,\"null\",\"\\\"x,y\\\"\",true}""#;
    assert_eq!(
        push(ColumnType::JsonArray, raw, JSON),
        r#"[{"a": 1},2.50,null,null,"x,y",true]"#
    );
    assert_eq!(push(ColumnType::JsonArray, r#""{}""#, JSON), "[]");
    assert_eq!(
        push(ColumnType::JsonArray, r#""{{1,2},{3,NULL}}""#, JSON),
        "[[1,2],[3,null]]"
    );
    assert_eq!(push(ColumnType::JsonArray, "null", JSON), "null");
}

#[test]
fn timestamps_become_iso8601_with_every_digit() {
    let ts = |ty, text: &str| push(ty, &format!("\"{text}\""), ISO);
    use ColumnType::*;
    for (ty, from, to) in [
        (
            TimestampTz,
            "2024-01-02 03:04:05.123456+00",
            "2024-01-02T03:04:05.123456Z",
        ),
        (
            TimestampTz,
            "2024-01-02 03:04:05+05:30",
            "2024-01-02T03:04:05+05:30",
        ),
        (
            TimestampTz,
            "2024-01-02 03:04:05.1-08",
            "2024-01-02T03:04:05.1-08:00",
        ),
        (
            TimestampTz,
            "1850-01-01 00:00:00-04:56:02",
            "1850-01-01T00:00:00-04:56:02",
        ),
        (
            TimestampTz,
            "0044-03-15 12:00:00+00 BC",
            "-0043-03-15T12:00:00Z",
        ),
        (
            TimestampTz,
            "0001-01-01 00:00:00+00 BC",
            "0000-01-01T00:00:00Z",
        ),
        (
            TimestampTz,
            "10000-01-01 00:00:00+00",
            "+10000-01-01T00:00:00Z",
        ),
        (TimestampTz, "infinity", "infinity"),
        (TimestampTz, "-infinity", "-infinity"),
        (
            Timestamp,
            "2024-01-02 03:04:05.000001",
            "2024-01-02T03:04:05.000001",
        ),
        (Timestamp, "4713-01-01 00:00:00 BC", "-4712-01-01T00:00:00"),
        (Date, "2024-02-29", "2024-02-29"),
        (Date, "0044-03-15 BC", "-0043-03-15"),
        (Date, "infinity", "infinity"),
        (TimeTz, "03:04:05.123456+00", "03:04:05.123456Z"),
        (TimeTz, "24:00:00-12:30", "24:00:00-12:30"),
        (TimeTz, "03:04:05+05", "03:04:05+05:00"),
    ] {
        assert_eq!(ts(ty, from), format!("\"{to}\""), "{from}");
    }
}

#[test]
fn text_in_another_datestyle_is_left_alone() {
    use ColumnType::*;
    for (ty, text) in [
        (TimestampTz, "Tue Jan 02 03:04:05.123456 2024 UTC"),
        (TimestampTz, "01/02/2024 03:04:05.12 UTC"),
        (TimestampTz, "2024-01-02 03:04:05."),
        (TimestampTz, "2024-01-02 03:04:05+5"),
        (Timestamp, "2024-01-02 03:04:05+00"),
        (Date, "02.01.2024"),
        (TimeTz, "03:04"),
        (TimeTz, "é"),
        (Timestamp, ""),
    ] {
        let raw = format!("\"{text}\"");
        assert_eq!(push(ty, &raw, ISO), raw, "{text}");
    }
    assert_eq!(push(TimestampTz, "null", ISO), "null");
    assert_eq!(
        push(TimestampTz, r#""2024-01-02 03:04:05+00""#, JSON),
        r#""2024-01-02 03:04:05+00""#,
        "option off"
    );
}
