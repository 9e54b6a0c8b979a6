//! Checkpoints: for each file, the offset up to which every line is safe in the buffer, and
//! what the file's records are named by.
//!
//! A checkpoint moves only when the chunks carrying a file's lines are durable in the buffer,
//! applied strictly in the order they were appended, so it never passes a line that could still
//! be lost. The file on disk (`<data_dir>/checkpoints.json`, its formats in [`format`]) is
//! written to a temp file of its own, fsynced and renamed over the old one: a crash leaves
//! either the old or the new version, and the temp files a crash leaves are removed at start.
//!
//! Each entry also keeps what was settled when its file was first tracked: the basis of its
//! document ids, its birth time and first-seen time (the anchor for records without a time), and
//! its truncation generation. Lines read again after a crash therefore get the ids and times
//! they had; entries written by format 1 keep format 1's ids. Entries are matched by inode and
//! fingerprint, never by device number, and a differing birth time marks a reused inode.
//!
//! Beside it, `checkpoints.first-start` ([`first_start`]) records that the agent ever started
//! on this node, so a lost or unreadable checkpoints file never passes for a first start
//! (`read_from = "end"`).

mod first_start;
mod format;
mod positions;
#[cfg(test)]
mod tests;

use crate::vocab::file as identity;
use crate::vocab::{FileKey, IdBasis};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// The checkpoints file's name in the data directory.
const CHECKPOINTS_FILE: &str = "checkpoints.json";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Everything before this byte is durable in the buffer.
    pub offset: u64,
    /// Where the file was last seen (its real path, symlinks resolved): after a restart, a file
    /// that was rotated while the agent was down is looked for next to it.
    pub path: PathBuf,
    /// Set when the file has been read to its end and let go: the entry is dropped once the
    /// checkpoint reaches this offset.
    pub retire_at: Option<u64>,
    /// What the file's document ids are made of, settled when it was first tracked and never
    /// changed but by a truncation: lines read again after a crash get the ids they had.
    pub ids: IdBasis,
    /// The file's birth time from the filesystem (Unix ns), 0 when it has none.
    pub born_ns: i64,
    /// When the file was first tracked (Unix ns): the time anchor where there is no birth time.
    pub first_seen_ns: i64,
    /// How many times the file was truncated while followed: each new content is a generation
    /// with ids of its own.
    pub generation: u32,
    /// The path an include glob matched the file at (a `/var/log/containers` link, usually),
    /// which is what the globs are asked about after a restart or a rotation: is it still
    /// ours? `None` for entries from before it was kept.
    pub matched: Option<PathBuf>,
}

impl Entry {
    /// The time of records that have none of their own: see [`FileKey::time_anchor_ns`].
    pub fn time_anchor_ns(&self) -> i64 {
        if self.born_ns != 0 {
            self.born_ns
        } else {
            self.first_seen_ns
        }
    }

    /// Whether this entry was made for another file that had the same inode and first line:
    /// both birth times are known and differ (the inode was freed and reused).
    fn is_other_file(&self, key: &FileKey) -> bool {
        self.born_ns != 0 && key.born_ns != 0 && self.born_ns != key.born_ns
    }
}

#[derive(Default)]
struct Inner {
    files: HashMap<FileKey, Entry>,
    dirty: bool,
    last_scan: Option<SystemTime>,
    /// How far the buffer held each file at start-up (truncation generation, offset).
    buffered: HashMap<FileKey, (u32, u64)>,
}

pub struct Checkpoints {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held for a whole save: the tailer (new files), the periodic saver and the shutdown save
    /// all write, and a save of an older state must never be renamed over a newer one (it
    /// would stay on disk, the state being no longer dirty).
    saving: Mutex<()>,
    /// Goes into the id seed of files first tracked from now on (see [`identity::seed`]).
    node: String,
    /// Neither the first-start marker nor a checkpoints file (readable or not) was there: the
    /// agent has never run on this node.
    first_start: bool,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

impl Checkpoints {
    /// [`Checkpoints::open_on`] for the node named by `NODE_NAME` or the host name.
    pub fn open(dir: &Path) -> Result<Checkpoints, Error> {
        Checkpoints::open_on(dir, &identity::node_name(""))
    }

