//! The agent's own files on a node: private whatever the umask, and a buffer volume too small
//! for its segments, or filled by someone else, that neither loses nor doubles a line and says
//! so in `/health` when it cannot move. Against a real osmem-server; the small volumes are
//! tmpfs mounts, so those tests need root: not as root they fail, unless
//! `LOGFERRY_TESTS_SKIP_ROOT=1` says to skip them.

mod support;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::proxy::FaultProxy;
use support::*;

/// A small tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_owned())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A config whose buffer lives at `dir` (default segments of 5 MiB).
fn config_with_buffer_at(node: &Node, es_url: &str, dir: &Path) -> PathBuf {
    node.config(
        es_url,
        "",
        &format!("path = {:?}", dir.display().to_string()),
    )
}

/// Lines of about 1 KiB for a new pod, and what must end up in the index.
fn padded_lines(node: &Node, pod: &str, seqs: std::ops::Range<u64>) -> HashSet<(String, u64)> {
    let mut w = node.writer("shop", pod, "app", Format::Cri);
    seqs.map(|seq| {
        let line = serde_json::json!({"seq": seq, "level": "info", "pad": "x".repeat(900)});
        w.line(&line.to_string()).unwrap();
        (pod.to_owned(), seq)
    })
    .collect()
}

#[test]
fn a_buffer_volume_smaller_than_a_segment_ships_every_line_once() {
    if !needs_root("mounting a small tmpfs") {
        return;
    }
    let es = osmem();
    let node = Node::new();
    let volume = node.dir.path().join("buffer-volume");
    let _disk = Tmpfs::mount(&volume, "2m");
    let config = config_with_buffer_at(&node, &es.url, &volume);
    let agent = Agent::start(&config);
    let logs = agent.logs();
    assert!(
        logs.contains("less than 3 segments"),
        "start-up warns about the small volume: {logs}"
    );
    // About 9 MB of buffered items, four times what the volume holds (osmem-server answers a
    // search up to 10,000 documents deep, so the lines are wide rather than many).
    let expected = padded_lines(&node, "small", 0..9_000);
    let indexed = wait_for_count(&es, 9_000, 180);
    assert_eq!(indexed, 9_000, "every line is shipped: {}", agent.logs());
    assert_exactly_once(&es, &expected);
    assert!(
        agent.metric("logferry_buffer_write_errors_total") > 0,
        "the volume did fill up"
    );
    wait_until(20, "the buffer to be writable again", || {
        agent.get("/health")["checks"]["buffer"]["status"] == "healthy"
    });
    assert!(agent.stop().success());
    // And a restart over what is left goes on from there.
    let agent = Agent::start(&config);
    let more = padded_lines(&node, "after-restart", 0..1_000);
    let mut all = expected;
    all.extend(more);
    assert_exactly_once(&es, &all);
    assert!(agent.stop().success());
}

#[test]
fn a_buffer_stuck_on_a_full_volume_turns_health_unhealthy_and_recovers_when_space_returns() {
    if !needs_root("mounting a small tmpfs to fill") {
        return;
    }
    let es = osmem();
    let node = Node::new();
    let volume = node.dir.path().join("buffer-volume");
    let disk = Tmpfs::mount(&volume, "1m");
    let agent = Agent::start(&config_with_buffer_at(&node, &es.url, &volume));
    let mut w = node.writer("shop", "stuck", "app", Format::Cri);
    for seq in 0..10 {
        w.json_line(seq).unwrap();
    }
    wait_for_count(&es, 10, 20);
    // Someone else fills the volume: nothing buffered is left to ship and free.
    let filler = disk.fill();
    for seq in 10..300 {
        w.json_line(seq).unwrap();
    }
    wait_until(90, "/health to say the buffer is stuck", || {
        agent.get("/health")["checks"]["buffer"]["status"] == "unhealthy"
    });
    let health = agent.get("/health");
    assert_eq!(health["status"], "unhealthy", "{health}");
    let detail = health["checks"]["buffer"]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("stuck") && detail.contains("No space left on device"),
        "the reason is given: {health}"
    );
    std::fs::remove_file(filler).unwrap();
    let expected: HashSet<(String, u64)> = (0..300).map(|s| ("stuck".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    wait_until(20, "the buffer to be healthy again", || {
        agent.get("/health")["checks"]["buffer"]["status"] == "healthy"
    });
    assert!(agent.stop().success());
}

/// Every file and directory under `dir`, with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.extend(modes(&path));
        }
        out.push((path, mode, meta.is_dir()));
    }
    out
}

