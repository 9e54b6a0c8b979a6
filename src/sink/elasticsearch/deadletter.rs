//! The dead-letter files: items Elasticsearch will never accept, kept on disk with the reason.
//!
//! `<data_dir>/dead-letter/dead-letter.ndjson`, one JSON object per item:
//! `{"time":…,"status":400,"reason":"mapper_parsing_exception","error":{…},"action":{…},"document":{…}}`.
//! Each write is fsynced before the item counts as acknowledged, and the directory is fsynced
//! whenever a file in it is created, renamed or deleted. Files are `0600` in a `0700`
//! directory: they hold whole log lines.
//!
//! Bounded by `elasticsearch.dead_letter_max_size` (all files together): the current file is
//! renamed to `dead-letter.<n>.ndjson` (`n` growing: the oldest has the smallest) once it would
//! pass a quarter of the bound, and the oldest rotated files are deleted to stay within it —
//! their records counted in `logferry_dead_letters_rotated_out_total` and said once in the log.

use crate::disk;
use prometheus_client::metrics::counter::Counter;
use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

const CURRENT: &str = "dead-letter.ndjson";
/// The current file is rotated past this share of the bound: a quarter keeps up to four files
/// and loses the oldest quarter at a time, not everything at once.
const PARTS: u64 = 4;

/// One refused item: its action and document lines, and the cluster's reason.
pub struct Entry {
    pub item: Vec<u8>,
    pub status: u16,
    pub reason: String,
    /// The item's `error` object as the cluster sent it (JSON), if any.
    pub error: Option<String>,
}

pub struct DeadLetters {
    dir: PathBuf,
    /// Bound of all files together, in bytes.
    max_size: u64,
    /// Records deleted with a rotated-out file.
    rotated_out: Counter,
    /// Serializes writers so lines never interleave, and knows the files' sizes.
    files: Mutex<Files>,
}

/// What is on disk, learnt on the first write and kept up to date after it.
#[derive(Default)]
struct Files {
    known: bool,
    /// Size of the current file.
    current: u64,
    /// Rotated files, oldest first: number and size.
    rotated: VecDeque<(u64, u64)>,
    /// Deleting dead letters was logged.
    said_rotated_out: bool,
}

impl DeadLetters {
    /// Dead letters under `data_dir`, bounded by the default 1 GiB.
    pub fn new(data_dir: &Path) -> DeadLetters {
        DeadLetters {
            dir: data_dir.join("dead-letter"),
            max_size: 1 << 30,
            rotated_out: Counter::default(),
            files: Mutex::new(Files::default()),
        }
    }

    /// Bounds the files by `max_size` (`dead_letter_max_size`), counting the records deleted
    /// with the oldest file in `rotated_out`.
    #[must_use]
    pub fn bounded(mut self, max_size: u64, rotated_out: Counter) -> DeadLetters {
        self.max_size = max_size;
        self.rotated_out = rotated_out;
        self
    }

    /// Appends one line per entry and fsyncs, once for all of them.
    pub fn write(&self, entries: &[Entry]) -> std::io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let out = encode(entries)?;
        if !files.known {
            *files = self.survey()?;
        }
        let result = self.append(&mut files, &out);
        if result.is_err() {
            // What is on disk is not known any more: look again next time.
            files.known = false;
        }
        result
    }

    fn append(&self, files: &mut Files, out: &[u8]) -> std::io::Result<()> {
        let len = out.len() as u64;
        let part = (self.max_size / PARTS).max(1);
        if files.current > 0 && files.current + len > part {
            self.rotate(files)?;
        }
        self.trim(files, len)?;
        let path = self.dir.join(CURRENT);
        let mut f = disk::private_file().create(true).append(true).open(&path)?;
        let created = files.current == 0 && f.metadata()?.len() == 0;
        f.write_all(out)?;
        f.sync_data()?;
        if created {
            disk::sync_dir(&self.dir)?;
        }
        files.current += len;
        Ok(())
    }

    /// The current file becomes the newest rotated one.
    fn rotate(&self, files: &mut Files) -> std::io::Result<()> {
        let n = files.rotated.back().map_or(0, |&(n, _)| n + 1);
        fs::rename(self.dir.join(CURRENT), self.dir.join(rotated_name(n)))?;
        disk::sync_dir(&self.dir)?;
        files.rotated.push_back((n, files.current));
        files.current = 0;
        Ok(())
    }

    /// Deletes the oldest rotated files until `len` more bytes fit within the bound.
    fn trim(&self, files: &mut Files, len: u64) -> std::io::Result<()> {
        let total = |f: &Files| f.current + f.rotated.iter().map(|&(_, s)| s).sum::<u64>();
        let mut deleted = 0u64;
        while total(files) + len > self.max_size
            && let Some(&(n, size)) = files.rotated.front()
        {
            let path = self.dir.join(rotated_name(n));
            let records = count_lines(&path).unwrap_or(0);
            fs::remove_file(&path)?;
            files.rotated.pop_front();
            self.rotated_out.inc_by(records);
            deleted += records;
            tracing::debug!(path = %path.display(), size, records, "deleted the oldest dead-letter file");
        }
        if deleted > 0 {
            disk::sync_dir(&self.dir)?;
            if !files.said_rotated_out {
                files.said_rotated_out = true;
                tracing::warn!(
                    records = deleted,
                    max_size = self.max_size,
                    "the dead-letter files reached elasticsearch.dead_letter_max_size: the oldest were deleted (counted in logferry_dead_letters_rotated_out_total)"
                );
            }
        }
        Ok(())
    }

    /// Creates the directory if needed and learns what is in it.
    fn survey(&self) -> std::io::Result<Files> {
        disk::create_private_dir_all(&self.dir)?;
        let mut files = Files {
            known: true,
            ..Files::default()
        };
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let meta = entry.metadata()?;
            let size = meta.len();
            if meta.permissions().mode() & 0o077 != 0 {
                // Left readable by others by an older version: dead letters are whole lines.
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(disk::FILE_MODE))?;
            }
            if name == CURRENT {
                files.current = size;
            } else if let Some(n) = rotated_number(name) {
                files.rotated.push_back((n, size));
            }
        }
        files.rotated.make_contiguous().sort_unstable();
        Ok(files)
    }
}

