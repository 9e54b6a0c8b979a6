//! logferry: a Kubernetes node agent that ships container logs to Elasticsearch.
//!
//! The data path runs in one direction, one module per stage:
//!
//! - [`tail`] finds log files, reads them in large blocks, splits lines, and keeps checkpoints;
//! - [`decode`] turns CRI and docker json-file lines into records, joining split lines;
//! - [`parse`] merges JSON messages into the document and adds `@timestamp` and `stream`;
//! - [`kube`] says which pod and container a file belongs to;
//! - [`buffer`] keeps encoded records on disk (CRC-framed segments, group-commit fsync) from
//!   the moment they are read until Elasticsearch has them; checkpoints move once they are
//!   durable there; a full buffer pauses reading or drops its oldest chunk, as configured;
//! - [`sink`] bulk-indexes batches with deterministic ids, retries what failed, dead-letters what
//!   never will succeed, and acknowledges batches back to the buffer;
//! - [`observe`] exports metrics and serves `/metrics`, `/health` and `/ready`.
//!
//! [`agent`] wires the stages together; [`config`] is the TOML file they are built from;
//! [`clock`] is the monotonic clock liveness is judged by.

#![forbid(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod config;
pub mod decode;
pub mod disk;
pub mod encode;
pub mod kube;
pub mod metrics;
pub mod observe;
pub mod parse;
pub mod sink;
pub mod tail;
pub mod vocab;
