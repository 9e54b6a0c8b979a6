//! Start-up recovery and damage: torn writes, corrupt records, unreadable segments and
//! headers, a directory that cannot be opened for its fsync.

use super::*;

#[test]
fn a_torn_write_and_a_corrupt_record_are_cut_out_at_start_up() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone());
        app.append(&mut chunk(0..10), || false).unwrap();
        wait_for("the commit", || rig.offset() == 10);
    }
    let seg = rig.segments().pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    // Flip a byte inside the fourth record, and leave half a frame at the end.
    let fourth = DATA_START as usize + 3 * (frame::HEADER + item(0).len()) + frame::HEADER + 4;
    bytes[fourth] ^= 0x01;
    let mut torn = Vec::new();
    frame::encode(&mut torn, 0, &item(99));
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(&seg, &bytes).unwrap();

    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(
        (rig.damage("torn_write"), rig.damage("corrupt_record")),
        (1, 1)
    );
    assert_eq!(
        fs::metadata(&seg).unwrap().len() as usize,
        bytes.len() - torn.len() / 2,
        "the torn tail is cut off"
    );
    assert_eq!(drain(&b), vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    // And the agent goes on appending.
    let _c = rig.committer(&b);
    Appender::new(b.clone())
        .append(&mut chunk(10..12), || false)
        .unwrap();
    wait_for("the commit", || rig.offset() == 12);
    assert_eq!(drain(&b), vec![10, 11]);
}

#[test]
fn a_file_that_is_not_a_segment_is_moved_aside() {
    let rig = Rig::new();
    let dir = rig.dir.path().join("buffer");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("00000000000000000003.seg"), b"garbage").unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert!(dir.join("00000000000000000003.seg.corrupt").exists());
    assert!(b.read_batch(1000).is_none());
}

#[test]
fn a_segment_that_cannot_be_read_is_moved_aside_instead_of_failing_start_up() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        Appender::new(b.clone())
            .append(&mut chunk(0..3), || false)
            .unwrap();
        wait_for("the commit", || rig.offset() == 3);
    }
    // A directory where a segment should be: reading it fails with EISDIR, a real I/O error
    // (as root, permissions cannot make a file unreadable).
    let dir = rig.dir.path().join("buffer");
    let unreadable = dir.join("00000000000000000007.seg");
    fs::create_dir(&unreadable).unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(rig.damage("unreadable_segment"), 1);
    assert!(dir.join("00000000000000000007.seg.corrupt").is_dir());
    assert!(!unreadable.exists());
    assert_eq!(drain(&b), vec![0, 1, 2], "the good segment is kept");
    // New segments never take the id of one moved aside.
    let _c = rig.committer(&b);
    Appender::new(b.clone())
        .append(&mut chunk(3..5), || false)
        .unwrap();
    wait_for("the commit", || rig.offset() == 5);
    assert_eq!(drain(&b), vec![3, 4]);
    assert!(
        rig.segments()
            .iter()
            .all(|p| segment_id(p).is_some_and(|id| id > 7)),
        "{:?}",
        rig.segments()
    );
}

#[test]
fn a_segment_whose_header_is_damaged_keeps_its_records_and_is_repaired() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        Appender::new(b.clone())
            .append(&mut chunk(0..5), || false)
            .unwrap();
        wait_for("the commit", || rig.offset() == 5);
    }
    let seg = rig.segments().pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[..frame::SEGMENT_MAGIC.len()].copy_from_slice(b"\0garbage");
    fs::write(&seg, &bytes).unwrap();
    // As an older version left it: readable by all.
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(rig.damage("damaged_header"), 1);
    assert_eq!(rig.damage("corrupt_record"), 0);
    let repaired = fs::read(&seg).unwrap();
    assert_eq!(&repaired[..8], frame::SEGMENT_MAGIC);
    assert_eq!(
        fs::metadata(&seg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(drain(&b), vec![0, 1, 2, 3, 4], "no record is lost");
}

#[test]
fn a_buffer_directory_that_cannot_be_opened_for_its_fsync_is_waited_for_not_fatal() {
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    Appender::new(b.clone())
        .append(&mut chunk(0..3), || false)
        .unwrap();
    // The new segment's directory entry must be fsynced, and the directory cannot be opened
    // (as with EMFILE; here it is not where it was).
    let dir = rig.dir.path().join("buffer");
    let away = rig.dir.path().join("buffer-away");
    fs::rename(&dir, &away).unwrap();
    let _c = rig.committer(&b);
    wait_for("the committer to wait", || {
        rig.metrics.buffer_sync_open_waits.get() > 0
    });
    assert_eq!(b.fatal(), None, "a failed open is not a failed fsync");
    assert!(b.stats().problem.is_some());
    assert_eq!(rig.offset(), 0, "nothing is confirmed meanwhile");
    fs::rename(&away, &dir).unwrap();
    wait_for("the commit", || rig.offset() == 3);
    assert_eq!(b.fatal(), None);
    assert_eq!(drain(&b), vec![0, 1, 2]);
    assert_eq!(b.stats().problem, None);
}

#[test]
fn damage_that_appears_while_running_is_skipped_and_counted() {
    let rig = Rig::new();
    let (b, _c) = rig.six_records_the_third_damaged();
    assert_eq!(drain(&b), vec![0, 1, 3, 4, 5]);
    assert_eq!(rig.damage("corrupt_record"), 1);
    assert_eq!(b.stats().records, 0, "the lost record is not waited for");
}
