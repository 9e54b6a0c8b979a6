//! Checkpoints: tracking, saving and reopening, ids across truncations and lost files.

use super::*;
use std::fs;

/// A file as `identify` finds it: device 2049, born at a fixed time.
fn key(n: u64) -> FileKey {
    let mut k = FileKey::new(2049, n, 0xfeed_0000 + n);
    k.born_ns = 1_764_000_000_000_000_000 + n as i64;
    k
}

/// Tracks `key` and returns it settled, as the tailer holds it.
fn tracked(c: &Checkpoints, mut key: FileKey, path: &str) -> FileKey {
    c.track(&mut key, Path::new(path), 0);
    key
}

#[test]
fn checkpoints_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let k = tracked(&c, key(1), "/a");
    c.advance(vec![(k, 200)]);
    c.advance(vec![(k, 100)]);
    assert_eq!(c.get(&k).unwrap().offset, 200);
}

#[test]
fn saved_checkpoints_survive_a_reopen_and_retired_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let k1 = tracked(&c, key(1), "/var/log/pods/a/0.log");
    let k2 = tracked(&c, key(2), "/var/log/pods/b/0.log");
    c.advance(vec![(k1, 4096), (k2, 10)]);
    c.retire(k2, 20);
    c.save().unwrap();
    let again = Checkpoints::open(dir.path()).unwrap();
    assert_eq!(again.get(&key(1)).unwrap().offset, 4096);
    assert_eq!(again.get(&key(2)).unwrap().retire_at, Some(20));
    assert_eq!(again.get(&key(1)).unwrap().ids, k1.ids, "ids are kept");
    again.advance(vec![(k2, 20)]);
    assert!(again.get(&key(2)).is_none());
}

#[test]
fn a_corrupt_file_is_moved_aside_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("checkpoints.json"),
        b"{\"version\":\"1\",\"fi",
    )
    .unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    assert!(c.entries().is_empty());
    assert!(dir.path().join("checkpoints.json.corrupt").exists());
}

#[test]
fn a_corrupt_or_lost_checkpoints_file_does_not_make_a_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    assert!(c.first_start(), "nothing was ever here");
    tracked(&c, key(1), "/a");
    c.save().unwrap();
    assert!(!Checkpoints::open(dir.path()).unwrap().first_start());
    fs::write(dir.path().join("checkpoints.json"), b"\0\0\0garbage").unwrap();
    assert!(
        !Checkpoints::open(dir.path()).unwrap().first_start(),
        "corrupt (moved aside)"
    );
    assert!(
        !Checkpoints::open(dir.path()).unwrap().first_start(),
        "missing, the corrupt one being aside"
    );
    // An agent that started and crashed before it ever saved a checkpoint.
    let crashed = tempfile::tempdir().unwrap();
    drop(Checkpoints::open(crashed.path()).unwrap());
    assert!(!Checkpoints::open(crashed.path()).unwrap().first_start());
    // Upgraded from a version without the marker.
    let upgraded = tempfile::tempdir().unwrap();
    fs::write(
        upgraded.path().join("checkpoints.json"),
        br#"{"version":"1","files":[]}"#,
    )
    .unwrap();
    assert!(!Checkpoints::open(upgraded.path()).unwrap().first_start());
}

#[test]
fn a_renumbered_device_finds_its_checkpoint_and_keeps_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open_on(dir.path(), "node-a").unwrap();
    let before = tracked(&c, key(1), "/var/log/pods/a/0.log");
    c.advance(vec![(before, 4096)]);
    c.save().unwrap();
    // After a reboot LVM named the device 253:0 instead of 8:1.
    let again = Checkpoints::open_on(dir.path(), "node-a").unwrap();
    let mut after = FileKey {
        dev: 64768,
        ..key(1)
    };
    assert_eq!(again.get(&after).map(|e| e.offset), Some(4096));
    assert!(!again.track(&mut after, Path::new("/var/log/pods/a/0.log"), 4096));
    assert_eq!(after.ids, before.ids, "re-read lines keep their ids");
    again.advance(vec![(after, 5000)]);
    assert_eq!(again.get(&after).unwrap().offset, 5000);
    assert_eq!(
        again.entries()[0].0.dev,
        64768,
        "the device as seen now is kept"
    );
}

#[test]
fn version_1_checkpoints_keep_the_ids_of_version_1() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("checkpoints.json"),
        br#"{"version":"1","files":[{"dev":2049,"ino":1,"fingerprint":"00000000feed0001","offset":300,"path":"/a"}],"last_scan_ms":1764000000000}"#,
    )
    .unwrap();
    let c = Checkpoints::open_on(dir.path(), "node-a").unwrap();
    assert!(!c.first_start());
    let mut k = FileKey {
        dev: 64768,
        ..key(1)
    };
    assert_eq!(c.get(&k).map(|e| e.offset), Some(300));
    c.track(&mut k, Path::new("/a"), 300);
    assert_eq!(
        k.ids,
        IdBasis::V1 { dev: 2049 },
        "the device as it was then"
    );
    assert_eq!(k.time_anchor_ns, key(1).born_ns, "birth time learnt now");
    c.save().unwrap();
    let saved = fs::read_to_string(dir.path().join("checkpoints.json")).unwrap();
    assert!(saved.contains(r#""version": "2""#), "{saved}");
    let again = Checkpoints::open_on(dir.path(), "node-a").unwrap();
    assert_eq!(again.get(&k).unwrap().ids, IdBasis::V1 { dev: 2049 });
}

#[test]
fn copytruncate_with_the_same_first_line_starts_a_generation_with_other_ids() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let first = tracked(&c, key(1), "/a");
    c.advance(vec![(first, 500)]);
    c.start_over(&first, true);
    let second = tracked(&c, key(1), "/a");
    assert_ne!(second.ids, first.ids);
    assert_eq!(c.get(&second).unwrap().offset, 0);
    // A late acknowledgement of the old content must not move the new checkpoint past
    // lines not yet buffered.
    c.advance(vec![(first, 900)]);
    assert_eq!(c.get(&second).unwrap().offset, 0);
    c.advance(vec![(second, 100)]);
    assert_eq!(c.get(&second).unwrap().offset, 100);
    // Each truncation is a generation of its own, and they are kept across a restart.
    c.start_over(&second, true);
    let third = tracked(&c, key(1), "/a");
    assert!(third.ids != first.ids && third.ids != second.ids);
    c.save().unwrap();
    let again = Checkpoints::open(dir.path()).unwrap();
    assert_eq!(tracked(&again, key(1), "/a").ids, third.ids);
}

