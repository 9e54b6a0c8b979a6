//! Checkpoints: for each file, the offset up to which every line is safe in the buffer.
//!
//! A checkpoint moves only when the chunks carrying a file's lines are durable in the buffer,
//! applied strictly in the order they were appended, so it never passes a line that could still
//! be lost. The
//! file on disk (`<data_dir>/checkpoints.json`) is a versioned document written to a temp file,
//! fsynced and renamed over the old one: a crash leaves either the old or the new version.

use super::FileKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write checkpoints to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read checkpoints from {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is remembered of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Everything before this byte is durable in the buffer.
    pub offset: u64,
    /// Where the file was last seen (its real path, symlinks resolved): after a restart, a file
    /// that was rotated while the agent was down is looked for next to it.
    pub path: PathBuf,
    /// Set when the file has been read to its end and let go: the entry is dropped once the
    /// checkpoint reaches this offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum Stored {
    #[serde(rename = "1")]
    V1 {
        files: Vec<StoredFile>,
        /// When the agent last looked at every path (Unix milliseconds): after a restart, files
        /// renamed since then may never have been seen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_scan_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    dev: u64,
    ino: u64,
    fingerprint: String,
    #[serde(flatten)]
    entry: Entry,
}

#[derive(Default)]
struct Inner {
    files: HashMap<FileKey, Entry>,
    dirty: bool,
    last_scan: Option<SystemTime>,
}

pub struct Checkpoints {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held for a whole save: the tailer (new files) and the periodic saver both write, and
    /// two writers would race on the one temp file.
    saving: Mutex<()>,
}

impl Checkpoints {
    /// Loads `<dir>/checkpoints.json`. An unreadable document is moved aside (and said so) so the
    /// agent can start; re-reading files then only produces 409s, never duplicates.
    pub fn open(dir: &Path) -> Result<Checkpoints, Error> {
        let path = dir.join("checkpoints.json");
        let mut inner = Inner::default();
        match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(Stored::V1 {
                    files,
                    last_scan_ms,
                }) => {
                    inner.last_scan =
                        last_scan_ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                    for f in files {
                        let Ok(fingerprint) = u64::from_str_radix(&f.fingerprint, 16) else {
                            continue;
                        };
                        let key = FileKey {
                            dev: f.dev,
                            ino: f.ino,
                            fingerprint,
                        };
                        inner.files.insert(key, f.entry);
                    }
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(),
                        "checkpoint file is unreadable; starting without checkpoints (replayed lines are deduplicated by id)");
                    let _ = fs::rename(&path, &aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Read { path, source }),
        }
        Ok(Checkpoints {
            path,
            inner: Mutex::new(inner),
            saving: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &FileKey) -> Option<Entry> {
        self.lock().files.get(key).cloned()
    }

    /// All entries, for finding files rotated while the agent was down.
    pub fn entries(&self) -> Vec<(FileKey, Entry)> {
        self.lock()
            .files
            .iter()
            .map(|(k, e)| (*k, e.clone()))
            .collect()
    }

    /// Starts remembering a file at `offset`, or updates where it lives. True when the file
    /// was not known before.
    pub fn track(&self, key: FileKey, path: &Path, offset: u64) -> bool {
        let mut inner = self.lock();
        let mut new = false;
        let e = inner.files.entry(key).or_insert_with(|| {
            new = true;
            Entry {
                offset,
                path: path.to_owned(),
                retire_at: None,
            }
        });
        if e.path != path {
            e.path = path.to_owned();
        }
        e.retire_at = None;
        inner.dirty = true;
        new
    }

    /// The file will not be read further than `end`; drop it once that much is durable.
    pub fn retire(&self, key: FileKey, end: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.files.get_mut(&key) {
            if e.offset >= end {
                inner.files.remove(&key);
            } else {
                e.retire_at = Some(end);
            }
            inner.dirty = true;
        }
    }

    /// When the last run of the agent last looked at every path, as saved.
    pub fn last_scan(&self) -> Option<SystemTime> {
        self.lock().last_scan
    }

    /// Records a completed look at every path; written with the next save, which `persist`
    /// forces (at shutdown) rather than waiting for other changes.
    pub fn note_scan(&self, at: SystemTime, persist: bool) {
        let mut inner = self.lock();
        inner.last_scan = Some(at);
        inner.dirty |= persist;
    }

    /// Bytes in the known files past their checkpoints: what is not yet safe in the buffer.
    /// A stat per file, by path, counted only while the path still holds the same file: from
    /// the agent's timer, so that it is measured even while reading is paused.
    pub fn lag(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let files: Vec<(FileKey, PathBuf, u64)> = self
            .lock()
            .files
            .iter()
            .map(|(k, e)| (*k, e.path.clone(), e.offset))
            .collect();
        files
            .into_iter()
            .filter_map(|(key, path, offset)| {
                let m = fs::metadata(path).ok()?;
                (m.dev() == key.dev && m.ino() == key.ino).then(|| m.len().saturating_sub(offset))
            })
            .sum()
    }

    /// Forgets a file outright (it is gone and cannot be read again).
    pub fn forget(&self, key: &FileKey) {
        let mut inner = self.lock();
        if inner.files.remove(key).is_some() {
            inner.dirty = true;
        }
    }

    /// A chunk is durable in the buffer: its files' checkpoints move forward. The buffer's
    /// committer is the one caller, and it calls in append order.
    pub fn advance(&self, advances: Vec<(FileKey, u64)>) {
        let mut inner = self.lock();
        for (key, offset) in advances {
            if let Some(e) = inner.files.get_mut(&key)
                && offset > e.offset
            {
                e.offset = offset;
                if e.retire_at.is_some_and(|end| offset >= end) {
                    inner.files.remove(&key);
                }
                inner.dirty = true;
            }
        }
    }

    /// Writes the checkpoints if they changed: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> Result<(), Error> {
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let doc = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            let mut files: Vec<StoredFile> = inner
                .files
                .iter()
                .map(|(k, e)| StoredFile {
                    dev: k.dev,
                    ino: k.ino,
                    fingerprint: format!("{:016x}", k.fingerprint),
                    entry: e.clone(),
                })
                .collect();
            files.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
            let last_scan_ms = inner.last_scan.and_then(|t| {
                let ms = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis();
                u64::try_from(ms).ok()
            });
            Stored::V1 {
                files,
                last_scan_ms,
            }
        };
        let result = serde_json::to_vec_pretty(&doc)
            .map_err(std::io::Error::from)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                crate::disk::write_atomically(&self.path, &bytes)
            });
        if result.is_err() {
            // Try again at the next save.
            self.lock().dirty = true;
        }
        result.map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FileKey {
        FileKey {
            dev: 2049,
            ino: n,
            fingerprint: 0xfeed_0000 + n,
        }
    }

    #[test]
    fn checkpoints_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        c.track(key(1), Path::new("/a"), 0);
        c.advance(vec![(key(1), 200)]);
        c.advance(vec![(key(1), 100)]);
        assert_eq!(c.get(&key(1)).unwrap().offset, 200);
    }

    #[test]
    fn saved_checkpoints_survive_a_reopen_and_retired_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        c.track(key(1), Path::new("/var/log/pods/a/0.log"), 0);
        c.track(key(2), Path::new("/var/log/pods/b/0.log"), 0);
        c.advance(vec![(key(1), 4096), (key(2), 10)]);
        c.retire(key(2), 20);
        c.save().unwrap();
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.get(&key(1)).unwrap().offset, 4096);
        assert_eq!(again.get(&key(2)).unwrap().retire_at, Some(20));
        again.advance(vec![(key(2), 20)]);
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
}
