use super::*;

mod moved;
mod positions;
mod read_into;
mod recovery;
mod waiters;
use proptest::prelude::*;
use std::collections::HashSet;

fn key() -> FileKey {
    FileKey::new(1, 2, 3)
}

fn item(n: u64) -> Vec<u8> {
    format!("{{\"create\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n}}}\n").into_bytes()
}

fn chunk(ns: std::ops::Range<u64>) -> Chunk {
    let mut c = Chunk::new();
    for n in ns.clone() {
        c.push_item(&item(n));
    }
    c.advance(key(), ns.end);
    c
}

/// The record numbers in a batch.
fn numbers(c: &Batch) -> Vec<u64> {
    (0..c.len())
        .map(|i| {
            let item = c.item(i).unwrap();
            let text = std::str::from_utf8(&item).unwrap();
            let doc = text.lines().nth(1).unwrap();
            doc[5..doc.len() - 1].parse().unwrap()
        })
        .collect()
}

struct Rig {
    dir: tempfile::TempDir,
    metrics: Arc<Metrics>,
    /// The file positions the committer reported durable, as a checkpoint would keep them.
    durable: Arc<Mutex<std::collections::HashMap<FileKey, u64>>>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        Rig {
            dir,
            metrics: Arc::new(Metrics::new()),
            durable: Default::default(),
        }
    }

    fn options(&self, max_size: u64, overflow: OverflowAction) -> Options {
        Options {
            dir: self.dir.path().join("buffer"),
            max_size,
            segment_size: 1024,
            overflow,
        }
    }

    fn open(&self, max_size: u64, overflow: OverflowAction) -> Arc<Buffer> {
        Arc::new(Buffer::open(self.options(max_size, overflow), self.metrics.clone()).unwrap())
    }

    fn open_with(&self, options: Options) -> Arc<Buffer> {
        Arc::new(Buffer::open(options, self.metrics.clone()).unwrap())
    }

    /// Runs the committer until the returned guard is dropped.
    fn committer(&self, buffer: &Arc<Buffer>) -> Committer {
        let (b, positions) = (buffer.clone(), self.durable.clone());
        Committer {
            buffer: buffer.clone(),
            thread: Some(std::thread::spawn(move || {
                b.commit_loop(|durable| {
                    let mut positions = positions.lock().unwrap();
                    for (key, offset) in durable {
                        let at = positions.entry(key).or_default();
                        *at = (*at).max(offset);
                    }
                })
            })),
        }
    }

    fn offset(&self) -> u64 {
        self.durable
            .lock()
            .unwrap()
            .get(&key())
            .copied()
            .unwrap_or(0)
    }

    /// A buffer of six committed records of [`item`]'s size, whose third the disk then
    /// damaged (a flipped byte), and its committer.
    fn six_records_the_third_damaged(&self) -> (Arc<Buffer>, Committer) {
        let b = self.open(1 << 20, OverflowAction::Block);
        let c = self.committer(&b);
        Appender::new(b.clone())
            .append(&mut chunk(0..6), || false)
            .unwrap();
        wait_for("the commit", || self.offset() == 6);
        let seg = self.segments().pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let third = DATA_START as usize + 2 * (frame::HEADER + item(0).len()) + frame::HEADER + 3;
        bytes[third] ^= 0x08;
        fs::write(&seg, &bytes).unwrap();
        (b, c)
    }

    /// A buffer whose segments hold many records larger than a read window.
    fn open_for_sized_items(&self) -> Arc<Buffer> {
        self.open_with(Options {
            segment_size: 8 << 20,
            ..self.options(64 << 20, OverflowAction::Block)
        })
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.dir.path().join("buffer"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    fn damage(&self, kind: &'static str) -> u64 {
        self.metrics
            .buffer_damage
            .get_or_create(&[("kind", kind)])
            .get()
    }
}

struct Committer {
    buffer: Arc<Buffer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.buffer.stop_committing();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Reads every durable record now, acknowledging each batch.
fn drain(b: &Buffer) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(batch) = b.read_batch(300) {
        out.extend(numbers(&batch));
        b.acknowledge(batch.seq);
    }
    out
}

/// A runtime for the shippers' side of a test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn records_are_readable_and_checkpoints_move_only_once_fsynced() {
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    let mut app = Appender::new(b.clone());
    app.append(&mut chunk(0..3), || false).unwrap();
    assert!(b.read_batch(1 << 20).is_none(), "not durable yet");
    assert_eq!(rig.offset(), 0, "the checkpoint waits for the fsync");
    let _c = rig.committer(&b);
    wait_for("the commit", || rig.offset() == 3);
    let batch = b.read_batch(1 << 20).unwrap();
    assert_eq!(numbers(&batch), vec![0, 1, 2]);
    assert_eq!(batch.item(1).unwrap(), item(1));
}

