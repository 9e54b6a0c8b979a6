//! Pod metadata as documents carry it: what is kept of a Pod from the API server, and the
//! `kubernetes` / `docker` objects built from it, with fluent-plugin-kubernetes_metadata_filter's
//! field names so dashboards built on Fluentd keep working.
//!
//! The watches in [`super::cache`] keep one of these per pod of this node; the tailer looks a
//! file's pod up there once per file and puts the fields built here into each of its documents.

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Annotation: `"true"` drops the pod's logs.
pub const EXCLUDE: &str = "logferry.io/exclude";
/// Annotation: `"none"` turns JSON parsing off for the pod's logs.
pub const PARSER: &str = "logferry.io/parser";
/// Annotation: the multiline rules for the pod's containers (`"node"`, `"java,python"`,
/// `"auto"`, `"none"`), overriding `[multiline] rules`.
pub const MULTILINE: &str = "logferry.io/multiline";

/// What the agent keeps of a pod: what documents need, nothing else — no managed fields, no
/// spec, no conditions — so that a node's worth of pods costs little memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub ip: Option<String>,
    /// The node it runs on (`kubernetes.host`).
    pub host: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The controller that owns it (kind, name), as `kubernetes.owner`.
    pub owner: Option<(String, String)>,
    pub containers: Vec<ContainerMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: Option<String>,
    pub image_id: Option<String>,
    /// Without the runtime prefix (`containerd://`), as the log file names carry it.
    pub container_id: Option<String>,
}

/// How the `kubernetes` object is built.
#[derive(Debug, Clone)]
pub struct FieldOptions {
    /// Annotations copied into documents: exact keys, or prefixes ending in `*`. None by default:
    /// annotations often hold configuration nobody wants in every log line.
    pub annotations: Vec<String>,
    /// Replace `.` in label and annotation keys with `_`, so that `app` and
    /// `app.kubernetes.io/name` cannot collide as object and value in the index mapping.
    pub de_dot: bool,
}

impl PodMeta {
    /// Keeps what documents need of a Pod; `None` without a name, namespace or uid.
    pub fn from_pod(pod: &Pod) -> Option<PodMeta> {
        let m = &pod.metadata;
        let status = pod.status.as_ref();
        let statuses: Vec<_> = status
            .iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .chain(s.init_container_statuses.iter())
                    .flatten()
            })
            .collect();
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .map(|c| {
                let st = statuses.iter().find(|s| s.name == c.name);
                ContainerMeta {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: st.map(|s| s.image_id.clone()).filter(|i| !i.is_empty()),
                    container_id: st
                        .and_then(|s| s.container_id.as_deref())
                        .map(|id| id.rsplit("://").next().unwrap_or(id).to_owned()),
                }
            })
            .collect();
        Some(PodMeta {
            uid: m.uid.clone()?,
            name: m.name.clone()?,
            namespace: m.namespace.clone()?,
            ip: status.and_then(|s| s.pod_ip.clone()),
            host: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            owner: m
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| (o.kind.clone(), o.name.clone())),
            containers,
        })
    }

    /// The pod asked for its logs to be dropped.
    pub fn excluded(&self) -> bool {
        self.annotations.get(EXCLUDE).is_some_and(|v| v == "true")
    }

    /// The pod asked for its logs not to be parsed as JSON.
    pub fn parse_json(&self) -> bool {
        self.annotations.get(PARSER).is_none_or(|v| v != "none")
    }

    /// The pod's own multiline rules, as its annotation names them.
    pub fn multiline(&self) -> Option<&str> {
        self.annotations.get(MULTILINE).map(String::as_str)
    }

    /// `,"kubernetes":{…},"docker":{…}` for `container`, as the tailer appends it to every
    /// document of that container's file.
    pub fn json_fields(
        &self,
        container: &str,
        namespace_labels: Option<&BTreeMap<String, String>>,
        opts: &FieldOptions,
    ) -> Vec<u8> {
        use serde_json::{Map, Value};
        let c = self.containers.iter().find(|c| c.name == container);
        let mut k = Map::new();
        let mut put = |key: &str, v: Option<&String>| {
            if let Some(v) = v {
                k.insert(key.to_owned(), Value::from(v.as_str()));
            }
        };
        put("container_name", Some(&container.to_owned()));
        put("namespace_name", Some(&self.namespace));
        put("pod_name", Some(&self.name));
        put("container_image", c.and_then(|c| c.image.as_ref()));
        put("container_image_id", c.and_then(|c| c.image_id.as_ref()));
        put("pod_id", Some(&self.uid));
        put("pod_ip", self.ip.as_ref());
        put("host", self.host.as_ref());
        let object = |m: &mut dyn Iterator<Item = (&String, &String)>| {
            Value::Object(
                m.map(|(key, v)| (de_dot(key, opts.de_dot), Value::from(v.as_str())))
                    .collect(),
            )
        };
        if !self.labels.is_empty() {
            k.insert("labels".into(), object(&mut self.labels.iter()));
        }
        let mut allowed = self
            .annotations
            .iter()
            .filter(|(key, _)| allows(&opts.annotations, key))
            .peekable();
        if allowed.peek().is_some() {
            k.insert("annotations".into(), object(&mut allowed));
        }
        if let Some(ns) = namespace_labels.filter(|l| !l.is_empty()) {
            k.insert("namespace_labels".into(), object(&mut ns.iter()));
        }
        if let Some((kind, name)) = &self.owner {
            k.insert(
                "owner".into(),
                serde_json::json!({"kind": kind, "name": name}),
            );
        }
        super::document_fields(k, c.and_then(|c| c.container_id.as_deref()))
    }
}

