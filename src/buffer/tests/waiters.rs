//! A chunk's durable waiters: what a forwarder's ack waits for.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn counting(c: &mut Chunk) -> Arc<AtomicUsize> {
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    c.on_durable.push(move || {
        f.fetch_add(1, Ordering::SeqCst);
    });
    fired
}

#[test]
fn a_waiter_is_called_once_its_records_are_fsynced_not_before() {
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    let mut app = Appender::new(b.clone());
    let mut c = chunk(0..3);
    let fired = counting(&mut c);
    app.append(&mut c, || false).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0, "written, not yet durable");
    let _c = rig.committer(&b);
    wait_for("the waiter", || fired.load(Ordering::SeqCst) == 1);
    assert!(b.read_batch(1 << 20).is_some(), "durable means readable");
}

#[test]
fn a_chunk_of_only_waiters_waits_for_the_records_before_it() {
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    let mut app = Appender::new(b.clone());
    app.append(&mut chunk(0..3), || false).unwrap();
    // Every entry of a forwarded chunk was dropped by its route: nothing to write, but the
    // ack must still come, and not before what was appended earlier is durable.
    let mut empty = Chunk::new();
    let fired = counting(&mut empty);
    assert!(!empty.is_empty(), "a waiter alone is something to append");
    app.append(&mut empty, || false).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    let _c = rig.committer(&b);
    wait_for("the waiter", || fired.load(Ordering::SeqCst) == 1);
    assert_eq!(rig.offset(), 3);
}

#[test]
fn a_chunk_that_was_never_written_drops_its_waiter_uncalled() {
    let rig = Rig::new();
    // Room for one chunk only: the second waits, and shutdown gives up on it.
    let b = rig.open(200, OverflowAction::Block);
    let mut app = Appender::new(b.clone());
    app.append(&mut chunk(0..3), || false).unwrap();
    let mut c = chunk(3..6);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    c.on_durable.push(move || {
        let _ = tx.send(());
    });
    assert!(app.append(&mut c, || true).is_err(), "the buffer is full");
    drop(c);
    assert!(
        rx.recv().is_err(),
        "the waiter was dropped without being called: the forwarder gets no ack and resends"
    );
}
