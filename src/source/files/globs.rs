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

/// What a scan found.
#[derive(Default)]
pub struct Found {
    /// Each matched regular file, and what its path led to when looked at; sorted by path.
    pub paths: Vec<(PathBuf, Metadata)>,
    /// A matched path led nowhere (a link to a file not made yet, or gone) or could not be
    /// looked at: no event may say when it does.
    pub unresolved: bool,
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
        self.scan_looked()
            .paths
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// [`Discovery::scan`], with what each path led to when it was looked at: the caller
    /// needs no second stat of it.
    pub fn scan_looked(&self) -> Found {
        self.scan_where(|path| !self.excludes(path))
    }

    /// Every regular file an include glob matches, excluded or not.
    pub fn scan_included(&self) -> Vec<PathBuf> {
        self.scan_where(|_| true)
            .paths
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    fn scan_where(&self, keep: impl Fn(&Path) -> bool) -> Found {
        let mut found = Found::default();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            // Unreadable directory entries are skipped; the next scan tries again.
            for path in paths.flatten() {
                if !keep(&path) {
                    continue;
                }
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => found.paths.push((path, meta)),
                    Ok(_) => {}
                    Err(_) => found.unresolved = true,
                }
            }
        }
        let out = &mut found.paths;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        found
    }

    /// The deepest directory of each include glob that has no glob characters: watching it
    /// finds new files without waiting for a rescan.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self.include.iter().map(|p| static_prefix(p)).collect();
        roots.sort();
        roots.dedup();
        roots
    }

    /// The directories a new file can appear in that inotify can be told about: each glob's
    /// root, and every directory its wildcards match on the way to a file
    /// (`/var/log/pods/*/*/*.log`: each pod's and each container's). Only those that exist.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.roots().into_iter().filter(|r| r.is_dir()).collect();
        for pattern in &self.include {
            let parts: Vec<Component> = Path::new(pattern).components().collect();
            let Some(first) = parts.iter().position(|c| has_glob(c.as_os_str())) else {
                continue;
            };
            // Each prefix ending in or after the first wildcard, short of the file's name.
            for end in first + 1..parts.len() {
                let prefix: PathBuf = parts[..end].iter().collect();
                let Some(Ok(found)) = prefix.to_str().map(glob::glob) else {
                    continue;
                };
                dirs.extend(found.flatten().filter(|d| d.is_dir()));
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Whether every glob's root exists: one that does not cannot be watched, so what appears
    /// under it is found only by a rescan.
    pub fn roots_exist(&self) -> bool {
        self.roots().iter().all(|r| r.is_dir())
    }
}

fn has_glob(s: &std::ffi::OsStr) -> bool {
    s.to_string_lossy().contains(['*', '?', '['])
}

fn static_prefix(pattern: &str) -> PathBuf {
    let mut root = PathBuf::new();
    for c in Path::new(pattern).components() {
        if let Component::Normal(s) = c
            && has_glob(s)
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
    fn directories_are_the_roots_and_what_the_wildcards_match_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in [
            "pods/a/app",
            "pods/b",
            "flat",
            "pods/a/app/not-a-level/deeper",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("pods/a/app/0.log"), "x\n").unwrap();
        // A file where a directory level is: not a directory to watch.
        std::fs::write(base.join("pods/stray.log"), "x\n").unwrap();
        let d = Discovery::new(
            &[
                format!("{}/pods/*/*/*.log", base.display()),
                format!("{}/flat/*.log", base.display()),
                format!("{}/missing/*/*.log", base.display()),
            ],
            &[],
        );
        let found: Vec<String> = d
            .directories()
            .iter()
            .map(|p| p.strip_prefix(base).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["flat", "pods", "pods/a", "pods/a/app", "pods/b"]);
        assert!(!d.roots_exist(), "missing/ does not exist");
        std::fs::create_dir(base.join("missing")).unwrap();
        assert!(d.roots_exist());
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
        assert!(d.scan_looked().unresolved, "dangling.log leads nowhere");
        // The same answer for one path, whether it exists or not.
        assert!(d.selects(&dir.path().join("link.log")));
        assert!(d.selects(&dir.path().join("gone.log")));
        assert!(!d.selects(&dir.path().join("skip-me.log")));
        assert!(!d.selects(&dir.path().join("sub/deeper.log")));
        assert_eq!(d.scan_included().len(), 3);
    }
}
