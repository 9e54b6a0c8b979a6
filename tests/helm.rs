//! The Helm chart in deploy/helm/logferry: it lints, every render of it (the defaults and each
//! values file in its ci/ folder) passes Kubernetes' schemas, its defaults render the objects of
//! deploy/k8s and nothing else (`aggregator.enabled` adds those of deploy/k8s/aggregator), and
//! what it carries of the repository (the platform's and the aggregator's configs, the alerts,
//! the dashboard) is the repository's. Rendered by the real helm (scripts/install-helm);
//! no cluster is used.

#[path = "support/yaml.rs"]
mod yaml;

use logferry::config::Config;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml::{documents, kind_name, kubernetes_validate, the_only};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/logferry");
const K8S: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/logferry-dashboard.json"
);
/// The release name whose objects are named as the manifests' are ("logferry", no prefix).
const RELEASE: &str = "logferry";

/// The Prometheus Operator's kinds. kubernetes-validate has no schema for a custom resource and
/// says so (it passes them with a warning, as it does deploy/k8s/prometheus-rule.yaml); the
/// tests below check what matters in them: the rule's spec is the manifest's, and the monitors'
/// selectors and ports find the agents.
const OPERATOR_KINDS: [&str; 3] = ["PodMonitor", "ServiceMonitor", "PrometheusRule"];

/// Labels every chart object carries and the manifests, applied by kubectl, do not: who manages
/// the object (the chart and its version, the release, the tool) and the app's version. They say
/// nothing about what the object does, so the comparison with deploy/k8s leaves them out.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
];
/// The chart puts the app's name on every object; the manifests only on the workloads and the
/// rule. Where the manifest has it, it must be the same.
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// When and in which order Helm runs the setup Job and its ConfigMap, when it deletes them and
/// whether it prints the Job's log; kubectl has no such notion (the manifests say: apply the Job
/// by itself, first).
const HOOK_ANNOTATIONS: [&str; 4] = [
    "helm.sh/hook",
    "helm.sh/hook-weight",
    "helm.sh/hook-delete-policy",
    "helm.sh/hook-output-log-policy",
];

/// `helm args`. Fails, never skips, without helm.
fn helm(args: &[&str]) -> std::process::Output {
    match Command::new("helm").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "helm is needed to lint and render deploy/helm/logferry ({e}): run scripts/install-helm"
        ),
    }
}

/// `helm template` of the chart as release `logferry` in the manifests' namespace, with these
/// values files and further arguments: the rendered YAML, or what helm said when it refused.
fn template(values: &[&Path], args: &[&str]) -> Result<String, String> {
    let namespace = namespace();
    let mut all = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        namespace.as_str(),
    ];
    let values: Vec<String> = values.iter().map(|v| v.display().to_string()).collect();
    for file in &values {
        all.extend(["--values", file.as_str()]);
    }
    all.extend(args);
    let out = helm(&all);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("helm's output is UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The chart rendered with these values files, which must render.
fn render(values: &[&Path]) -> String {
    template(values, &[]).unwrap_or_else(|e| panic!("helm template with {values:?}:\n{e}"))
}

/// The values files the chart is tried with: deploy/helm/logferry/ci/*.yaml.
fn values_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(CHART).join("ci"))
        .expect("deploy/helm/logferry/ci")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "values files: {files:?}");
    files
}

fn ci(name: &str) -> PathBuf {
    let path = Path::new(CHART).join("ci").join(name);
    assert!(path.is_file(), "{}", path.display());
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A values file as JSON.
fn values_of(path: &Path) -> Value {
    documents(&read(path)).remove(0)
}

/// Every object in deploy/k8s: each manifest beside the kustomization, listed in it or not (the
/// setup Job and the PrometheusRule are applied by themselves; the chart holds them all).
fn manifests() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(K8S)
        .expect("deploy/k8s")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| documents(&read(f))).collect()
}

/// The namespace the manifests create and put their objects in.
fn namespace() -> String {
    manifests()
        .iter()
        .find(|d| d["kind"] == "Namespace")
        .and_then(|d| d["metadata"]["name"].as_str())
        .expect("deploy/k8s creates its namespace")
        .to_owned()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs.iter().map(kind_name).collect();
            panic!("no {kind}/{name} in {have:?}")
        })
}

