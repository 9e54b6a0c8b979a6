//! Discovery runs on a thread of its own that never writes the buffer: a reading thread
//! blocked on a full buffer (or a stalled disk) cannot keep a new file from being opened, and an
//! open file keeps a deleted file's lines readable.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::proxy::FaultProxy;
use support::{
    Agent, Format, LogWriter, Node, assert_exactly_once, osmem, wait_for_count, wait_until,
};

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

/// A config whose periodic rescan never comes within a test: whatever is found, inotify found.
fn rescanning_hourly(node: &Node, es_url: &str, glob: Option<&str>) -> std::path::PathBuf {
    let path = node.config(es_url, "", "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("rescan_interval = \"200ms\"", "rescan_interval = \"1h\"");
    if let Some(glob) = glob {
        let default = node.logs().join("containers/*.log").display().to_string();
        text = text.replace(&default, glob);
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The kubelet moves `0.log` away and the runtime makes the new one a moment later; the
/// container's link in `/var/log/containers` does not change. The rescan the move starts finds
/// the link leading nowhere: the new file must be found through its directory's watch, not a
/// rescan a `rescan_interval` later.
#[test]
fn a_file_the_runtime_makes_late_after_a_rotation_is_found_without_a_rescan() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "late", "app", Format::Cri);
    let mut expected = HashSet::new();
    for seq in 0..50 {
        w.json_line(seq).unwrap();
        expected.insert(("late".to_owned(), seq));
    }
    let agent = Agent::start(&rescanning_hourly(&node, &es.url, None));
    assert_eq!(wait_for_count(&es, 50, 30), 50);
    w.rotate_slowly("1", Duration::from_millis(1500)).unwrap();
    for seq in 50..100 {
        w.json_line(seq).unwrap();
        expected.insert(("late".to_owned(), seq));
    }
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

/// `pods/*/*/*.log`: a pod's directory appears, and its container's file only later. Only the
/// glob's root existed at start: the directories its wildcards match are watched as they come.
#[test]
fn a_file_in_a_directory_a_wildcard_matches_is_found_without_a_rescan() {
    let es = osmem();
    let node = Node::new();
    let expected = node.json_lines("first", 10);
    let glob = node.logs().join("pods/*/*/*.log").display().to_string();
    let agent = Agent::start(&rescanning_hourly(&node, &es.url, Some(&glob)));
    assert_eq!(wait_for_count(&es, 10, 30), 10);
    // The pod's and the container's directories first, as the kubelet makes them; the runtime
    // writes the file after the rescan their creation started.
    let probe = node.writer("shop", "later", "app", Format::Cri);
    let container_dir = probe.path.parent().unwrap().to_owned();
    drop(probe);
    std::fs::remove_file(container_dir.join("0.log")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut all = expected;
    all.extend(node.json_lines("later", 20));
    assert_exactly_once(&es, &all);
    assert!(agent.stop().success());
}

/// A matched link that leads to no file yet: nothing the agent watches changes when the file
/// is made (its directory is not under any glob), so the rescan keeps `rescan_interval` while
/// a link leads nowhere rather than the safety net's minutes.
#[test]
fn a_link_made_before_its_file_is_followed_once_the_file_exists() {
    let es = osmem();
    let node = Node::new();
    let mut all = node.json_lines("first", 10);
    let agent = Agent::start(&node.config(&es.url, "", ""));
    assert_eq!(wait_for_count(&es, 10, 30), 10);
    // The file's place, outside every glob: made, noted, then taken away again.
    let elsewhere = node.dir.path().join("elsewhere");
    let probe = LogWriter::create(&elsewhere, "shop", "early", "app", Format::Cri).unwrap();
    let (target, name) = (
        probe.path.clone(),
        probe.link.file_name().unwrap().to_owned(),
    );
    drop(probe);
    std::fs::remove_dir_all(elsewhere.join("pods")).unwrap();
    std::os::unix::fs::symlink(&target, node.logs().join("containers").join(name)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut w = LogWriter::create(&elsewhere, "shop", "early", "app", Format::Cri).unwrap();
    for seq in 0..20 {
        w.json_line(seq).unwrap();
        all.insert(("early".to_owned(), seq));
    }
    assert_exactly_once(&es, &all);
    assert!(agent.stop().success());
}
