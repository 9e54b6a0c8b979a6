//! Rotation seen from discovery: what a matched path led to at the last look, files renamed
//! away before they were read to their end (between two looks, or while the agent was down),
//! and finding a file again next to its old path by its identity.
//!
//! A file found here is followed *draining*: read to its end, then let go. It gets its
//! descriptor even over the budget, since waiting could let the kubelet compress it unread.

use super::FileKey;
use super::discover::{Discoverer, Look};
use super::file::identify;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

impl Discoverer {
    /// Looks at what `path` leads to now. If that is another file than last time, the file it
    /// led to was renamed away in between — possibly before it was ever read (a file still
    /// waiting for its first line, or one rotated twice between two looks) — so renamed
    /// siblings changed since the last look are picked up and read to their end.
    pub(super) fn look(&mut self, path: &Path) -> Option<std::fs::Metadata> {
        self.look_at(path, None)
    }

    /// [`Discoverer::look`], with what a scan found at `path` a moment ago when there is that.
    pub(super) fn look_at(
        &mut self,
        path: &Path,
        seen: Option<std::fs::Metadata>,
    ) -> Option<std::fs::Metadata> {
        let meta = match seen {
            Some(meta) => meta,
            None => std::fs::metadata(path).ok()?,
        };
        let inode = (meta.dev(), meta.ino());
        // The same file as at the last look, as nearly always: only the time of the look moves.
        // (No second hash of the path, no copy of it: a rescan of 500 quiet files was mostly
        // such bookkeeping.)
        if let Some(p) = self.looks.get_mut(path)
            && (p.dev, p.ino) == inode
        {
            p.at = SystemTime::now();
            return Some(meta);
        }
        let prev = self.looks.remove(path);
        // Resolving the symlink costs a syscall per path component: only now that it may have
        // changed.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        match (&prev, self.previous_scan) {
            (Some(p), _) => self.rescue_renamed(&p.real, p.at),
            // A path never looked at before: a file there may already have been created,
            // written and renamed since the previous scan (of this run, or of the last one),
            // before anything could see it.
            (None, Some(since)) => self.rescue_renamed(&real, since),
            _ => {}
        }
        self.looks.insert(
            path.to_owned(),
            Look {
                real,
                dev: meta.dev(),
                ino: meta.ino(),
                at: SystemTime::now(),
            },
        );
        Some(meta)
    }

    /// Follows files renamed from `real` (kubelet style, `0.log.<suffix>`) since `since` that
    /// are not followed yet.
    fn rescue_renamed(&mut self, real: &Path, since: SystemTime) {
        let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let n = entry.file_name();
            let n = n.to_string_lossy();
            if !n.starts_with(&prefix) || n.ends_with(".gz") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            // A rename sets the inode's change time: older files were rotated before the last
            // look and are not ours to read.
            let changed = SystemTime::UNIX_EPOCH
                + Duration::new(
                    meta.ctime().max(0) as u64,
                    meta.ctime_nsec().clamp(0, 999_999_999) as u32,
                );
            if !meta.is_file()
                || changed + Duration::from_secs(1) < since
                || self.shared.follows_inode(meta.dev(), meta.ino())
            {
                continue;
            }
            let path = entry.path();
            self.shared.descriptors.take_anyway();
            let Ok(file) = File::open(&path) else {
                self.shared.descriptors.put_back();
                continue;
            };
            match identify(&file, true) {
                Ok(Some(key)) if !self.shared.is_followed(&key) => {
                    let offset = self.checkpoints.get(&key).map_or(0, |e| e.offset);
                    tracing::info!(path = %path.display(), offset, "reading a file that was rotated before it was read to its end");
                    self.checkpoints
                        .forget(&FileKey::placeholder(key.dev, key.ino));
                    self.follow_draining(&path, file, key, offset);
                }
                _ => self.close(file),
            }
        }
    }

    /// A file rotated while the agent was down is no longer matched by the globs (the kubelet
    /// renames `0.log` to `0.log.<timestamp>`), but its checkpoint says where it was: look for it
    /// next to its old path and read the rest of it.
    pub(super) fn recover_rotated_while_down(&mut self) {
        let mut legacy: Option<Vec<(PathBuf, PathBuf)>> = None;
        for (key, entry) in self.checkpoints.entries() {
            if self.shared.is_followed(&key) {
                continue;
            }
            if !self.is_ours(entry.matched.as_deref(), &entry.path, &mut legacy) {
                // Excluded since it was followed: left alone, its checkpoint kept (included
                // again, it is read on from there).
                tracing::info!(path = %entry.path.display(), "not followed: input.include/exclude no longer select it");
                continue;
            }
            if self.looks.values().any(|l| l.ino == key.ino) {
                // Still at a matched path: found by the scan (followed, waiting for its first
                // line or for a descriptor). Not rotated; its checkpoint must stay.
                continue;
            }
            self.shared.descriptors.take_anyway();
            let mut later = false;
            let found = find_rotated(&entry.path, &mut later, |file, meta| {
                // Not the device: it may be numbered differently since the last run (a reboot).
                let same_inode = meta.ino() == key.ino;
                if !same_inode {
                    return None;
                }
                identify(file, true)
                    .ok()
                    .flatten()
                    .filter(|k| key.is_placeholder() || k.same_file(&key))
            });
            if later {
                // Out of descriptors: "not found" would forget a file that is there. The next
                // start looks again; meanwhile its checkpoint holds its place.
                self.shared.descriptors.put_back();
                tracing::warn!(path = %entry.path.display(), "no descriptor to look for a file rotated while the agent was down; it is looked for at the next start");
                continue;
            }
            if key.is_placeholder() {
                self.checkpoints.forget(&key);
            }
            match found {
                Some((path, file, found)) if !self.shared.is_followed(&found) => {
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let offset = if key.is_placeholder() {
                        0
                    } else {
                        entry.offset.min(size)
                    };
                    tracing::info!(path = %path.display(), offset, "finishing a file rotated while the agent was down");
                    self.follow_draining(&path, file, found, offset);
                }
                Some((_, file, _)) => self.close(file),
                None => {
                    self.shared.descriptors.put_back();
                    tracing::info!(path = %entry.path.display(), "file from the last run is gone");
                    self.checkpoints.forget(&key);
                }
            }
        }
    }
}