    /// Loads `<dir>/checkpoints.json` for the node `node`. An unreadable document is moved
    /// aside (and said so) so the agent can start; files are then read from their start, and
    /// re-read lines get the ids they had, so they come back as 409s, not duplicates.
    pub fn open_on(dir: &Path, node: &str) -> Result<Checkpoints, Error> {
        let path = dir.join(CHECKPOINTS_FILE);
        let started_before = first_start::started_before(dir);
        // Nothing writes in the data directory yet: temp files a crash left can go.
        crate::disk::remove_leftover_temp_files(&path);
        crate::disk::remove_leftover_temp_files(&first_start::marker_path(dir));
        let mut inner = Inner::default();
        let had_checkpoints = match fs::read(&path) {
            Ok(bytes) => {
                match format::parse(&bytes, now_ns()) {
                    Ok(saved) => inner.load(saved),
                    Err(e) => move_aside(&path, &e),
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => return Err(Error::Read { path, source }),
        };
        if !started_before {
            first_start::mark(dir, now_ns() / 1_000_000);
        }
        Ok(Checkpoints {
            path,
            inner: Mutex::new(inner),
            saving: Mutex::new(()),
            node: node.to_owned(),
            first_start: !started_before && !had_checkpoints,
        })
    }

    /// True only on the agent's very first start on this node: no checkpoints were ever
    /// written here. A checkpoints file that is unreadable or missing after an earlier start
    /// does not make one (see [`first_start`]).
    pub fn first_start(&self) -> bool {
        self.first_start
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of the file `key` names, unless it was made for another file that had the
    /// same inode and first line before (see [`Entry::is_other_file`]). The device number does
    /// not take part: it may have changed since the entry was made.
    pub fn get(&self, key: &FileKey) -> Option<Entry> {
        self.lock()
            .files
            .get(key)
            .filter(|e| !e.is_other_file(key))
            .cloned()
    }

    /// All entries, for finding files rotated while the agent was down.
    pub fn entries(&self) -> Vec<(FileKey, Entry)> {
        self.lock()
            .files
            .iter()
            .map(|(k, e)| (*k, e.clone()))
            .collect()
    }

    /// The id seed of the file `key` in its `generation`, born (or first seen) at `born_ns`.
    fn seed(&self, key: &FileKey, born_ns: i64, generation: u32) -> IdBasis {
        IdBasis::V2 {
            seed: identity::seed(&self.node, key.ino, key.fingerprint, born_ns, generation),
        }
    }

    /// Starts remembering a file at `offset`, or updates where it lives, and settles `key`
    /// from its entry: its ids and time anchor as first tracked, its device as seen now. True
    /// when the file was not known before.
    pub fn track(&self, key: &mut FileKey, path: &Path, offset: u64) -> bool {
        let mut inner = self.lock();
        let existing = inner.files.remove(&*key);
        let existing = match existing {
            Some(e) if e.is_other_file(key) => {
                tracing::info!(path = %path.display(), "a new file has the inode and first line of one that was deleted; following it as new");
                None
            }
            other => other,
        };
        // The inode holds other content now (rewritten with another first line, or freed and
        // reused): what was remembered for the old content has nothing left to protect. Not for
        // a placeholder: a truncated file is empty for a moment, and its new generation must
        // still be found when its first line is written.
        if !key.is_placeholder() {
            let (dev, ino, fingerprint) = (key.dev, key.ino, key.fingerprint);
            inner
                .files
                .retain(|k, _| !(k.dev == dev && k.ino == ino && k.fingerprint != fingerprint));
        }
        let new = existing.is_none();
        let mut e = existing.unwrap_or_else(|| {
            let first_seen_ns = now_ns();
            let born = if key.born_ns != 0 {
                key.born_ns
            } else {
                first_seen_ns
            };
            Entry {
                offset,
                path: path.to_owned(),
                retire_at: None,
                ids: self.seed(key, born, 0),
                born_ns: key.born_ns,
                first_seen_ns,
                generation: 0,
                matched: None,
            }
        });
        if e.born_ns == 0 {
            // An entry from before birth times were kept learns it now, before any record used
            // the anchor in this version.
            e.born_ns = key.born_ns;
        }
        if e.path != path {
            e.path = path.to_owned();
        }
        e.retire_at = None;
        key.born_ns = e.born_ns;
        key.time_anchor_ns = e.time_anchor_ns();
        key.ids = e.ids;
        // Stored under the key as seen now: its device is the current one.
        inner.files.insert(*key, e);
        inner.dirty = true;
        new
    }

    /// The file was truncated. Followed again from 0 (`followed_again`), its new content is
    /// the next generation: new ids (its first line and offsets may repeat the old content's),
    /// and acknowledgements of the old content no longer move its checkpoint. Otherwise it is
    /// forgotten.
    pub fn start_over(&self, key: &FileKey, followed_again: bool) {
        if !followed_again {
            self.forget(key);
            return;
        }
        let mut inner = self.lock();
        let Some(e) = inner.files.get(key) else {
            return;
        };
        let generation = e.generation.saturating_add(1);
        let ids = self.seed(key, e.time_anchor_ns(), generation);
        if let Some(e) = inner.files.get_mut(key) {
            e.offset = 0;
            e.retire_at = None;
            e.generation = generation;
            e.ids = ids;
        }
        inner.dirty = true;
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

    /// Changes whenever a checkpoint moves or an entry comes or goes (a sum, not a hash: cheap
    /// to take every second under the lock); the agent measures [`Checkpoints::lag`] again
    /// when it changes.
    pub fn fingerprint(&self) -> u64 {
        let inner = self.lock();
        inner
            .files
            .values()
            .fold(inner.files.len() as u64, |sum, e| {
                sum.wrapping_add(e.offset)
            })
    }

    /// Bytes in the known files past their checkpoints: what is not yet safe in the buffer.
    /// A stat per file, by path, counted only while the path still holds the same inode (the
    /// device may be numbered differently since the entry was made): from the agent's timer,
    /// so that it is measured even while reading is paused.
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
                (m.ino() == key.ino).then(|| m.len().saturating_sub(offset))
            })
            .sum()
    }

    /// Forgets a file outright (it is gone and cannot be read again).
    /// Remembers the include-matched path that led to the file `key` (see [`Entry::matched`]).
    pub fn note_matched(&self, key: &FileKey, matched: &Path) {
        let mut inner = self.lock();
        if let Some(e) = inner.files.get_mut(key)
            && e.matched.as_deref() != Some(matched)
        {
            e.matched = Some(matched.to_owned());
            inner.dirty = true;
        }
    }

    pub fn forget(&self, key: &FileKey) {
        let mut inner = self.lock();
        if inner.files.remove(key).is_some() {
            inner.dirty = true;
        }
    }

    /// A chunk is durable in the buffer: its files' checkpoints move forward. The buffer's
    /// committer is the one caller, and it calls in append order. An advance made with other
    /// (settled) ids than the entry's is for content the file no longer holds (a generation
    /// before a truncation) and is ignored.
    pub fn advance(&self, advances: Vec<(FileKey, u64)>) {
        let mut inner = self.lock();
        for (key, offset) in advances {
            if let Some(e) = inner.files.get_mut(&key)
                && (e.ids == key.ids || key.ids == IdBasis::Unsettled)
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

    /// Something changed since the last save.
    pub fn unsaved(&self) -> bool {
        self.lock().dirty
    }

    /// Writes the checkpoints if they changed: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self) -> Result<(), Error> {
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let encoded = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            format::to_bytes(&inner.files, inner.last_scan)
        };
        let result = encoded
            .map_err(std::io::Error::from)
            .and_then(|bytes| crate::disk::write_atomically(&self.path, &bytes));
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

/// An unreadable checkpoints file is moved aside (and said so) so the agent can start.
fn move_aside(path: &Path, e: &serde_json::Error) {
    let aside = path.with_extension("json.corrupt");
    tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(),
        "checkpoint file is unreadable; reading every file from its start (lines already shipped come back as duplicates by id and are dropped by Elasticsearch)");
    let _ = fs::rename(path, &aside);
}

impl Inner {
    /// Takes in a saved document; each key is settled from its entry, as [`Checkpoints::track`]
    /// settles it.
    fn load(&mut self, saved: format::Loaded) {
        self.last_scan = saved.last_scan;
        for (mut key, entry) in saved.files {
            key.born_ns = entry.born_ns;
            key.time_anchor_ns = entry.time_anchor_ns();
            key.ids = entry.ids;
            self.files.insert(key, entry);
        }
    }
}
