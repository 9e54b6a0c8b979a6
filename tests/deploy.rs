//! The Kubernetes manifests: valid for a current Kubernetes, carrying a config the agent
//! accepts, and laid out for `kubectl apply -k` (the base in deploy/k8s, an example overlay in
//! deploy/overlays/example), rendered here by kubectl's own Kustomize. The aggregator's base,
//! deploy/k8s/aggregator, likewise, and what its StatefulSet promises a forwarder: what it
//! acked is on a volume of the replica's own, which outlives the pod. The Kafka tier's overlay,
//! deploy/overlays/kafka, in [`kafka`].

#[path = "support/yaml.rs"]
mod yaml;

use logferry::config::Config;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use yaml::{documents, kind_name, kubernetes_validate, the_only};

#[path = "deploy/kafka.rs"]
mod kafka;

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

/// The files a kustomization in `dir` lists, after checking that every manifest beside it (and
/// every folder holding a kustomization of its own, `name/`) is either listed, a patch it
/// applies, or named in a `# not listed: <file>: <why>` line with its reason.
fn listed_in_kustomization(dir: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(dir).join("kustomization.yaml"))
        .unwrap_or_else(|e| panic!("{dir}/kustomization.yaml: {e}"));
    let kustomization = documents(&text).remove(0);
    let listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_owned())
        .collect();
    // Patches are the kustomization's own, applied over its resources: accounted for too.
    let patches: Vec<&str> = kustomization["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["path"].as_str())
        .collect();
    let left_out: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# not listed: "))
        .map(|l| l.split_once(": ").expect("`# not listed: <file>: <why>`"))
        .collect();
    // A base in another folder (`../../k8s`) is not beside it.
    let mut accounted: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|r| !r.starts_with("../"))
        .chain(patches.iter().copied())
        .chain(left_out.iter().map(|(f, _)| *f))
        .collect();
    accounted.sort_unstable();
    let before = accounted.len();
    accounted.dedup();
    assert_eq!(before, accounted.len(), "a manifest named twice: {text}");
    let mut manifests: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() {
                path.join("kustomization.yaml")
                    .is_file()
                    .then(|| format!("{name}/"))
            } else {
                ((name.ends_with(".yaml") || name.ends_with(".yml"))
                    && name != "kustomization.yaml")
                    .then_some(name)
            }
        })
        .collect();
    manifests.sort_unstable();
    assert_eq!(
        accounted, manifests,
        "{dir}/kustomization.yaml must list every manifest beside it, or say why not"
    );
    for (file, why) in &left_out {
        assert!(why.len() > 20, "{file} is left out without a reason");
    }
    listed
}

/// What `kubectl apply -k dir` applies is the objects of the files it lists (by kind and name),
/// and they pass Kubernetes' schemas: the kinds that passed.
fn renders_its_files(dir: &str, listed: &[String]) -> BTreeSet<String> {
    let rendered = render(dir);
    let mut from_kustomize: Vec<String> = documents(&rendered).iter().map(kind_name).collect();
    let mut from_files: Vec<String> = listed
        .iter()
        .flat_map(|f| {
            documents(&std::fs::read_to_string(Path::new(dir).join(f)).expect("a listed manifest"))
        })
        .map(|d| kind_name(&d))
        .collect();
    from_kustomize.sort_unstable();
    from_files.sort_unstable();
    assert_eq!(from_kustomize, from_files, "{dir}");
    validate(&rendered)
}

#[test]
fn every_manifest_is_in_the_kustomization_or_left_out_with_a_reason() {
    let listed = listed_in_kustomization(BASE);
    assert!(
        !listed.iter().any(|f| f.starts_with("aggregator")),
        "the agents' base applies the aggregator only when asked: {listed:?}"
    );
    // What `kubectl apply -f deploy/k8s/logferry.yaml` applied, `apply -k deploy/k8s` applies.
    let kinds = renders_its_files(BASE, &listed);
    assert!(kinds.contains("daemonset"), "{kinds:?}");
}

/// No overlay carries a file it does not use: every manifest beside an overlay's kustomization
/// is a resource or a patch of it, or left out with a reason.
#[test]
fn every_overlay_accounts_for_the_files_beside_it() {
    let overlays = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays");
    let mut seen = 0;
    for entry in std::fs::read_dir(overlays).expect("deploy/overlays") {
        let dir = entry.expect("an overlay").path();
        listed_in_kustomization(dir.to_str().expect("a UTF-8 path"));
        seen += 1;
    }
    assert!(seen >= 2, "the example and the Kafka overlays: {seen}");
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

const AGGREGATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/aggregator");

/// The aggregator base's objects, from the files its kustomization lists.
fn aggregator_objects() -> Vec<Value> {
    listed_in_kustomization(AGGREGATOR)
        .iter()
        .flat_map(|f| {
            documents(
                &std::fs::read_to_string(Path::new(AGGREGATOR).join(f)).expect("a listed manifest"),
            )
        })
        .collect()
}

fn read_config(rel: &str) -> (String, Config) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
    let cfg = Config::from_toml(&text, |_| None).unwrap_or_else(|p| panic!("{rel}: {p:#?}"));
    (text, cfg)
}

