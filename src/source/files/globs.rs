//! Which files the include and exclude globs select right now, and which directories to watch
//! for new ones. Used by the discovery thread ([`super::discover`]).

use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

pub struct Discovery {
    include: Vec<String>,
    /// `include` as patterns, to ask about one path without listing directories.
    include_patterns: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

/// As `glob::glob` reads a pattern: `*` and `?` stay within one path component.
const AS_GLOB_DOES: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Discovery {
    /// The globs were validated with the config; one that fails here is skipped.
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        let patterns = |globs: &[String]| -> Vec<glob::Pattern> {
            globs
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect()
        };
        Discovery {
            include: include.to_vec(),
            include_patterns: patterns(include),
            exclude: exclude
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
        }
    }

    /// Is a file at `path` ours: an include glob matches the path and no exclude glob does.
    /// The one answer to that question: the scan, a file rotated while the agent was down, a
    /// Fluentd position, a file waiting for its first line and a reload all ask it, of the path
    /// a glob matched the file at.
    pub fn selects(&self, path: &Path) -> bool {
        self.include_patterns
            .iter()
            .any(|p| p.matches_path_with(path, AS_GLOB_DOES))
            && !self.excludes(path)
    }

    fn excludes(&self, path: &Path) -> bool {
        self.exclude.iter().any(|e| e.matches_path(path))
    }

    /// Every regular file (following symlinks) matched now, sorted, without duplicates.
    pub fn scan(&self) -> Vec<PathBuf> {
        self.scan_looked().into_iter().map(|(p, _)| p).collect()
    }

    /// [`Discovery::scan`], with what each path led to when it was looked at: the caller
    /// needs no second stat of it.
    pub fn scan_looked(&self) -> Vec<(PathBuf, Metadata)> {
        self.scan_where(|path| !self.excludes(path))
    }

    /// Every regular file an include glob matches, excluded or not.
    pub fn scan_included(&self) -> Vec<PathBuf> {
        self.scan_where(|_| true)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    fn scan_where(&self, keep: impl Fn(&Path) -> bool) -> Vec<(PathBuf, Metadata)> {
        let mut out = Vec::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            // Unreadable directory entries are skipped; the next scan tries again.
            for path in paths.flatten() {
                if keep(&path)
                    && let Ok(meta) = std::fs::metadata(&path)
                    && meta.is_file()
                {
                    out.push((path, meta));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The deepest directory of each include glob that has no glob characters: watching it
    /// finds new files without waiting for a rescan.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self.include.iter().map(|p| static_prefix(p)).collect();
        roots.sort();
        roots.dedup();
        roots
    }
}

fn static_prefix(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for c in Path::new(pattern).components() {
        if let Component::Normal(s) = c
            && s.to_string_lossy().contains(['*', '?', '['])
        {
            break;
        }
        root.push(c);
    }
    if root.as_os_str() == pattern {
        // No glob at all: the pattern names one file; watch its directory.
        root.pop();
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_stop_at_the_first_glob() {
        let d = Discovery::new(
            &[
                "/var/log/containers/*.log".into(),
                "/var/log/pods/*/*/*.log".into(),
                "/var/log/app.log".into(),
            ],
            &[],
        );
        assert_eq!(
            d.roots(),
            vec![
                PathBuf::from("/var/log"),
                PathBuf::from("/var/log/containers"),
                PathBuf::from("/var/log/pods")
            ]
        );
    }

    #[test]
    fn scan_follows_symlinks_and_applies_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.log");
        std::fs::write(&real, "x\n").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.log")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing"), dir.path().join("dangling.log"))
            .unwrap();
        std::fs::write(dir.path().join("skip-me.log"), "x\n").unwrap();
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        let base = dir.path().display();
        let d = Discovery::new(&[format!("{base}/*.log")], &[format!("{base}/skip-*")]);
        let names: Vec<String> = d
            .scan()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["link.log", "real.log"]);
        // The same answer for one path, whether it exists or not.
        assert!(d.selects(&dir.path().join("link.log")));
        assert!(d.selects(&dir.path().join("gone.log")));
        assert!(!d.selects(&dir.path().join("skip-me.log")));
        assert!(!d.selects(&dir.path().join("sub/deeper.log")));
        assert_eq!(d.scan_included().len(), 3);
    }
}
