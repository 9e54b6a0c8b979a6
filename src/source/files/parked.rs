//! Files closed to stay within the descriptor budget, and opened again.
//!
//! When files wait for a descriptor and the budget has no room, the reader closes the
//! longest-idle files it has read to their end (no partial line or record held, nothing more
//! on disk) that still sit at their path. A closed ("parked") file keeps everything the reader
//! knew of it but the descriptor: its identity, its read position, its pod's metadata; its
//! checkpoint is untouched. It is reopened by identity — device, inode and fingerprint — when
//! inotify says it was written to or the periodic pass finds it grown; if its path no longer
//! leads to it, it is looked for next to its old path (rotated) and read to its end there.
//!
//! Never parked: a file being drained (rotated or deleted, not read to its end), a file with
//! lines still to read, a file whose pod metadata is awaited.

use super::budget::out_of_descriptors;
use super::file::{Tracked, identify};
use super::rotated::locate_rotated;
use super::{FileKey, Tailer};
use crate::vocab::FileMeta;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

/// A followed file without its descriptor.
pub struct Parked {
    path: PathBuf,
    pub(super) real: PathBuf,
    /// Everything before this is read and handed on; nothing was after it when it was closed.
    pub read_pos: u64,
    opened: Instant,
    meta: FileMeta,
    meta_generation: u64,
    /// Discovery said its path no longer leads to it: it is read to its end where it went.
    rotated: bool,
}

impl Tailer {
    /// Closes as many idle, read-to-the-end files as files wait for a descriptor beyond the
    /// budget's room.
    pub(super) fn make_room(&mut self) {
        let wanted = self.state.waiting_for_descriptor();
        let need = wanted.saturating_sub(self.shared.descriptors.room());
        if need == 0 {
            return;
        }
        let mut idle: Vec<(Instant, FileKey)> = self
            .files
            .values()
            .filter(|t| self.parkable(t))
            .map(|t| (t.last_data, t.key))
            .collect();
        idle.sort_unstable_by_key(|(at, _)| *at);
        let mut closed = 0;
        for (_, key) in idle {
            if closed == need {
                break;
            }
            if self.park(key) {
                closed += 1;
            }
        }
        self.shared.descriptors.set_reader(self.files.len());
    }

    fn parkable(&self, t: &Tracked) -> bool {
        !t.draining
            && t.carry.is_empty()
            && !t.discarding
            && t.safe_offset() == t.read_pos
            && !self.dirty.contains(&t.key)
            && !self.waiting_meta.contains(&t.key)
    }

    /// Closes `key` if it is read to its end and still sits at its path.
    fn park(&mut self, key: FileKey) -> bool {
        let Some(t) = self.files.get(&key) else {
            return false;
        };
        if t.file.metadata().ok().map(|m| m.len()) != Some(t.read_pos) {
            return false;
        }
        let here = std::fs::metadata(&t.path).map(|m| (m.dev(), m.ino()));
        if here.ok() != Some((key.dev, key.ino)) {
            return false;
        }
        let Some(t) = self.files.remove(&key) else {
            return false;
        };
        tracing::debug!(path = %t.path.display(), at = t.read_pos, "closed an idle file for the descriptor budget");
        self.parked.insert(
            key,
            Parked {
                path: t.path,
                real: t.real,
                read_pos: t.read_pos,
                opened: t.opened,
                meta: t.meta,
                meta_generation: t.meta_generation,
                rotated: false,
            },
        );
        true
    }

    /// Parked files that grew and found no descriptor: try again while there is room.
    pub(super) fn reopen_wanting(&mut self) {
        let wanting: Vec<FileKey> = self.parked_wanting.iter().copied().collect();
        for key in wanting {
            if self.shared.descriptors.room() == 0 {
                return;
            }
            if self.parked.get(&key).is_some_and(|p| p.rotated) {
                self.unpark_to_drain(key);
            } else {
                self.unpark_if_grown(key);
            }
        }
    }

