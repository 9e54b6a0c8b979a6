//! The first-start marker: `<data_dir>/checkpoints.first-start`, written at the agent's first
//! start on a node and never removed. Its presence says "this node's files were followed
//! before", whatever became of the checkpoints file, so a lost or unreadable checkpoints file
//! never passes for a first start (which, with `read_from = "end"`, would skip lines for good).

use std::fs;
use std::path::{Path, PathBuf};

/// The marker's name in the data directory.
const FIRST_START_MARKER: &str = "checkpoints.first-start";

/// Where the marker of the data directory `dir` is.
pub(super) fn marker_path(dir: &Path) -> PathBuf {
    dir.join(FIRST_START_MARKER)
}

/// Whether the marker says the agent started in `dir` before. When that cannot be told (the
/// marker cannot be looked at), yes: taking a restart for a first start skips lines for good,
/// the other mistake only reads them again.
pub(super) fn started_before(dir: &Path) -> bool {
    match fs::metadata(marker_path(dir)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Writes the marker at `now_ms` (Unix ms). A failure is logged, not returned: the checkpoints
/// file, once saved, says the same; until then a restart would take itself for a first start
/// again.
pub(super) fn mark(dir: &Path, now_ms: i64) {
    let marker = marker_path(dir);
    let note = format!(
        "logferry first started on this node at {now_ms} (Unix ms); while this file exists, \
         read_from = \"end\" no longer applies, whatever happens to checkpoints.json\n"
    );
    if let Err(e) = crate::disk::write_atomically(&marker, note.as_bytes()) {
        tracing::error!(path = %marker.display(), error = %e, "cannot write the first-start marker");
    }
}
