//! The buffer when the process runs out of file descriptors (EMFILE): failing to open the
//! buffer's directory for its fsync is waited out, never taken for a failed fsync. Its own test
//! binary, because it lowers the process's descriptor limit and uses every descriptor up.

use logferry::buffer::{Appender, Buffer, Chunk, Options};
use logferry::config::OverflowAction;
use logferry::metrics::Metrics;
use logferry::source::files::Checkpoints;
use logferry::vocab::FileKey;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lowers the soft limit of open files, so that using them all up is quick.
fn limit_descriptors(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

#[test]
fn running_out_of_descriptors_before_the_buffer_fsync_is_waited_out_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut key = FileKey::new(1, 2, 3);
    let checkpoints = Arc::new(Checkpoints::open(dir.path()).unwrap());
    checkpoints.track(&mut key, Path::new("/log"), 0);
    let metrics = Arc::new(Metrics::new());
    let options = Options {
        dir: dir.path().join("buffer"),
        max_size: 1 << 20,
        segment_size: 1 << 16,
        overflow: OverflowAction::Block,
    };
    let buffer = Arc::new(Buffer::open(options, metrics.clone()).unwrap());
    let mut chunk = Chunk::new();
    for n in 0..3 {
        chunk.push_item(format!("{{\"create\":{{}}}}\n{{\"n\":{n}}}\n").as_bytes());
    }
    chunk.advance(key, 3);
    // The new segment is open; its directory entry still needs the directory's fsync.
    Appender::new(buffer.clone())
        .append(&mut chunk, || false)
        .unwrap();

    limit_descriptors(256);
    let mut hogs = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    let committer = {
        let (b, c) = (buffer.clone(), checkpoints.clone());
        std::thread::spawn(move || b.commit_loop(|durable| c.advance(durable)))
    };
    wait_for("the committer to wait for a descriptor", || {
        metrics.buffer_sync_open_waits.get() > 0
    });
    assert_eq!(buffer.fatal(), None, "EMFILE is not a failed fsync");
    let problem = buffer.stats().problem.unwrap_or_default();
    assert!(problem.contains("Too many open files"), "{problem}");
    assert_eq!(
        checkpoints.get(&key).map(|e| e.offset),
        Some(0),
        "nothing is confirmed before the fsync"
    );

    drop(hogs);
    wait_for("the commit", || {
        checkpoints.get(&key).is_some_and(|e| e.offset == 3)
    });
    assert_eq!(buffer.fatal(), None);
    assert_eq!(buffer.stats().problem, None);
    let batch = buffer
        .read_batch(1 << 20)
        .expect("the records are readable");
    assert_eq!(batch.len(), 3);
    buffer.stop_committing();
    committer.join().unwrap();
}