    /// Reopens a parked file whose size at its path changed. One whose path leads elsewhere or
    /// nowhere is left to discovery, which says so with a [`super::handoff::Handoff::Drain`].
    pub(super) fn unpark_if_grown(&mut self, key: FileKey) {
        let Some(p) = self.parked.get(&key).filter(|p| !p.rotated) else {
            return;
        };
        let here = std::fs::metadata(&p.path).ok();
        let Some(meta) = here.filter(|m| (m.dev(), m.ino()) == (key.dev, key.ino)) else {
            // Not at its path any more: it waits for discovery's word, not for a descriptor.
            self.parked_wanting.remove(&key);
            return;
        };
        if meta.len() == p.read_pos {
            self.parked_wanting.remove(&key);
            return;
        }
        let path = p.path.clone();
        if !self.shared.descriptors.take() {
            self.parked_wanting.insert(key);
            return;
        }
        let opened = File::open(&path);
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.shared.descriptors.put_back();
                if out_of_descriptors(&e) {
                    self.parked_wanting.insert(key);
                } else {
                    self.out.metrics.read_errors.inc();
                    if self.reported.insert(path.clone()) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot reopen file; will retry");
                    }
                }
                return;
            }
        };
        let inode = file.metadata().map(|m| (m.dev(), m.ino())).ok();
        if inode != Some((key.dev, key.ino)) {
            // Rotated between the look and the open: discovery will say so.
            drop(file);
            self.shared.descriptors.put_back();
            return;
        }
        // Same inode but no longer the same first line: replaced while it was closed.
        let rewritten = !matches!(identify(&file, false), Ok(Some(k)) if k.same_file(&key));
        self.unpark(key, path, file, false);
        if rewritten {
            self.truncated(key);
        }
    }

    /// A parked file's path no longer leads to it: find it next to its old path by its inode
    /// (a `stat`, no descriptor) and read it to its end. Without a descriptor to spare it waits,
    /// marked rotated, and counts as waiting: the kubelet keeps the newest rotated file
    /// uncompressed, so it is still there when its turn comes.
    pub(super) fn unpark_to_drain(&mut self, key: FileKey) {
        let Some(p) = self.parked.get_mut(&key) else {
            return;
        };
        p.rotated = true;
        let real = p.real.clone();
        let Some(path) = locate_rotated(&real, key.dev, key.ino) else {
            self.forget_parked(key);
            return;
        };
        if !self.shared.descriptors.take() {
            self.parked_wanting.insert(key);
            return;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.shared.descriptors.put_back();
                if out_of_descriptors(&e) {
                    self.parked_wanting.insert(key);
                } else {
                    // Gone between the stat and the open.
                    self.forget_parked(key);
                }
                return;
            }
        };
        let same = file
            .metadata()
            .is_ok_and(|m| (m.dev(), m.ino()) == (key.dev, key.ino))
            && matches!(identify(&file, true), Ok(Some(k)) if k.same_file(&key));
        if same {
            self.unpark(key, path, file, true);
        } else {
            drop(file);
            self.shared.descriptors.put_back();
            self.forget_parked(key);
        }
    }

    /// A parked file that is nowhere to be found any more (deleted, or compressed).
    fn forget_parked(&mut self, key: FileKey) {
        let Some(p) = self.parked.remove(&key) else {
            return;
        };
        self.parked_wanting.remove(&key);
        // It was read to its end when it was closed, and inotify would have had it reopened at
        // its next write: only a write in the moment before its deletion can be missing.
        tracing::info!(path = %p.real.display(), at = p.read_pos, "a file closed for the descriptor budget was deleted; it had been read to its end");
        self.let_go(key, &p.real, p.read_pos);
    }

    /// Follows a parked file again through `file`, whose descriptor was taken from the budget.
    fn unpark(&mut self, key: FileKey, path: PathBuf, file: File, draining: bool) {
        // The key as parked, with the ids its checkpoint settled: the one asked with may come
        // from discovery, which identified the file afresh.
        let Some((key, p)) = self.parked.remove_entry(&key) else {
            drop(file);
            self.shared.descriptors.put_back();
            return;
        };
        self.parked_wanting.remove(&key);
        let mut t = Tracked::open(
            &path,
            file,
            key,
            p.read_pos,
            self.cfg.max_line_bytes.as_usize(),
        );
        t.decoder
            .cut_by_the_runtimes_time(self.cfg.partial_timeout.0);
        t.opened = p.opened;
        t.meta = p.meta;
        t.meta_generation = p.meta_generation;
        t.draining = draining;
        t.throttle_key = self.out.throttle_key(t.pod.as_ref());
        self.joining.apply(&mut t, &mut self.out);
        if draining {
            t.path = p.path;
        }
        self.by_real.insert(t.real.clone(), key);
        self.files.insert(key, t);
        self.dirty.insert(key);
        // The descriptor was taken from the budget to open it: it is counted as the reader's now.
        self.shared.descriptors.set_reader(self.files.len());
        self.shared.descriptors.put_back();
    }
}
