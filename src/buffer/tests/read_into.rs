//! Reading batches back: a batch's body for any selection of its items, and the items a lease
//! hands on as it reads them (a shipper's first request body is built from those, so they must
//! be exactly the batch's body, whatever the reads met).

use super::*;

/// Keeps what it is handed, as a shipper's body would.
#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    starts: usize,
}

impl ReadInto for Kept {
    fn start(&mut self) {
        self.bytes.clear();
        self.starts += 1;
    }
    fn item(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
    }
}

#[test]
fn a_lease_hands_on_exactly_its_batchs_body_across_read_windows_and_limits() {
    let rig = Rig::new();
    let b = rig.open_for_sized_items();
    let _c = rig.committer(&b);
    let mut app = Appender::new(b.clone());
    for part in 0..3 {
        let mut c = Chunk::new();
        for n in part * 20..part * 20 + 20 {
            c.push_item(&sized_item(n));
        }
        c.advance(key(), part * 20 + 20);
        app.append(&mut c, || false).unwrap();
    }
    wait_for("the commit", || rig.offset() == 60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let mut kept = Kept::default();
    let mut all = Vec::new();
    while all.len() < (0..60).map(sized_item).map(|i| i.len()).sum() {
        // Under a window and over one: batches end inside windows and between them.
        let lease = rt.block_on(b.lease_into(400 * 1024, &mut kept)).unwrap();
        assert!(lease.read_into());
        assert_eq!(
            kept.bytes,
            lease.batch().body().unwrap(),
            "batch {}",
            lease.batch().seq
        );
        all.extend_from_slice(&kept.bytes);
        lease.acknowledge();
    }
    assert_eq!(all, (0..60).flat_map(sized_item).collect::<Vec<_>>());
    assert!(kept.starts >= 5, "{} leases", kept.starts);
}

#[test]
fn a_damaged_record_is_not_handed_on_and_a_given_back_batch_is_not_read_again() {
    let rig = Rig::new();
    let (b, _c) = rig.six_records_the_third_damaged();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut kept = Kept::default();
    let mut read = Vec::new();
    loop {
        let lease = rt.block_on(b.lease_into(1 << 20, &mut kept)).unwrap();
        assert_eq!(kept.bytes, lease.batch().body().unwrap());
        read.extend(numbers(lease.batch()));
        if read.len() == 5 {
            // A shipper fails with this batch: the next lease gets it without reading it.
            drop(lease);
            kept.bytes.clear();
            let again = rt.block_on(b.lease_into(1 << 20, &mut kept)).unwrap();
            assert!(!again.read_into(), "a given-back batch is not read again");
            assert!(kept.bytes.is_empty());
            again.acknowledge();
            break;
        }
        lease.acknowledge();
    }
    assert_eq!(read, vec![0, 1, 3, 4, 5]);
}

/// Items of every size class: small ones many to a read window, and ones larger than a window.
fn sized_item(n: u64) -> Vec<u8> {
    let pad = match n % 7 {
        0 => 300 * 1024,
        3 => 90 * 1024,
        _ => (n as usize * 37) % 700,
    };
    format!(
        "{{\"create\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n},\"pad\":\"{}\"}}\n",
        "x".repeat(pad)
    )
    .into_bytes()
}

#[test]
fn a_batch_reads_back_exactly_its_items_for_any_selection_across_read_windows() {
    let rig = Rig::new();
    let b = rig.open_for_sized_items();
    let _c = rig.committer(&b);
    let mut app = Appender::new(b.clone());
    let mut c = Chunk::new();
    for n in 0..60 {
        c.push_item(&sized_item(n));
    }
    c.advance(key(), 60);
    app.append(&mut c, || false).unwrap();
    assert!(c.is_empty(), "the appended chunk is left empty for reuse");
    wait_for("the commit", || rig.offset() == 60);
    let batch = b.read_batch(64 << 20).expect("a batch");
    assert_eq!(batch.len(), 60);
    let all: Vec<u8> = (0..60).flat_map(sized_item).collect();
    assert_eq!(batch.body().unwrap(), all);
    for n in [0, 3, 7, 59] {
        assert_eq!(batch.item(n).unwrap(), sized_item(n as u64), "item {n}");
    }
    // What a retry of the refused items sends: every third item, in order.
    let some: Vec<usize> = (0..60).step_by(3).collect();
    let want: Vec<u8> = some.iter().flat_map(|&n| sized_item(n as u64)).collect();
    assert_eq!(batch.body_len(&some), want.len() as u64);
    let pieces: Vec<Vec<u8>> = batch.pieces(some).map(Result::unwrap).collect();
    assert!(pieces.len() > 1, "read in pieces, not all at once");
    assert_eq!(pieces.concat(), want);
    // Built in memory (dead letters for their own index): the same reading.
    let (body, starts): (Vec<u8>, Vec<u32>) =
        (0..5).fold((Vec::new(), Vec::new()), |(mut b, mut s), n| {
            s.push(b.len() as u32);
            b.extend_from_slice(&sized_item(n));
            (b, s)
        });
    let mem = Batch::in_memory(body.clone(), &starts);
    assert_eq!(mem.body().unwrap(), body);
    assert_eq!(mem.item(3).unwrap(), sized_item(3));
}
