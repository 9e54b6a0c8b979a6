//! The agent's configuration: one TOML file.
//!
//! Owns the schema (every key, its default and its unit), `${ENV_VAR}` interpolation, and
//! validation. Loading reports *every* problem it can find, each as `file:line:column: key:
//! message`, so an operator fixes a broken config in one round. Hands a validated [`Config`] to
//! `main`, which builds the pipeline from it; nothing downstream re-validates.

mod units;

pub use units::{ByteSize, Span, parse_duration, parse_size};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The whole configuration. Every section may be left out; each key's default is documented in
/// `config/logferry.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where checkpoints, the buffer and dead letters live. Must survive restarts (a hostPath
    /// on a node).
    pub data_dir: PathBuf,
    /// The agent's own log level, in `tracing`'s filter syntax (`info`, `warn`,
    /// `logferry=debug`); `LOGFERRY_LOG` in the environment overrides it.
    pub log_level: String,
    pub input: Input,
    pub parse: Parse,
    pub elasticsearch: Elasticsearch,
    pub buffer: Buffer,
    pub kubernetes: Kubernetes,
    pub api: Api,
}

#[derive(Debug, Clone, Deserialize)]
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
    /// How often the include globs are re-expanded. inotify finds new files at once; this
    /// catches what it dropped.
    pub rescan_interval: Span,
    /// How long a partial record (a CRI `P` piece, a docker piece without `\n`) waits for its
    /// next piece before it is shipped as it is, flagged `unterminated`, so that it neither
    /// holds its file's checkpoint nor is read again at every restart.
    pub partial_timeout: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Elasticsearch {
    /// Base URLs of the cluster's nodes; the agent moves to the next one when one fails.
    pub hosts: Vec<String>,
    /// The target index, formatted with strftime from each record's own timestamp (UTC).
    pub index: String,
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

#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffer {
    /// Upper bound on how long a record waits before its batch is sent. When the shipper is
    /// idle a batch goes out at once; batches only grow while requests are in flight.
    pub flush_interval: Span,
    /// Upper bound of one bulk request body (before compression).
    pub chunk_limit_size: ByteSize,
    /// Where the buffer's segment files live; `${data_dir}` stands for `data_dir`. Default
    /// `${data_dir}/buffer`.
    pub path: Option<String>,
    /// Upper bound of the buffer's files on disk (Fluentd's `total_limit_size`).
    pub max_size: ByteSize,
    /// What a full buffer does: `block` pauses reading (nothing is lost), `drop_oldest_chunk`
    /// deletes the oldest chunk no request has started on, and counts its records.
    pub overflow_action: OverflowAction,
    /// Bulk requests in flight at once.
    pub flush_thread_count: usize,
    /// The first retry waits about this long; each further retry doubles it, with full jitter.
    pub retry_wait: Span,
    /// The longest wait between two retries.
    pub retry_max_interval: Span,
    /// Retry for as long as it takes (the default). When false, records still failing after
    /// `retry_timeout` go to the dead-letter store.
    pub retry_forever: bool,
    pub retry_timeout: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    Block,
    DropOldestChunk,
}

/// Pod metadata from the Kubernetes API server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    /// Watch this node's pods and all namespaces, and add their metadata to documents. Off by
    /// default (outside a cluster there is nothing to watch); the DaemonSet turns it on.
    pub enabled: bool,
    /// The node whose pods are watched; `NODE_NAME` from the environment when empty (the
    /// DaemonSet sets it from the downward API).
    pub node_name: String,
    /// The API server's URL, for development; in-cluster config (or the kubeconfig) when unset.
    pub api_server: Option<String>,
    /// Copy the pod's labels (`kubernetes.labels`).
    pub labels: bool,
    /// Annotations copied into documents: exact keys, or prefixes ending in `*`. None by default.
    pub annotations: Vec<String>,
    /// Copy the namespace's labels (`kubernetes.namespace_labels`).
    pub namespace_labels: bool,
    /// Replace `.` in label and annotation keys with `_` (`app.kubernetes.io/name` →
    /// `app_kubernetes_io/name`), as fluent-plugin-kubernetes_metadata_filter does.
    pub de_dot: bool,
    /// How long a deleted pod's metadata is kept, for lines read after the pod is gone.
    pub deleted_pod_ttl: Span,
    /// How long lines of a pod the cache does not know yet wait for it before they are shipped
    /// with what the file path says (flagged `kubernetes.metadata: "partial"`).
    pub wait_for_metadata: Span,
    /// Drop the logs of pods annotated `logferry.io/exclude: "true"`. Off by default: on a
    /// platform whose logs are evidence, a pod must not be able to switch its own logging off;
    /// the cluster's operator opts in.
    pub honour_exclude_annotation: bool,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            enabled: false,
            node_name: String::new(),
            api_server: None,
            labels: true,
            annotations: Vec::new(),
            namespace_labels: true,
            de_dot: true,
            deleted_pod_ttl: Span(Duration::from_secs(300)),
            wait_for_metadata: Span(Duration::from_secs(2)),
            honour_exclude_annotation: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Address of the HTTP server for `/metrics`, `/health` and `/ready`.
    pub listen: SocketAddr,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            include: vec!["/var/log/containers/*.log".into()],
            exclude: vec![],
            read_from: ReadFrom::Beginning,
            max_line_bytes: ByteSize(256 * 1024),
            rotate_wait: Span(Duration::from_secs(5)),
            rescan_interval: Span(Duration::from_secs(1)),
            partial_timeout: Span(Duration::from_secs(5)),
        }
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

