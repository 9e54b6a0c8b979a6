//! `[[input.forward]]`: a listener for Fluentd's forward protocol (the aggregator role), taking
//! records from Fluent Bit and Fluentd forwarders and fluent-logger clients.

use super::{ByteSize, ListenerTls, Span};
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
    /// `[input.forward.tls]`: present, the listener speaks only TLS (a plaintext peer fails the
    /// handshake); with `shared_key_file` too, the handshake runs inside TLS, as Fluentd's
    /// secure forward does.
    pub tls: Option<ListenerTls>,
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
        // The files are read now, by the function the listener is built with: what validates
        // is what starts.
        if let Some(Err(e)) = self.tls.as_ref().map(ListenerTls::server_config) {
            out.push((key(&format!("tls.{}", e.key())), e.to_string()));
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

    /// Writes a certificate and key (and another key, a CA and junk) into a temp dir.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
            for (name, text) in [
                ("tls.crt", one.cert.pem()),
                ("tls.key", one.signing_key.serialize_pem()),
                ("other.key", other.signing_key.serialize_pem()),
                ("ca.crt", other.cert.pem()),
                ("junk", "not a certificate\n".to_owned()),
            ] {
                std::fs::write(dir.path().join(name), text).unwrap();
            }
            Files { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        /// A listener whose `[input.forward.tls]` is `keys` (name = file in the dir).
        fn config(&self, keys: &[(&str, &str)]) -> String {
            let mut text =
                "[[input.forward]]\nlisten = \"0.0.0.0:1\"\n[input.forward.tls]\n".to_owned();
            for (key, file) in keys {
                text.push_str(&format!("{key} = {:?}\n", self.path(file)));
            }
            text
        }
    }

    #[test]
    fn tls_files_that_serve_are_taken() {
        let f = Files::new();
        for keys in [
            &[("cert_file", "tls.crt"), ("key_file", "tls.key")][..],
            &[
                ("cert_file", "tls.crt"),
                ("key_file", "tls.key"),
                ("ca_file", "ca.crt"),
            ],
        ] {
            let cfg = load(&f.config(keys)).unwrap();
            let tls = cfg.input.forward[0].tls.as_ref().unwrap();
            assert_eq!(tls.ca_file.is_some(), keys.len() == 3);
        }
    }

    /// `[input.forward.tls]` keys, each with the name of its file in [`Files`].
    type Keys<'a> = &'a [(&'a str, &'a str)];

    /// What an operator gets wrong, each named by its key and its file.
    #[test]
    fn each_unusable_tls_file_is_named_by_its_key_and_path() {
        let f = Files::new();
        // The [input.forward.tls] keys, the key blamed, its file, what the message says.
        let cases: &[(Keys, &str, &str, &str)] = &[
            (
                &[("cert_file", "missing.crt"), ("key_file", "tls.key")],
                "input.forward[0].tls.cert_file",
                "missing.crt",
                "cannot read",
            ),
            (
                &[("cert_file", "tls.crt"), ("key_file", "missing.key")],
                "input.forward[0].tls.key_file",
                "missing.key",
                "cannot read",
            ),
            (
                &[("cert_file", "junk"), ("key_file", "tls.key")],
                "input.forward[0].tls.cert_file",
                "junk",
                "holds no PEM certificate",
            ),
            (
                &[("cert_file", "tls.crt"), ("key_file", "tls.crt")],
                "input.forward[0].tls.key_file",
                "tls.crt",
                "holds no PEM private key",
            ),
            (
                &[("cert_file", "tls.crt"), ("key_file", "other.key")],
                "input.forward[0].tls.key_file",
                "other.key",
                "cannot serve",
            ),
            (
                &[
                    ("cert_file", "tls.crt"),
                    ("key_file", "tls.key"),
                    ("ca_file", "junk"),
                ],
                "input.forward[0].tls.ca_file",
                "junk",
                "holds no PEM certificate",
            ),
            (
                &[
                    ("cert_file", "tls.crt"),
                    ("key_file", "tls.key"),
                    ("ca_file", "gone"),
                ],
                "input.forward[0].tls.ca_file",
                "gone",
                "cannot read",
            ),
        ];
        for (keys, key, file, says) in cases {
            let e = load(&f.config(keys)).unwrap_err();
            assert_eq!(e.len(), 1, "{keys:?}: {e:?}");
            assert!(
                e[0].contains(&format!("Some({key:?}): ")),
                "{keys:?}: {e:?}"
            );
            assert!(e[0].contains(&f.path(file)), "{keys:?}: {e:?}");
            assert!(e[0].contains(says), "{keys:?}: {e:?}");
        }
        // Without cert_file (or key_file) there is nothing to present: the table is named.
        for keys in [&[("key_file", "tls.key")][..], &[("cert_file", "tls.crt")]] {
            let e = load(&f.config(keys)).unwrap_err();
            let missing = if keys[0].0 == "key_file" {
                "cert_file"
            } else {
                "key_file"
            };
            assert!(
                e[0].contains("input.forward") && e[0].contains("tls") && e[0].contains(missing),
                "{e:?}"
            );
        }
    }
}
