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

    /// Append the `X/Y` form (uppercase hex, as PostgreSQL prints it) to `out`
    /// without going through `fmt`: records carry two LSNs each.
    pub fn write_to(self, out: &mut Vec<u8>) {
        push_hex(out, (self.0 >> 32) as u32);
        out.push(b'/');
        push_hex(out, self.0 as u32);
    }
}

fn push_hex(out: &mut Vec<u8>, v: u32) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    // All eight digits into a buffer, then the significant ones in one copy.
    let mut buf = [0u8; 8];
    for (i, d) in buf.iter_mut().enumerate() {
        *d = DIGITS[((v >> ((7 - i) * 4)) & 0xF) as usize];
    }
    let digits = (32 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    out.extend_from_slice(&buf[8 - digits..]);
}

/// The text was not a `X/Y` hexadecimal LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected two hexadecimal numbers separated by '/', like 16/B374D848")]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(err());
        }
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
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
    fn write_to_matches_display() {
        for v in [
            0,
            1,
            0xF,
            0x10,
            0x16_B374_D848,
            0x1_0000_0000,
            u64::MAX,
            0xABC_0000_0001,
        ] {
            let mut out = b"x".to_vec();
            Lsn(v).write_to(&mut out);
            assert_eq!(&out[1..], Lsn(v).to_string().as_bytes(), "{v:#x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn write_to_writes_what_display_writes(v: u64) {
            let mut out = Vec::new();
            Lsn(v).write_to(&mut out);
            proptest::prop_assert_eq!(out, Lsn(v).to_string().into_bytes());
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for text in ["", "/", "1/", "/1", "G/0", "1/2/3", "123456789/0", "12"] {
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