#[test]
fn acknowledged_segments_go_and_a_restart_resumes_at_the_saved_cursor() {
    let rig = Rig::new();
    let unacked = {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone());
        // ~40 bytes per record, 1 KiB segments: several segments.
        for n in 0..10 {
            app.append(&mut chunk(n * 10..n * 10 + 10), || false)
                .unwrap();
        }
        wait_for("the commit", || rig.offset() == 100);
        let before = rig.segments().len();
        assert!(before >= 3, "{before} segments");
        let mut acked = Vec::new();
        while acked.len() < 50 {
            let batch = b.read_batch(300).unwrap();
            acked.extend(numbers(&batch));
            b.acknowledge(batch.seq);
        }
        // In flight at the "crash": sent again after the restart.
        let in_flight = b.read_batch(300).unwrap();
        assert_eq!(numbers(&in_flight)[0], acked.len() as u64);
        assert!(
            rig.segments().len() < before,
            "acknowledged segments are deleted"
        );
        b.save_cursor().unwrap();
        assert_eq!(acked, (0..acked.len() as u64).collect::<Vec<_>>());
        acked.len() as u64
    };
    let b = rig.open(1 << 20, OverflowAction::Block);
    assert_eq!(
        drain(&b),
        (unacked..100).collect::<Vec<_>>(),
        "the restart resumes exactly at the batch that was in flight: nothing acknowledged again, nothing skipped"
    );
    assert_eq!(b.stats().records, 0);
}

/// Acknowledgements come in any order (shippers run side by side), but the saved cursor is the
/// start of the oldest batch not yet acknowledged: a newer batch acknowledged while an older one
/// is still in flight must not carry the cursor past the older one, or its records are lost at
/// the next start.
#[test]
fn an_older_batch_still_in_flight_is_sent_again_after_a_newer_one_was_acknowledged() {
    let rig = Rig::new();
    let (older, newer) = {
        let b = rig.open(1 << 20, OverflowAction::Block);
        let _c = rig.committer(&b);
        let mut app = Appender::new(b.clone());
        for n in 0..10 {
            app.append(&mut chunk(n * 10..n * 10 + 10), || false)
                .unwrap();
        }
        wait_for("the commit", || rig.offset() == 100);
        // Acknowledged in order: these are settled for good.
        let mut acked = Vec::new();
        while acked.len() < 20 {
            let batch = b.read_batch(300).unwrap();
            acked.extend(numbers(&batch));
            b.acknowledge(batch.seq);
        }
        // Two shippers: the older batch is still in flight while the newer one and the one
        // after it are acknowledged, and the one after those is in flight too.
        let older = b.read_batch(300).unwrap();
        let newer = b.read_batch(300).unwrap();
        let after = b.read_batch(300).unwrap();
        let last = b.read_batch(300).unwrap();
        b.acknowledge(newer.seq);
        b.acknowledge(after.seq);
        b.save_cursor().unwrap();
        let (older, newer) = (numbers(&older), numbers(&newer));
        assert_eq!(older[0], acked.len() as u64);
        assert_eq!(newer[0], older.last().unwrap() + 1);
        assert!(numbers(&last)[0] > newer[0]);
        (older, newer)
    };
    let b = rig.open(1 << 20, OverflowAction::Block);
    let rest = drain(&b);
    assert_eq!(
        &rest[..older.len()],
        &older[..],
        "the older batch in flight comes again first, whole"
    );
    // A cursor cannot skip a hole: what was acknowledged after the older batch comes again
    // too (409s by id), and nothing acknowledged before it does.
    assert_eq!(rest, (older[0]..100).collect::<Vec<_>>());
    assert!(rest.contains(&newer[0]));
    assert_eq!(b.stats().records, 0);
}

