//! The `[kubernetes]` section: which pod metadata is added to documents, and how long the
//! cache waits for it and keeps it.

use super::Span;
use serde::Deserialize;
use std::time::Duration;

/// Pod metadata from the Kubernetes API server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