/// Strict validation against Kubernetes 1.37's schemas, as tests/deploy.rs validates the
/// manifests: the objects that passed (`kind/name`, kind lowercase) and the kinds it had no
/// schema for.
fn validate(yaml: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = kubernetes_validate(yaml);
    let passed = text
        .lines()
        .filter_map(|l| l.split("passed for resource ").nth(1))
        .filter_map(|r| r.split(' ').next())
        .map(str::to_owned)
        .collect();
    let unknown = text
        .lines()
        .filter_map(|l| l.split("Couldn't find schema for kind ").nth(1))
        .filter_map(|r| r.split(' ').next())
        .map(str::to_owned)
        .collect();
    (passed, unknown)
}

/// The ConfigMap's config file, as the agents read it.
fn config_in(configmap: &Value) -> &str {
    configmap["data"]["logferry.toml"]
        .as_str()
        .unwrap_or_else(|| panic!("logferry.toml in {}", kind_name(configmap)))
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// The first place where two JSON values differ, as a path, so that a drift says where it is.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(v), Some(w)) => first_difference(v, w, &format!("{at}.{k}")),
                (v, w) => Some(format!("{at}.{k}: {v:?} vs {w:?}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]"))),
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

/// Takes out of `metadata.<field>` the keys `drop` says, and the map itself when nothing is left.
fn strip_metadata(doc: &mut Value, field: &str, drop: impl Fn(&str) -> bool) {
    let Some(meta) = doc["metadata"].as_object_mut() else {
        return;
    };
    if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
        map.retain(|k, _| !drop(k));
        if map.is_empty() {
            meta.remove(field);
        }
    }
}

#[test]
fn helm_lint_passes_with_the_defaults_and_every_values_file() {
    let mut runs: Vec<Vec<String>> = vec![vec![]];
    runs.extend(
        values_files()
            .iter()
            .map(|f| vec!["--values".to_owned(), f.display().to_string()]),
    );
    for extra in runs {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend(extra.iter().map(String::as_str));
        let out = helm(&args);
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "helm {args:?}:\n{said}");
        assert!(said.contains("0 chart(s) failed"), "helm {args:?}:\n{said}");
    }
}

/// Every object of every render passes Kubernetes' schemas strictly (no field it does not know),
/// except the operator's custom resources, which it has no schema for.
#[test]
fn every_render_passes_kubernetes_1_37s_schemas() {
    let files = values_files();
    let mut renders: Vec<(String, String)> = vec![("the defaults".to_owned(), render(&[]))];
    renders.extend(
        files
            .iter()
            .map(|f| (f.display().to_string(), render(&[f.as_path()]))),
    );
    let mut kinds_seen = BTreeSet::new();
    for (what, yaml) in &renders {
        let docs = documents(yaml);
        assert!(docs.len() >= 6, "{what}: {yaml}");
        let (passed, unknown) = validate(yaml);
        for doc in &docs {
            let kind = doc["kind"].as_str().expect("a kind");
            kinds_seen.insert(kind.to_owned());
            if OPERATOR_KINDS.contains(&kind) {
                assert!(unknown.contains(kind), "{what}: {kind} not looked at");
            } else {
                let id = format!(
                    "{}/{}",
                    kind.to_lowercase(),
                    doc["metadata"]["name"].as_str().expect("a name")
                );
                assert!(
                    passed.contains(&id),
                    "{what}: {id} not validated: {passed:?}"
                );
            }
        }
        // Only the operator's kinds may go without a schema: a core kind without one would be
        // a misspelled kind or apiVersion.
        for kind in &unknown {
            assert!(
                OPERATOR_KINDS.contains(&kind.as_str()),
                "{what}: no schema for {kind}"
            );
        }
    }
    // The values files between them render every kind the chart has.
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Service",
        "Job",
        "StatefulSet",
        "PodDisruptionBudget",
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds_seen.contains(kind), "{kind} never rendered");
    }
}

