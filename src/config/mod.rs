//! The agent's configuration: one TOML file.
//!
//! Owns the schema (every key, its default and its unit), `${ENV_VAR}` interpolation, and
//! validation. Loading reports *every* problem it can find, each as `file:line:column: key:
//! message`, so an operator fixes a broken config in one round. Hands a validated [`Config`] to
//! `main`, which builds the pipeline from it; nothing downstream re-validates.
//!
//! What lives where (every type is reached as `crate::config::X`; the files are private):
//! - this file: the top-level [`Config`], loading ([`Config::load`], [`Config::from_toml`]:
//!   parse, interpolate, deserialize section by section, validate) and the error type
//!   ([`Error`], one [`Problem`] per thing wrong);
//! - `input.rs`: `[input]` and `[parse]` — which files are read, and how lines become fields;
//!   `forward.rs`: `[[input.forward]]` — forward protocol listeners (the aggregator role);
//! - `elasticsearch.rs`: `[elasticsearch]` with its `tls` and `auth` tables, and [`Secret`];
//! - `buffer.rs`: `[buffer]` — the disk buffer and the shippers' pace, and what
//!   `chunk_limit_size` means in each of its roles;
//! - `kafka.rs`: `[kafka]` — records to a Kafka topic instead of Elasticsearch;
//! - `kubernetes.rs`: `[kubernetes]` — pod metadata; `api.rs`: `[api]` — the HTTP server;
//! - `multiline.rs`: `[multiline]` — stack traces joined into one record;
//! - `redact.rs`: `[redact]` — values masked or hashed before a document is encoded;
//! - `route.rs`: `[[route]]` — which index a record goes to, and its retention; `setup.rs`:
//!   `[elasticsearch.setup]` — the templates and policies installed for them;
//! - `throttle.rs`: `[throttle]` — lines per second per container, pod or namespace;
//! - `units.rs`: values with units ([`Span`], [`ByteSize`]);
//! - `interpolate.rs`: `${NAME}` resolution; `locate.rs`: spans to `line:column` and keys;
//! - `validate.rs`: the checks a value's type cannot make, one function per section;
//! - `tests.rs`: the unit tests.

mod api;
mod buffer;
mod elasticsearch;
mod forward;
mod forward_tls;
mod input;
mod interpolate;
mod kafka;
mod kafka_input;
mod kubernetes;
mod locate;
mod multiline;
mod redact;
mod route;
mod setup;
mod throttle;
mod units;
mod validate;

pub use api::Api;
pub use buffer::{Buffer, OverflowAction};
pub use elasticsearch::{Auth, Compression, Elasticsearch, Secret, Tls};
pub use forward::Forward;
pub use forward_tls::{ListenerTls, TlsError};
pub use input::{Input, Parse, ReadFrom};
pub use kafka::{Kafka, KafkaCompression, KafkaTls, Sasl, SaslMechanism};
pub use kafka_input::KafkaInput;
pub use kubernetes::Kubernetes;
pub use multiline::{BUILT_IN_RULES, CustomRule, Multiline};
pub use redact::{AGENT_KEYS, BUILT_IN_REDACTIONS, CustomRedaction, Redact, RedactAction};
pub use route::{FieldCondition, Retention, Route, Scalar, When};
pub use setup::Setup;
pub use throttle::{Throttle, ThrottleAction, ThrottleScope};
pub use units::{ByteSize, Span, parse_duration, parse_size};