#[test]
fn a_full_buffer_blocks_the_appender_until_records_are_acknowledged() {
    let rig = Rig::new();
    let b = rig.open(4096, OverflowAction::Block);
    let _c = rig.committer(&b);
    let b2 = b.clone();
    let writer = std::thread::spawn(move || {
        let mut app = Appender::new(b2);
        for n in 0..40 {
            app.append(&mut chunk(n * 10..n * 10 + 10), || false)
                .unwrap();
        }
    });
    wait_for("a full buffer", || b.stats().bytes > 3000);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!writer.is_finished(), "the appender must wait");
    assert!(b.stats().bytes <= 4096);
    let mut got = Vec::new();
    while got.len() < 400 {
        match b.read_batch(300) {
            Some(batch) => {
                got.extend(numbers(&batch));
                b.acknowledge(batch.seq);
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    writer.join().unwrap();
    assert_eq!(got, (0..400).collect::<Vec<_>>(), "nothing lost, in order");
    assert_eq!(rig.metrics.buffer_dropped.get(), 0);
}

#[test]
fn drop_oldest_chunk_drops_unsent_segments_and_counts_exactly() {
    let rig = Rig::new();
    let b = rig.open(4096, OverflowAction::DropOldestSegment);
    let _c = rig.committer(&b);
    let mut app = Appender::new(b.clone());
    // The first batch is in flight the whole time: never dropped.
    app.append(&mut chunk(0..5), || false).unwrap();
    wait_for("the commit", || rig.offset() == 5);
    let first = b.read_batch(200).unwrap();
    for n in 1..40 {
        app.append(&mut chunk(n * 5..n * 5 + 5), || false).unwrap();
    }
    wait_for("the commit", || rig.offset() == 200);
    assert!(b.stats().bytes <= 4096);
    let mut got = numbers(&first);
    b.acknowledge(first.seq);
    got.extend(drain(&b));
    let dropped = rig.metrics.buffer_dropped.get();
    assert!(dropped > 0, "the buffer overflowed");
    assert_eq!(
        got.len() as u64 + dropped,
        200,
        "every record is delivered or counted as dropped"
    );
    let distinct: HashSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), got.len());
    assert_eq!(&got[..5], &[0, 1, 2, 3, 4]);
    assert_eq!(*got.last().unwrap(), 199, "the newest records are kept");
}

#[derive(Debug, Clone)]
enum Op {
    Append(u64),
    Read,
    /// Acknowledge the in-flight batch at this index (mod the number in flight).
    Ack(usize),
    SaveCursor,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..12u64).prop_map(Op::Append),
        4 => Just(Op::Read),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => Just(Op::SaveCursor),
        2 => Just(Op::Reopen),
    ]
}

