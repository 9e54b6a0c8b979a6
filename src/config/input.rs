//! The `[input]` and `[parse]` sections: which files are followed and from where, how long a
//! line may be and how its pieces are joined, and how a message becomes a document's fields.

use super::{ByteSize, Span};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Input {
    /// Globs of files to follow. Symlinks are followed, so `/var/log/containers/*.log` works.
    pub include: Vec<String>,
    /// Globs of paths (as matched by `include`) to leave alone.
    pub exclude: Vec<String>,
    /// Where to start the files that exist when the agent first starts on a node (no
    /// checkpoints yet). Every later file is new and read from its beginning, so a pod's first
    /// lines are never skipped, even if it started while the agent was down.
    pub read_from: ReadFrom,
    /// The longest message kept, after partial lines are joined; the rest is cut and flagged.
    pub max_line_bytes: ByteSize,
    /// How long a rotated or deleted file is kept open after its last byte was read, so a
    /// writer that has not reopened yet loses nothing. Like Fluentd's `rotate_wait`.
    pub rotate_wait: Span,
    /// How often what inotify cannot see is looked at: the include globs expanded again when a
    /// directory they lead to could not be watched (a root that does not exist yet, the watch
    /// limit reached, no inotify), and the files that could not be watched. inotify watches
    /// every directory the globs lead to (their wildcards' matches, and the directories
    /// matched links lead into), so new files and writes are found at once; a dropped event
    /// (inotify's queue overflowed) starts a rescan at once. With everything watched, the
    /// globs are expanded anyway every 5 minutes (or this, if longer), as a safety net.
    /// Fluentd's and Fluent Bit's `refresh_interval` default to 60 s; this defaults to 10 s.
    pub rescan_interval: Span,
    /// How long a partial record (a CRI `P` piece, a docker piece without `\n`) waits for its
    /// next piece before it is shipped as it is, flagged `unterminated`, so that it neither
    /// holds its file's checkpoint nor is read again at every restart.
    pub partial_timeout: Span,
    /// Fluentd's `in_tail` `pos_file`, read once on the agent's first start on a node (no
    /// checkpoints of its own yet): each file Fluentd was reading is started where Fluentd
    /// stopped, instead of from `read_from`. Unset by default.
    pub fluentd_pos_file: Option<std::path::PathBuf>,
    /// `[[input.forward]]`: listeners for Fluentd's forward protocol (the aggregator role).
    pub forward: Vec<super::Forward>,
    /// `[[input.kafka]]`: consumers of the topics node agents produce to (the aggregator role).
    pub kafka: Vec<super::KafkaInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Parse {
    /// Parse messages that are JSON objects and merge their fields into the document.
    pub json: bool,
    /// Empty: merge the message's fields at the top level (Fluentd's `reserve_data true`).
    /// Otherwise the fields are nested under this key.
    pub target: String,
    /// Also keep the raw message in `log` when it was parsed.
    pub keep_original: bool,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            include: vec!["/var/log/containers/*.log".into()],
            exclude: vec![],
            read_from: ReadFrom::Beginning,
            max_line_bytes: ByteSize(256 * 1024),
            rotate_wait: Span(Duration::from_secs(5)),
            rescan_interval: Span(Duration::from_secs(10)),
            partial_timeout: Span(Duration::from_secs(5)),
            fluentd_pos_file: None,
            forward: Vec::new(),
            kafka: Vec::new(),
        }
    }
}

impl Input {
    /// A physical line longer than this is cut before decoding (and flagged truncated): twice
    /// the message cap leaves room for the runtime's prefix and docker's JSON escaping, and no
    /// line can exhaust memory. The tailer and `logferry test` both cut here.
    pub fn max_physical_line(&self) -> usize {
        self.max_line_bytes.as_usize() * 2 + 4096
    }
}

impl Default for Parse {
    fn default() -> Self {
        Parse {
            json: true,
            target: String::new(),
            keep_original: false,
        }
    }
}
