//! TLS and authentication against osmem-server behind a TLS-terminating proxy, with
//! certificates made in the test; and secrets that must never be shown.

mod support;

use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::tls::{Ca, TlsProxy};
use support::*;

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn es_detail(agent: &Agent) -> String {
    agent.get("/health")["checks"]["elasticsearch"]["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_trusted_ca_works_an_untrusted_one_fails_clearly_and_nothing_is_lost_meanwhile() {
    let es = osmem();
    let (ca, other) = (Ca::new("cluster CA"), Ca::new("some other CA"));
    let proxy = TlsProxy::start(&es.url, "localhost", &ca.leaf(&["localhost"]), None);
    let node = Node::new();
    let ca_file = write(node.dir.path(), "ca.pem", &other.pem());
    let config = node.config_with(
        &proxy.url,
        &format!("[elasticsearch.tls]\nca_file = {ca_file:?}\n"),
    );
    let expected = node.json_lines("tls", 50);
    let agent = Agent::start(&config);
    wait_until(20, "the untrusted certificate to be reported", || {
        es_detail(&agent).contains("UnknownIssuer")
    });
    assert!(proxy.handshake_failures() > 0);
    assert_eq!(agent.get("/health")["status"], "degraded");
    assert_eq!(es.count("logs-*").unwrap(), 0);
    // The right CA, as a rotated Secret would bring it: picked up without a restart.
    write(node.dir.path(), "ca.pem", &ca.pem());
    assert_exactly_once(&es, &expected);
    assert!(agent.logs().contains("reloaded"), "{}", agent.logs());
    wait_until(10, "health to recover", || {
        agent.get("/health")["status"] == "healthy"
    });
    assert!(agent.stop().success());
}

#[test]
fn the_hostname_is_checked_and_server_name_names_the_expected_one() {
    let es = osmem();
    let ca = Ca::new("cluster CA");
    let proxy = TlsProxy::start(&es.url, "127.0.0.1", &ca.leaf(&["es.internal"]), None);
    let node = Node::new();
    let ca_file = write(node.dir.path(), "ca.pem", &ca.pem());
    let expected = node.json_lines("named", 20);
    let tls = format!("[elasticsearch.tls]\nca_file = {ca_file:?}\n");
    let agent = Agent::start(&node.config_with(&proxy.url, &tls));
    wait_until(20, "the wrong name to be reported", || {
        es_detail(&agent).contains("certificate not valid for name")
    });
    assert_eq!(es.count("logs-*").unwrap(), 0);
    assert!(agent.stop().success());
    let tls = format!("{tls}server_name = \"es.internal\"\n");
    let agent = Agent::start(&node.config_with(&proxy.url, &tls));
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

#[test]
fn a_required_client_certificate_is_presented() {
    let es = osmem();
    let ca = Ca::new("cluster CA");
    let proxy = TlsProxy::start(&es.url, "localhost", &ca.leaf(&["localhost"]), Some(&ca));
    let node = Node::new();
    let dir = node.dir.path();
    let ca_file = write(dir, "ca.pem", &ca.pem());
    let expected = node.json_lines("mtls", 20);
    let tls = format!("[elasticsearch.tls]\nca_file = {ca_file:?}\n");
    let agent = Agent::start(&node.config_with(&proxy.url, &tls));
    wait_until(20, "the refused handshake", || {
        proxy.handshake_failures() > 0 && agent.get("/health")["status"] == "degraded"
    });
    assert_eq!(es.count("logs-*").unwrap(), 0);
    assert!(agent.stop().success());
    let client = ca.leaf(&["logferry"]);
    let cert = write(dir, "client.pem", &client.cert);
    let key = write(dir, "client.key", &client.key);
    let tls = format!("{tls}cert_file = {cert:?}\nkey_file = {key:?}\n");
    let agent = Agent::start(&node.config_with(&proxy.url, &tls));
    assert_exactly_once(&es, &expected);
    assert!(proxy.client_certificates() > 0);
    assert!(agent.stop().success());
}

#[test]
fn basic_api_key_and_bearer_are_accepted_and_a_wrong_secret_waits_for_the_right_one() {
    let es = osmem();
    let ca = Ca::new("cluster CA");
    let proxy = TlsProxy::start(&es.url, "localhost", &ca.leaf(&["localhost"]), None);
    let node = Node::new();
    let dir = node.dir.path();
    let ca_file = write(dir, "ca.pem", &ca.pem());
    let tls = format!("[elasticsearch.tls]\nca_file = {ca_file:?}\n");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // Basic, with a wrong password first: 401, paused, then resumed by the file changing.
    proxy.require_auth(&format!("Basic {}", b64("elastic:right-password")));
    let password = write(dir, "password", "wrong-password\n");
    let auth = format!("[elasticsearch.auth]\nuser = \"elastic\"\npassword_file = {password:?}\n");
    let mut expected = node.json_lines("basic", 30);
    let agent = Agent::start(&node.config_with(&proxy.url, &format!("{tls}{auth}")));
    wait_until(20, "the 401 to be reported", || {
        es_detail(&agent).contains("401")
    });
    assert_eq!(agent.get("/health")["status"], "degraded");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        es.count("logs-*").unwrap(),
        0,
        "nothing gets in, nothing is dropped"
    );
    write(dir, "password", "right-password\n");
    assert_exactly_once(&es, &expected);
    assert!(proxy.unauthorized() > 0);
    assert!(agent.stop().success());

    // An API key from a file.
    proxy.require_auth("ApiKey a2V5LWlkOmtleS1zZWNyZXQ=");
    let key = write(dir, "api-key", "a2V5LWlkOmtleS1zZWNyZXQ=\n");
    let auth = format!("[elasticsearch.auth]\napi_key_file = {key:?}\n");
    expected.extend(node.json_lines("apikey", 10));
    let agent = Agent::start(&node.config_with(&proxy.url, &format!("{tls}{auth}")));
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());

    // A bearer token from the environment.
    proxy.require_auth("Bearer token-from-env");
    let auth = "[elasticsearch.auth]\ntoken = \"${LOGFERRY_TEST_TOKEN}\"\n";
    expected.extend(node.json_lines("bearer", 10));
    let config = node.config_with(&proxy.url, &format!("{tls}{auth}"));
    let agent = Agent::start_env(&config, &[("LOGFERRY_TEST_TOKEN", "token-from-env")]);
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

#[test]
fn secrets_never_appear_in_logs_metrics_health_or_validate() {
    let es = osmem();
    let ca = Ca::new("cluster CA");
    let proxy = TlsProxy::start(&es.url, "localhost", &ca.leaf(&["localhost"]), None);
    proxy.require_auth("Basic bm90LXRoaXMtb25l");
    let node = Node::new();
    let dir = node.dir.path();
    let ca_file = write(dir, "ca.pem", &ca.pem());
    let secret = format!("hunter2-{}", std::process::id());
    let password = write(dir, "password", &format!("{secret}\n"));
    let extra = format!(
        "[elasticsearch.tls]\nca_file = {ca_file:?}\n[elasticsearch.auth]\nuser = \"elastic\"\npassword_file = {password:?}\n"
    );
    let config = node.config_with(&proxy.url, &extra);
    node.json_lines("secretive", 20);
    let agent = Agent::start_env(&config, &[("LOGFERRY_LOG", "debug")]);
    wait_until(20, "the 401", || proxy.unauthorized() >= 2);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("elastic:{secret}"));
    let shown = [
        agent.logs(),
        agent.metrics(),
        agent.get("/health").to_string(),
        agent.get("/ready").to_string(),
    ];
    let stderr = agent.stderr.clone();
    assert!(agent.stop().success());
    // Including what was said while shutting down.
    let logs = std::fs::read_to_string(&stderr).unwrap_or_default();
    for text in shown.iter().chain([&logs]) {
        assert!(!text.contains(&secret), "the secret leaked:\n{text}");
        assert!(
            !text.contains(&encoded),
            "the encoded secret leaked:\n{text}"
        );
    }
    assert!(
        shown[0].contains("401"),
        "the logs do say what failed: {}",
        shown[0]
    );

    // validate, on a broken config holding the secret inline and in a host URL.
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        format!(
            "[elasticsearch]\nhosts = [\"https://elastic:{secret}@es:9200\", \"ftp://{secret}@x\"]\n[elasticsearch.auth]\nuser = \"elastic\"\npassword = \"{secret}\"\ntoken = \"{secret}\"\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config"])
        .arg(&broken)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("elasticsearch.hosts"), "{said}");
    assert!(said.contains("choose one of"), "{said}");
    assert!(
        !said.contains(&secret),
        "validate leaked the secret:\n{said}"
    );
}