impl Discoverer {
    /// Whether the file at `real` (or the file it was rotated from), once matched at
    /// `matched`, is still ours: [`super::globs::Discovery::selects`] asked of `matched`. An
    /// entry from before matched paths were kept is asked of whichever include-matched path
    /// leads to it now (`leads`, listed once, with each path's real target); one no path leads
    /// to any more (its link is gone with its pod) was ours when it was followed, and still is.
    pub(super) fn is_ours(
        &self,
        matched: Option<&Path>,
        real: &Path,
        leads: &mut Option<Vec<(PathBuf, PathBuf)>>,
    ) -> bool {
        if let Some(m) = matched {
            return self.globs.selects(m);
        }
        let leads = leads.get_or_insert_with(|| {
            self.globs
                .scan_included()
                .into_iter()
                .filter_map(|p| Some((std::fs::canonicalize(&p).ok()?, p)))
                .collect()
        });
        let base = rotated_from(real);
        leads
            .iter()
            .find(|(target, _)| target == real || Some(target.as_path()) == base.as_deref())
            .is_none_or(|(_, path)| self.globs.selects(path))
    }
}

/// The file `path` was rotated from, kubelet style (`0.log.20261201-101500` → `0.log`).
fn rotated_from(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let at = name.rfind(".log.")?;
    Some(path.with_file_name(&name[..at + ".log".len()]))
}

/// Looks at `old` and at the files renamed from it (`old.<suffix>`, not compressed) for the one
/// `pick` recognises, and returns it with the identity `pick` gave it. Opens one candidate at a
/// time. Sets `later` when a candidate could not be opened for want of a descriptor, so that
/// "not found" is not mistaken for "gone".
pub fn find_rotated(
    old: &Path,
    later: &mut bool,
    pick: impl Fn(&File, &std::fs::Metadata) -> Option<FileKey>,
) -> Option<(PathBuf, File, FileKey)> {
    let dir = old.parent()?;
    let name = old.file_name()?.to_str()?;
    let mut candidates = vec![old.to_owned()];
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let n = entry.file_name();
        let Some(n) = n.to_str() else { continue };
        if n.starts_with(name) && n.len() > name.len() && !n.ends_with(".gz") {
            candidates.push(entry.path());
        }
    }
    candidates.into_iter().find_map(|p| {
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) => {
                *later |= super::budget::out_of_descriptors(&e);
                return None;
            }
        };
        let meta = f.metadata().ok()?;
        let key = pick(&f, &meta)?;
        Some((p, f, key))
    })
}

/// Where the file with this inode sits now: at `old`, or renamed from it (`old.<suffix>`, not
/// compressed). Looks with `stat` only, so it needs no descriptor.
pub fn locate_rotated(old: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = old.parent()?;
    let name = old.file_name()?.to_str()?;
    let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino));
    if same(old) {
        return Some(old.to_owned());
    }
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let n = entry.file_name();
        let n = n.to_str()?;
        let renamed = n.starts_with(name) && n.len() > name.len() && !n.ends_with(".gz");
        let p = entry.path();
        (renamed && same(&p)).then_some(p)
    })
}