#[test]
fn a_reused_inode_with_the_same_first_line_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let old = tracked(&c, key(1), "/a");
    c.advance(vec![(old, 500)]);
    let reborn = FileKey {
        born_ns: key(1).born_ns + 60_000_000_000,
        ..key(1)
    };
    assert!(c.get(&reborn).is_none(), "not the old file's offset");
    let mut new = reborn;
    assert!(c.track(&mut new, Path::new("/a"), 0));
    assert_ne!(new.ids, old.ids);
    assert_eq!(c.get(&new).unwrap().offset, 0);
}

#[test]
fn rewritten_content_drops_the_old_contents_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let old = tracked(&c, key(1), "/a");
    c.start_over(&old, true);
    let other_first_line = FileKey {
        fingerprint: 0xbeef,
        ..key(1)
    };
    tracked(&c, other_first_line, "/a");
    assert_eq!(c.entries().len(), 1);
    assert!(c.get(&old).is_none());
}

#[test]
fn a_truncated_file_waiting_for_its_first_line_keeps_its_generation() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let first = tracked(&c, key(1), "/a");
    c.start_over(&first, true);
    // Empty for a moment after the truncation: remembered by inode only.
    tracked(&c, FileKey::placeholder(2049, 1), "/a");
    c.forget(&FileKey::placeholder(2049, 1));
    let second = tracked(&c, key(1), "/a");
    assert_ne!(
        second.ids, first.ids,
        "the same first line again, a new generation"
    );
}

#[test]
fn ids_come_back_the_same_when_the_checkpoints_are_lost() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = tracked(
        &Checkpoints::open_on(a.path(), "node-a").unwrap(),
        key(1),
        "/a",
    );
    let lost = tracked(
        &Checkpoints::open_on(b.path(), "node-a").unwrap(),
        key(1),
        "/a",
    );
    assert_eq!(first.ids, lost.ids);
    let elsewhere = tracked(
        &Checkpoints::open_on(b.path(), "node-b").unwrap(),
        key(2),
        "/b",
    );
    let here = tracked(
        &Checkpoints::open_on(a.path(), "node-a").unwrap(),
        key(2),
        "/b",
    );
    assert_ne!(
        elsewhere.ids, here.ids,
        "the same image-baked file on another node"
    );
}

#[test]
fn temp_files_left_by_a_crash_mid_save_are_not_taken_for_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let k = tracked(&c, key(1), "/a");
    c.advance(vec![(k, 4096)]);
    c.save().unwrap();
    // Half-written saves of later states, by an older version and by this one.
    for leftover in ["checkpoints.json.tmp", ".checkpoints.json.x7Qp2a.tmp"] {
        fs::write(dir.path().join(leftover), b"{\"version\":\"2\",\"fi").unwrap();
    }
    let again = Checkpoints::open(dir.path()).unwrap();
    assert_eq!(again.get(&key(1)).map(|e| e.offset), Some(4096));
    assert!(!again.first_start());
    let mut left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["checkpoints.first-start", "checkpoints.json"]);
}

#[test]
fn positions_from_the_buffer_move_an_entry_forward_never_back_and_never_across_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpoints::open(dir.path()).unwrap();
    let a = tracked(&c, key(1), "/var/log/pods/a/0.log");
    let b = tracked(&c, key(2), "/var/log/pods/b/0.log");
    let gone = tracked(&c, key(3), "/var/log/pods/c/0.log");
    // What the buffer kept: a at 900, b at 800 before its truncation, gone at 50.
    let kept = vec![
        c.positions_after(&[(a, 900), (b, 800)]),
        c.positions_after(&[(gone, 50)]),
    ];
    c.advance(vec![(a, 300)]);
    c.start_over(&b, true);
    let b_now = c.get(&b).unwrap();
    c.forget(&gone);
    c.restore(kept);
    assert_eq!(c.get(&a).unwrap().offset, 900, "further in the buffer");
    assert_eq!(
        c.get(&b).unwrap(),
        b_now,
        "a later generation is not moved back"
    );
    assert_eq!(
        c.get(&gone).unwrap().offset,
        50,
        "a lost entry is known again"
    );
    assert_eq!(c.get(&gone).unwrap().ids, gone.ids, "with the ids it had");
    // A start reads a from 600: 300 bytes the buffer held; b is of another generation now.
    assert_eq!(c.reread(&a, 600), 300);
    assert_eq!(c.reread(&a, 600), 0, "asked once");
    assert_eq!(c.reread(&b, 0), 0);
}