/// A Kubernetes quantity of bytes ("10Gi", "512Mi", "1G", "1000").
fn quantity(q: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (digits, scale) = units
        .iter()
        .find_map(|(u, s)| q.strip_suffix(u).map(|d| (d, *s)))
        .unwrap_or((q, 1));
    digits.parse::<u64>().unwrap_or_else(|e| panic!("{q}: {e}")) * scale
}

/// The port a container names `name`.
fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name}: {container}"))
}

/// Every key of `selector` is on `labels` with its value, and there is at least one: a selector
/// that matches nothing (or everything) fails without a sound.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_aggregator_validates_strictly_and_is_what_apply_k_applies() {
    let listed = listed_in_kustomization(AGGREGATOR);
    let kinds = renders_its_files(AGGREGATOR, &listed);
    for kind in [
        "serviceaccount",
        "configmap",
        "service",
        "statefulset",
        "poddisruptionbudget",
    ] {
        assert!(kinds.contains(kind), "{kind} not validated: {kinds:?}");
    }
    // The agents' objects are not in it: applying it next to deploy/k8s changes nothing there.
    let docs = aggregator_objects();
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["name"],
            "logferry-aggregator",
            "{}",
            kind_name(doc)
        );
        assert_eq!(
            doc["metadata"]["namespace"],
            "logging",
            "{}",
            kind_name(doc)
        );
    }
}

/// One aggregator config: the file in config/ is the one the ConfigMap carries, the agent takes
/// it, it listens for forwarders and follows no files, learns pods from the records (no API
/// server, which its ServiceAccount could not read anyway), and applies the platform's policy:
/// the same cluster, retention, routes and redaction as the node agents' config/platform.toml.
#[test]
fn the_aggregator_configmap_carries_config_aggregator_toml() {
    let docs = aggregator_objects();
    let configmap = the_only(&docs, "ConfigMap");
    let carried = configmap["data"]["logferry.toml"]
        .as_str()
        .expect("logferry.toml in the aggregator's ConfigMap");
    let (text, cfg) = read_config("config/aggregator.toml");
    assert!(
        carried == text,
        "the aggregator's ConfigMap differs from config/aggregator.toml"
    );
    assert!(cfg.input.include.is_empty(), "{:?}", cfg.input.include);
    assert_eq!(cfg.input.forward.len(), 1, "{:?}", cfg.input.forward);
    let forward = &cfg.input.forward[0];
    assert!(forward.listen.ip().is_unspecified(), "{}", forward.listen);
    assert!(!cfg.kubernetes.enabled);
    assert!(cfg.api.listen.ip().is_unspecified(), "{}", cfg.api.listen);
    let (_, platform) = read_config("config/platform.toml");
    assert_eq!(cfg.elasticsearch, platform.elasticsearch);
    assert_eq!(cfg.redact, platform.redact);
    assert_eq!(cfg.routes, platform.routes);
}

/// `cfg.data_dir` is on a volume each replica of `set` has of its own: below the root of a claim
/// template's mount (never an emptyDir, nor shadowed by a pod volume), big enough for the buffer
/// and dead letters, and kept when the set is scaled down or deleted.
fn data_dir_on_a_claim_of_its_own(set: &Value, cfg: &Config) {
    let spec = &set["spec"];
    let pod = &spec["template"]["spec"];
    let agent = &pod["containers"][0];
    let claims = spec["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    let data_mount = agent["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| {
            cfg.data_dir
                .starts_with(m["mountPath"].as_str().unwrap_or("-"))
        })
        .unwrap_or_else(|| panic!("data_dir {} not mounted", cfg.data_dir.display()));
    let claim = claims
        .iter()
        .find(|c| c["metadata"]["name"] == data_mount["name"])
        .unwrap_or_else(|| panic!("data_dir's volume {data_mount} is not a claim template"));
    // Below the volume's root, which is root's (group fsGroup): a directory the agent makes is
    // its own, and it closes it to 0700.
    assert_ne!(
        cfg.data_dir,
        Path::new(data_mount["mountPath"].as_str().expect("a path")),
        "data_dir is the volume's root"
    );
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .all(|v| v["name"] != data_mount["name"]),
        "a pod volume named as the claim would shadow it"
    );
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    let size = quantity(
        claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .expect("a storage request"),
    );
    let needs = cfg.buffer.max_size.0 + cfg.elasticsearch.dead_letter_max_size.0;
    assert!(
        size >= needs,
        "the volume ({size} bytes) must hold the buffer and dead letters ({needs} bytes)"
    );
    let kept = &spec["persistentVolumeClaimRetentionPolicy"];
    assert_eq!(kept["whenScaled"], "Retain");
    assert_eq!(kept["whenDeleted"], "Retain");
}

