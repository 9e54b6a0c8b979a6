//! The Elasticsearch hosts a shipper sends to: the [`HostPool`].
//!
//! Owns which host the next request goes to. Requests are spread over the live hosts round
//! robin; a host that fails (no connection, a timeout, a 5xx for the whole request) is set
//! aside with its own exponential backoff and handed out again, to one request at a time, when
//! that backoff ends — as the official clients' connection pools do. When every host is set
//! aside the pool still hands one out, the one whose backoff ends first: records wait in the
//! buffer and the shipper's own retry backoff paces the attempts, so "no host" is never an
//! answer.
//!
//! Each host keeps its URL's path prefix (`https://gw.example/elasticsearch` sends to
//! `/elasticsearch/_bulk`): the pool builds the full request URLs.
//!
//! With `elasticsearch.sniff = true` the pool learns the cluster's HTTP nodes from
//! `GET _nodes/http` ([`HostPool::sniff_every`]) and ships to those instead of the configured
//! hosts, refreshing them every `sniff_interval` for clusters that grow and shrink. A learned
//! host keeps the configured host's scheme and path prefix; the configured hosts stay the
//! seeds sniffing asks first (the learned nodes only when no seed answers). A failed sniff
//! keeps the current set.
//!
//! The pool never decides whether a record is delivered; it only says where to try.
//!
//! The pieces: `host` (one host's URLs), `pool` (the round robin and the set-aside backoff),
//! `sniff` (learning the cluster's HTTP nodes).

mod host;
mod pool;
mod sniff;

#[cfg(test)]
mod tests;

pub use host::Host;
pub use pool::{HostPool, SetAside};

/// A `_nodes/http` answer is a few hundred bytes per node: more than this is not one.
const MAX_NODES_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{host}: {source}")]
    Request {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{host}: HTTP {status}")]
    Status { host: String, status: u16 },
    #[error("{host}: the _nodes/http answer is over {MAX_NODES_BODY} bytes")]
    TooLarge { host: String },
    #[error("{host}: unreadable _nodes/http answer: {source}")]
    Body {
        host: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{host}: the _nodes/http answer names no HTTP node that takes writes")]
    NoNodes { host: String },
    #[error("no host answered _nodes/http")]
    NoHosts,
}

type Result<T, E = Error> = std::result::Result<T, E>;