/// The chart and deploy/k8s must not drift apart: with its defaults, the chart renders every
/// object of the manifests, each the same, and nothing else. What Helm does differently is
/// allowed here, each difference named:
/// - Helm's labels (HELM_LABELS) and the app name on every object (NAME_LABEL);
/// - the hook annotations on the setup Job, which Helm runs before each install and upgrade;
/// - the Namespace: `helm install --create-namespace` makes it, and a release does not own it
///   (uninstalling would delete everything else in it);
/// - the setup Job's config comes from a hook ConfigMap of its own, logferry-setup, since a
///   pre-install hook runs before the agents' ConfigMap exists; it must hold the same bytes.
#[test]
fn the_default_render_is_deploy_k8s() {
    let mut chart = documents(&render(&[]));
    let mut manifests = manifests();
    manifests.retain(|d| d["kind"] != "Namespace");

    let agents_config = config_in(object(&chart, "ConfigMap", "logferry")).to_owned();
    let setup_config = object(&chart, "ConfigMap", "logferry-setup");
    assert_eq!(config_in(setup_config), agents_config);
    assert_eq!(
        setup_config["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    chart.retain(|d| kind_name(d) != "ConfigMap/logferry-setup");
    for doc in chart.iter_mut() {
        if doc["kind"] != "Job" {
            continue;
        }
        assert_eq!(
            doc["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade",
            "the setup Job runs before the agents change"
        );
        let volumes = doc["spec"]["template"]["spec"]["volumes"]
            .as_array_mut()
            .expect("the Job's volumes");
        let config = volumes
            .iter_mut()
            .find(|v| v["name"] == "config")
            .expect("the Job's config volume");
        assert_eq!(config["configMap"]["name"], "logferry-setup");
        config["configMap"]["name"] = "logferry".into();
    }

    same_objects(&chart, &manifests, "deploy/k8s");
}

/// `chart` (rendered objects) and `manifests` (deploy/k8s's) are the same objects, by kind and
/// name, each the same but for what Helm adds: its labels, the app name where the manifest has
/// none, and the hook annotations. They are in the manifests' namespace.
fn same_objects(chart: &[Value], manifests: &[Value], what: &str) {
    let namespace = namespace();
    let by_name = |docs: &[Value]| -> BTreeMap<String, Value> {
        docs.iter().map(|d| (kind_name(d), d.clone())).collect()
    };
    let mut chart = by_name(chart);
    let manifests = by_name(manifests);
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        manifests.keys().collect::<Vec<_>>(),
        "the chart's objects and {what}'s differ"
    );
    for (id, want) in &manifests {
        let got = chart.get_mut(id).expect("listed above");
        if got["metadata"].get("namespace").is_some() {
            assert_eq!(got["metadata"]["namespace"], namespace.as_str(), "{id}");
        }
        let manifest_names_app = want["metadata"]["labels"].get(NAME_LABEL).is_some();
        strip_metadata(got, "labels", |k| {
            HELM_LABELS.contains(&k) || (k == NAME_LABEL && !manifest_names_app)
        });
        strip_metadata(got, "annotations", |k| HOOK_ANNOTATIONS.contains(&k));
        if let Some(at) = first_difference(got, want, id) {
            panic!(
                "{id} drifted from {what} at {at}\nchart: {}\nmanifest: {}",
                serde_json::to_string_pretty(got).unwrap(),
                serde_json::to_string_pretty(want).unwrap()
            );
        }
    }
}

/// deploy/k8s/aggregator's objects: those of the files its kustomization lists.
fn aggregator_manifests() -> Vec<Value> {
    let dir = Path::new(K8S).join("aggregator");
    let kustomization = documents(&read(&dir.join("kustomization.yaml"))).remove(0);
    kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|f| documents(&read(&dir.join(f.as_str().expect("a path")))))
        .collect()
}

/// The chart with the aggregator on and these values files: the objects it adds to the same
/// render without it (the agents' objects must be the same either way), and the whole render.
fn aggregator_render(values: &[&Path]) -> (Vec<Value>, Vec<Value>) {
    let on = template(values, &["--set", "aggregator.enabled=true"])
        .unwrap_or_else(|e| panic!("helm template with the aggregator, {values:?}:\n{e}"));
    let off = template(values, &["--set", "aggregator.enabled=false"])
        .unwrap_or_else(|e| panic!("helm template without the aggregator, {values:?}:\n{e}"));
    let on = documents(&on);
    let off = documents(&off);
    let added: Vec<Value> = on.iter().filter(|d| !off.contains(d)).cloned().collect();
    let kept: Vec<&Value> = on.iter().filter(|d| off.contains(d)).collect();
    assert_eq!(
        kept.len(),
        off.len(),
        "turning the aggregator on changed the agents' objects"
    );
    (added, on)
}

/// The aggregator's objects do not drift from deploy/k8s/aggregator: with aggregator.enabled and
/// the other values at their defaults, the chart adds exactly its objects, each the same but
/// for Helm's labels, and changes nothing of the agents'. The default render has none of them
/// (the_default_render_is_deploy_k8s).
#[test]
fn the_aggregator_render_is_deploy_k8s_aggregator() {
    let (added, _) = aggregator_render(&[]);
    same_objects(&added, &aggregator_manifests(), "deploy/k8s/aggregator");
    // Off unless asked for.
    let defaults = values_of(&Path::new(CHART).join("values.yaml"));
    assert_eq!(defaults["aggregator"]["enabled"], false);
}

/// The aggregator's default config is config/aggregator.toml, byte for byte (the one
/// deploy/k8s/aggregator carries), and the agent takes it: a forward listener, no file globs.
#[test]
fn the_aggregators_configmap_holds_config_aggregator_toml() {
    let file = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aggregator.toml"));
    let values = values_of(&Path::new(CHART).join("values.yaml"));
    assert_eq!(
        values["aggregator"]["config"],
        file.as_str(),
        "values.yaml's aggregator.config"
    );
    let (added, _) = aggregator_render(&[]);
    let carried = config_in(object(&added, "ConfigMap", "logferry-aggregator"));
    assert_eq!(carried, file);
    let cfg = Config::from_toml(carried, |_| None).unwrap_or_else(|p| panic!("{p:#?}\n{carried}"));
    assert!(!cfg.input.forward.is_empty(), "no [[input.forward]]");
    assert!(cfg.input.include.is_empty(), "{:?}", cfg.input.include);
}

/// Replicas, storage, resources, the Service, a config of one's own and the image reach the
/// aggregator's objects (ci/aggregator-values.yaml), and its ports follow its config: the
/// forward port its first listener's, the metrics port its [api] listen's.
#[test]
fn the_aggregators_values_reach_its_objects() {
    let file = ci("aggregator-values.yaml");
    let values = values_of(&file);
    let wanted = &values["aggregator"];
    let (added, _) = aggregator_render(&[file.as_path()]);
    let config = wanted["config"].as_str().expect("aggregator.config");
    let cfg = Config::from_toml(config, |_| None).unwrap_or_else(|p| panic!("{p:#?}\n{config}"));
    assert_eq!(config_in(the_only(&added, "ConfigMap")), config);
    let set = the_only(&added, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], wanted["replicas"]);
    let claim = &set["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(
        claim["resources"]["requests"]["storage"],
        wanted["storage"]["size"]
    );
    assert_eq!(
        claim["storageClassName"],
        wanted["storage"]["storageClassName"]
    );
    let container = &pod_spec(set)["containers"][0];
    assert_eq!(container["resources"], wanted["resources"]);
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
            .clone()
    };
    assert_eq!(port("forward"), cfg.input.forward[0].listen.port());
    assert_eq!(port("metrics"), cfg.api.listen.port());
    let service = the_only(&added, "Service");
    assert_eq!(service["spec"]["type"], wanted["service"]["type"]);
    let service_port = |name: &str| {
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no Service port {name}"))
            .clone()
    };
    assert_eq!(service_port("forward")["port"], wanted["service"]["port"]);
    assert_eq!(service_port("forward")["targetPort"], "forward");
    assert_eq!(service_port("metrics")["port"], cfg.api.listen.port());
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/port"],
        cfg.api.listen.port().to_string()
    );
    // Each of these moved from its default, so each assertion above saw a value follow.
    let defaults = values_of(&Path::new(CHART).join("values.yaml"))["aggregator"].clone();
    for key in ["replicas", "storage", "resources", "service", "config"] {
        assert_ne!(defaults[key], wanted[key], "{key}");
    }
    let default_cfg = Config::from_toml(defaults["config"].as_str().expect("a config"), |_| None)
        .expect("the default aggregator config");
    assert_ne!(
        default_cfg.input.forward[0].listen.port(),
        cfg.input.forward[0].listen.port()
    );
    assert_ne!(default_cfg.api.listen.port(), cfg.api.listen.port());
    // Without a class, the claim asks for the cluster's default one (an empty string would
    // ask for none).
    let (added, _) = aggregator_render(&[]);
    let claim = &the_only(&added, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"];
    assert!(claim.get("storageClassName").is_none(), "{claim}");
}