/// Against a model: whatever the order of appends, reads, out-of-order acknowledgements and
/// restarts, every record is delivered, and a record acknowledged before a saved cursor is
/// never delivered again. A record counts as delivered only when its batch is acknowledged
/// (or in the final drain, which acknowledges): a batch still in flight at a restart is
/// owed, and must be read again after it. Reads are checked against the model's read
/// position: in order, nothing skipped, and after a restart they resume at the saved cursor
/// (or past it only over records acknowledged since, whose segments were deleted).
/// What the model knows of the buffer's records.
#[derive(Default)]
struct Model {
    in_flight: Vec<(u64, Vec<u64>)>,
    /// Acknowledged (by the model's sink): what counts as delivered.
    delivered: HashSet<u64>,
    /// Acknowledged before a saved cursor: never to be read again.
    settled: HashSet<u64>,
    /// Acknowledged in this run; settled by the next saved cursor if it passes them.
    acked: HashSet<u64>,
    /// The next record the buffer must hand out.
    read_next: u64,
    /// The first record at or after the saved cursor (0: none saved).
    saved: u64,
    /// After a restart: the first read may start anywhere from the saved cursor up to this
    /// record (the oldest one owed at the restart); records between were acknowledged and
    /// their segments may be gone.
    resume_upto: Option<u64>,
}

impl Model {
    /// A read of the buffer, checked: in order, nothing skipped, nothing settled, and after a
    /// restart resumed between the saved cursor and the oldest record owed. `next` is the
    /// first record not yet appended.
    fn read(&mut self, b: &Buffer, next: u64) -> Result<(), TestCaseError> {
        let Some(batch) = b.read_batch(200) else {
            let at = self.resume_upto.unwrap_or(self.read_next);
            prop_assert_eq!(at, next, "nothing to read with records owed");
            return Ok(());
        };
        let ns = numbers(&batch);
        prop_assert!(!ns.is_empty());
        if let Some(upto) = self.resume_upto.take() {
            let saved = self.saved;
            prop_assert!(
                (saved..=upto).contains(&ns[0]),
                "after a restart reading resumed at {}, not between the saved cursor ({saved}) and the oldest record owed ({upto})",
                ns[0]
            );
            prop_assert!(
                (saved..ns[0]).all(|n| self.delivered.contains(&n)),
                "resumed at {} past records never acknowledged",
                ns[0]
            );
            self.read_next = ns[0];
        }
        prop_assert_eq!(
            &ns,
            &(self.read_next..self.read_next + ns.len() as u64).collect::<Vec<_>>(),
            "batches come in order, nothing skipped"
        );
        self.read_next += ns.len() as u64;
        for n in &ns {
            prop_assert!(
                !self.settled.contains(n),
                "{n} was acknowledged before a saved cursor"
            );
        }
        self.in_flight.push((batch.seq, ns));
        Ok(())
    }

    /// The cursor is the oldest batch still in flight, or where reading is. Right after a
    /// restart, before a read, where reading is is known only within bounds: `saved` stays
    /// the lower one.
    fn saved_cursor(&mut self) {
        if self.resume_upto.is_none() {
            self.saved = self
                .in_flight
                .iter()
                .map(|(_, ns)| ns[0])
                .min()
                .unwrap_or(self.read_next);
            let saved = self.saved;
            self.settled
                .extend(self.acked.iter().filter(|&&n| n < saved));
        }
    }

    /// What was in flight is still owed: read again after the restart.
    fn reopened(&mut self) {
        let owed = self.in_flight.iter().map(|(_, ns)| ns[0]).min();
        let at = self.resume_upto.unwrap_or(self.read_next);
        self.resume_upto = Some(owed.unwrap_or(at));
        self.in_flight.clear();
        self.acked.clear();
    }
}

