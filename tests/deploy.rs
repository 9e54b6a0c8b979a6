//! The Kubernetes manifests: valid for a current Kubernetes, and carrying a config the agent
//! accepts.

use logferry::config::Config;
use std::path::Path;
use std::process::Command;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/logferry.yaml");
const SETUP_JOB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/k8s/logferry-setup-job.yaml"
);

#[test]
fn manifests_validate_strictly_against_kubernetes_1_37() {
    let out = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "-k",
            "1.37.0",
            MANIFEST,
            SETUP_JOB,
        ])
        .output()
        .expect("python3");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate is not installed: run scripts/install-deps\n{text}"
    );
    assert!(out.status.success(), "{text}");
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
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{kind} not validated:\n{text}"
        );
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