/// The agents' config is the platform's, byte for byte the ConfigMap in deploy/k8s/logferry.yaml
/// (not config/logferry.toml: that is the reference of every key at its default, listening on
/// 127.0.0.1, where no probe reaches it), and the agent accepts it.
#[test]
fn the_configmap_holds_the_platforms_config_byte_for_byte() {
    let chart = documents(&render(&[]));
    let manifest = manifests();
    let platform = config_in(object(&manifest, "ConfigMap", "logferry"));
    let ours = config_in(object(&chart, "ConfigMap", "logferry"));
    assert_eq!(ours, platform);
    assert_eq!(
        config_in(object(&chart, "ConfigMap", "logferry-setup")),
        platform
    );
    let values = values_of(&Path::new(CHART).join("values.yaml"));
    assert_eq!(values["config"], platform, "values.yaml's config");
    let cfg = Config::from_toml(ours, |_| None).unwrap_or_else(|p| panic!("{p:#?}\n{ours}"));
    assert!(cfg.api.listen.ip().is_unspecified(), "{}", cfg.api.listen);
    let agents = the_only(&chart, "DaemonSet");
    assert_eq!(
        pod_spec(agents)["containers"][0]["ports"][0]["containerPort"],
        cfg.api.listen.port()
    );
}

/// A config of one's own (ci/config-values.yaml) is what the agents and the setup Job read, and
/// the ports follow its [api] listen.
#[test]
fn a_config_of_ones_own_reaches_the_agents_the_setup_job_and_the_ports() {
    let file = ci("config-values.yaml");
    let wanted = values_of(&file)["config"]
        .as_str()
        .expect("config in config-values.yaml")
        .to_owned();
    let cfg = Config::from_toml(&wanted, |_| None).unwrap_or_else(|p| panic!("{p:#?}\n{wanted}"));
    let port = cfg.api.listen.port();
    assert_ne!(
        port, 2020,
        "the override must move the port to show that it follows"
    );
    let docs = documents(&render(&[file.as_path()]));
    assert_eq!(config_in(object(&docs, "ConfigMap", "logferry")), wanted);
    assert_eq!(
        config_in(object(&docs, "ConfigMap", "logferry-setup")),
        wanted
    );
    let container = &pod_spec(the_only(&docs, "DaemonSet"))["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], port);
    assert_eq!(container["ports"][0]["name"], "http-metrics");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"], "http-metrics",
            "{probe}"
        );
    }
    let service = the_only(&docs, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], port);
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/port"],
        port.to_string()
    );
}

