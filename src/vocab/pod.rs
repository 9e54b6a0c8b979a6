//! What the documents of one file carry because of the pod that wrote it: filled from the
//! file's path (namespace, pod, container) and, with `[kubernetes]`, from the API server;
//! read by the encoder for every record of the file, and by routing.

use std::collections::BTreeMap;
use std::sync::Arc;

/// What the tailer knows about one file's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// `,"kubernetes":{…},"docker":{…}` for its documents.
    pub fields: Vec<u8>,
    /// Drop this file's lines: the pod asked (`logferry.io/exclude: "true"`) and
    /// `kubernetes.honour_exclude_annotation` lets it.
    pub excluded: bool,
    /// JSON parsing for its lines (`logferry.io/parser: "none"` turns it off).
    pub parse_json: bool,
    /// The pod's `logferry.io/multiline` annotation: the rules for its lines, when it says.
    pub multiline: Option<Arc<str>>,
    /// Only what the path says: the pod is not (yet) known.
    pub partial: bool,
    /// The pod's namespace, from the file's path; `None` for a file outside the kubelet's
    /// layout.
    pub namespace: Option<Arc<str>>,
    /// The pod's labels as the API server has them (whether or not documents carry them);
    /// empty while the pod is unknown.
    pub labels: Arc<BTreeMap<String, String>>,
}

/// A file with nothing known about its pod: JSON parsed, nothing excluded.
impl Default for FileMeta {
    fn default() -> Self {
        FileMeta::with_labels(Arc::default())
    }
}

impl FileMeta {
    /// Nothing known but `labels` (shared: a source that makes one per record need not
    /// allocate an empty map each time).
    pub fn with_labels(labels: Arc<BTreeMap<String, String>>) -> FileMeta {
        FileMeta {
            fields: Vec::new(),
            excluded: false,
            parse_json: true,
            multiline: None,
            partial: false,
            namespace: None,
            labels,
        }
    }
}
