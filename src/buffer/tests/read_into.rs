//! The items a lease reads, handed on as they are read: a shipper's first request body is
//! built from them, so they must be exactly the batch's body, whatever the reads met.

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
    let b = rig.open_with(Options {
        segment_size: 8 << 20,
        ..rig.options(64 << 20, OverflowAction::Block)
    });
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
    let b = rig.open(1 << 20, OverflowAction::Block);
    let _c = rig.committer(&b);
    Appender::new(b.clone())
        .append(&mut chunk(0..6), || false)
        .unwrap();
    wait_for("the commit", || rig.offset() == 6);
    rig.damage_the_third_record();
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
