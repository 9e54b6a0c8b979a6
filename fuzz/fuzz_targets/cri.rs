//! CRI lines, whole and partial, after a first line that fixes the format: whatever the bytes,
//! no panic, and no record longer than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logferry::decode::Decoder;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(MAX);
    let _ = d.decode(b"2026-11-26T17:00:00.000000000Z stdout F first", 0);
    let mut offset = 64;
    for line in data.split(|&b| b == b'\n') {
        if let Some(r) = d.decode(line, offset) {
            assert!(r.message.len() <= MAX, "record over the cap");
            assert!(r.offset <= offset);
        }
        offset += line.len() as u64 + 1;
    }
    for r in d.finish() {
        assert!(r.message.len() <= MAX);
        assert!(r.flags.unterminated);
    }
});
