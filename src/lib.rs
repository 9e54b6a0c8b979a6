//! logferry: a Kubernetes node agent that ships container logs to Elasticsearch.
//!
//! The modules are layers, in the order of the data path; each uses only the layers before it,
//! never a later one or a sibling (`tests/layers.rs` checks it):
//!
//! - leaves, importing nothing of the crate: [`vocab`] (file identity, the record and its flags,
//!   index-name rules, a file's pod, the monotonic clock), [`metrics`] (every metric, only
//!   `prometheus-client`), [`disk`] (the agent's own files, private and crash-safe);
//! - [`config`]: the TOML file every stage is built from, validated with file:line:column;
//! - [`observe`]: `/metrics`, `/health` and `/ready`, collecting the checks each component
//!   implements, knowing none of them;
//! - [`decode`]: CRI and docker json-file lines into records, joining split lines;
//! - [`multiline`]: the lines of a stack trace into one record, per stream;
//! - [`redact`]: values masked or hashed (e-mails, cards, tokens, …) in each finished document
//!   before it is framed, so the buffer never holds them;
//! - [`parse`]: the document — JSON messages merged in, `@timestamp`, `stream`, flags;
//! - [`route`]: which index a finished document goes to (the first `[[route]]` that takes it);
//! - [`encode`]: each record as a `_bulk` item with its index and its deterministic id, its
//!   document run through [`redact`]; [`kube`]: which pod a file belongs to, and its metadata
//!   from the API server; [`migrate`]: what a cut-over reads of Fluentd (`logferry convert`,
//!   and the positions of its pos_file that discovery starts files from), using only [`config`];
//! - [`source`]: the three sources, each handing records to an output the agent gives it —
//!   [`source::files`] finds log files, reads them, splits lines and keeps checkpoints;
//!   [`source::forward`] (`[[input.forward]]`, Fluentd's forward protocol) and
//!   [`source::kafka`] (`[[input.kafka]]`, the Kafka tier's consumer) take what comes to the
//!   agent; [`buffer`]: keeps encoded items on disk (CRC-framed segments, group-commit fsync)
//!   until the output has them, reporting durable file positions through a callback, pausing
//!   reading or dropping its oldest segment when full, as configured;
//! - [`sink`]: the two outputs, each taking batches from the buffer and acknowledging them back
//!   to it: [`sink::elasticsearch`] bulk-indexes batches, retries what failed and dead-letters
//!   what never will succeed; with `[kafka]`, [`sink::kafka`] produces each record as a message
//!   and acknowledges a batch once the brokers have it all;
//! - [`agent`]: wires the stages together — the tailer's output encodes into the buffer, the
//!   committer moves the checkpoints — and shuts them down in order; beside it [`top`], a
//!   terminal view of one running agent from its `/metrics` and `/health`;
//! - [`pipetest`]: `logferry test`, a config's pipeline tests: case files of lines and the
//!   documents they must become, run offline through the same stages and the agent's encoder.

// Denied, not forbidden: the one exception is the gzip encoder's `Send` in
// `sink::elasticsearch::body`, for ISA-L's compressor (2.6 times less CPU than zlib-rs's at
// level 1, see docs/speed.md); its comment says why it is sound.
#![deny(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod config;
pub mod decode;
pub mod disk;
pub mod encode;
pub mod kube;
pub mod metrics;
pub mod migrate;
pub mod multiline;
pub mod observe;
pub mod parse;
pub mod pipetest;
pub mod redact;
pub mod route;
pub mod sink;
pub mod source;
pub mod top;
pub mod vocab;
