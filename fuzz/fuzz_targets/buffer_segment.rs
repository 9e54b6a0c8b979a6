//! A damaged buffer segment: the scan never panics, and every record it calls intact decodes
//! where it says, with the corrupt ranges skipped in between.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logferry::buffer::frame::{self, Frame, SEGMENT_MAGIC};

fuzz_target!(|data: &[u8]| {
    let mut buf = SEGMENT_MAGIC.to_vec();
    buf.extend_from_slice(data);
    let Some(scan) = frame::scan(&buf) else {
        panic!("a buffer with the magic is a segment");
    };
    assert_eq!(scan.end + scan.torn, buf.len() as u64);
    let mut at = SEGMENT_MAGIC.len();
    let mut found = 0;
    while at < scan.end as usize {
        if let Some(&(start, end)) = scan.corrupt.iter().find(|c| c.0 as usize == at) {
            assert!(end > start);
            at = end as usize;
            continue;
        }
        match frame::decode(&buf[at..]) {
            Frame::Record { len, .. } => {
                found += 1;
                at += len;
            }
            other => panic!("no record at {at}: {other:?}"),
        }
    }
    assert_eq!(found, scan.records);
});