/// What would crash-loop on every node, or scrape every series twice, or be ignored without a
/// word, is refused when the chart is rendered, with a message that says what to change.
#[test]
fn values_the_agents_cannot_run_with_are_refused_at_render() {
    let reference = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/logferry.toml"));
    let minimal = |api: &str| format!("data_dir = \"/var/lib/logferry\"\n{api}");
    let forward = "[[input.forward]]\nlisten = \"0.0.0.0:24224\"\n".to_owned();
    let aggregator = |input: &str| format!("{input}[api]\nlisten = \"0.0.0.0:2020\"\n");
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "the reference config as it is (listens on 127.0.0.1)",
            serde_json::json!({ "config": reference }),
            Some("not reachable from outside the pod"),
        ),
        (
            "no [api]: the agent's default, loopback",
            serde_json::json!({ "config": minimal("") }),
            Some("not reachable from outside the pod"),
        ),
        (
            "IPv6 loopback",
            serde_json::json!({ "config": minimal("[api]\nlisten = \"[::1]:2020\"\n") }),
            Some("not reachable from outside the pod"),
        ),
        (
            "localhost",
            serde_json::json!({ "config": minimal("[api]\nlisten = \"localhost:2020\"\n") }),
            Some("not reachable from outside the pod"),
        ),
        (
            "not TOML",
            serde_json::json!({ "config": "data_dir = \n[api\n" }),
            Some("config is not valid TOML"),
        ),
        (
            "data_dir off the node's volume",
            serde_json::json!({ "config": "data_dir = \"/data\"\n[api]\nlisten = \"0.0.0.0:2020\"\n" }),
            Some("is not under /var/lib/logferry"),
        ),
        (
            "both monitors",
            serde_json::json!({ "podMonitor": { "enabled": true }, "serviceMonitor": { "enabled": true } }),
            Some("enable one"),
        ),
        (
            "a misspelled value",
            serde_json::json!({ "prometheusRule": { "enable": false } }),
            Some("additional properties 'enable' not allowed"),
        ),
        (
            "no Secret named",
            serde_json::json!({ "existingSecret": "" }),
            Some("existingSecret"),
        ),
        (
            "an aggregator without a forward listener",
            serde_json::json!({ "aggregator": { "enabled": true, "config": aggregator("[input]\ninclude = []\n") } }),
            Some("no [[input.forward]] listener"),
        ),
        (
            "an aggregator following files",
            serde_json::json!({ "aggregator": { "enabled": true, "config": aggregator(&format!("[input]\ninclude = [\"/var/log/*.log\"]\n{forward}")) } }),
            Some("an aggregator mounts no node's logs"),
        ),
        (
            "an aggregator with the default include",
            serde_json::json!({ "aggregator": { "enabled": true, "config": aggregator(&forward) } }),
            Some("set include = []"),
        ),
        (
            "an aggregator listening for forwarders on loopback",
            serde_json::json!({ "aggregator": { "enabled": true, "config": aggregator("[input]\ninclude = []\n[[input.forward]]\nlisten = \"127.0.0.1:24224\"\n") } }),
            Some("[[input.forward]] listen = \"127.0.0.1:24224\" is not reachable"),
        ),
        (
            "an aggregator's API on loopback",
            serde_json::json!({ "aggregator": { "enabled": true, "config": format!("[input]\ninclude = []\n{forward}") } }),
            Some("aggregator.config: [api] listen = \"127.0.0.1:2020\" is not reachable"),
        ),
        (
            "an aggregator's data_dir off its volume",
            serde_json::json!({ "aggregator": { "enabled": true, "config": format!("data_dir = \"/data\"\n[input]\ninclude = []\n{forward}[api]\nlisten = \"0.0.0.0:2020\"\n") } }),
            Some("the replica's volume"),
        ),
        (
            "a misspelled aggregator value",
            serde_json::json!({ "aggregator": { "enabled": true, "replica": 3 } }),
            Some("additional properties 'replica' not allowed"),
        ),
        // The checks refuse only what they mean to.
        (
            "every IPv4 address",
            serde_json::json!({ "config": minimal("[api]\nlisten = \"0.0.0.0:2020\"\n") }),
            None,
        ),
        (
            "every IPv6 address",
            serde_json::json!({ "config": minimal("[api]\nlisten = \"[::]:2020\"\n") }),
            None,
        ),
        (
            "an aggregator listening on every IPv6 address",
            serde_json::json!({ "aggregator": { "enabled": true, "config": aggregator("[input]\ninclude = []\n[[input.forward]]\nlisten = \"[::]:24224\"\n") } }),
            None,
        ),
        (
            "an aggregator's broken config, while it is off",
            serde_json::json!({ "aggregator": { "enabled": false, "config": "[input\n" } }),
            None,
        ),
        (
            "a data_dir below the node's volume",
            serde_json::json!({ "config": "data_dir = \"/var/lib/logferry/node\"\n[api]\nlisten = \"0.0.0.0:2020\"\n" }),
            None,
        ),
    ];
    let dir = tempfile::tempdir().expect("a temp dir");
    for (i, (what, values, refusal)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case-{i}.yaml"));
        // JSON is YAML.
        std::fs::write(&path, values.to_string()).expect("a values file");
        match (template(&[path.as_path()], &[]), refusal) {
            (Err(said), Some(why)) => assert!(said.contains(why), "{what}: {said}"),
            (Ok(_), Some(why)) => panic!("{what}: rendered, should be refused ({why})"),
            (Err(said), None) => panic!("{what}: refused: {said}"),
            (Ok(_), None) => {}
        }
    }
}

