//! The `production` scenario: the node as the platform runs it. 100 pods' files (half CRI, half
//! docker), their metadata — labels, namespace labels, owner, images — from the fake Kubernetes
//! API server the tests use (real list and watch wire format), multiline `auto`, the default
//! redaction rules, and throttling on with limits that are not reached. Held to docs/speed.md's
//! production targets beside the plain one-file figures.

use crate::backlog::files_at_start;
use crate::logs::Files;
use crate::peer::{Setup, Shipper};
use crate::row::Row;
use crate::sink::Sink;
use logferry_harness::kubeapi::{FakeApi, pod};
use serde_json::json;
use std::path::Path;

/// Pods on the node: one file each.
pub const PODS: usize = 100;

/// The stages on, as the platform's DaemonSet has them (plus redaction and throttling).
fn config(api: &str) -> String {
    format!(
        "\n[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {api:?}\n\
         \n[multiline]\nrules = [\"auto\"]\n\
         \n[redact]\nrules = [\"email\", \"card\", \"us_ssn\", \"phone\", \"jwt\", \"bearer\", \"aws_key\", \"ipv4\"]\n\
         \n[throttle]\nlines_per_second = 1000000\nburst = 4000000\n"
    )
}

/// `per_pod` lines for each of [`PODS`] pods, shipped with everything on.
pub fn run(bin: &Path, sink: &Sink, work: &Path, per_pod: u64) -> anyhow::Result<Row> {
    let api = FakeApi::start();
    api.put_namespace(
        "shop",
        json!({"team": "payments", "kubernetes.io/metadata.name": "shop"}),
    );
    for i in 0..PODS {
        let mut p = pod("shop", &crate::logs::pod_name(i), "node-a", json!({}));
        // The generated files are the `server` container's.
        p["spec"]["containers"][0]["name"] = "server".into();
        p["status"]["containerStatuses"][0]["name"] = "server".into();
        api.put_pod(p);
    }
    let config = config(&api.url);
    files_at_start(
        &Shipper::Logferry(bin),
        sink,
        work,
        "production",
        Files::mixed(PODS, per_pod),
        Setup {
            logferry: &config,
            ..Setup::default()
        },
        "; kubernetes metadata for 100 pods, multiline auto, default redaction, throttling",
    )
}
