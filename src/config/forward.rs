//! `[[input.forward]]`: a listener for Fluentd's forward protocol (the aggregator role), taking
//! records from Fluent Bit and Fluentd forwarders and fluent-logger clients.

use super::{ByteSize, Span};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The address to listen on, like Fluentd's `bind` and `port` (24224 is the usual port).
    pub listen: SocketAddr,
    /// The field each record's tag is written in (Fluentd's `include_tag_key` with its default
    /// `tag_key`); it replaces a member of the same name.
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// The largest frame taken (and the most a gzipped frame may unpack to); a larger one
    /// closes its connection. Fluentd's `chunk_size_limit`.
    #[serde(default = "default_chunk_size_limit")]
    pub chunk_size_limit: ByteSize,
    /// Connections open at once; one more is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes all connections together may hold of frames not yet buffered; a connection that
    /// needs more waits (reads nothing meanwhile) until others have handed theirs on.
    #[serde(default = "default_max_bytes_in_flight")]
    pub max_bytes_in_flight: ByteSize,
    /// How long a connection may sit in the middle of a frame, or wait for room to read one,
    /// before it is closed: a stalled peer costs its connection, never the agent.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Span,
    /// A file holding the key of Fluentd's secure-forward handshake (`shared_key`): with it,
    /// a peer must prove it has the key before any frame is taken. Read at start.
    pub shared_key_file: Option<std::path::PathBuf>,
    /// The name the handshake's answer carries (Fluentd's `self_hostname`); `HOSTNAME` from
    /// the environment when unset (a pod's name), else `logferry`.
    pub self_hostname: Option<String>,
}

fn default_tag_key() -> String {
    "tag".into()
}

fn default_chunk_size_limit() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

fn default_max_connections() -> usize {
    256
}

fn default_max_bytes_in_flight() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}

fn default_stall_timeout() -> Span {
    Span(Duration::from_secs(60))
}

impl Forward {
    /// The checks its types cannot make: (dotted key, message).
    pub(super) fn problems(&self, i: usize) -> Vec<(String, String)> {
        let key = |k: &str| format!("input.forward[{i}].{k}");
        let mut out = Vec::new();
        if self.tag_key.is_empty() {
            out.push((key("tag_key"), "must not be empty".into()));
        }
        if self.chunk_size_limit.0 < 1024 {
            out.push((key("chunk_size_limit"), "must be at least 1KiB".into()));
        }
        if self.max_connections == 0 {
            out.push((key("max_connections"), "must be at least 1".into()));
        }
        if self.max_bytes_in_flight.0 < self.chunk_size_limit.0 {
            out.push((
                key("max_bytes_in_flight"),
                "must be at least chunk_size_limit, or a frame of that size could never be read"
                    .into(),
            ));
        }
        if self.self_hostname.as_deref().is_some_and(str::is_empty) {
            out.push((key("self_hostname"), "must not be empty".into()));
        }
        if self.stall_timeout.0 < Duration::from_secs(1) {
            out.push((key("stall_timeout"), "must be at least 1s".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, Vec<String>> {
        Config::from_toml(text, |_| None).map_err(|problems| {
            problems
                .iter()
                .map(|p| format!("{:?}:{:?} {:?}: {}", p.line, p.column, p.key, p.message))
                .collect()
        })
    }

    #[test]
    fn an_aggregator_follows_no_files_and_takes_the_defaults() {
        let cfg =
            load("[input]\ninclude = []\n[[input.forward]]\nlisten = \"0.0.0.0:24224\"\n").unwrap();
        let f = &cfg.input.forward[0];
        assert_eq!(f.listen.port(), 24224);
        assert_eq!(f.tag_key, "tag");
        assert_eq!(f.chunk_size_limit.0, 16 << 20);
        // Without a listener, no glob is still an error.
        let e = load("[input]\ninclude = []\n").unwrap_err();
        assert!(e[0].contains("input.include"), "{e:?}");
    }

    #[test]
    fn a_bad_listener_is_named_by_its_index_line_and_key() {
        let text = "[input]\ninclude = []\n[[input.forward]]\nlisten = \"0.0.0.0:1\"\n\
                    [[input.forward]]\nlisten = \"0.0.0.0:2\"\nchunk_size_limit = \"1MiB\"\n\
                    max_bytes_in_flight = \"512KiB\"\nmax_connections = 0\n";
        let e = load(text).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("Some(8):Some(23) Some(\"input.forward[1].max_bytes_in_flight\")"),
            "{e:?}"
        );
        assert!(e[1].contains("input.forward[1].max_connections"), "{e:?}");
        let e = load("[[input.forward]]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(
            e[0].contains("input.forward") && e[0].contains("listen"),
            "{e:?}"
        );
        let e =
            load("[[input.forward]]\nlisten = \"0.0.0.0:1\"\nshared_key = \"x\"\n").unwrap_err();
        assert!(e[0].contains("shared_key"), "{e:?}");
    }
}