/// Scheduling, image and sizes from values reach the agents, and the image and pull secrets the
/// setup Job too (ci/scheduling-values.yaml).
#[test]
fn scheduling_image_and_resources_come_from_values() {
    let file = ci("scheduling-values.yaml");
    let values = values_of(&file);
    let docs = documents(&render(&[file.as_path()]));
    let agents = the_only(&docs, "DaemonSet");
    let pod = pod_spec(agents);
    let image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        values["image"]["tag"].as_str().unwrap()
    );
    assert_eq!(pod["containers"][0]["image"], image.as_str());
    assert_eq!(
        pod["containers"][0]["imagePullPolicy"],
        values["image"]["pullPolicy"]
    );
    assert_eq!(pod["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(pod["priorityClassName"], values["priorityClassName"]);
    assert_eq!(pod["tolerations"], values["tolerations"]);
    assert_eq!(pod["nodeSelector"], values["nodeSelector"]);
    assert_eq!(pod["affinity"], values["affinity"]);
    assert_eq!(pod["containers"][0]["resources"], values["resources"]);
    assert_eq!(
        agents["spec"]["template"]["metadata"]["annotations"],
        values["podAnnotations"]
    );
    assert_eq!(agents["spec"]["updateStrategy"], values["updateStrategy"]);
    let job = pod_spec(the_only(&docs, "Job"));
    assert_eq!(job["containers"][0]["image"], image.as_str());
    assert_eq!(job["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(
        job["containers"][0]["resources"],
        values["setup"]["resources"]
    );
    // The defaults differ from every one of these, so each assertion above saw a value move.
    let defaults = values_of(&Path::new(CHART).join("values.yaml"));
    for key in [
        "priorityClassName",
        "tolerations",
        "nodeSelector",
        "affinity",
        "resources",
        "image",
        "updateStrategy",
    ] {
        assert_ne!(defaults[key], values[key], "{key}");
    }
}

/// The Secrets named in values are the ones mounted, in the agents and in the setup Job, at the
/// paths the config names (ci/secrets-values.yaml); the chart creates none.
#[test]
fn existing_secrets_are_mounted_by_name() {
    let file = ci("secrets-values.yaml");
    let values = values_of(&file);
    let docs = documents(&render(&[file.as_path()]));
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "the chart never holds credentials"
    );
    let main = values["existingSecret"].as_str().expect("existingSecret");
    assert_ne!(main, "logferry-elasticsearch", "the file must rename it");
    let mut wanted: BTreeMap<String, String> =
        BTreeMap::from([(main.to_owned(), "/etc/logferry-secrets".to_owned())]);
    for extra in values["extraSecretMounts"].as_array().expect("extras") {
        wanted.insert(
            extra["secretName"].as_str().unwrap().to_owned(),
            extra["mountPath"].as_str().unwrap().to_owned(),
        );
    }
    // 0400 for the agents (root), 0440 for the setup Job (its group reads them).
    for (kind, mode) in [("DaemonSet", 0o400), ("Job", 0o440)] {
        let pod = pod_spec(the_only(&docs, kind));
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        let mut found = BTreeMap::new();
        for volume in pod["volumes"].as_array().unwrap() {
            let Some(secret) = volume["secret"].as_object() else {
                continue;
            };
            assert_eq!(secret["defaultMode"], mode, "{kind}: {volume}");
            let mount = mounts
                .iter()
                .find(|m| m["name"] == volume["name"])
                .unwrap_or_else(|| panic!("{kind}: {volume} not mounted"));
            assert_eq!(mount["readOnly"], true, "{kind}: {mount}");
            found.insert(
                secret["secretName"].as_str().unwrap().to_owned(),
                mount["mountPath"].as_str().unwrap().to_owned(),
            );
        }
        assert_eq!(found, wanted, "{kind}");
    }
}

/// The monitors find the agents: a PodMonitor's selector matches the pods and names their port,
/// a ServiceMonitor's matches the metrics Service and names its port, and the Service selects
/// the pods. A selector that matches nothing would fail without a sound.
#[test]
fn the_monitors_find_the_agents_and_their_port() {
    let subset = |selector: &Value, labels: &Value| -> bool {
        let selector = selector.as_object().expect("matchLabels");
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let names = |ports: &Value| -> Vec<Value> {
        ports
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["name"].clone())
            .collect()
    };

    let file = ci("podmonitor-values.yaml");
    let values = values_of(&file);
    let docs = documents(&render(&[file.as_path()]));
    assert!(docs.iter().all(|d| d["kind"] != "ServiceMonitor"));
    let agents = the_only(&docs, "DaemonSet");
    let monitor = the_only(&docs, "PodMonitor");
    assert_eq!(
        monitor["metadata"]["namespace"],
        agents["metadata"]["namespace"]
    );
    assert!(subset(
        &monitor["spec"]["selector"]["matchLabels"],
        &agents["spec"]["template"]["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert!(names(&pod_spec(agents)["containers"][0]["ports"]).contains(&endpoint["port"]));
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], values["podMonitor"]["interval"]);
    assert!(subset(
        &values["podMonitor"]["labels"],
        &monitor["metadata"]["labels"]
    ));
    // Scraped by the monitor, the Service no longer invites annotation-based scraping.
    let service = the_only(&docs, "Service");
    assert!(
        service["metadata"].get("annotations").is_none(),
        "{service}"
    );

    let file = ci("servicemonitor-values.yaml");
    let values = values_of(&file);
    let docs = documents(&render(&[file.as_path()]));
    assert!(docs.iter().all(|d| d["kind"] != "PodMonitor"));
    let agents = the_only(&docs, "DaemonSet");
    let service = the_only(&docs, "Service");
    let monitor = the_only(&docs, "ServiceMonitor");
    assert!(subset(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert!(subset(
        &service["spec"]["selector"],
        &agents["spec"]["template"]["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert!(names(&service["spec"]["ports"]).contains(&endpoint["port"]));
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], values["serviceMonitor"]["interval"]);
    assert!(subset(
        &values["serviceMonitor"]["labels"],
        &monitor["metadata"]["labels"]
    ));
    let annotations = &service["metadata"]["annotations"];
    assert!(subset(
        &values["metricsService"]["annotations"],
        annotations
    ));
    assert_eq!(annotations["prometheus.io/scrape"], "true");
}

/// The alerts and the dashboard are the repository's: files/prometheus-rules.yaml is
/// deploy/k8s/prometheus-rule.yaml's spec (checked with promtool in tests/monitoring.rs),
/// files/logferry-dashboard.json is deploy/grafana/logferry-dashboard.json byte for byte, and
/// each reaches its object as it is. prometheusRule.enabled and grafanaDashboard.enabled switch
/// them.
#[test]
fn the_alerts_and_the_dashboard_are_the_repositorys() {
    let rules = documents(&read(&Path::new(CHART).join("files/prometheus-rules.yaml"))).remove(0);
    let manifest_rule = manifests()
        .into_iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("deploy/k8s/prometheus-rule.yaml");
    assert_eq!(rules, manifest_rule["spec"]);
    let dashboard = read(Path::new(DASHBOARD));
    assert_eq!(
        read(&Path::new(CHART).join("files/logferry-dashboard.json")),
        dashboard
    );

    let defaults = documents(&render(&[]));
    assert_eq!(the_only(&defaults, "PrometheusRule")["spec"], rules);
    assert!(
        defaults
            .iter()
            .all(|d| !kind_name(d).ends_with("-dashboard")),
        "the dashboard is off by default"
    );

    let file = ci("podmonitor-values.yaml");
    let values = values_of(&file);
    let docs = documents(&render(&[file.as_path()]));
    let rule = the_only(&docs, "PrometheusRule");
    assert_eq!(rule["spec"], rules);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        values["prometheusRule"]["labels"]["release"]
    );
    let board = object(&docs, "ConfigMap", "logferry-dashboard");
    assert_eq!(board["data"]["logferry-dashboard.json"], dashboard.as_str());
    let wanted = &values["grafanaDashboard"];
    assert_eq!(board["metadata"]["namespace"], wanted["namespace"]);
    assert_eq!(board["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(board["metadata"]["annotations"], wanted["annotations"]);

    let off = documents(&render(&[ci("servicemonitor-values.yaml").as_path()]));
    assert!(off.iter().all(|d| d["kind"] != "PrometheusRule"));
    assert!(
        off.iter().all(|d| d["kind"] != "Job"),
        "setup.enabled false"
    );
}

/// Every object says which release it belongs to, so `kubectl get -l
/// app.kubernetes.io/instance=<release>` finds them all, and what app it is part of.
#[test]
fn every_chart_object_carries_helms_labels() {
    let (_, with_aggregator) = aggregator_render(&[]);
    for doc in documents(&render(&[])).into_iter().chain(with_aggregator) {
        let labels: &Map<String, Value> = doc["metadata"]["labels"]
            .as_object()
            .unwrap_or_else(|| panic!("{} has no labels", kind_name(&doc)));
        for key in HELM_LABELS.iter().chain([&NAME_LABEL]) {
            assert!(labels.contains_key(*key), "{}: {key}", kind_name(&doc));
        }
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
    }
}