impl Default for Elasticsearch {
    fn default() -> Self {
        Elasticsearch {
            hosts: vec!["http://127.0.0.1:9200".into()],
            index: "logs-%Y.%m.%d".into(),
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

impl Default for Buffer {
    fn default() -> Self {
        Buffer {
            flush_interval: Span(Duration::from_secs(1)),
            chunk_limit_size: ByteSize(5 * 1024 * 1024),
            path: None,
            max_size: ByteSize(1 << 30),
            overflow_action: OverflowAction::Block,
            flush_thread_count: 2,
            retry_wait: Span(Duration::from_secs(1)),
            retry_max_interval: Span(Duration::from_secs(30)),
            retry_forever: true,
            retry_timeout: Span(Duration::from_secs(72 * 3600)),
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 2020)),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/logferry"),
            log_level: "info".into(),
            input: Input::default(),
            parse: Parse::default(),
            elasticsearch: Elasticsearch::default(),
            buffer: Buffer::default(),
            kubernetes: Kubernetes::default(),
            api: Api::default(),
        }
    }
}

/// One thing wrong with a config file, located as precisely as the problem allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The dotted key, like `input.read_from`, when the problem belongs to one.
    pub key: Option<String>,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(col) = p.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
            if let Some(key) = &p.key {
                write!(f, "{key}: ")?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, interpolates, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            file: path.to_owned(),
            problems: vec![Problem {
                line: None,
                column: None,
                key: None,
                message: format!("cannot read the config file: {e}"),
            }],
        })?;
        Config::from_toml(&text, |name| std::env::var(name).ok()).map_err(|problems| Error {
            file: path.to_owned(),
            problems,
        })
    }

    /// Parses config text; `env` resolves `${NAME}`. Returns every problem found.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Config, Vec<Problem>> {
        let (mut table, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            return Err(syntax
                .iter()
                .map(|e| problem_at(text, e.span(), None, e.message()))
                .collect());
        }
        let mut problems = Vec::new();
        for (key, value) in table.get_mut().iter_mut() {
            let mut dotted = key.get_ref().to_string();
            interpolate(text, &mut dotted, value, &env, &mut problems);
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return Err(problems);
        }
        let mut config = Config::default();
        for (key, value) in table.into_inner() {
            let name = key.get_ref().as_ref();
            let section_key = Some(name.to_owned());
            match name {
                "data_dir" => {
                    if let Some(v) = section::<String>(text, name, value, &mut problems) {
                        config.data_dir = PathBuf::from(v);
                    }
                }
                "log_level" => set(
                    &mut config.log_level,
                    section(text, name, value, &mut problems),
                ),
                "input" => set(&mut config.input, section(text, name, value, &mut problems)),
                "parse" => set(&mut config.parse, section(text, name, value, &mut problems)),
                "elasticsearch" => set(
                    &mut config.elasticsearch,
                    section(text, name, value, &mut problems),
                ),
                "buffer" => set(&mut config.buffer, section(text, name, value, &mut problems)),
                "kubernetes" => set(
                    &mut config.kubernetes,
                    section(text, name, value, &mut problems),
                ),
                "api" => set(&mut config.api, section(text, name, value, &mut problems)),
                _ => problems.push(problem_at(
                    text,
                    Some(key.span()),
                    section_key,
                    "unknown key; expected one of data_dir, log_level, input, parse, elasticsearch, buffer, kubernetes, api",
                )),
            }
        }
        // Semantic checks only make sense on values that parsed.
        if problems.is_empty() {
            for (key, message) in config.validate() {
                let span = find_key_span(text, &key);
                problems.push(problem_at(text, span, Some(key), &message));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            problems.sort_by_key(|p| (p.line, p.column));
            Err(problems)
        }
    }

    /// Checks that need more than one value's type: globs, URLs, index patterns, limits.
    fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| out.push((key.to_owned(), msg));
        if self.data_dir.as_os_str().is_empty() {
            bad("data_dir", "must not be empty".into());
        }
        if self.input.include.is_empty() {
            bad("input.include", "needs at least one glob".into());
        }
        for (key, globs) in [
            ("input.include", &self.input.include),
            ("input.exclude", &self.input.exclude),
        ] {
            for g in globs {
                if let Err(e) = glob::Pattern::new(g) {
                    bad(key, format!("invalid glob {g:?}: {e}"));
                }
            }
        }
        if self.input.max_line_bytes.0 < 1024 {
            bad("input.max_line_bytes", "must be at least 1KiB".into());
        }
        if self.input.rescan_interval.0 < Duration::from_millis(100) {
            bad("input.rescan_interval", "must be at least 100ms".into());
        }
        if self.input.partial_timeout.0.is_zero() {
            bad("input.partial_timeout", "must be more than 0s".into());
        }
        if self.elasticsearch.hosts.is_empty() {
            bad("elasticsearch.hosts", "needs at least one URL".into());
        }
        let mut https = false;
        for h in &self.elasticsearch.hosts {
            // Never echo a URL that may carry a password.
            let shown = redact_userinfo(h);
            match reqwest::Url::parse(h) {
                Ok(u) if !u.username().is_empty() || u.password().is_some() => bad(
                    "elasticsearch.hosts",
                    format!(
                        "{shown:?}: credentials in the URL would end up in logs; use [elasticsearch.auth]"
                    ),
                ),
                Ok(u) if u.scheme() == "http" => {}
                Ok(u) if u.scheme() == "https" => https = true,
                Ok(_) => bad(
                    "elasticsearch.hosts",
                    format!("{shown:?}: the scheme must be http or https"),
                ),
                Err(e) => bad(
                    "elasticsearch.hosts",
                    format!("{shown:?} is not a URL: {e}"),
                ),
            }
        }
        if self.elasticsearch.sniff && self.elasticsearch.sniff_interval.0 < Duration::from_secs(1)
        {
            bad("elasticsearch.sniff_interval", "must be at least 1s".into());
        }
        // Below this a rotation would delete the dead letters it has just written: they are
        // the only copy of what the cluster refused.
        if self.elasticsearch.dead_letter_max_size.0 < 1024 * 1024 {
            bad(
                "elasticsearch.dead_letter_max_size",
                "must be at least 1MiB".into(),
            );
        }
        let tls = &self.elasticsearch.tls;
        let tls_set = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some()
            || tls.server_name.is_some()
            || !tls.verify;
        if tls_set && !https {
            bad(
                "elasticsearch.tls",
                "is set, but no host in elasticsearch.hosts uses https".into(),
            );
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => bad("elasticsearch.tls.cert_file", "needs key_file too".into()),
            (None, Some(_)) => bad("elasticsearch.tls.key_file", "needs cert_file too".into()),
            _ => {}
        }
        if let Some(name) = &tls.server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            bad(
                "elasticsearch.tls.server_name",
                format!("{name:?} is not a DNS name or IP address"),
            );
        }
        let a = &self.elasticsearch.auth;
        let both =
            |file: &Option<PathBuf>, inline: &Option<Secret>| file.is_some() && inline.is_some();
        for (key, twice) in [
            (
                "elasticsearch.auth.password",
                both(&a.password_file, &a.password),
            ),
            (
                "elasticsearch.auth.api_key",
                both(&a.api_key_file, &a.api_key),
            ),
            ("elasticsearch.auth.token", both(&a.token_file, &a.token)),
        ] {
            if twice {
                bad(key, "set both in the config and as a file; keep one".into());
            }
        }
        let basic = a.user.is_some() || a.password.is_some() || a.password_file.is_some();
        let kinds = [
            basic,
            a.api_key.is_some() || a.api_key_file.is_some(),
            a.token.is_some() || a.token_file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            bad(
                "elasticsearch.auth",
                "choose one of user + password, api_key, token".into(),
            );
        }
        if basic && a.user.is_none() {
            bad(
                "elasticsearch.auth.user",
                "is needed with a password".into(),
            );
        }
        if a.user.is_some() && a.password.is_none() && a.password_file.is_none() {
            bad(
                "elasticsearch.auth.password_file",
                "is needed with user (or password)".into(),
            );
        }
        if let Err(e) = crate::sink::IndexPattern::new(&self.elasticsearch.index) {
            bad("elasticsearch.index", e);
        }
        if let Some(dl) = &self.elasticsearch.dead_letter_index {
            match crate::sink::IndexPattern::new(dl) {
                // A replayed dead letter must land where the first copy did.
                Ok(_) if dl.contains('%') => bad(
                    "elasticsearch.dead_letter_index",
                    "must be a fixed name, without strftime items".into(),
                ),
                Ok(_) => {}
                Err(e) => bad("elasticsearch.dead_letter_index", e),
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            bad(
                "log_level",
                format!("{:?} is not a log filter: {e}", self.log_level),
            );
        }
        if let Some(url) = &self.kubernetes.api_server
            && reqwest::Url::parse(url).is_err()
        {
            bad("kubernetes.api_server", format!("{url:?} is not a URL"));
        }
        let b = &self.buffer;
        if b.chunk_limit_size.0 < 1024 {
            bad("buffer.chunk_limit_size", "must be at least 1KiB".into());
        }
        // Segments are deleted whole once acknowledged: the batches in flight, the segment
        // being written and one more must fit, or a full buffer could never drain.
        let least = b.chunk_limit_size.0 * (b.flush_thread_count as u64 + 2);
        if b.max_size.0 < least {
            bad(
                "buffer.max_size",
                format!(
                    "must be at least (flush_thread_count + 2) × chunk_limit_size = {least} bytes"
                ),
            );
        }
        if let Some(p) = &b.path
            && p.trim().is_empty()
        {
            bad("buffer.path", "must not be empty".into());
        }
        if !(1..=64).contains(&b.flush_thread_count) {
            bad(
                "buffer.flush_thread_count",
                "must be between 1 and 64".into(),
            );
        }
        if b.retry_wait.0.is_zero() || b.retry_wait > b.retry_max_interval {
            bad(
                "buffer.retry_wait",
                "must be above zero and at most retry_max_interval".into(),
            );
        }
        if b.flush_interval.0.is_zero() {
            bad("buffer.flush_interval", "must be above zero".into());
        }
        out
    }
}

