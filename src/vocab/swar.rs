//! Eight bytes at a time: byte classes tested across a `u64` with integer arithmetic, where
//! vector instructions would need `unsafe` (the crate forbids it) or nightly's portable SIMD.
//! Each function marks a byte by setting its high bit, exactly (no false marks from a
//! neighbour's borrow or carry: every sum stays within its byte), so `first` can say where.

/// `b` in all eight bytes.
pub const fn bytes_of(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

const LOW7: u64 = bytes_of(0x7f);
/// The high bit of every byte: what a marked byte has set.
pub const HIGH: u64 = bytes_of(0x80);

/// Marks each byte of `w` equal to `b`.
pub fn byte_is(w: u64, b: u8) -> u64 {
    let x = w ^ bytes_of(b);
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// Marks each byte of `w` below `n` (`n` at most `0x80`).
pub fn below(w: u64, n: u8) -> u64 {
    debug_assert!(n <= 0x80);
    !(((w & LOW7) + bytes_of(0x80 - n)) | w) & HIGH
}

/// Marks each byte of `w` within `lo..=hi` (both under `0x80`).
pub fn within(w: u64, lo: u8, hi: u8) -> u64 {
    debug_assert!(lo <= hi && hi < 0x80);
    let ascii = w & LOW7;
    let from_lo = ascii + bytes_of(0x80 - lo);
    let past_hi = ascii + bytes_of(0x7f - hi);
    from_lo & !past_hi & !w & HIGH
}

/// The eight bytes at the start of `s`, as the functions here take them (the first byte the
/// lowest), if `s` has eight.
pub fn word(s: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = s.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Which of a word's bytes is the first marked one (`marks` not zero).
pub fn first(marks: u64) -> usize {
    (marks.trailing_zeros() / 8) as usize
}

/// How many of a word's bytes are marked: one multiplication sums the eight marks into the top
/// byte (`count_ones` is a library routine where the CPU's own count is no baseline feature).
pub fn count(marks: u64) -> u32 {
    ((marks >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, at every place in a word, among neighbours that make borrows and
    /// carries (0x00, 0x7f, 0x80, 0xff): each test marks exactly the bytes it should.
    #[test]
    fn each_test_marks_exactly_the_bytes_it_names() {
        for b in 0..=255u8 {
            for at in 0..8 {
                for fill in [0u8, b'0', b'"', 0x1f, 0x7f, 0x80, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[at] = b;
                    let w = word(&bytes).unwrap();
                    let marked = |marks: u64, want: &dyn Fn(u8) -> bool| {
                        for (i, &byte) in bytes.iter().enumerate() {
                            let bit = marks >> (8 * i) & 0xff;
                            assert_eq!(
                                bit,
                                if want(byte) { 0x80 } else { 0 },
                                "{byte:#04x} at {i}"
                            );
                        }
                    };
                    marked(byte_is(w, b'"'), &|x| x == b'"');
                    marked(byte_is(w, 0), &|x| x == 0);
                    marked(below(w, 0x20), &|x| x < 0x20);
                    marked(within(w, b'0', b'9'), &|x| x.is_ascii_digit());
                    marked(within(w, 0, 0x7f), &|x| x < 0x80);
                }
            }
        }
        assert_eq!(first(byte_is(word(b"ab\"c\"def").unwrap(), b'"')), 2);
        for marks in 0..=255u64 {
            // Each bit of `marks` stands for one byte's mark.
            let word_marks = (0..8).fold(0, |w, i| w | (marks >> i & 1) << (8 * i + 7));
            assert_eq!(count(word_marks), marks.count_ones(), "{marks:08b}");
        }
        assert_eq!(word(b"seven!!"), None);
    }
}