fn run_model(ops: &[Op]) -> Result<(), TestCaseError> {
    let rig = Rig::new();
    let mut b = rig.open(1 << 20, OverflowAction::Block);
    let mut c = rig.committer(&b);
    let mut app = Appender::new(b.clone());
    let mut next = 0u64;
    let mut m = Model::default();
    for o in ops.iter().cloned() {
        match o {
            Op::Append(n) => {
                app.append(&mut chunk(next..next + n), || false).unwrap();
                next += n;
                let want = next;
                wait_for("the commit", || rig.offset() == want);
            }
            Op::Read => m.read(&b, next)?,
            Op::Ack(i) if !m.in_flight.is_empty() => {
                let len = m.in_flight.len();
                let (seq, ns) = m.in_flight.remove(i % len);
                b.acknowledge(seq);
                m.delivered.extend(&ns);
                m.acked.extend(ns);
            }
            Op::Ack(_) => {}
            Op::SaveCursor => {
                b.save_cursor().unwrap();
                m.saved_cursor();
            }
            Op::Reopen => {
                drop(app);
                drop(c);
                b.close();
                drop(b);
                m.reopened();
                b = rig.open(1 << 20, OverflowAction::Block);
                c = rig.committer(&b);
                app = Appender::new(b.clone());
            }
        }
    }
    // The shippers finish what they hold, and the rest is read and acknowledged.
    for (seq, ns) in std::mem::take(&mut m.in_flight) {
        b.acknowledge(seq);
        m.delivered.extend(ns);
    }
    for n in drain(&b) {
        prop_assert!(
            !m.settled.contains(&n),
            "{n} was acknowledged before a saved cursor"
        );
        m.delivered.insert(n);
    }
    let missing: Vec<u64> = (0..next).filter(|n| !m.delivered.contains(n)).collect();
    prop_assert!(missing.is_empty(), "never delivered: {:?}", missing);
    prop_assert_eq!(b.stats().records, 0);
    drop(c);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_record_is_delivered_and_acknowledged_ones_never_again(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(&ops)?;
    }
}

#[test]
fn a_record_larger_than_the_whole_limit_goes_in_alone_instead_of_blocking_for_ever() {
    let rig = Rig::new();
    let b = rig.open(4096, OverflowAction::Block);
    let _c = rig.committer(&b);
    let mut big = Chunk::new();
    big.push_item(
        format!(
            "{{\"create\":{{}}}}\n{{\"n\":7,\"pad\":\"{}\"}}\n",
            "x".repeat(6000)
        )
        .as_bytes(),
    );
    big.advance(key(), 1);
    let mut app = Appender::new(b.clone());
    app.append(&mut big, || false).unwrap();
    wait_for("the commit", || rig.offset() == 1);
    let batch = b
        .read_batch(1024)
        .expect("read alone, past the batch limit");
    assert_eq!(batch.len(), 1);
    assert!(batch.body().unwrap().len() > 6000);
    // The next append waits for it to be acknowledged.
    assert!(app.append(&mut chunk(1..2), || true).is_err());
    b.acknowledge(batch.seq);
    app.append(&mut chunk(1..2), || false).unwrap();
}

/// Regression (issue 12, item 1): a shipper that failed outside a delivery kept its batch in
/// flight for ever, so the ack cursor could not pass it and no segment behind it was freed.
#[test]
fn a_batch_whose_shipper_failed_is_handed_out_again_and_never_pins_the_cursor() {
    let rt = runtime();
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    let _c = rig.committer(&b);
    let mut app = Appender::new(b.clone());
    for n in 0..10 {
        app.append(&mut chunk(n * 10..n * 10 + 10), || false)
            .unwrap();
    }
    wait_for("the commit", || rig.offset() == 100);
    let before = rig.segments().len();
    let (seq, lost) = {
        let lease = rt.block_on(b.lease(300)).unwrap();
        let held = (lease.batch().seq, numbers(lease.batch()));
        // The shipper fails: what it held is dropped while unwinding.
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = lease;
            panic!("a shipper fails");
        }));
        assert!(failed.is_err());
        held
    };
    let mut delivered = Vec::new();
    let mut first = true;
    while delivered.len() < 100 {
        let lease = rt.block_on(b.lease(300)).unwrap();
        if first {
            assert_eq!(lease.batch().seq, seq, "the given-back batch comes first");
            assert_eq!(numbers(lease.batch()), lost);
            first = false;
        }
        delivered.extend(numbers(lease.batch()));
        lease.acknowledge();
    }
    assert_eq!(delivered, (0..100).collect::<Vec<_>>());
    assert_eq!(b.stats().records, 0, "every record acknowledged");
    assert!(
        rig.segments().len() < before,
        "segments behind the given-back batch are freed"
    );
}