fn rotated_name(n: u64) -> String {
    format!("dead-letter.{n}.ndjson")
}

fn rotated_number(name: &str) -> Option<u64> {
    name.strip_prefix("dead-letter.")?
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
}

/// Records in a dead-letter file: one per line.
fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut f = fs::File::open(path)?;
    let mut block = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let read = f.read(&mut block)?;
        if read == 0 {
            return Ok(n);
        }
        n += memchr::memchr_iter(b'\n', &block[..read]).count() as u64;
    }
}

/// The entries as dead-letter lines.
fn encode(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            item: format!(
                "{{\"create\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n},\"pad\":\"{}\"}}\n",
                "x".repeat(100)
            )
            .into_bytes(),
            status: 400,
            reason: "mapper_parsing_exception".into(),
            error: None,
        }
    }

    fn lines_on_disk(dir: &Path) -> (u64, Vec<String>) {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let lines = names
            .iter()
            .map(|n| count_lines(&dir.join(n)).unwrap())
            .sum();
        (lines, names)
    }

    #[test]
    fn dead_letters_past_their_max_size_rotate_out_the_oldest_file_and_count_its_records() {
        let data = tempfile::tempdir().unwrap();
        let rotated_out = Counter::default();
        let max = 4096;
        let dead = DeadLetters::new(data.path()).bounded(max, rotated_out.clone());
        for n in 0..200 {
            dead.write(&[entry(n)]).unwrap();
        }
        let dir = data.path().join("dead-letter");
        let (kept, names) = lines_on_disk(&dir);
        let size: u64 = names
            .iter()
            .map(|n| fs::metadata(dir.join(n)).unwrap().len())
            .sum();
        assert!(size <= max, "the files keep their bound: {size} > {max}");
        assert!(names.len() <= PARTS as usize + 1, "{names:?}");
        assert_eq!(
            kept + rotated_out.get(),
            200,
            "every dead letter is on disk or counted as rotated out"
        );
        assert!(rotated_out.get() > 100, "{}", rotated_out.get());
        // The newest are the ones kept.
        let current = fs::read_to_string(dir.join(CURRENT)).unwrap();
        assert!(current.contains("\"_id\":\"199\""), "{current}");
        // A restart learns what is there and keeps the bound.
        let again = DeadLetters::new(data.path()).bounded(max, rotated_out.clone());
        for n in 200..260 {
            again.write(&[entry(n)]).unwrap();
        }
        let (kept, _) = lines_on_disk(&dir);
        assert_eq!(kept + rotated_out.get(), 260);
    }

    #[test]
    fn dead_letter_files_are_private_even_those_an_older_version_left_readable() {
        let data = tempfile::tempdir().unwrap();
        let old = data.path().join("dead-letter");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(old.join(CURRENT), b"{}\n").unwrap();
        fs::set_permissions(old.join(CURRENT), fs::Permissions::from_mode(0o644)).unwrap();
        let dead = DeadLetters::new(data.path()).bounded(2048, Counter::default());
        for n in 0..40 {
            dead.write(&[entry(n)]).unwrap();
        }
        let dir = data.path().join("dead-letter");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let (_, names) = lines_on_disk(&dir);
        assert!(names.len() > 1, "rotated: {names:?}");
        for n in names {
            assert_eq!(mode(&dir.join(&n)), 0o600, "{n}");
        }
    }
}
