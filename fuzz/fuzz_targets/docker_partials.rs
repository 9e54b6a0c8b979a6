//! docker json-file lines, with pieces joined across lines: whatever the bytes, no panic, and
//! no record longer than the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logferry::decode::Decoder;

const MAX: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(MAX);
    let first = br#"{"log":"first\n","stream":"stdout","time":"2026-11-26T17:00:00.000000000Z"}"#;
    let _ = d.decode(first, 0);
    let mut offset = first.len() as u64 + 1;
    for line in data.split(|&b| b == b'\n') {
        if let Some(r) = d.decode(line, offset) {
            assert!(r.message.len() <= MAX, "record over the cap");
        }
        offset += line.len() as u64 + 1;
    }
    for r in d.finish() {
        assert!(r.message.len() <= MAX);
    }
});
