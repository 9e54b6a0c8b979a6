//! `logferry convert`: a Fluentd configuration in, a logferry config out.
//!
//! Owns the translation of a Fluentd setup (the kind a Kubernetes log DaemonSet runs: `in_tail`
//! on the container files, `kubernetes_metadata`, a JSON `parser` filter, `elasticsearch`
//! outputs with a `<buffer>`) into the TOML that [`crate::config::Config`] reads. Three steps,
//! one file each:
//! - `syntax.rs`: Fluentd's syntax into [`syntax::Section`]s, every parameter with its file and
//!   line; `@include`s followed; malformed input is an [`Error`];
//! - `map.rs` (the walk: sources, filters, `<match>`es and the routes they become) and
//!   `inputs.rs` and `outputs.rs` (one function per plugin, over `params.rs`: which parameter becomes which key) fill a
//!   [`emit::Draft`];
//! - `emit.rs`: the draft as TOML, each key with a comment naming the Fluentd line it came from.
//!
//! The guarantee: nothing is dropped silently. Every parameter is either converted, known to
//! mean what logferry does anyway, or reported as a [`Warning`] (`fluent.conf:LINE: what:
//! why`); so is every section and plugin the converter does not know. Secrets written inline
//! become `${ENV}` references, with a warning. Only `config` and the leaves are used: the
//! converter never runs the agent.

mod emit;
mod inputs;
mod map;
mod outputs;
mod params;
mod ruby;
pub mod syntax;

use std::fmt;
use std::path::{Path, PathBuf};

/// Where something came from in the Fluentd files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl Origin {
    pub fn new(file: &Path, line: usize) -> Origin {
        Origin {
            file: file.to_owned(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Something in the Fluentd configuration the logferry config does not (or not exactly) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub at: Origin,
    /// The directive or key, as written (`id_key`, `<filter kubernetes.**> @type grep`).
    pub what: String,
    pub why: String,
}

impl Warning {
    pub fn new(at: &Origin, what: &str, why: &str) -> Warning {
        Warning {
            at: at.clone(),
            what: what.to_owned(),
            why: why.to_owned(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.what, self.why)
    }
}

/// Why nothing could be converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed Fluentd syntax: converting a file Fluentd itself would refuse would only hide
    /// the mistake.
    #[error("{at}: {message}")]
    Syntax { at: Origin, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A converted configuration: the TOML text and everything it could not say.
#[derive(Debug)]
pub struct Conversion {
    pub toml: String,
    pub warnings: Vec<Warning>,
}

/// Converts the Fluentd configuration at `path` (and the files it includes).
pub fn convert(path: &Path) -> Result<Conversion> {
    let mut warnings = Vec::new();
    let root = syntax::parse_file(path, &mut warnings)?;
    let draft = map::map(&root, &mut warnings);
    let toml = draft.render(path);
    Ok(Conversion { toml, warnings })
}

#[cfg(test)]
mod tests;
