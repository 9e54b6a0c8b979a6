//! Small files that must survive a crash whole: the checkpoints and the buffer's cursor.
//!
//! A document is written to a temp file, fsynced, renamed over the old one, and the directory
//! is fsynced, so a crash at any moment leaves either the old or the new version, never a mix.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`, atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut f = fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the creation, renaming or removal of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
