//! Checkpoints: for each file, the offset up to which every line is safe in the buffer, and
//! what the file's records are named by.
//!
//! A checkpoint moves only when the chunks carrying a file's lines are durable in the buffer,
//! applied strictly in the order they were appended, so it never passes a line that could still
//! be lost. The file on disk (`<data_dir>/checkpoints.json`) is a versioned document written to
//! a temp file, fsynced and renamed over the old one: a crash leaves either the old or the new
//! version.
//!
//! Each entry also keeps what was settled when its file was first tracked: the basis of its
//! document ids, its birth time and first-seen time (the anchor for records without a time), and
//! its truncation generation. Lines read again after a crash therefore get the ids and times
//! they had; entries written by format 1 keep format 1's ids. Entries are matched by inode and
//! fingerprint, never by device number, and a differing birth time marks a reused inode.
//!
//! Beside it, `checkpoints.first-start` records that the agent ever started on this node, so a
//! lost or unreadable checkpoints file never passes for a first start (`read_from = "end"`).

use super::identity::{self, FileKey, IdBasis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

/// Written in the data directory at the agent's first start on a node and never removed: its
/// presence says "this node's files were followed before", whatever became of the checkpoints
/// file. Only without it does `read_from = "end"` skip what files already hold.
const FIRST_START_MARKER: &str = "checkpoints.first-start";

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

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum Stored {
    /// Written by versions before per-file id bases: read, never written.
    #[serde(rename = "1")]
    V1 {
        files: Vec<StoredFileV1>,
        #[serde(default)]
        last_scan_ms: Option<u64>,
    },
    #[serde(rename = "2")]
    V2 {
        files: Vec<StoredFile>,
        /// When the agent last looked at every path (Unix milliseconds): after a restart, files
        /// renamed since then may never have been seen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_scan_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredFileV1 {
    dev: u64,
    ino: u64,
    fingerprint: String,
    offset: u64,
    path: PathBuf,
    #[serde(default)]
    retire_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct StoredFile {
    dev: u64,
    ino: u64,
    fingerprint: String,
    offset: u64,
    path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retire_at: Option<u64>,
    ids: StoredIds,
    #[serde(default)]
    born_ns: i64,
    first_seen_ns: i64,
    #[serde(default)]
    generation: u32,
}

/// [`IdBasis`] as written: `{"v1":{"dev":2049}}` or `{"v2":{"seed":"<32 hex digits>"}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredIds {
    V1 { dev: u64 },
    V2 { seed: String },
}

impl StoredIds {
    fn to_basis(&self) -> Option<IdBasis> {
        match self {
            StoredIds::V1 { dev } => Some(IdBasis::V1 { dev: *dev }),
            StoredIds::V2 { seed } => u128::from_str_radix(seed, 16)
                .ok()
                .map(|seed| IdBasis::V2 { seed }),
        }
    }

    /// `None` for a basis that must never be stored (an entry always has a settled one).
    fn from_basis(basis: IdBasis) -> Option<StoredIds> {
        match basis {
            IdBasis::Unsettled => None,
            IdBasis::V1 { dev } => Some(StoredIds::V1 { dev }),
            IdBasis::V2 { seed } => Some(StoredIds::V2 {
                seed: format!("{seed:032x}"),
            }),
        }
    }
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

fn fingerprint_from_hex(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex, 16).ok()
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
        let path = dir.join("checkpoints.json");
        let marker = dir.join(FIRST_START_MARKER);
        let mut inner = Inner::default();
        let marked = match fs::metadata(&marker) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            // Cannot tell: not a first start, since taking it for one skips lines for good.
            Err(_) => true,
        };
        let mut had_checkpoints = false;
        match fs::read(&path) {
            Ok(bytes) => {
                had_checkpoints = true;
                match serde_json::from_slice::<Stored>(&bytes) {
                    Ok(doc) => inner.load(doc),
                    Err(e) => {
                        let aside = path.with_extension("json.corrupt");
                        tracing::error!(path = %path.display(), error = %e, moved_to = %aside.display(),
                            "checkpoint file is unreadable; reading every file from its start (lines already shipped come back as duplicates by id and are dropped by Elasticsearch)");
                        let _ = fs::rename(&path, &aside);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Read { path, source }),
        }
        if !marked {
            let note = format!(
                "logferry first started on this node at {} (Unix ms); while this file exists, \
                 read_from = \"end\" no longer applies, whatever happens to checkpoints.json\n",
                now_ns() / 1_000_000
            );
            if let Err(e) = crate::disk::write_atomically(&marker, note.as_bytes()) {
                // The checkpoints file, once saved, says the same; until then a restart would
                // take itself for a first start again.
                tracing::error!(path = %marker.display(), error = %e, "cannot write the first-start marker");
            }
        }
        Ok(Checkpoints {
            path,
            inner: Mutex::new(inner),
            saving: Mutex::new(()),
            node: node.to_owned(),
            first_start: !marked && !had_checkpoints,
        })
    }

    /// True only on the agent's very first start on this node: no checkpoints were ever
    /// written here. A checkpoints file that is unreadable or missing after an earlier start
    /// does not make one (see [`FIRST_START_MARKER`]).
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
                .filter_map(|(k, e)| {
                    Some(StoredFile {
                        dev: k.dev,
                        ino: k.ino,
                        fingerprint: format!("{:016x}", k.fingerprint),
                        offset: e.offset,
                        path: e.path.clone(),
                        retire_at: e.retire_at,
                        ids: StoredIds::from_basis(e.ids)?,
                        born_ns: e.born_ns,
                        first_seen_ns: e.first_seen_ns,
                        generation: e.generation,
                    })
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let last_scan_ms = inner.last_scan.and_then(|t| {
                let ms = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis();
                u64::try_from(ms).ok()
            });
            Stored::V2 {
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

impl Inner {
    /// Takes in a saved document. Entries of format 1 keep the ids that version gave their
    /// records ([`IdBasis::V1`], with the device as it was then); their anchor for records
    /// without a time is the file's birth time, learnt when it is tracked again, else now.
    fn load(&mut self, doc: Stored) {
        let (files, last_scan_ms): (Vec<(FileKey, Entry)>, _) = match doc {
            Stored::V1 {
                files,
                last_scan_ms,
            } => {
                let now = now_ns();
                let files = files
                    .into_iter()
                    .filter_map(|f| {
                        let key = FileKey::new(f.dev, f.ino, fingerprint_from_hex(&f.fingerprint)?);
                        let entry = Entry {
                            offset: f.offset,
                            path: f.path,
                            retire_at: f.retire_at,
                            ids: IdBasis::V1 { dev: f.dev },
                            born_ns: 0,
                            first_seen_ns: now,
                            generation: 0,
                        };
                        Some((key, entry))
                    })
                    .collect();
                (files, last_scan_ms)
            }
            Stored::V2 {
                files,
                last_scan_ms,
            } => {
                let files = files
                    .into_iter()
                    .filter_map(|f| {
                        let key = FileKey::new(f.dev, f.ino, fingerprint_from_hex(&f.fingerprint)?);
                        let entry = Entry {
                            offset: f.offset,
                            path: f.path,
                            retire_at: f.retire_at,
                            ids: f.ids.to_basis()?,
                            born_ns: f.born_ns,
                            first_seen_ns: f.first_seen_ns,
                            generation: f.generation,
                        };
                        Some((key, entry))
                    })
                    .collect();
                (files, last_scan_ms)
            }
        };
        self.last_scan = last_scan_ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        for (mut key, entry) in files {
            key.born_ns = entry.born_ns;
            key.time_anchor_ns = entry.time_anchor_ns();
            key.ids = entry.ids;
            self.files.insert(key, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as `identify` finds it: device 2049, born at a fixed time.
    fn key(n: u64) -> FileKey {
        let mut k = FileKey::new(2049, n, 0xfeed_0000 + n);
        k.born_ns = 1_764_000_000_000_000_000 + n as i64;
        k
    }

    /// Tracks `key` and returns it settled, as the tailer holds it.
    fn tracked(c: &Checkpoints, mut key: FileKey, path: &str) -> FileKey {
        c.track(&mut key, Path::new(path), 0);
        key
    }

    #[test]
    fn checkpoints_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let k = tracked(&c, key(1), "/a");
        c.advance(vec![(k, 200)]);
        c.advance(vec![(k, 100)]);
        assert_eq!(c.get(&k).unwrap().offset, 200);
    }

    #[test]
    fn saved_checkpoints_survive_a_reopen_and_retired_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let k1 = tracked(&c, key(1), "/var/log/pods/a/0.log");
        let k2 = tracked(&c, key(2), "/var/log/pods/b/0.log");
        c.advance(vec![(k1, 4096), (k2, 10)]);
        c.retire(k2, 20);
        c.save().unwrap();
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(again.get(&key(1)).unwrap().offset, 4096);
        assert_eq!(again.get(&key(2)).unwrap().retire_at, Some(20));
        assert_eq!(again.get(&key(1)).unwrap().ids, k1.ids, "ids are kept");
        again.advance(vec![(k2, 20)]);
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

    #[test]
    fn a_corrupt_or_lost_checkpoints_file_does_not_make_a_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        assert!(c.first_start(), "nothing was ever here");
        tracked(&c, key(1), "/a");
        c.save().unwrap();
        assert!(!Checkpoints::open(dir.path()).unwrap().first_start());
        fs::write(dir.path().join("checkpoints.json"), b"\0\0\0garbage").unwrap();
        assert!(
            !Checkpoints::open(dir.path()).unwrap().first_start(),
            "corrupt (moved aside)"
        );
        assert!(
            !Checkpoints::open(dir.path()).unwrap().first_start(),
            "missing, the corrupt one being aside"
        );
        // An agent that started and crashed before it ever saved a checkpoint.
        let crashed = tempfile::tempdir().unwrap();
        drop(Checkpoints::open(crashed.path()).unwrap());
        assert!(!Checkpoints::open(crashed.path()).unwrap().first_start());
        // Upgraded from a version without the marker.
        let upgraded = tempfile::tempdir().unwrap();
        fs::write(
            upgraded.path().join("checkpoints.json"),
            br#"{"version":"1","files":[]}"#,
        )
        .unwrap();
        assert!(!Checkpoints::open(upgraded.path()).unwrap().first_start());
    }

    #[test]
    fn a_renumbered_device_finds_its_checkpoint_and_keeps_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open_on(dir.path(), "node-a").unwrap();
        let before = tracked(&c, key(1), "/var/log/pods/a/0.log");
        c.advance(vec![(before, 4096)]);
        c.save().unwrap();
        // After a reboot LVM named the device 253:0 instead of 8:1.
        let again = Checkpoints::open_on(dir.path(), "node-a").unwrap();
        let mut after = FileKey {
            dev: 64768,
            ..key(1)
        };
        assert_eq!(again.get(&after).map(|e| e.offset), Some(4096));
        assert!(!again.track(&mut after, Path::new("/var/log/pods/a/0.log"), 4096));
        assert_eq!(after.ids, before.ids, "re-read lines keep their ids");
        again.advance(vec![(after, 5000)]);
        assert_eq!(again.get(&after).unwrap().offset, 5000);
        assert_eq!(
            again.entries()[0].0.dev,
            64768,
            "the device as seen now is kept"
        );
    }

    #[test]
    fn version_1_checkpoints_keep_the_ids_of_version_1() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("checkpoints.json"),
            br#"{"version":"1","files":[{"dev":2049,"ino":1,"fingerprint":"00000000feed0001","offset":300,"path":"/a"}],"last_scan_ms":1764000000000}"#,
        )
        .unwrap();
        let c = Checkpoints::open_on(dir.path(), "node-a").unwrap();
        assert!(!c.first_start());
        let mut k = FileKey {
            dev: 64768,
            ..key(1)
        };
        assert_eq!(c.get(&k).map(|e| e.offset), Some(300));
        c.track(&mut k, Path::new("/a"), 300);
        assert_eq!(
            k.ids,
            IdBasis::V1 { dev: 2049 },
            "the device as it was then"
        );
        assert_eq!(k.time_anchor_ns, key(1).born_ns, "birth time learnt now");
        c.save().unwrap();
        let saved = fs::read_to_string(dir.path().join("checkpoints.json")).unwrap();
        assert!(saved.contains(r#""version": "2""#), "{saved}");
        let again = Checkpoints::open_on(dir.path(), "node-a").unwrap();
        assert_eq!(again.get(&k).unwrap().ids, IdBasis::V1 { dev: 2049 });
    }

    #[test]
    fn copytruncate_with_the_same_first_line_starts_a_generation_with_other_ids() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let first = tracked(&c, key(1), "/a");
        c.advance(vec![(first, 500)]);
        c.start_over(&first, true);
        let second = tracked(&c, key(1), "/a");
        assert_ne!(second.ids, first.ids);
        assert_eq!(c.get(&second).unwrap().offset, 0);
        // A late acknowledgement of the old content must not move the new checkpoint past
        // lines not yet buffered.
        c.advance(vec![(first, 900)]);
        assert_eq!(c.get(&second).unwrap().offset, 0);
        c.advance(vec![(second, 100)]);
        assert_eq!(c.get(&second).unwrap().offset, 100);
        // Each truncation is a generation of its own, and they are kept across a restart.
        c.start_over(&second, true);
        let third = tracked(&c, key(1), "/a");
        assert!(third.ids != first.ids && third.ids != second.ids);
        c.save().unwrap();
        let again = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(tracked(&again, key(1), "/a").ids, third.ids);
    }

    #[test]
    fn a_reused_inode_with_the_same_first_line_is_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let old = tracked(&c, key(1), "/a");
        c.advance(vec![(old, 500)]);
        let reborn = FileKey {
            born_ns: key(1).born_ns + 60_000_000_000,
            ..key(1)
        };
        assert!(c.get(&reborn).is_none(), "not the old file's offset");
        let mut new = reborn;
        assert!(c.track(&mut new, Path::new("/a"), 0));
        assert_ne!(new.ids, old.ids);
        assert_eq!(c.get(&new).unwrap().offset, 0);
    }

    #[test]
    fn rewritten_content_drops_the_old_contents_entry() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let old = tracked(&c, key(1), "/a");
        c.start_over(&old, true);
        let other_first_line = FileKey {
            fingerprint: 0xbeef,
            ..key(1)
        };
        tracked(&c, other_first_line, "/a");
        assert_eq!(c.entries().len(), 1);
        assert!(c.get(&old).is_none());
    }

    #[test]
    fn a_truncated_file_waiting_for_its_first_line_keeps_its_generation() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(dir.path()).unwrap();
        let first = tracked(&c, key(1), "/a");
        c.start_over(&first, true);
        // Empty for a moment after the truncation: remembered by inode only.
        tracked(&c, FileKey::placeholder(2049, 1), "/a");
        c.forget(&FileKey::placeholder(2049, 1));
        let second = tracked(&c, key(1), "/a");
        assert_ne!(
            second.ids, first.ids,
            "the same first line again, a new generation"
        );
    }

    #[test]
    fn ids_come_back_the_same_when_the_checkpoints_are_lost() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = tracked(
            &Checkpoints::open_on(a.path(), "node-a").unwrap(),
            key(1),
            "/a",
        );
        let lost = tracked(
            &Checkpoints::open_on(b.path(), "node-a").unwrap(),
            key(1),
            "/a",
        );
        assert_eq!(first.ids, lost.ids);
        let elsewhere = tracked(
            &Checkpoints::open_on(b.path(), "node-b").unwrap(),
            key(2),
            "/b",
        );
        let here = tracked(
            &Checkpoints::open_on(a.path(), "node-a").unwrap(),
            key(2),
            "/b",
        );
        assert_ne!(
            elsewhere.ids, here.ids,
            "the same image-baked file on another node"
        );
    }
}