impl Config {
    /// Where the buffer's segment files live.
    pub fn buffer_dir(&self) -> PathBuf {
        match &self.buffer.path {
            None => self.data_dir.join("buffer"),
            Some(p) => match p.strip_prefix(DATA_DIR) {
                Some(rest) => self.data_dir.join(rest.trim_start_matches('/')),
                None => PathBuf::from(p),
            },
        }
    }
}

/// `scheme://user:password@host` → `scheme://…@host`, for messages.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}…{}", &url[..s + 3], &url[at..]),
        (None, Some(at)) => format!("…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// Stands for `data_dir` in `buffer.path`; not an environment variable.
const DATA_DIR: &str = "${data_dir}";

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Deserializes one top-level value on its own, so a problem in one section does not hide the
/// problems in the others.
fn section<T: DeserializeOwned>(
    text: &str,
    name: &str,
    value: Spanned<DeValue<'_>>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let whole = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            let span = e.span().or(Some(whole));
            let key = span
                .as_ref()
                .and_then(|s| key_path_at(text, name, s.start))
                .unwrap_or_else(|| name.to_owned());
            problems.push(problem_at(text, span, Some(key), e.message()));
            None
        }
    }
}

/// Finds the dotted key whose value holds byte `pos`, by re-parsing the (already valid) text.
fn key_path_at(text: &str, section: &str, pos: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let (_, value) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == section)?;
    let mut path = section.to_owned();
    let mut current = value;
    while let DeValue::Table(t) = current.get_ref() {
        let Some((k, v)) = t
            .iter()
            .find(|(k, v)| k.span().contains(&pos) || v.span().contains(&pos))
        else {
            break;
        };
        path.push('.');
        path.push_str(k.get_ref());
        current = v;
    }
    Some(path)
}