fn de_dot(key: &str, on: bool) -> String {
    if on {
        key.replace('.', "_")
    } else {
        key.to_owned()
    }
}

fn allows(list: &[String], key: &str) -> bool {
    list.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => p == key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fixture() -> PodMeta {
        let text = include_str!("../../tests/fixtures/pod-orders-api.json");
        let pod: Pod = serde_json::from_str(text).unwrap();
        PodMeta::from_pod(&pod).unwrap()
    }

    fn fields(
        meta: &PodMeta,
        container: &str,
        ns: Option<&BTreeMap<String, String>>,
        opts: &FieldOptions,
    ) -> Value {
        let bytes = meta.json_fields(container, ns, opts);
        let text = format!("{{{}}}", String::from_utf8(bytes[1..].to_vec()).unwrap());
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_real_pod_gives_the_fluentd_fields() {
        let meta = fixture();
        assert_eq!(
            meta.owner,
            Some(("ReplicaSet".into(), "orders-api-7d9f8b6c5".into()))
        );
        let opts = FieldOptions {
            annotations: vec!["prometheus.io/*".into()],
            de_dot: true,
        };
        let ns = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let v = fields(&meta, "api", Some(&ns), &opts);
        assert_eq!(
            v,
            json!({
                "kubernetes": {
                    "container_name": "api",
                    "namespace_name": "shop",
                    "pod_name": "orders-api-7d9f8b6c5-x2bqz",
                    "container_image": "registry.example.com/shop/orders-api:1.42.0",
                    "container_image_id": "registry.example.com/shop/orders-api@sha256:9f2c1a7e5b3d8c6f4a2e1d0b9c8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
                    "pod_id": "6a1f7c2e-3b9d-4e8a-b5c1-2d7e9f0a4b63",
                    "pod_ip": "10.244.3.41",
                    "host": "node-a",
                    "labels": {
                        "app": "orders-api",
                        "app_kubernetes_io/name": "orders-api",
                        "app_kubernetes_io/part-of": "shop",
                        "pod-template-hash": "7d9f8b6c5"
                    },
                    "annotations": {"prometheus_io/scrape": "true"},
                    "namespace_labels": {"team": "payments"},
                    "owner": {"kind": "ReplicaSet", "name": "orders-api-7d9f8b6c5"}
                },
                "docker": {
                    "container_id": "3b0c2107f987d3433b0c2107f987d3433b0c2107f987d3433b0c2107f987d343"
                }
            })
        );
    }

    #[test]
    fn de_dot_off_keeps_keys_and_no_annotations_by_default() {
        let meta = fixture();
        let opts = FieldOptions {
            annotations: vec![],
            de_dot: false,
        };
        let v = fields(&meta, "envoy", None, &opts);
        let k = &v["kubernetes"];
        assert_eq!(k["labels"]["app.kubernetes.io/name"], "orders-api");
        assert!(k.get("annotations").is_none());
        assert!(k.get("namespace_labels").is_none());
        assert_eq!(k["container_image"], "docker.io/envoyproxy/envoy:v1.32.1");
        assert_eq!(
            v["docker"]["container_id"],
            "8e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a9f0e1d"
        );
    }

    #[test]
    fn annotations_exclude_a_pod_or_turn_parsing_off() {
        let mut meta = fixture();
        assert!(!meta.excluded());
        assert!(meta.parse_json(), "\"json\" is not \"none\"");
        meta.annotations.insert(EXCLUDE.into(), "true".into());
        meta.annotations.insert(PARSER.into(), "none".into());
        assert!(meta.excluded());
        assert!(!meta.parse_json());
        meta.annotations.insert(EXCLUDE.into(), "True".into());
        assert!(!meta.excluded(), "only the exact value \"true\" drops logs");
    }

    #[test]
    fn only_what_documents_need_is_kept() {
        let meta = fixture();
        let kept = format!("{meta:?}");
        for dropped in [
            "managedFields",
            "FieldsV1",
            "terminationMessagePath",
            "Burstable",
        ] {
            assert!(!kept.contains(dropped), "{dropped} kept");
        }
    }
}
