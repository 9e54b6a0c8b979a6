//! The one place where the agent creates its own files and directories, and makes them durable.
//!
//! Everything the agent writes holds pods' log lines or where they are (buffer segments, the
//! buffer cursor, checkpoints, dead letters), so it is private to the agent's user: files are
//! created `0600` and directories `0700`, whatever the umask (a umask can only take bits away
//! from those modes, never add any). A directory that already exists with wider permissions
//! (an operator's `mkdir`, a hostPath created by the kubelet, an older version of the agent) is
//! tightened to `0700` and that is logged once; a directory the agent may not change (not its
//! owner) or one that is sticky (`/tmp`-like, shared by design) is left as it is, with a warning.
//!
//! Small documents that must survive a crash whole (the checkpoints and the buffer's cursor)
//! are written to a temp file of their own, fsynced, renamed over the old one, and the
//! directory is fsynced, so a crash at any moment leaves either the old or the new version,
//! never a mix, and two writers at once never tear each other's version. A crash may leave a
//! temp file (`.<name>.<random>.tmp`): no loader reads it, and the owners of each document
//! remove them at start ([`remove_leftover_temp_files`]).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file the agent creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the agent creates or writes into.
pub const DIR_MODE: u32 = 0o700;
/// Set on shared directories such as `/tmp`: never tightened.
const STICKY: u32 = 0o1000;

/// Options for creating one of the agent's files: `0600` from its first byte, so there is no
/// moment at which another user could open it.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates `dir` and its missing parents `0700`, and tightens `dir` itself if it already
/// existed with wider permissions. Parents that already exist are left alone: they are not the
/// agent's.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o7777 & !DIR_MODE == 0 {
        return Ok(());
    }
    if mode & STICKY != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o7777), "this directory is shared (sticky) and is left as it is; give the agent a directory of its own so that other users cannot list its files");
        return Ok(());
    }
    match fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)) {
        Ok(()) => {
            tracing::warn!(dir = %dir.display(), was = format!("{:o}", mode & 0o7777), "tightened the agent's directory to 0700: it holds pods' log lines")
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", mode & 0o7777), error = %e, "cannot tighten the agent's directory to 0700 (not its owner?); its files stay 0600")
        }
    }
    Ok(())
}

/// How the temp files of [`write_atomically`] begin: `.<target name>.` then random letters,
/// ending in [`TEMP_SUFFIX`] — hidden, named after what they would have become, and never
/// taken for a segment (`.seg`) or a document (`.json`) by a loader.
const TEMP_PREFIX: &str = ".";
/// How the temp files of [`write_atomically`] end; the fixed `<name>.tmp` of older versions
/// ends the same way.
const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes`, atomically and durably; the file is `0600`.
///
/// Each call writes a temp file of its own (created `0600`, exclusively) in `path`'s directory,
/// so two writers of one document at the same moment (the periodic save and the shutdown save)
/// never write into, or rename, each other's half-written file: the last rename wins whole.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = directory_of(path);
    let name = path.file_name().unwrap_or(path.as_os_str());
    let mut prefix = std::ffi::OsString::from(TEMP_PREFIX);
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temp file is dropped, which removes it.
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Removes the temp files a crash in the middle of [`write_atomically`] may have left for
/// `path`: this version's (`.<name>.<random>.tmp`) and older versions' (`<name>.tmp`). Only at
/// start, before anything writes `path`: a writer running now would lose its temp file.
/// Returns how many were removed; ones that cannot be removed are left (nothing reads them).
pub fn remove_leftover_temp_files(path: &Path) -> usize {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    let ours = format!("{TEMP_PREFIX}{name}.");
    let older = format!("{name}{TEMP_SUFFIX}");
    let Ok(entries) = fs::read_dir(directory_of(path)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n == older || (n.starts_with(&ours) && n.ends_with(TEMP_SUFFIX)))
        })
        .filter(|entry| fs::remove_file(entry.path()).is_ok())
        .count()
}

/// The directory `path` is in; `.` for a bare name.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes the creation, renaming or removal of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    open_dir(dir)?.sync_all()
}

/// Opens `dir` for an fsync. Kept apart from the fsync itself: failing to *open* (no
/// descriptor left, EMFILE/ENFILE) says nothing about what was written, while a failed fsync
/// does.
pub fn open_dir(dir: &Path) -> std::io::Result<File> {
    File::open(dir)
}

/// True for errors that mean "no file descriptor right now" (EMFILE, ENFILE): worth waiting
/// out, and never a sign that data was lost.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// How much free space the filesystem holding `path` has for the agent, in bytes (the blocks
/// `statvfs` says are available to unprivileged users, as `df` shows them).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_written_atomically_is_private_even_over_a_wider_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let tmp = dir.path().join("checkpoints.json.tmp");
        fs::write(&tmp, b"left by an older version").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE, "{mode:o}");
    }

    /// The periodic saver and the shutdown save may write one document at the same moment:
    /// neither may fail, and the file must always hold one whole version, never a mix.
    #[test]
    fn concurrent_atomic_writes_of_one_file_never_tear_or_fail() {
        const WRITERS: usize = 4;
        const WRITES: usize = 30;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        // Large enough that a write takes several system calls and can be caught half done.
        let contents: Vec<Vec<u8>> = (0..WRITERS)
            .map(|w| vec![b'a' + w as u8; 256 * 1024])
            .collect();
        write_atomically(&path, &contents[0]).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let (failures, torn) = std::thread::scope(|s| {
            let writers: Vec<_> = contents
                .iter()
                .map(|content| {
                    let path = &path;
                    s.spawn(move || {
                        (0..WRITES)
                            .filter(|_| write_atomically(path, content).is_err())
                            .count()
                    })
                })
                .collect();
            let reader = s.spawn(|| {
                let mut torn = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match fs::read(&path) {
                        Ok(now) if contents.contains(&now) => {}
                        _ => torn += 1,
                    }
                }
                torn
            });
            let failures: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (failures, reader.join().unwrap())
        });
        assert_eq!(failures, 0, "every save succeeds");
        assert_eq!(torn, 0, "the file is always one whole version");
        assert!(contents.contains(&fs::read(&path).unwrap()));
    }

    #[test]
    fn temp_files_left_by_a_crash_are_removed_at_start_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        write_atomically(&path, b"{}").unwrap();
        let names = [
            "cursor.json.tmp",              // an older version's
            ".cursor.json.Ab3xQz.tmp",      // this version's
            ".checkpoints.json.Ab3xQz.tmp", // another document's, not ours to judge
            "00000000000000000001.seg",
            "cursor.json.corrupt",
        ];
        for name in names {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_leftover_temp_files(&path), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".checkpoints.json.Ab3xQz.tmp",
                "00000000000000000001.seg",
                "cursor.json",
                "cursor.json.corrupt"
            ]
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            b"{}",
            "the document itself is kept"
        );
    }

    #[test]
    fn a_failed_atomic_write_leaves_the_old_version_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        write_atomically(&path, b"old").unwrap();
        // A directory in the way of the rename: the write fails at its last step.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(TEMP_SUFFIX)), "{names:?}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn an_existing_directory_with_wide_permissions_is_tightened_but_a_sticky_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("data");
        fs::create_dir(&wide).unwrap();
        fs::set_permissions(&wide, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir_all(&wide.join("buffer")).unwrap();
        create_private_dir_all(&wide).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&wide), DIR_MODE);
        assert_eq!(mode(&wide.join("buffer")), DIR_MODE);
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        create_private_dir_all(&shared).unwrap();
        assert_eq!(
            mode(&shared),
            0o1777,
            "a sticky directory is not the agent's"
        );
    }
}
