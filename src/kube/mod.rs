//! Pod identity for a log file.
//!
//! Owns what a file's path says about where its lines came from: the kubelet names
//! `/var/log/containers/<pod>_<namespace>_<container>-<container-id>.log` and
//! `/var/log/pods/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log`. Hands the tailer a
//! [`PodRef`] per file, encoded once as the document's `kubernetes` and `docker` objects (field
//! names of fluent-plugin-kubernetes_metadata_filter, so existing dashboards keep working).

pub mod cache;
pub mod metadata;

use crate::vocab::FileMeta;
use std::path::Path;
use std::sync::Arc;

/// What the file path says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// From `/var/log/containers` names.
    pub container_id: Option<String>,
    /// From `/var/log/pods` directory names.
    pub pod_id: Option<String>,
}

impl PodRef {
    /// Reads pod identity from either kubelet layout; `None` for any other file.
    pub fn from_path(path: &Path) -> Option<PodRef> {
        let name = path.file_name()?.to_str()?;
        if let Some(stem) = name.strip_suffix(".log") {
            // <pod>_<namespace>_<container>-<64 hex id>: names never contain '_'.
            let mut parts = stem.splitn(3, '_');
            if let (Some(pod), Some(ns), Some(rest)) = (parts.next(), parts.next(), parts.next())
                && let Some((container, id)) = rest.rsplit_once('-')
                && id.len() == 64
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && !pod.is_empty()
                && !ns.is_empty()
                && !container.is_empty()
            {
                return Some(PodRef {
                    namespace: ns.to_owned(),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    container_id: Some(id.to_owned()),
                    pod_id: None,
                });
            }
        }
        // <namespace>_<pod>_<uid>/<container>/<n>.log
        let container = path.parent()?.file_name()?.to_str()?;
        let pod_dir = path.parent()?.parent()?.file_name()?.to_str()?;
        let mut parts = pod_dir.splitn(3, '_');
        let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
        let restart = name.split('.').next()?;
        if restart.is_empty() || !restart.bytes().all(|b| b.is_ascii_digit()) || uid.is_empty() {
            return None;
        }
        Some(PodRef {
            namespace: ns.to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
            container_id: None,
            pod_id: Some(uid.to_owned()),
        })
    }

    /// The document fields this identity contributes, as a JSON fragment that starts with a
    /// comma: `,"kubernetes":{…},"docker":{…}`. Built once per file, copied into every document.
    pub fn json_fields(&self) -> Vec<u8> {
        self.fields(false)
    }

    /// What the documents of a file with this path carry while nothing more is known of its
    /// pod (without `[kubernetes]`, or before the first lookup): the path's fields, JSON parsed,
    /// nothing excluded. The tailer opens every file with it; `logferry test` starts from it.
    pub fn file_meta(&self) -> FileMeta {
        FileMeta {
            fields: self.json_fields(),
            namespace: Some(Arc::from(self.namespace.as_str())),
            ..FileMeta::default()
        }
    }

    /// [`PodRef::json_fields`] with `kubernetes.metadata: "partial"`: the API server was asked
    /// and did not (yet) know the pod, or could not be asked.
    pub fn json_fields_partial(&self) -> Vec<u8> {
        self.fields(true)
    }

    fn fields(&self, partial: bool) -> Vec<u8> {
        let mut k = serde_json::Map::new();
        if partial {
            k.insert("metadata".into(), "partial".into());
        }
        k.insert("namespace_name".into(), self.namespace.clone().into());
        k.insert("pod_name".into(), self.pod.clone().into());
        k.insert("container_name".into(), self.container.clone().into());
        if let Some(uid) = &self.pod_id {
            k.insert("pod_id".into(), uid.clone().into());
        }
        document_fields(k, self.container_id.as_deref())
    }
}

/// `,"kubernetes":{…}` from `kubernetes`, and `,"docker":{"container_id":…}` when the id is
/// known: the fragment every document of a file carries.
fn document_fields(
    kubernetes: serde_json::Map<String, serde_json::Value>,
    container_id: Option<&str>,
) -> Vec<u8> {
    let mut out = b",\"kubernetes\":".to_vec();
    // Serializing a map of strings into a Vec cannot fail.
    out.extend_from_slice(serde_json::Value::Object(kubernetes).to_string().as_bytes());
    if let Some(id) = container_id {
        out.extend_from_slice(b",\"docker\":{\"container_id\":");
        out.extend_from_slice(serde_json::Value::from(id).to_string().as_bytes());
        out.push(b'}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn table() {
        let containers = format!("/var/log/containers/api-7d9f-x2b_shop_server-{ID}.log");
        // (path, Some((namespace, pod, container, has container id, has pod uid)))
        type Want = Option<(&'static str, &'static str, &'static str, bool, bool)>;
        let cases: Vec<(String, Want)> = vec![
            (
                containers,
                Some(("shop", "api-7d9f-x2b", "server", true, false)),
            ),
            (
                "/var/log/pods/shop_api-7d9f-x2b_1f7e-uid/server/3.log".into(),
                Some(("shop", "api-7d9f-x2b", "server", false, true)),
            ),
            (
                "/var/log/pods/shop_api_uid/server/0.log.20261126-170000".into(),
                Some(("shop", "api", "server", false, true)),
            ),
            (format!("/var/log/containers/nounderscores-{ID}.log"), None),
            ("/var/log/containers/a_b_c-shortid.log".into(), None),
            ("/var/log/syslog".into(), None),
        ];
        for (path, want) in cases {
            let got = PodRef::from_path(Path::new(&path));
            let got = got.as_ref().map(|p| {
                (
                    p.namespace.as_str(),
                    p.pod.as_str(),
                    p.container.as_str(),
                    p.container_id.is_some(),
                    p.pod_id.is_some(),
                )
            });
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn fields_are_valid_json_with_fluentd_names() {
        let p = PodRef::from_path(Path::new(&format!(
            "/var/log/containers/api_shop_server-{ID}.log"
        )))
        .unwrap();
        let doc = format!("{{\"a\":1{}}}", String::from_utf8(p.json_fields()).unwrap());
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["kubernetes"]["namespace_name"], "shop");
        assert_eq!(v["kubernetes"]["pod_name"], "api");
        assert_eq!(v["kubernetes"]["container_name"], "server");
        assert_eq!(v["docker"]["container_id"], ID);
    }
}
