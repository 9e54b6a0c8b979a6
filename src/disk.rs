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
//! are written to a temp file, fsynced, renamed over the old one, and the directory is fsynced,
//! so a crash at any moment leaves either the old or the new version, never a mix.

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

/// Replaces `path` with `bytes`, atomically and durably; the file is `0600`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut f = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    // A temp file left by an older version keeps the mode it was created with: set it.
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
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
