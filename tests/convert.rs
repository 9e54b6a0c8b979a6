//! `logferry convert` as a Fluentd user meets it: the platform's own fluent.conf, the shape of
//! fluent/fluentd-kubernetes-daemonset's elasticsearch image, and malformed files.

use logferry::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fluentd")
        .join(rel)
}

fn convert(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .arg("convert")
        .args(args)
        .output()
        .expect("run logferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The sections of two configs, compared field by field through their Debug form (secrets
/// print redacted either way).
fn assert_same(got: &Config, want: &Config) {
    assert_eq!(got.data_dir, want.data_dir);
    assert_eq!(got.log_level, want.log_level);
    assert_eq!(format!("{:#?}", got.input), format!("{:#?}", want.input));
    assert_eq!(format!("{:#?}", got.parse), format!("{:#?}", want.parse));
    assert_eq!(
        format!("{:#?}", got.elasticsearch),
        format!("{:#?}", want.elasticsearch)
    );
    assert_eq!(format!("{:#?}", got.buffer), format!("{:#?}", want.buffer));
    assert_eq!(
        format!("{:#?}", got.kubernetes),
        format!("{:#?}", want.kubernetes)
    );
    assert_eq!(
        format!("{:#?}", got.multiline),
        format!("{:#?}", want.multiline)
    );
    assert_eq!(got.api.listen, want.api.listen);
}

#[test]
fn the_platforms_fluent_conf_converts_to_its_documented_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logferry.toml");
    let input = fixture("platform/fluent.conf");
    let (code, stdout, stderr) = convert(&[input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(
        stdout.is_empty(),
        "with -o nothing goes to stdout: {stdout}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let got = Config::from_toml(&text, |_| None).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
    let equivalent = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fluentd-equivalent.toml"),
    )
    .unwrap();
    let mut want = Config::from_toml(&equivalent, |_| None).unwrap();
    // The equivalent also carries the retention policy Fluentd never had (daily indices kept
    // 90 days, audit routes kept 7 years): the rest is what Fluentd did.
    assert_eq!(want.elasticsearch.retention.map(|r| r.days), Some(90));
    assert!(!want.routes.is_empty());
    want.elasticsearch.index = "klear-karma-logs".into();
    want.elasticsearch.retention = None;
    // And where Fluentd stopped, which the equivalent (a steady-state config) does not name.
    let mut got = got;
    assert_eq!(
        got.input.fluentd_pos_file.as_deref(),
        Some(Path::new("/var/log/fluentd-containers.log.pos"))
    );
    got.input.fluentd_pos_file = None;
    assert_same(&got, &want);
    // What is not carried over is said: Fluentd's buffered chunks. Its positions are.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("fluent.conf:40: <buffer> @type file:"),
        "{stderr}"
    );
    assert_eq!(code, 2);
    // Each key says where it came from.
    assert!(
        text.contains("fluent.conf:38\nindex = \"klear-karma-logs\""),
        "{text}"
    );
}

#[test]
fn the_daemonset_images_elasticsearch_config_converts_and_validates() {
    let input = fixture("daemonset/fluent.conf");
    let (code, toml, stderr) = convert(&[input.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    let env = |name: &str| match name {
        "FLUENT_ELASTICSEARCH_HOST" => Some("elasticsearch.logging".to_owned()),
        "FLUENT_ELASTICSEARCH_PORT" => Some("9200".to_owned()),
        "FLUENT_ELASTICSEARCH_PATH" => Some(String::new()),
        _ => None,
    };
    let cfg = Config::from_toml(&toml, env).unwrap_or_else(|p| panic!("{p:?}\n{toml}"));
    assert_eq!(
        cfg.elasticsearch.hosts,
        ["http://elasticsearch.logging:9200"]
    );
    assert_eq!(cfg.elasticsearch.index, "logstash-%Y.%m.%d");
    assert_eq!(cfg.input.include, ["/var/log/containers/*.log"]);
    assert_eq!(cfg.buffer.flush_thread_count, 8);
    assert_eq!(
        cfg.buffer.max_size.0,
        64 << 20,
        "2M × queue_limit_length 32"
    );
    assert!(cfg.kubernetes.enabled);
    assert!(!cfg.parse.json, "the image ships the message as a string");
    assert_eq!(cfg.api.listen.to_string(), "0.0.0.0:24231");
    for expected in [
        "fluent.conf:12: include_tag_key: logferry has no Fluentd tags",
        "fluent.conf:20: password: set only when FLUENT_ELASTICSEARCH_PASSWORD is set",
        "fluent.conf:18: ssl_version: logferry speaks TLS 1.2 and 1.3 only",
        "kubernetes/kubelet.conf:1: <source> @type tail: logferry reads container log files",
        "systemd.conf:2: <source> @type systemd: logferry reads container log files only",
        "fluent.conf:16: scheme: ENV['FLUENT_ELASTICSEARCH_SCHEME'] with the fallback \"http\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert!(!stderr.contains("not known to the converter"), "{stderr}");
    // Its pos_file is Ruby (`File.join` of a literal, `ENV.fetch` with a fallback, a literal):
    // evaluated, or the cut-over with `read_from_head true` would ship every file again.
    assert_eq!(
        cfg.input.fluentd_pos_file.as_deref(),
        Some(Path::new("/var/log/fluentd-containers.log.pos")),
        "{toml}"
    );
    assert!(!stderr.contains("not evaluated"), "{stderr}");
    assert!(!stderr.contains("issue "), "{stderr}");
}

#[test]
fn malformed_fluentd_files_are_errors_with_their_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (file, message) in [
        (
            "malformed/unclosed.conf",
            "unclosed.conf:4: <parse> is never closed",
        ),
        (
            "malformed/stray.conf",
            "stray.conf:4: </source> closes no open section",
        ),
        (
            "malformed/unterminated.conf",
            "unterminated.conf:3: a double-quoted string is never closed",
        ),
    ] {
        let out = dir.path().join("out.toml");
        let (code, stdout, stderr) =
            convert(&[fixture(file).to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(code, 1, "{file}: {stderr}");
        assert!(stderr.contains(message), "{file}: {stderr}");
        assert!(
            stdout.is_empty() && !out.exists(),
            "{file}: nothing is written"
        );
    }
}

#[test]
fn an_unknown_plugin_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fluent.conf");
    std::fs::write(&conf, "<source>\n  @type tail\n  path /var/log/containers/*.log\n  tag kubernetes.*\n  read_from_head true\n</source>\n<filter kubernetes.**>\n  @type geoip\n</filter>\n<match **>\n  @type elasticsearch\n  host es\n  password hunter2\n  user elastic\n</match>\n").unwrap();
    let (code, toml, stderr) = convert(&[conf.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("fluent.conf:7: <filter> @type geoip: unknown plugin geoip"),
        "{stderr}"
    );
    // The inline password never reaches the output.
    assert!(!toml.contains("hunter2"), "{toml}");
    assert!(stderr.contains("fluent.conf:13: password: a secret written in the config is not copied; it is read from the environment variable ELASTICSEARCH_PASSWORD"), "{stderr}");
    let cfg = Config::from_toml(&toml, |n| {
        (n == "ELASTICSEARCH_PASSWORD").then(|| "s3cret".to_owned())
    })
    .unwrap_or_else(|p| panic!("{p:?}\n{toml}"));
    assert_eq!(
        cfg.elasticsearch
            .auth
            .password
            .map(|s| s.expose().to_owned())
            .as_deref(),
        Some("s3cret")
    );
}

/// A Fluentd setup with a namespace's own index, a dropped namespace, and a grep exclude.
const ROUTED: &str = "<source>\n  @type tail\n  path /var/log/containers/*.log\n  tag kubernetes.*\n  read_from_head true\n</source>\n<filter kubernetes.**>\n  @type grep\n  <exclude>\n    key $.kubernetes.namespace_name\n    pattern /^(kube-system|monitoring)$/\n  </exclude>\n  <exclude>\n    key $.level\n    pattern /^debug$/\n  </exclude>\n</filter>\n<match kubernetes.var.log.containers.**_payments_**>\n  @type elasticsearch\n  host es\n  logstash_format true\n  logstash_prefix Payments\n</match>\n<match **_scratch_**>\n  @type null\n</match>\n<match **>\n  @type elasticsearch\n  host es\n  index_name logs-%Y.%m.%d\n</match>\n<match kubernetes.**>\n  @type elasticsearch\n</match>\n";

fn routed() -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fluent.conf");
    std::fs::write(&conf, ROUTED).unwrap();
    convert(&[conf.to_str().unwrap()])
}

#[test]
fn namespace_matches_become_routes_in_issue_15s_shape() {
    let (code, toml, stderr) = routed();
    assert_eq!(code, 2, "{stderr}");
    // The routes are written last, each after a comment naming its line.
    let first = toml.find("[[route]]").expect("routes are written");
    let first = toml[..first].rfind("\n# ").expect("a route's comment");
    let (rest, routes) = toml.split_at(first);
    // Everything but the routes validates today.
    let cfg = Config::from_toml(rest, |_| None).unwrap_or_else(|p| panic!("{p:?}\n{rest}"));
    assert_eq!(cfg.elasticsearch.index, "logs-%Y.%m.%d");
    for expected in [
        // grep excludes come first: Fluentd's filters run before its matches.
        "[[route]]\nname = \"drop-1\"\ndrop = true\n[route.when]\nnamespaces = [\"kube-system\", \"monitoring\"]\n",
        "[[route]]\nname = \"drop-2\"\ndrop = true\n[route.when]\nfield = { path = \"level\", matches = \"^debug$\" }\n",
        "[[route]]\nname = \"payments\"\nindex = \"payments-%Y.%m.%d\"\n[route.when]\nnamespaces = [\"payments\"]\n",
        "[[route]]\nname = \"drop-scratch\"\ndrop = true\n[route.when]\nnamespaces = [\"scratch\"]\n",
    ] {
        assert!(
            routes.contains(expected),
            "missing {expected:?} in\n{routes}"
        );
    }
    assert!(stderr.contains("fluent.conf:18: <match kubernetes.var.log.containers.**_payments_**> @type elasticsearch: a route picks only the index"), "{stderr}");
    assert!(
        stderr.contains(
            "fluent.conf:32: <match kubernetes.**> @type elasticsearch: never reached in Fluentd"
        ),
        "{stderr}"
    );
}

#[test]
fn a_converted_config_with_routes_validates() {
    let (_, toml, _) = routed();
    let cfg = Config::from_toml(&toml, |_| None).unwrap_or_else(|p| panic!("{p:?}\n{toml}"));
    let names: Vec<&str> = cfg.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["drop-1", "drop-2", "payments", "drop-scratch"]);
}