/// What the aggregator acked survives its pod: data_dir is on a volume of the replica's own
/// (a claim template, never an emptyDir), big enough for the buffer and dead letters it may
/// hold, and kept when the set is scaled down; SIGTERM has time to drain; the ports, probes,
/// config and Secret are where the config and the agents' manifests say.
#[test]
fn the_aggregator_keeps_what_it_acked_on_a_volume_of_its_own() {
    let docs = aggregator_objects();
    let (_, cfg) = read_config("config/aggregator.toml");
    let set = the_only(&docs, "StatefulSet");
    assert!(docs.iter().all(|d| d["kind"] != "Deployment"));
    data_dir_on_a_claim_of_its_own(set, &cfg);
    let spec = &set["spec"];
    let pod = &spec["template"]["spec"];
    let agent = &pod["containers"][0];
    // The drain on SIGTERM (requests in flight) and the fsync and cursor save after it.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= logferry::agent::DRAIN_TIMEOUT.as_secs() + 10,
        "{grace} s leaves no room for the drain"
    );
    // The ports are the config's; the probes and the Service use them by name.
    assert_eq!(
        container_port(agent, "forward"),
        u64::from(cfg.input.forward[0].listen.port())
    );
    assert_eq!(
        container_port(agent, "metrics"),
        u64::from(cfg.api.listen.port())
    );
    for (probe, path) in [
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ] {
        assert_eq!(agent[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(agent[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    // Non-root, as nothing on a node is read.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(agent["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(agent["securityContext"]["allowPrivilegeEscalation"], false);
    // The config file is the ConfigMap's, mounted as a directory (a subPath never updates).
    let args: Vec<&str> = agent["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--watch-config"), "{args:?}");
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", "/etc/logferry/logferry.toml"]),
        "{args:?}"
    );
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let mount = |name: &str| {
        agent["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} not mounted"))
            .clone()
    };
    assert_eq!(
        volume("config")["configMap"]["name"],
        the_only(&docs, "ConfigMap")["metadata"]["name"]
    );
    assert_eq!(mount("config")["mountPath"], "/etc/logferry");
    assert!(mount("config").get("subPath").is_none());
    // Credentials by reference: the agents' Secret, where the config names its files.
    let agents = documents(&std::fs::read_to_string(MANIFEST).expect("logferry.yaml"));
    let daemonset = the_only(&agents, "DaemonSet");
    let theirs = daemonset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "secrets")
        .expect("the agents' Secret volume")["secret"]["secretName"]
        .clone();
    assert_eq!(volume("secrets")["secret"]["secretName"], theirs);
    let secrets_at = mount("secrets")["mountPath"]
        .as_str()
        .expect("a path")
        .to_owned();
    let tls = cfg.elasticsearch.tls.ca_file.as_ref().expect("ca_file");
    assert!(tls.starts_with(&secrets_at), "{}", tls.display());
    assert!(docs.iter().all(|d| d["kind"] != "Secret"));
}

/// The Service and the disruption budget find the replicas (a selector matching nothing would
/// leave forwarders with nowhere to connect, or drains unbounded, without a sound), and the
/// Service sends forward and metrics to the container's ports of those names.
#[test]
fn the_aggregators_service_and_budget_find_its_replicas() {
    let docs = aggregator_objects();
    let set = the_only(&docs, "StatefulSet");
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&set["spec"]["selector"]["matchLabels"], labels));
    let service = the_only(&docs, "Service");
    assert!(selects(&service["spec"]["selector"], labels), "{service}");
    let budget = the_only(&docs, "PodDisruptionBudget");
    assert!(
        selects(&budget["spec"]["selector"]["matchLabels"], labels),
        "{budget}"
    );
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    // Not the agents': the DaemonSet's selector must not take the aggregator's pods.
    let agents = documents(&std::fs::read_to_string(MANIFEST).expect("logferry.yaml"));
    let daemonset = the_only(&agents, "DaemonSet");
    assert!(!selects(
        &daemonset["spec"]["selector"]["matchLabels"],
        labels
    ));
    let agent = &set["spec"]["template"]["spec"]["containers"][0];
    let ports = service["spec"]["ports"].as_array().expect("ports");
    for name in ["forward", "metrics"] {
        let port = ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no Service port {name}"));
        assert_eq!(port["targetPort"], name);
        assert_eq!(port["protocol"], "TCP");
        container_port(agent, name);
    }
    let (_, cfg) = read_config("config/aggregator.toml");
    let forward = ports
        .iter()
        .find(|p| p["name"] == "forward")
        .expect("forward");
    assert_eq!(forward["port"], 24224, "forwarders' usual port");
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/port"],
        cfg.api.listen.port().to_string()
    );
    let serviceaccount = the_only(&docs, "ServiceAccount");
    assert_eq!(
        set["spec"]["template"]["spec"]["serviceAccountName"],
        serviceaccount["metadata"]["name"]
    );
}
