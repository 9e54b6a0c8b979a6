//! `[elasticsearch.setup]`: what the agent installs in the cluster before it ships — an index
//! template per route (mappings for the agent's own fields, the lifecycle policy to use) and a
//! retention policy per distinct retention (ILM on Elasticsearch, ISM on OpenSearch).
//!
//! Create-if-absent by default: what an operator installed under the same name is left alone,
//! and `overwrite = true` replaces only what the agent installed itself.

use super::Retention;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Setup {
    /// Install at every start (the default). `false` leaves it to `logferry setup`, run once
    /// (a Kubernetes Job) rather than by every agent of the DaemonSet.
    pub enabled: bool,
    /// Install the index templates.
    pub templates: bool,
    /// Install retention policies; by default when any retention is set.
    pub lifecycle: Option<bool>,
    /// Replace templates and policies the agent installed before (those whose `_meta` says
    /// `managed_by: logferry`), for a changed mapping or retention. Never anyone else's.
    pub overwrite: bool,
    /// A warm phase this long after an index has stopped filling: its recovery priority drops.
    /// Nothing that would refuse late writes (no read-only, no force-merge, no shrink).
    pub warm_after: Option<Retention>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            enabled: true,
            templates: true,
            lifecycle: None,
            overwrite: false,
            warm_after: None,
        }
    }
}