use interpolate::interpolate;
use locate::{find_key_span, key_path_at, problem_at, top_key_at};
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The whole configuration. Every section may be left out; each key's default is documented in
/// `config/logferry.toml`.
#[derive(Debug, Clone, PartialEq)]
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
    /// `[kafka]`: when present, records go to its topic instead of to Elasticsearch.
    pub kafka: Option<Kafka>,
    pub buffer: Buffer,
    pub kubernetes: Kubernetes,
    pub multiline: Multiline,
    pub redact: Redact,
    /// `[[route]]`, in the order they are tried.
    pub routes: Vec<Route>,
    pub throttle: Throttle,
    pub api: Api,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/logferry"),
            log_level: "info".into(),
            input: Input::default(),
            parse: Parse::default(),
            elasticsearch: Elasticsearch::default(),
            kafka: None,
            buffer: Buffer::default(),
            kubernetes: Kubernetes::default(),
            multiline: Multiline::default(),
            redact: Redact::default(),
            routes: Vec::new(),
            throttle: Throttle::default(),
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
    /// For a reload: gives `self` (the new file) `started`'s value (the config the agent
    /// started with) of every setting the running agent cannot change, and returns the keys of
    /// those that differed. They name what the agent holds from its start: its directories and
    /// files, its socket, the buffer's bounds, the number of shippers, its watches on the API
    /// server, and the line cap lines already held were read under. `buffer.chunk_limit_size`
    /// is named but taken: batches follow it, the buffer's segments keep the size they had.
    pub fn keep_restart_only(&mut self, started: &Config) -> Vec<&'static str> {
        let mut differ = Vec::new();
        macro_rules! keep {
            ($($key:literal => $($field:ident).+;)*) => {$(
                if self.$($field).+ != started.$($field).+ {
                    differ.push($key);
                    self.$($field).+ = started.$($field).+.clone();
                }
            )*};
        }
        keep! {
            "data_dir" => data_dir;
            "buffer.path" => buffer.path;
            "api.listen" => api.listen;
            "buffer.max_size" => buffer.max_size;
            "buffer.overflow_action" => buffer.overflow_action;
            "buffer.flush_thread_count" => buffer.flush_thread_count;
            "elasticsearch.dead_letter_max_size" => elasticsearch.dead_letter_max_size;
            "kubernetes.enabled" => kubernetes.enabled;
            "kubernetes.node_name" => kubernetes.node_name;
            "kubernetes.api_server" => kubernetes.api_server;
            "input.max_line_bytes" => input.max_line_bytes;
            "input.forward" => input.forward;
            "input.kafka" => input.kafka;
        }
        // The output is chosen at start: adding or removing [kafka] needs a restart. The
        // reloader keeps the running section (see KAFKA_OUTPUT).
        if self.kafka.is_some() != started.kafka.is_some() {
            differ.push(KAFKA_OUTPUT);
            self.kafka = started.kafka.clone();
        }
        // Taken for batches and the tailer's chunk; the buffer's segments keep their size.
        if self.buffer.chunk_limit_size != started.buffer.chunk_limit_size {
            differ.push("buffer.chunk_limit_size (as the buffer's segment size)");
        }
        differ
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
                "kafka" => {
                    config.kafka = section(text, name, value, &mut problems);
                }
                "buffer" => set(&mut config.buffer, section(text, name, value, &mut problems)),
                "kubernetes" => set(
                    &mut config.kubernetes,
                    section(text, name, value, &mut problems),
                ),
                "multiline" => set(
                    &mut config.multiline,
                    section(text, name, value, &mut problems),
                ),
                "redact" => set(&mut config.redact, section(text, name, value, &mut problems)),
                "route" => set(&mut config.routes, section(text, name, value, &mut problems)),
                "throttle" => set(
                    &mut config.throttle,
                    section(text, name, value, &mut problems),
                ),
                "api" => set(&mut config.api, section(text, name, value, &mut problems)),
                _ => problems.push(problem_at(
                    text,
                    Some(key.span()),
                    section_key,
                    "unknown key; expected one of data_dir, log_level, input, parse, elasticsearch, kafka, buffer, kubernetes, multiline, redact, route, throttle, api",
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

/// A problem in another TOML file than the config (a `logferry test` case file), located and
/// keyed as the config's own are: `span` is where the parser put it, and the key is the dotted
/// path of the value that holds it (`case[0].expect[1].fields`).
pub fn problem_in(text: &str, span: Option<Range<usize>>, message: &str) -> Problem {
    let key = span.as_ref().and_then(|s| {
        let section = top_key_at(text, s.start)?;
        key_path_at(text, &section, s.start)
    });
    problem_at(text, span, key, message)
}

/// A problem with the value of `dotted` (`case[2].expect[0].drop`) in another TOML file than
/// the config, found after it was read: at that value's line and column.
pub fn problem_at_key(text: &str, dotted: &str, message: &str) -> Problem {
    problem_at(
        text,
        find_key_span(text, dotted),
        Some(dotted.to_owned()),
        message,
    )
}

/// What [`Config::keep_restart_only`] names when a file adds or removes `[kafka]`: the output
/// the agent started with stays, with the settings it runs with (a reload gives the running
/// `[kafka]` back, not the one of the start).
pub const KAFKA_OUTPUT: &str = "kafka (adding or removing the section)";

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

#[cfg(test)]
mod tests;
