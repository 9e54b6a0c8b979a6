//! The Kubernetes manifests: valid for a current Kubernetes, carrying a config the agent
//! accepts, and laid out for `kubectl apply -k` (the base in deploy/k8s, an example overlay in
//! deploy/overlays/example), rendered here by kubectl's own Kustomize.

#[path = "support/yaml.rs"]
mod yaml;

use logferry::config::Config;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use yaml::{documents, kind_name, kubernetes_validate};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/logferry.yaml");
const SETUP_JOB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/k8s/logferry-setup-job.yaml"
);
const BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s");
const OVERLAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays/example");

#[test]
fn manifests_validate_strictly_against_kubernetes_1_37() {
    let read = |path| std::fs::read_to_string(path).expect("manifest");
    let both = format!("{}\n---\n{}", read(MANIFEST), read(SETUP_JOB));
    let passed = validate(&both);
    for kind in [
        "namespace",
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "configmap",
        "daemonset",
        "service",
        "job",
    ] {
        assert!(passed.contains(kind), "{kind} not validated: {passed:?}");
    }
}

#[test]
fn the_configmap_holds_a_config_the_agent_accepts() {
    let yaml = std::fs::read_to_string(MANIFEST).unwrap();
    // The block scalar under `logferry.toml: |`, de-indented.
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("logferry.toml: |"));
    let header = lines.next().expect("logferry.toml in the ConfigMap");
    let indent = header.len() - header.trim_start().len() + 2;
    let toml: String = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    // One platform config: the file its pipeline tests run against (config/tests/platform/,
    // tests/pipeline_cases.rs) is the one the agents get.
    let platform = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/platform.toml"),
    )
    .unwrap();
    assert!(
        toml.trim_end() == platform.trim_end(),
        "the ConfigMap's logferry.toml differs from config/platform.toml"
    );
    let cfg = Config::from_toml(&toml, |_| None).unwrap_or_else(|p| panic!("{p:#?}\n{toml}"));
    // The platform's retention: app logs 90 days, audit logs 7 years by namespace and by label.
    let kept = |r: Option<logferry::config::Retention>| r.map(|r| r.days);
    assert_eq!(kept(cfg.elasticsearch.retention), Some(90));
    let audit: Vec<_> = cfg
        .routes
        .iter()
        .filter(|r| r.index.as_deref() == Some("audit-%Y.%m"))
        .collect();
    assert!(
        audit.iter().all(|r| kept(r.retention) == Some(2557)),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|r| r.when.namespaces.is_some()),
        "{audit:?}"
    );
    assert!(audit.iter().any(|r| !r.when.labels.is_empty()), "{audit:?}");
    // The setup Job reads this ConfigMap and runs `logferry setup` with it.
    let job = std::fs::read_to_string(SETUP_JOB).unwrap();
    assert!(job.contains("args: [\"setup\", \"--config\", \"/etc/logferry/logferry.toml\"]"));
    assert!(
        job.contains("name: logferry\n"),
        "the Job mounts the agents' ConfigMap"
    );
    assert_eq!(cfg.data_dir, Path::new("/var/lib/logferry"));
    assert_eq!(cfg.input.include, vec!["/var/log/containers/*.log"]);
    // Probes come from the kubelet, on the pod's IP.
    assert!(cfg.api.listen.ip().is_unspecified(), "{}", cfg.api.listen);
    assert!(yaml.contains(&format!("containerPort: {}", cfg.api.listen.port())));
}

/// `kubectl kustomize dir`: what `kubectl apply -k dir` would apply. Fails, never skips,
/// without a kubectl whose Kustomize takes directories in `resources` (kubectl 1.21+).
fn render(dir: &str) -> String {
    let out = match Command::new("kubectl").args(["kustomize", dir]).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "kubectl is needed to render the kustomizations ({e}); no cluster is used. Debian's kubernetes-client (1.20) is too old: install a kubectl of 1.21 or later"
        ),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed (a kubectl older than 1.21 cannot read directories in resources):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl's output is UTF-8")
}

/// Strict validation of rendered manifests against Kubernetes 1.37's schemas: the kinds it
/// passed, lowercase.
fn validate(yaml: &str) -> BTreeSet<String> {
    let text = kubernetes_validate(yaml);
    text.lines()
        .filter_map(|l| l.split("passed for resource ").nth(1))
        .filter_map(|r| r.split('/').next())
        .map(str::to_owned)
        .collect()
}

