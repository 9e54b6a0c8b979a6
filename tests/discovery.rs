//! Discovery runs on a thread of its own that never writes the buffer: a reading thread
//! blocked on a full buffer (or a stalled disk) cannot keep a new file from being opened, and an
//! open file keeps a deleted file's lines readable.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::proxy::FaultProxy;
use support::{Agent, Format, Node, assert_exactly_once, osmem, wait_until};

/// From the README's "Not done yet": a file created, written and deleted while the tailer
/// waited on the buffer was never opened, and its lines were gone with it.
#[test]
fn a_short_lived_file_is_shipped_while_the_buffer_blocks_reading() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let node = Node::new();
    let mut busy = node.writer("shop", "busy", "app", Format::Cri);
    let mut expected: HashSet<(String, u64)> = (0..300)
        .map(|seq| {
            busy.json_line(seq).unwrap();
            ("busy".to_owned(), seq)
        })
        .collect();
    let agent = Agent::start(&node.config(
        &proxy.url,
        "",
        "chunk_limit_size = \"1KiB\"\nflush_thread_count = 1\nmax_size = \"8KiB\"",
    ));
    wait_until(20, "the buffer to fill", || {
        agent.logs().contains("the buffer is full")
    });
    // Reading is blocked now. A pod comes and goes.
    let mut brief = node.writer("shop", "brief", "app", Format::Cri);
    for seq in 0..20 {
        brief.json_line(seq).unwrap();
        expected.insert(("brief".to_owned(), seq));
    }
    // Deleted as soon as the agent holds it open (it is in the checkpoints from then on), or
    // after a while if it never does, which is the failure this test pins.
    let checkpoints = node.data().join("checkpoints.json");
    let real = brief.path.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !std::fs::read_to_string(&checkpoints).is_ok_and(|t| t.contains(&real))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&brief.link).unwrap();
    std::fs::remove_file(&brief.path).unwrap();
    drop(brief);
    proxy.set(|f| f.down = false);
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}
