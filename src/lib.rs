//! logferry: a Kubernetes node agent that ships container logs to Elasticsearch.
//!
//! The data path runs in one direction, one module per stage:
//!
//! - [`tail`] finds log files, reads them in large blocks, splits lines, and keeps checkpoints;
//! - [`decode`] turns CRI and docker json-file lines into records, joining split lines;
//! - [`parse`] merges JSON messages into the document and adds `@timestamp` and `stream`;
//! - [`kube`] says which pod and container a file belongs to;
//! - [`buffer`] holds encoded chunks between reading and shipping, bounded, so a slow cluster
//!   pauses reading instead of growing memory;
//! - [`sink`] bulk-indexes chunks with deterministic ids, retries what failed, dead-letters what
//!   never will succeed, and acknowledges chunks back to the checkpoints;
//! - [`observe`] exports metrics and serves `/metrics`, `/health` and `/ready`.
//!
//! [`agent`] wires the stages together; [`config`] is the TOML file they are built from.

#![forbid(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod config;
pub mod decode;
pub mod demo;
pub mod kube;
pub mod observe;
pub mod parse;
pub mod sink;
pub mod tail;