/// The span of `a.b`'s value, for validation problems that know only the key.
fn find_key_span(text: &str, dotted: &str) -> Option<Range<usize>> {
    let table = DeTable::parse(text).ok()?;
    let mut parts = dotted.split('.');
    let first = parts.next()?;
    let (_, mut value) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == first)?;
    for part in parts {
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        (_, value) = t.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
    }
    Some(value.span())
}

fn problem_at(text: &str, span: Option<Range<usize>>, key: Option<String>, msg: &str) -> Problem {
    let (line, column) = match span {
        Some(s) => {
            let (l, c) = line_col(text, s.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    Problem {
        line,
        column,
        key,
        message: msg.trim().replace('\n', "; "),
    }
}

fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Replaces `${NAME}` with the environment's value in every string value of the parsed file,
/// never in its text: a value holding `"`, `\\`, a tab or `${` arrives byte for byte, and
/// cannot change the file's structure (add keys, end a string). The replacement is not scanned
/// again. `$${` is a literal `${`. Keys and comments are left alone. An unset variable is an
/// error, not an empty string: an empty host or password would fail later and far less clearly.
fn interpolate(
    text: &str,
    dotted: &mut String,
    value: &mut Spanned<DeValue<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match substitute(s, env) {
            Ok(None) => {}
            Ok(Some(replaced)) => *s = Cow::Owned(replaced),
            Err(unresolved) => {
                for (needle, message) in unresolved {
                    // Point at the reference itself when the value's text shows it as written
                    // (it does unless escapes spell it), else at the value.
                    let raw = text.get(span.clone()).unwrap_or("");
                    let at = raw.find(&needle).map_or(span.start, |i| span.start + i);
                    problems.push(problem_at(
                        text,
                        Some(at..at),
                        Some(dotted.clone()),
                        &message,
                    ));
                }
            }
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(text, dotted, item, env, problems);
            }
        }
        DeValue::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = dotted.len();
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(key.get_ref());
                interpolate(text, dotted, item, env, problems);
                dotted.truncate(len);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// `s` with its `${NAME}` references resolved; `None` when it has none (nothing to copy). On
/// failure, each unresolved reference as it is written and what is wrong with it.
fn substitute(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Option<String>, Vec<(String, String)>> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            problems.push(("${".to_owned(), "unclosed ${ in interpolation".to_owned()));
            rest = "";
            break;
        };
        let name = &rest[i + 2..i + end];
        if name == "data_dir" {
            // Resolved once data_dir is known (see Config::buffer_dir).
            out.push_str(DATA_DIR);
        } else {
            match env(name) {
                Some(v) => out.push_str(&v),
                None => problems.push((
                    format!("${{{name}}}"),
                    format!("environment variable {name} is not set"),
                )),
            }
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(Some(out))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> std::result::Result<Config, Vec<Problem>> {
        Config::from_toml(text, |name| match name {
            "ES_HOST" => Some("es.example:9200".into()),
            _ => None,
        })
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = load("").unwrap();
        assert_eq!(c.input.include, vec!["/var/log/containers/*.log"]);
        assert_eq!(c.input.read_from, ReadFrom::Beginning);
        assert_eq!(c.input.max_line_bytes, ByteSize(262144));
        assert_eq!(c.elasticsearch.index, "logs-%Y.%m.%d");
        assert_eq!(c.buffer.chunk_limit_size, ByteSize(5 << 20));
        assert_eq!(c.buffer.flush_interval, Span(Duration::from_secs(1)));
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:2020");
        assert!(
            !c.kubernetes.honour_exclude_annotation,
            "a pod cannot opt out unless allowed"
        );
    }

    #[test]
    fn env_interpolation() {
        let c = load("[elasticsearch]\nhosts = [\"http://${ES_HOST}\"]\n").unwrap();
        assert_eq!(c.elasticsearch.hosts, vec!["http://es.example:9200"]);
        let c = load("data_dir = \"/x/$${HOME}\" # ${NOT_SET} in a comment\n").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x/${HOME}"));
        let e = load("data_dir = \"/x\"\n[api]\nlisten = \"${NOPE}\"\n").unwrap_err();
        assert_eq!(e[0].line, Some(3));
        assert!(e[0].message.contains("NOPE is not set"), "{e:?}");
    }

    /// Issue 12, item 12: the environment's value used to be pasted into the TOML text, so a
    /// password holding `"` ended the string (or added keys), `\` started an escape, a tab
    /// was refused and `${` was expanded again.
    #[test]
    fn a_password_with_quotes_backslashes_tabs_and_dollar_braces_arrives_byte_for_byte() {
        let password = "p\"w\\d\t${NOT_A_VAR}\\n'x' # y $${z} \u{e9}\n";
        let text = "[elasticsearch.auth]\nuser = \"${ES_USER}\" # ${IN_A_COMMENT}\npassword = \"${ES_PASSWORD}\"\n";
        let env = |name: &str| match name {
            "ES_USER" => Some("elastic".to_owned()),
            "ES_PASSWORD" => Some(password.to_owned()),
            _ => None,
        };
        let c = Config::from_toml(text, env).unwrap();
        assert_eq!(
            c.elasticsearch.auth.password.as_ref().map(Secret::expose),
            Some(password)
        );
        assert_eq!(c.elasticsearch.auth.user.as_deref(), Some("elastic"));
        // Literal strings, arrays, escapes in the file and `$${` still work as written.
        let text = "data_dir = '/d/${ES_USER}'\n[elasticsearch]\nhosts = [\"http://a\", \"http://${ES_USER}\\u0031:9200\"]\nindex = \"x$${y}\"\n";
        let c = Config::from_toml(text, env).unwrap();
        assert_eq!(c.elasticsearch.index, "x${y}");
        assert_eq!(c.data_dir, PathBuf::from("/d/elastic"));
        assert_eq!(
            c.elasticsearch.hosts,
            vec!["http://a", "http://elastic1:9200"]
        );
    }

    #[test]
    fn an_unset_variable_is_reported_at_its_line_and_column_with_its_key() {
        let text = "data_dir = \"/x\"\n[elasticsearch]\nhosts = [\"http://a\", \"http://${ES_HOST}\", \"https://${NOPE}:9200\"]\n[elasticsearch.auth]\nuser = \"u\"\npassword = \"${ALSO_NOPE}\"\nbad = \"${unclosed\"\n";
        let e = load(text).unwrap_err();
        let found: Vec<_> = e
            .iter()
            .map(|p| (p.line, p.column, p.key.as_deref(), p.message.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    Some(3),
                    Some(52),
                    Some("elasticsearch.hosts"),
                    "environment variable NOPE is not set"
                ),
                (
                    Some(6),
                    Some(13),
                    Some("elasticsearch.auth.password"),
                    "environment variable ALSO_NOPE is not set"
                ),
                (
                    Some(7),
                    Some(8),
                    Some("elasticsearch.auth.bad"),
                    "unclosed ${ in interpolation"
                ),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_line_and_key() {
        let text = "\
data_dir = \"/tmp/x\"
[input]
read_from = \"middle\"
[buffer]
flush_interval = \"5 parsecs\"
[elasticsearch]
index = \"logs-%Y\"
hostz = []
[nonsense]
";
        let problems = load(text).unwrap_err();
        let found: Vec<(Option<usize>, Option<&str>)> = problems
            .iter()
            .map(|p| (p.line, p.key.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), Some("input.read_from")),
                (Some(5), Some("buffer.flush_interval")),
                (Some(8), Some("elasticsearch.hostz")),
                (Some(9), Some("nonsense")),
            ],
            "{problems:#?}"
        );
        assert!(problems[0].message.contains("middle"), "{problems:#?}");
        assert!(problems[1].message.contains("5 parsecs"), "{problems:#?}");
        assert!(problems[2].message.contains("hostz"), "{problems:#?}");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let problems = load("[input]\ninclude = [\"a\"\n").unwrap_err();
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_problems() {
        let text = "[elasticsearch]\nhosts = [\"https://u:pw-123@es:9200\"]\n[elasticsearch.auth]\nuser = \"u\"\npassword = \"${PW}\"\n";
        let env = |n: &str| (n == "PW").then(|| "pw-123".to_owned());
        let problems = Config::from_toml(text, env).unwrap_err();
        let shown = format!("{problems:?}");
        assert!(shown.contains("elasticsearch.hosts"), "{shown}");
        assert!(!shown.contains("pw-123"), "{shown}");
        let ok = text.replace("u:pw-123@", "");
        let cfg = Config::from_toml(&ok, env).unwrap();
        assert_eq!(
            cfg.elasticsearch.auth.password.as_ref().map(Secret::expose),
            Some("pw-123")
        );
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("pw-123"), "{debug}");
        assert!(debug.contains("Secret(redacted)"));
    }

    #[test]
    fn validation_names_the_key() {
        let problems =
            load("[elasticsearch]\nhosts = [\"ftp://x\"]\nindex = \"Logs/%Y\"\n").unwrap_err();
        let keys: Vec<_> = problems
            .iter()
            .map(|p| (p.line, p.key.clone().unwrap()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Some(2), "elasticsearch.hosts".to_owned()),
                (Some(3), "elasticsearch.index".to_owned())
            ]
        );
    }

    #[test]
    fn a_dead_letter_bound_too_small_to_keep_what_was_written_is_refused_by_name() {
        let problems = load("[elasticsearch]\ndead_letter_max_size = \"0B\"\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(2));
        assert_eq!(
            problems[0].key.as_deref(),
            Some("elasticsearch.dead_letter_max_size")
        );
        assert!(load("[elasticsearch]\ndead_letter_max_size = \"1MiB\"\n").is_ok());
    }

    /// Issue 12, item 11: a pattern whose names Elasticsearch refuses, or that would break the
    /// NDJSON action line, is caught by `validate`, naming the item or character at fault,
    /// instead of stopping shipping on the first record.
    #[test]
    fn index_patterns_elasticsearch_would_refuse_or_that_break_ndjson_are_refused() {
        let cases: &[(&str, Option<&str>)] = &[
            ("logs-%Y.%m.%d", None),
            ("logs-%F", None),
            ("logs-%G.%V", None),
            ("logs-%Y.%j-%H.%M", None),
            ("logs-%-m.%-d", None),
            ("app.logs_v2-%y%m%d", None),
            ("logs-%Y%n", Some("%n")),
            ("logs-%Y%t", Some("%t")),
            ("logs-%b", Some("%b")),
            ("logs-%B", Some("%B")),
            ("logs-%A", Some("%A")),
            ("logs-%a", Some("%a")),
            ("logs-%Z", Some("%Z")),
            ("logs-%z", Some("%z")),
            ("logs-%c", Some("%c")),
            ("logs-%+", Some("%+")),
            ("logs-%e", Some("%e")),
            ("logs-%_m", Some("%_")),
            ("logs-%D", Some("%D")),
            ("logs-%T", Some("%T")),
            ("logs-%p", Some("%p")),
            ("logs-%s", Some("per record")),
            ("logs-%f", Some("per record")),
            ("logs-%Q", Some("%Q")),
            ("logs-%", Some("unfinished")),
            ("Logs-%Y", Some("'L'")),
            ("logs\\%Y", Some("'\\\\'")),
            ("logs/%Y", Some("'/'")),
            ("logs*", Some("'*'")),
            ("logs?", Some("'?'")),
            ("logs\"x", Some("'\"'")),
            ("logs<", Some("'<'")),
            ("logs>", Some("'>'")),
            ("logs|", Some("'|'")),
            ("logs %Y", Some("' '")),
            ("logs,x", Some("','")),
            ("logs#x", Some("'#'")),
            ("logs:x", Some("':'")),
            ("logs\tx", Some("'\\t'")),
            ("logs\nx", Some("'\\n'")),
            ("-logs", Some("starting with")),
            ("_logs", Some("starting with")),
            ("+logs", Some("starting with")),
            (".", Some("leading dot")),
            ("..", Some("\"..\"")),
            ("", Some("empty")),
        ];
        for (pattern, refused) in cases {
            let got = crate::sink::IndexPattern::new(pattern);
            match (refused, &got) {
                (None, Ok(_)) => {}
                (Some(what), Err(e)) => assert!(e.contains(what), "{pattern:?}: {e}"),
                _ => panic!("{pattern:?}: {:?}", got.err()),
            }
        }
        let long = format!("logs-{}-%Y", "a".repeat(245));
        assert!(crate::sink::IndexPattern::new(&long).is_ok(), "255 bytes");
        let too_long = format!("logs-{}-%Y", "a".repeat(246));
        let e = crate::sink::IndexPattern::new(&too_long)
            .err()
            .unwrap_or_default();
        assert!(e.contains("256 bytes"), "{e}");
        // Through the config: the key and line are named.
        let p = load("[elasticsearch]\nindex = \"logs-%b\"\n").unwrap_err();
        assert_eq!(p[0].key.as_deref(), Some("elasticsearch.index"));
        assert_eq!(p[0].line, Some(2));
        assert!(p[0].message.contains("%b"), "{p:?}");
    }

    /// Every validation rule at once, and the rules whose key is not in the file (no line):
    /// the full text an operator reads, pinned before `validate` was split by section so the
    /// split could not reorder, reword or relocate a single problem.
    #[test]
    fn validation_problems_keep_their_wording_order_and_place() {
        let cases: &[&str] = &[
            "data_dir = \"\"\nlog_level = \"[[[\"\n[input]\ninclude = [\"a[\", \"ok\"]\nexclude = [\"b[\"]\nmax_line_bytes = \"1B\"\nrescan_interval = \"1ms\"\npartial_timeout = \"0s\"\n[elasticsearch]\nhosts = [\"http://u:p@h\", \"ftp://x\", \"not a url\", \"http://ok\"]\nindex = \"Logs\"\ndead_letter_index = \"dl-%Y\"\ndead_letter_max_size = \"1KiB\"\nsniff = true\nsniff_interval = \"10ms\"\n[elasticsearch.tls]\ncert_file = \"/c\"\nserver_name = \"not a name!\"\n[elasticsearch.auth]\npassword = \"x\"\npassword_file = \"/p\"\ntoken = \"t\"\napi_key = \"k\"\napi_key_file = \"/k\"\ntoken_file = \"/t\"\n[kubernetes]\napi_server = \"::nope\"\n[buffer]\nchunk_limit_size = \"1B\"\nflush_thread_count = 0\npath = \" \"\nretry_wait = \"0s\"\nflush_interval = \"0s\"\n",
            "[input]\ninclude = []\n[elasticsearch]\nhosts = []\ndead_letter_index = \"Bad\"\n[elasticsearch.tls]\nkey_file = \"/k\"\n[elasticsearch.auth]\nuser = \"u\"\n[buffer]\nchunk_limit_size = \"512MiB\"\nretry_wait = \"1m\"\nretry_max_interval = \"1s\"\nflush_thread_count = 65\n",
            "[elasticsearch]\nhosts = [\"https://es:9200\"]\n[elasticsearch.auth]\npassword = \"p\"\n[buffer]\nchunk_limit_size = \"600MiB\"\n",
        ];
        let shown: Vec<String> = cases
            .iter()
            .map(|text| {
                let problems = load(text).unwrap_err();
                let e = Error {
                    file: PathBuf::from("f.toml"),
                    problems,
                };
                e.to_string()
            })
            .collect();
        let expected: &[&[&str]] = &[
            &[
                r#"f.toml: elasticsearch.auth.user: is needed with a password"#,
                r#"f.toml:1:12: data_dir: must not be empty"#,
                r#"f.toml:2:13: log_level: "[[[" is not a log filter: invalid filter directive"#,
                r#"f.toml:4:11: input.include: invalid glob "a[": Pattern syntax error near position 1: invalid range pattern"#,
                r#"f.toml:5:11: input.exclude: invalid glob "b[": Pattern syntax error near position 1: invalid range pattern"#,
                r#"f.toml:6:18: input.max_line_bytes: must be at least 1KiB"#,
                r#"f.toml:7:19: input.rescan_interval: must be at least 100ms"#,
                r#"f.toml:8:19: input.partial_timeout: must be more than 0s"#,
                r#"f.toml:10:9: elasticsearch.hosts: "http://…@h": credentials in the URL would end up in logs; use [elasticsearch.auth]"#,
                r#"f.toml:10:9: elasticsearch.hosts: "ftp://x": the scheme must be http or https"#,
                r#"f.toml:10:9: elasticsearch.hosts: "not a url" is not a URL: relative URL without a base"#,
                r#"f.toml:11:9: elasticsearch.index: "Logs": 'L' is not allowed in an index name (no upper case, whitespace, control characters or any of \ / * ? " < > | , # :)"#,
                r#"f.toml:12:21: elasticsearch.dead_letter_index: must be a fixed name, without strftime items"#,
                r#"f.toml:13:24: elasticsearch.dead_letter_max_size: must be at least 1MiB"#,
                r#"f.toml:15:18: elasticsearch.sniff_interval: must be at least 1s"#,
                r#"f.toml:16:1: elasticsearch.tls: is set, but no host in elasticsearch.hosts uses https"#,
                r#"f.toml:17:13: elasticsearch.tls.cert_file: needs key_file too"#,
                r#"f.toml:18:15: elasticsearch.tls.server_name: "not a name!" is not a DNS name or IP address"#,
                r#"f.toml:19:1: elasticsearch.auth: choose one of user + password, api_key, token"#,
                r#"f.toml:20:12: elasticsearch.auth.password: set both in the config and as a file; keep one"#,
                r#"f.toml:22:9: elasticsearch.auth.token: set both in the config and as a file; keep one"#,
                r#"f.toml:23:11: elasticsearch.auth.api_key: set both in the config and as a file; keep one"#,
                r#"f.toml:27:14: kubernetes.api_server: "::nope" is not a URL"#,
                r#"f.toml:29:20: buffer.chunk_limit_size: must be at least 1KiB"#,
                r#"f.toml:30:22: buffer.flush_thread_count: must be between 1 and 64"#,
                r#"f.toml:31:8: buffer.path: must not be empty"#,
                r#"f.toml:32:14: buffer.retry_wait: must be above zero and at most retry_max_interval"#,
                r#"f.toml:33:18: buffer.flush_interval: must be above zero"#,
            ],
            &[
                r#"f.toml: elasticsearch.auth.password_file: is needed with user (or password)"#,
                r#"f.toml: buffer.max_size: must be at least (flush_thread_count + 2) × chunk_limit_size = 35970351104 bytes"#,
                r#"f.toml:2:11: input.include: needs at least one glob"#,
                r#"f.toml:4:9: elasticsearch.hosts: needs at least one URL"#,
                r#"f.toml:5:21: elasticsearch.dead_letter_index: "Bad": 'B' is not allowed in an index name (no upper case, whitespace, control characters or any of \ / * ? " < > | , # :)"#,
                r#"f.toml:6:1: elasticsearch.tls: is set, but no host in elasticsearch.hosts uses https"#,
                r#"f.toml:7:12: elasticsearch.tls.key_file: needs cert_file too"#,
                r#"f.toml:12:14: buffer.retry_wait: must be above zero and at most retry_max_interval"#,
                r#"f.toml:14:22: buffer.flush_thread_count: must be between 1 and 64"#,
            ],
            &[
                r#"f.toml: elasticsearch.auth.user: is needed with a password"#,
                r#"f.toml: buffer.max_size: must be at least (flush_thread_count + 2) × chunk_limit_size = 2516582400 bytes"#,
            ],
        ];
        for (shown, expected) in shown.iter().zip(expected) {
            assert_eq!(shown.lines().collect::<Vec<_>>(), *expected);
        }
        assert_eq!(shown.len(), expected.len());
    }

    #[test]
    fn shipped_configs_are_valid() {
        for file in ["config/logferry.toml", "config/fluentd-equivalent.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let env = |name: &str| Some(format!("test-{name}"));
            if let Err(p) = Config::from_toml(&text, env) {
                panic!("{file}: {p:#?}");
            }
        }
    }
}
