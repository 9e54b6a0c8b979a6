//! Positions frames: written with each chunk and at the head of each segment, skipped by
//! shippers, found again at start-up up to the first damage; segments of a later format are
//! refused by name, format 1 segments still read.

use super::*;

/// A source whose positions are the chunk's advances as text, and whose snapshot is what the
/// committer reported durable (as a checkpoint keeps it).
struct Noted {
    durable: Arc<Mutex<std::collections::HashMap<FileKey, u64>>>,
}

impl Noted {
    fn on(rig: &Rig) -> Arc<Noted> {
        Arc::new(Noted {
            durable: rig.durable.clone(),
        })
    }
}

impl Positions for Noted {
    fn after(&self, advances: &[(FileKey, u64)]) -> Vec<u8> {
        format!(
            "after {:?}",
            advances.iter().map(|a| a.1).collect::<Vec<_>>()
        )
        .into_bytes()
    }

    fn snapshot(&self) -> Vec<u8> {
        let durable = self.durable.lock().unwrap();
        if durable.is_empty() {
            return Vec::new();
        }
        format!("snapshot {:?}", durable.values().collect::<Vec<_>>()).into_bytes()
    }
}

fn texts(payloads: Vec<Vec<u8>>) -> Vec<String> {
    payloads
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect()
}

#[test]
fn positions_travel_with_their_records_and_shippers_never_see_them() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone()).with_positions(Noted::on(&rig));
        app.append(&mut chunk(0..5), || false).unwrap();
        // Lines that made no record (blank, dropped by a route) still move the position.
        let mut empty = Chunk::new();
        empty.advance(key(), 7);
        app.append(&mut empty, || false).unwrap();
        app.append(&mut chunk(7..9), || false).unwrap();
        wait_for("the commit", || rig.offset() == 9);
        assert_eq!(
            drain(&b),
            vec![0, 1, 2, 3, 4, 7, 8],
            "only records are shipped"
        );
        assert_eq!(rig.metrics.buffer_records.get(), 0);
        assert_eq!(rig.damage("corrupt_record"), 0, "positions are not damage");
    }
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(
        texts(b.take_recovered_positions()),
        ["after [5]", "after [7]", "after [9]"]
    );
    assert!(b.take_recovered_positions().is_empty(), "taken once");
}

#[test]
fn a_new_segment_starts_with_every_position_so_far() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone()).with_positions(Noted::on(&rig));
        // Segments of 1 KiB: each chunk of ten records fills one.
        for n in 0..3 {
            app.append(&mut chunk(n * 10..n * 10 + 10), || false)
                .unwrap();
            wait_for("the commit", || rig.offset() == n * 10 + 10);
        }
        assert_eq!(drain(&b).len(), 30);
        b.save_cursor().unwrap();
    }
    let segments = rig.segments();
    assert!(!segments.is_empty());
    let newest = fs::read(segments.last().unwrap()).unwrap();
    let scan = frame::scan(&newest).unwrap();
    let first = scan.positions.first().expect("a snapshot at the head");
    assert_eq!(&newest[first.0..first.1], b"snapshot [20]");
    // Acknowledged segments are deleted at start-up after their positions are taken.
    let b = rig.open(1 << 20, OverflowAction::Block);
    let found = texts(b.take_recovered_positions());
    assert_eq!(
        found.last().map(String::as_str),
        Some("after [30]"),
        "{found:?}"
    );
}

/// A source that states its positions on the chunk (as the Kafka input does), its snapshot
/// fixed.
struct Stated;

impl Positions for Stated {
    fn snapshot(&self) -> Vec<u8> {
        b"stated snapshot".to_vec()
    }
}