#[test]
fn files_the_agent_writes_are_private_whatever_the_umask() {
    // umask is per process and inherited: the agent started below runs with 000, as it would
    // under a careless init. Other tests in this binary only get more permissive temp files.
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe {
        libc::umask(0);
    }
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    let node = Node::new();
    let mut w = node.writer("shop", "private", "app", Format::Cri);
    w.json_line(0).unwrap();
    let config = node.config(&proxy.url, "", "");
    let agent = Agent::start(&config);
    wait_for_count(&es, 1, 20);
    // A document the cluster refuses for good (a strict mapping, no salvage): a dead letter.
    proxy.set(|f| {
        f.reject_items = 1.0;
        f.reject_with = Some((400, "strict_dynamic_mapping_exception".into()));
    });
    w.json_line(1).unwrap();
    let dead = node.data().join("dead-letter/dead-letter.ndjson");
    wait_until(20, "the dead letter", || dead.exists());
    proxy.set(|f| f.reject_items = 0.0);
    for seq in 2..50 {
        w.json_line(seq).unwrap();
    }
    wait_for_count(&es, 49, 30);
    wait_until(20, "the cursor and checkpoints", || {
        node.data().join("buffer/cursor.json").exists()
            && node.data().join("checkpoints.json").exists()
    });
    // The cluster goes away, and the last lines stay in the buffer, unacknowledged: their
    // segment outlives the next start, where its permissions are checked.
    proxy.set(|f| f.down = true);
    for seq in 50..60 {
        w.json_line(seq).unwrap();
    }
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    wait_until(20, "the last lines to be buffered", || {
        node.checkpoint_offset() == file_len
    });
    assert!(agent.stop().success());
    let all = modes(&node.data());
    let segments: Vec<PathBuf> = all
        .iter()
        .filter(|(p, _, _)| p.extension().is_some_and(|e| e == "seg"))
        .map(|(p, _, _)| p.clone())
        .collect();
    assert!(!segments.is_empty(), "a segment is left to check: {all:?}");
    assert!(all.len() >= 6, "{all:?}");
    for (path, mode, is_dir) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    let data = std::fs::metadata(node.data()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(data, 0o700, "data_dir itself is {data:o}");
    // Files a previous version left readable by all are made private at the next start. The
    // cluster is still away, so no segment can be acknowledged and deleted first.
    for seg in &segments {
        set_mode(seg, 0o644);
    }
    set_mode(&node.data().join("buffer"), 0o755);
    let agent = Agent::start(&config);
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{} is gone: {e}", p.display()))
            .permissions()
            .mode()
            & 0o7777
    };
    for path in segments.iter().chain([&node.data().join("buffer")]) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        wait_until_showing(
            10,
            &format!("{} to be made {want:o}", path.display()),
            || mode(path) == want,
            || format!("it is {:o}\n{}", mode(path), agent.logs()),
        );
    }
    assert_eq!(
        node.segments(),
        segments,
        "the old segments are still there, unacknowledged"
    );
    // And what they hold is still shipped: every line but the dead letter, once.
    proxy.set(|f| f.down = false);
    let expected: HashSet<(String, u64)> = (0..60)
        .filter(|seq| *seq != 1)
        .map(|seq| ("private".to_owned(), seq))
        .collect();
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}
