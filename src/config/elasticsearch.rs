//! The `[elasticsearch]` section: where documents go (hosts, index, dead letters), how the
//! connection is made (`[elasticsearch.tls]`) and who the agent is to the cluster
//! (`[elasticsearch.auth]`, whose secrets are [`Secret`]s that never print).

use super::{ByteSize, Retention, Setup, Span};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Elasticsearch {
    /// Base URLs of the cluster's nodes; the agent moves to the next one when one fails.
    pub hosts: Vec<String>,
    /// The target index, formatted with strftime from each record's own timestamp (UTC), of
    /// every record no `[[route]]` takes.
    pub index: String,
    /// How long `index`'s indices are kept; unset (the default) keeps them.
    pub retention: Option<Retention>,
    /// Index templates and retention policies installed at start.
    pub setup: Setup,
    /// `gzip` (the default) or `none`.
    pub compression: Compression,
    /// How long one bulk request may take before it is abandoned and retried.
    pub request_timeout: Span,
    /// Also index dead letters here (a fixed name), the application's fields turned into one
    /// string so that nothing in them can conflict again; unset by default (the dead-letter file
    /// under data_dir always has them).
    pub dead_letter_index: Option<String>,
    /// Bound of the dead-letter files under data_dir together; default `"1GiB"`. The current
    /// file is rotated at a quarter of it, and the oldest rotated file is deleted (its records
    /// counted in `logferry_dead_letters_rotated_out_total`) to stay within it.
    pub dead_letter_max_size: ByteSize,
    /// How `https://` hosts are trusted, and the client certificate to present.
    pub tls: Tls,
    /// Credentials sent with every request; none by default.
    pub auth: Auth,
    /// Learn the cluster's HTTP nodes from `GET _nodes/http` and ship to those (keeping the
    /// hosts' scheme and path prefix) instead of `hosts`, which stay the seeds asked. Off by
    /// default: behind a load balancer or a gateway the nodes' own addresses are unreachable.
    pub sniff: bool,
    /// How often sniffing asks again, for clusters that grow and shrink. Default `"5m"`.
    pub sniff_interval: Span,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM bundle of the CAs to trust; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for clusters that require one; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the host in the URL (an
    /// IP address, or a name behind a load balancer).
    pub server_name: Option<String>,
    /// Check the server's certificate and name (the default). `false` accepts any server and
    /// is warned about at every start.
    pub verify: bool,
}

/// Credentials, one kind at most. Each secret comes from a file (as a mounted Kubernetes
/// Secret provides it; re-read when it changes) or from the config, where it should be an
/// `${ENV}` reference rather than the secret itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Basic authentication: the user, with `password_file` or `password`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password: Option<Secret>,
    /// An Elasticsearch API key (the base64 `id:key` form), sent as `Authorization: ApiKey …`.
    pub api_key_file: Option<PathBuf>,
    pub api_key: Option<Secret>,
    /// A bearer token (a service account token, an OAuth token).
    pub token_file: Option<PathBuf>,
    pub token: Option<Secret>,
}

/// A value that must never be shown: `Debug` prints `Secret(redacted)`, and there is no
/// `Display`. Only the code that puts it on the wire calls [`Secret::expose`].
#[derive(Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

impl Default for Elasticsearch {
    fn default() -> Self {
        Elasticsearch {
            hosts: vec!["http://127.0.0.1:9200".into()],
            index: "logs-%Y.%m.%d".into(),
            retention: None,
            setup: Setup::default(),
            compression: Compression::Gzip,
            request_timeout: Span(Duration::from_secs(30)),
            dead_letter_index: None,
            dead_letter_max_size: ByteSize(1 << 30),
            tls: Tls::default(),
            auth: Auth::default(),
            sniff: false,
            sniff_interval: Span(Duration::from_secs(300)),
        }
    }
}
