//! The `Lsn` newtype: a PostgreSQL write-ahead-log position.
//!
//! Owns parsing and formatting of the textual `X/Y` form and ordering. It never
//! talks to a server.

use std::fmt;
use std::str::FromStr;

/// A WAL position (`pg_lsn`). Ordered; `Lsn(0)` is "unknown / start of the slot".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    /// Append the `"X/Y"` form, a JSON string (uppercase hex, as PostgreSQL prints
    /// it), to `out` in one copy and without going through `fmt`: records carry two
    /// LSNs each.
    pub fn write_quoted_to(self, out: &mut Vec<u8>) {
        let (hi, hi_len) = hex((self.0 >> 32) as u32);
        let (lo, lo_len) = hex(self.0 as u32);
        let mut text = [b'"'; 19];
        text[1..9].copy_from_slice(&hi.to_le_bytes());
        text[1 + hi_len] = b'/';
        text[2 + hi_len..10 + hi_len].copy_from_slice(&lo.to_le_bytes());
        text[2 + hi_len + lo_len] = b'"';
        out.extend_from_slice(&text[..3 + hi_len + lo_len]);
    }
}

/// `v` in hex without leading zeros (one digit at least): the digits in the low
/// bytes of the word, in memory order, and how many there are.
fn hex(v: u32) -> (u64, usize) {
    // Each of the eight nibbles spread into its own byte, the most significant first
    // in memory order, then turned into its digit, all in one word; the word is
    // shifted so that the significant digits come first.
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = x.swap_bytes();
    // 1 in each byte holding 10..=15, which then skips from '9' + 1 to 'A'.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    let text = x + 0x3030_3030_3030_3030 + letters * 7;
    let digits = (32 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    (text >> ((8 - digits) * 8), digits)
}

/// The text was not a `X/Y` hexadecimal LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', like 16/B374D848")]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_string());
        // A byte search: `split_once` sets up a char searcher, which cost more than
        // the parse itself on the decoder's path (an LSN per row).
        let bytes = s.as_bytes();
        let slash = bytes.iter().position(|&c| c == b'/').ok_or_else(err)?;
        let (hi, lo) = (&bytes[..slash], &bytes[slash + 1..]);
        let (hi, lo) = (hex32(hi).ok_or_else(err)?, hex32(lo).ok_or_else(err)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// One to eight hexadecimal digits, nothing else (no sign), as PostgreSQL's
/// `pg_lsn` reads each half.
fn hex32(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    text.iter().try_fold(0u32, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        Some((v << 4) | u32::from(d))
    })
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_form() {
        for text in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/1"] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap().0, 0x16_B374_D848);
    }

    #[test]
    fn write_quoted_to_matches_display() {
        for v in [
            0,
            1,
            0xF,
            0x10,
            0x16_B374_D848,
            0x1_0000_0000,
            u64::MAX,
            0xABC_0000_0001,
            0x9_A0F1_B2E3,
            0x0123_4567_89AB_CDEF,
            0xFEDC_BA98_7654_3210,
        ] {
            let mut out = b"x".to_vec();
            Lsn(v).write_quoted_to(&mut out);
            assert_eq!(out, format!("x\"{}\"", Lsn(v)).into_bytes(), "{v:#x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn write_quoted_to_writes_what_display_writes(v: u64) {
            let mut out = Vec::new();
            Lsn(v).write_quoted_to(&mut out);
            proptest::prop_assert_eq!(out, format!("\"{}\"", Lsn(v)).into_bytes());
        }
    }

    proptest::proptest! {
        /// Text of hex digits, slashes and signs parses as two halves of one to eight
        /// hex digits each would, and nothing else does.
        #[test]
        fn parses_two_halves_of_hex_digits_only(text in proptest::prop_oneof![
            3 => "[0-9a-fA-F]{0,9}/[0-9a-fA-F]{0,9}",
            1 => "[0-9a-fA-FgG/+ -]{0,20}",
        ]) {
            let half = |h: &str| {
                (1..=8).contains(&h.len()) && h.bytes().all(|c| c.is_ascii_hexdigit())
            };
            let want = text
                .split_once('/')
                .filter(|(hi, lo)| half(hi) && half(lo))
                .map(|(hi, lo)| {
                    let hi = u64::from_str_radix(hi, 16).unwrap();
                    Lsn((hi << 32) | u64::from_str_radix(lo, 16).unwrap())
                });
            proptest::prop_assert_eq!(text.parse::<Lsn>().ok(), want);
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "/",
            "1/",
            "/1",
            "G/0",
            "1/2/3",
            "123456789/0",
            "12",
            "+1/0",
            "0/+1",
            "0/-1",
            " 0/1",
            "é/1",
            "1/é",
            "1/0é",
        ] {
            assert!(text.parse::<Lsn>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn orders_numerically() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
    }
}
