//! The dead-letter file: items Elasticsearch will never accept, kept on disk with the reason.
//!
//! `<data_dir>/dead-letter/dead-letter.ndjson`, one JSON object per item:
//! `{"time":…,"status":400,"reason":"mapper_parsing_exception","error":{…},"action":{…},"document":{…}}`.
//! Each write is fsynced before the item counts as acknowledged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// One refused item: its action and document lines, and the cluster's reason.
pub struct Entry {
    pub item: Vec<u8>,
    pub status: u16,
    pub reason: String,
    /// The item's `error` object as the cluster sent it (JSON), if any.
    pub error: Option<String>,
}

pub struct DeadLetters {
    path: PathBuf,
    /// Serializes writers so lines never interleave.
    lock: Mutex<()>,
}

impl DeadLetters {
    pub fn new(data_dir: &Path) -> DeadLetters {
        DeadLetters {
            path: data_dir.join("dead-letter").join("dead-letter.ndjson"),
            lock: Mutex::new(()),
        }
    }

    /// Appends one line per entry and fsyncs, once for all of them.
    pub fn write(&self, entries: &[Entry]) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut out = Vec::new();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for e in entries {
            let (status, reason, error) = (e.status, &e.reason, e.error.as_deref());
            let text = String::from_utf8_lossy(&e.item);
            let mut lines = text.splitn(2, '\n');
            let action = lines.next().unwrap_or("null");
            let document = lines.next().unwrap_or("null").trim_end();
            out.extend_from_slice(b"{\"time\":");
            serde_json::to_writer(&mut out, &time)?;
            write!(out, ",\"status\":{status},\"reason\":")?;
            serde_json::to_writer(&mut out, reason)?;
            out.extend_from_slice(b",\"error\":");
            out.extend_from_slice(error.unwrap_or("null").as_bytes());
            out.extend_from_slice(b",\"action\":");
            out.extend_from_slice(action.as_bytes());
            out.extend_from_slice(b",\"document\":");
            out.extend_from_slice(document.as_bytes());
            out.extend_from_slice(b"}\n");
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&out)?;
        f.sync_data()
    }
}