/// Every container image of a workload (DaemonSet, Job, ...): `spec.template.spec`'s containers
/// and init containers.
fn images(doc: &Value) -> Vec<String> {
    let pod = &doc["spec"]["template"]["spec"];
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod[k].as_array())
        .flatten()
        .map(|c| c["image"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn every_manifest_is_in_the_kustomization_or_left_out_with_a_reason() {
    let text = std::fs::read_to_string(Path::new(BASE).join("kustomization.yaml"))
        .expect("deploy/k8s/kustomization.yaml");
    let kustomization = documents(&text).remove(0);
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path"))
        .collect();
    let left_out: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# not listed: "))
        .map(|l| l.split_once(": ").expect("`# not listed: <file>: <why>`"))
        .collect();
    let mut accounted: Vec<&str> = listed
        .iter()
        .copied()
        .chain(left_out.iter().map(|(f, _)| *f))
        .collect();
    accounted.sort_unstable();
    let before = accounted.len();
    accounted.dedup();
    assert_eq!(before, accounted.len(), "a manifest named twice: {text}");
    let mut manifests: Vec<String> = std::fs::read_dir(BASE)
        .expect("deploy/k8s")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    manifests.sort_unstable();
    assert_eq!(
        accounted, manifests,
        "deploy/k8s/kustomization.yaml must list every manifest beside it, or say why not"
    );
    for (file, why) in &left_out {
        assert!(why.len() > 20, "{file} is left out without a reason");
    }
    // What `kubectl apply -f deploy/k8s/logferry.yaml` applied, `apply -k deploy/k8s` applies.
    let rendered = render(BASE);
    let mut from_base: Vec<String> = documents(&rendered).iter().map(kind_name).collect();
    let mut from_files: Vec<String> = listed
        .iter()
        .flat_map(|f| {
            documents(&std::fs::read_to_string(Path::new(BASE).join(f)).expect("a listed manifest"))
        })
        .map(|d| kind_name(&d))
        .collect();
    from_base.sort_unstable();
    from_files.sort_unstable();
    assert_eq!(from_base, from_files);
    assert!(validate(&rendered).contains("daemonset"), "{rendered}");
}

#[test]
fn the_example_overlay_puts_its_namespace_and_image_on_every_object() {
    let overlay = documents(
        &std::fs::read_to_string(Path::new(OVERLAY).join("kustomization.yaml"))
            .expect("deploy/overlays/example/kustomization.yaml"),
    )
    .remove(0);
    let namespace = overlay["namespace"]
        .as_str()
        .expect("the overlay sets namespace");
    let image = &overlay["images"][0];
    let want = format!(
        "{}:{}",
        image["newName"].as_str().expect("newName"),
        image["newTag"].as_str().expect("newTag")
    );
    let rendered = render(OVERLAY);
    let docs = documents(&rendered);
    assert!(docs.len() >= 7, "{rendered}");
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    let mut workloads = 0;
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        let at = doc["metadata"]["namespace"].as_str();
        if cluster_scoped.contains(&kind) {
            assert_eq!(at, None, "{} is cluster-scoped", kind_name(doc));
        } else {
            assert_eq!(
                at,
                Some(namespace),
                "{} is not in the overlay's namespace",
                kind_name(doc)
            );
        }
        let found = images(doc);
        workloads += usize::from(!found.is_empty());
        assert!(
            found.iter().all(|i| *i == want),
            "{}: {found:?}",
            kind_name(doc)
        );
    }
    assert!(workloads >= 1, "no workload rendered: {rendered}");
    // The namespace the objects move to is the one the manifests create, and the agents'
    // ServiceAccount keeps its permissions there.
    let named = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    assert_eq!(named("Namespace")["metadata"]["name"], namespace);
    let subject = &named("ClusterRoleBinding")["subjects"][0];
    assert_eq!(subject["namespace"], namespace, "{subject}");
    // Nothing of ours is left in the base's namespace (the Elasticsearch address in the config
    // names the cluster's namespace, not ours).
    for doc in &docs {
        let mut text = doc.to_string();
        text = text.replace("elasticsearch.logging.svc", "");
        assert!(
            !text.contains("logging\""),
            "{} still names `logging`: {text}",
            kind_name(doc)
        );
    }
    let kinds = validate(&rendered);
    for kind in [
        "namespace",
        "serviceaccount",
        "clusterrolebinding",
        "configmap",
        "daemonset",
        "service",
    ] {
        assert!(kinds.contains(kind), "{kind} not validated: {kinds:?}");
    }
}

/// A ConfigMap update must reach the agents without a rollout: the DaemonSet runs with
/// `--watch-config`, and mounts the ConfigMap as a directory (a `subPath` mount never sees an
/// update).
#[test]
fn the_daemonset_watches_its_configmap() {
    let yaml = std::fs::read_to_string("deploy/k8s/logferry.yaml").expect("logferry.yaml");
    let docs = documents(&yaml);
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let agent = &pod["containers"][0];
    let args: Vec<&str> = agent["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--watch-config"), "{args:?}");
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["configMap"].is_object())
        .expect("a ConfigMap volume");
    let mount = agent["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap mounted");
    assert_eq!(mount["mountPath"], "/etc/logferry");
    assert!(mount.get("subPath").is_none(), "{mount}");
    // The file it watches is the one in that directory.
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", "/etc/logferry/logferry.toml"])
    );
}
