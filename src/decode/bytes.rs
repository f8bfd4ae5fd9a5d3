//! Byte searches over JSON text: whether a document holds a control byte (32 at a
//! time), and, eight bytes at a time, where a string ends and whether a string needs
//! escaping. Names, keys and short values are the common case, where a byte loop
//! costs more than the search.

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `w` below `n` (n ≤ 128). A byte above a hit may be
/// flagged too (the borrow), never one below it: the lowest flag is exact.
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS
}

/// The high bit of each byte of `w` equal to `c`, with the same rule.
fn equal(w: u64, c: u8) -> u64 {
    below(w ^ (ONES * u64::from(c)), 1)
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let eight = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(eight.try_into().ok()?))
}

/// The index of the first `"` or `\` in `bytes`.
pub(crate) fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < 32 {
        let Some(w) = word(bytes, at) else {
            let tail = bytes.get(at..)?;
            return tail
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .map(|n| at + n);
        };
        let hits = equal(w, b'"') | equal(w, b'\\');
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr::memchr2(b'"', b'\\', bytes.get(at..)?).map(|n| at + n)
}

/// Whether any byte is below 0x20: the smallest byte of each block of 128, then of
/// 16, a minimum that compiles to vector instructions, then the last few one by one.
pub(crate) fn has_control_byte(data: &[u8]) -> bool {
    let smallest = |block: &[u8]| block.iter().fold(u8::MAX, |m, &c| m.min(c));
    let mut large = data.chunks_exact(128);
    if large.any(|block| smallest(block) < 0x20) {
        return true;
    }
    let mut small = large.remainder().chunks_exact(16);
    if small.any(|block| smallest(block) < 0x20) {
        return true;
    }
    small.remainder().iter().any(|&c| c < 0x20)
}

/// Whether `bytes` holds a byte JSON escapes in a string: `"`, `\` or a control
/// character.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for eight in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(eight);
        let w = u64::from_le_bytes(w);
        if below(w, 0x20) | equal(w, b'"') | equal(w, b'\\') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        // Mostly plain text, with the bytes that matter (and 0x80+) mixed in.
        proptest::collection::vec(
            prop_oneof![
                8 => b'a'..=b'z',
                1 => Just(b'"'),
                1 => Just(b'\\'),
                1 => 0u8..0x20,
                1 => 0x20u8..=0xff,
            ],
            0..80,
        )
    }

    proptest! {
        #[test]
        fn quote_or_backslash_finds_the_first(b in bytes()) {
            prop_assert_eq!(
                quote_or_backslash(&b),
                b.iter().position(|&c| c == b'"' || c == b'\\')
            );
        }

        #[test]
        fn needs_escape_sees_every_byte_that_does(b in bytes()) {
            prop_assert_eq!(
                needs_escape(&b),
                b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
            );
        }
    }

    /// Every length to past two blocks of 128, every position, the control bytes at
    /// both ends of the range and the first byte past it.
    #[test]
    fn has_control_byte_sees_one_anywhere() {
        for len in 0..300 {
            let plain = vec![b' '; len];
            assert!(!has_control_byte(&plain), "{len}");
            for at in 0..len {
                for c in [0x00, 0x09, 0x1f, 0x20] {
                    let mut b = plain.clone();
                    b[at] = c;
                    assert_eq!(has_control_byte(&b), c < 0x20, "{len} {at} {c:#x}");
                }
            }
        }
    }

    #[test]
    fn the_bytes_next_to_the_limits() {
        for c in 0..=255u8 {
            let mut b = [b'x'; 19];
            b[11] = c;
            let hit = c < 0x20 || c == b'"' || c == b'\\';
            assert_eq!(needs_escape(&b), hit, "{c:#x}");
            let want = (c == b'"' || c == b'\\').then_some(11);
            assert_eq!(quote_or_backslash(&b), want, "{c:#x}");
        }
        // A hit past the words the loop reads one by one.
        let mut long = vec![b'y'; 100];
        long[77] = b'"';
        assert_eq!(quote_or_backslash(&long), Some(77));
    }
}