#[test]
fn sources_sharing_the_appender_each_keep_their_positions() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone())
            .with_positions(Noted::on(&rig))
            .with_positions(Arc::new(Stated));
        app.append(&mut chunk(0..2), || false).unwrap();
        let mut stated = chunk(2..4);
        stated.advances.clear();
        stated.positions = b"stated 4".to_vec();
        app.append(&mut stated, || false).unwrap();
        // Segments of 1 KiB: chunks of ten fill one each.
        for n in 0..3 {
            let to = 14 + n * 10;
            app.append(&mut chunk(to - 10..to), || false).unwrap();
            wait_for("the commit", || rig.offset() == to);
        }
        app.append(&mut chunk(34..35), || false).unwrap();
        wait_for("the commit", || rig.offset() == 35);
    }
    // Each segment's head holds both sources' snapshots; each chunk, its own positions.
    let b = rig.open(1 << 20, OverflowAction::Block);
    let found = texts(b.take_recovered_positions());
    assert_eq!(
        found,
        [
            "stated snapshot",
            "after [2]",
            "stated 4",
            "after [14]",
            "snapshot [14]",
            "stated snapshot",
            "after [24]",
            "snapshot [24]",
            "stated snapshot",
            "after [34]",
            "after [35]"
        ]
    );
}

#[test]
fn positions_after_damage_are_not_taken() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone()).with_positions(Noted::on(&rig));
        app.append(&mut chunk(0..2), || false).unwrap();
        app.append(&mut chunk(2..4), || false).unwrap();
        wait_for("the commit", || rig.offset() == 4);
    }
    let seg = rig.segments().pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    // A record of the second chunk lost (a page never written before a power cut): the
    // position after it must not be believed, or the lost lines would never be read again.
    let positions_len = frame::HEADER + "after [2]".len();
    let third = DATA_START as usize + 2 * (frame::HEADER + item(0).len()) + positions_len;
    bytes[third + frame::HEADER + 3] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(texts(b.take_recovered_positions()), ["after [2]"]);
    assert_eq!(rig.damage("corrupt_record"), 1);
}

#[test]
fn a_segment_of_a_later_format_is_refused_by_name_and_left_alone() {
    let rig = Rig::new();
    let dir = rig.dir.path().join("buffer");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("00000000000000000004.seg");
    let mut bytes = b"LFSEG\0\0\x03".to_vec();
    frame::encode(&mut bytes, 0, &item(1));
    fs::write(&path, &bytes).unwrap();
    let err = Buffer::open(
        rig.options(1 << 20, OverflowAction::Block),
        rig.metrics.clone(),
    )
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("00000000000000000004.seg"), "{msg}");
    assert!(msg.contains("format 3"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "left as it was");
}

#[test]
fn a_format_1_segment_is_read_as_before() {
    let rig = Rig::new();
    let dir = rig.dir.path().join("buffer");
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = b"LFSEG\0\0\x01".to_vec();
    for n in 0..3 {
        frame::encode(&mut bytes, 0, &item(n));
    }
    fs::write(dir.join("00000000000000000000.seg"), &bytes).unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(drain(&b), vec![0, 1, 2]);
    assert!(b.take_recovered_positions().is_empty());
    assert_eq!(rig.damage("damaged_header"), 0);
}

#[test]
fn positions_after_a_segment_that_lost_its_end_are_not_taken() {
    let rig = Rig::new();
    {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone()).with_positions(Noted::on(&rig));
        app.append(&mut chunk(0..3), || false).unwrap();
        app.append(&mut chunk(3..6), || false).unwrap();
        wait_for("the commit", || rig.offset() == 6);
        // Twenty more do not fit in the 1 KiB segment: the next one starts, linked to it.
        app.append(&mut chunk(6..26), || false).unwrap();
        wait_for("the commit", || rig.offset() == 26);
    }
    let segments = rig.segments();
    assert_eq!(segments.len(), 2);
    // A power cut: the first segment's last chunk never reached the disk, and the file ends
    // cleanly before it (no torn bytes to see), while the second segment survived.
    let first = fs::read(&segments[0]).unwrap();
    let one_chunk = 3 * (frame::HEADER + item(0).len()) + frame::HEADER + "after [3]".len();
    fs::write(&segments[0], &first[..DATA_START as usize + one_chunk]).unwrap();
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(texts(b.take_recovered_positions()), ["after [3]"]);
}
