//! What a quiet agent sleeps on instead of a timer: the buffer says when it moved (records made
//! durable, acknowledged), when its cursor needs saving, and when it failed.

use super::*;
use tokio::sync::watch::Receiver;

fn changed(moved: &mut Receiver<()>) -> bool {
    let changed = moved.has_changed().unwrap();
    moved.mark_unchanged();
    changed
}

#[test]
fn durable_and_acknowledged_records_are_signalled_and_nothing_else_is() {
    let rt = runtime();
    let rig = Rig::new();
    let b = rig.open(1 << 20, OverflowAction::Block);
    let mut moved = b.moved();
    let _c = rig.committer(&b);
    assert!(!changed(&mut moved), "a new buffer has not moved");
    b.save_cursor().unwrap();
    assert!(!b.cursor_unsaved());
    let mut app = Appender::new(b.clone());
    app.append(&mut chunk(0..10), || false).unwrap();
    wait_for("the commit", || rig.offset() == 10);
    // The checkpoints moved before the signal: the saver that wakes finds them moved.
    assert!(changed(&mut moved), "made durable");
    assert!(!b.cursor_unsaved(), "nothing acknowledged yet");
    let lease = rt.block_on(b.lease(1 << 20)).unwrap();
    assert!(
        !changed(&mut moved),
        "handing a batch out moves nothing to save"
    );
    lease.acknowledge();
    assert!(changed(&mut moved), "acknowledged");
    assert!(b.cursor_unsaved());
    b.save_cursor().unwrap();
    assert!(!b.cursor_unsaved(), "saved");
    assert!(!changed(&mut moved));
    b.close();
    assert!(changed(&mut moved), "closed");
}
