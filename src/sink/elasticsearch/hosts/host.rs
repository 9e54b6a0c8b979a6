//! One Elasticsearch host: its base URL, with the path prefix kept, and the `_bulk` URL built
//! from it once rather than per request.

use reqwest::Url;
use std::sync::Arc;

/// Only what the agent reads of a bulk response: ~25 bytes per item instead of ~200
/// (Elasticsearch and OpenSearch both support `filter_path`).
pub(super) const BULK_QUERY: &str = "filter_path=errors,items.*.status,items.*.error";

/// One Elasticsearch host: its base URL (the path prefix kept, always ending in `/`) and the
/// `_bulk` URL built from it. Cheap to clone: one per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    pub(super) base: Arc<Url>,
    bulk: Arc<Url>,
}

impl Host {
    /// `url` as a host: the query and fragment dropped, the path kept as a prefix. `None` when
    /// it is not an absolute http(s) URL (validation refuses those before the pool sees them).
    pub fn parse(url: &str) -> Option<Host> {
        let base = Url::parse(url).ok()?;
        Host::from_base(base)
    }

    pub(super) fn from_base(mut base: Url) -> Option<Host> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return None;
        }
        base.set_query(None);
        base.set_fragment(None);
        // `Url::join` replaces the last path segment unless the path ends in `/`: without this,
        // `https://gw.example/elasticsearch` would send to `/_bulk` and miss the gateway's route.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut bulk = base.join("_bulk").ok()?;
        bulk.set_query(Some(BULK_QUERY));
        Some(Host {
            base: Arc::new(base),
            bulk: Arc::new(bulk),
        })
    }

    /// Where bulk requests go.
    pub fn bulk_url(&self) -> &Url {
        &self.bulk
    }

    /// `path` (relative, no leading `/`) under this host's prefix.
    pub fn url(&self, path: &str) -> Option<Url> {
        self.base.join(path).ok()
    }

    /// The host and port, for logs and reasons: never the path or anything after it.
    pub fn name(&self) -> String {
        match (self.base.host_str(), self.base.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => "?".to_owned(),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str())
    }
}
