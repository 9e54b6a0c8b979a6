//! Unit tests of the converter: Fluentd's syntax rules, table-driven.

use super::syntax::{EnvUse, Value, parse_file};

fn parse(text: &str) -> super::syntax::Section {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.conf");
    std::fs::write(&path, text).unwrap();
    parse_file(&path, &mut Vec::new()).unwrap()
}

fn text(s: &str) -> Value {
    Value::Text {
        text: s.to_owned(),
        env: vec![],
    }
}

#[test]
fn values_are_read_with_fluentds_quoting_rules() {
    let cases: &[(&str, Value)] = &[
        ("k bare value  # a comment", text("bare value")),
        ("k a#b", text("a#b")),
        ("k \"tab\\there \\\"q\\\"\"", text("tab\there \"q\"")),
        ("k 'it\\'s #{ENV[\"X\"]}'", text("it's #{ENV[\"X\"]}")),
        ("k [\"a\",  # first\n  \"b\"]", text("[\"a\",\"b\"]")),
        ("k", text("")),
        (
            "k \"#{ENV['HOST']}:9200\"",
            Value::Text {
                text: "${HOST}:9200".into(),
                env: vec![EnvUse {
                    name: "HOST".into(),
                    fallback: None,
                }],
            },
        ),
        (
            "k \"#{ENV['P'] || '5s'}\"",
            Value::Text {
                text: "5s".into(),
                env: vec![EnvUse {
                    name: "P".into(),
                    fallback: Some("5s".into()),
                }],
            },
        ),
        (
            "k \"#{ENV['U'] || use_default}\"",
            Value::Unset {
                unless_env: Some("U".into()),
            },
        ),
        (
            "k \"#{Socket.gethostname}\"",
            Value::Ruby("Socket.gethostname".into()),
        ),
        ("k \"one \\\n  two\"", text("one   two")),
        ("k \"line\n  next\"", text("line\n  next")),
        // A literal ${ is doubled, as logferry's config spells it.
        ("k ${tag}", text("$${tag}")),
    ];
    for (line, want) in cases {
        let root = parse(&format!("<match **>\n{line}\n</match>\n"));
        assert_eq!(&root.children[0].params[0].value, want, "{line:?}");
    }
}

#[test]
fn every_parameter_keeps_its_file_and_line_across_includes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/b.conf"),
        "\n<filter x>\n  @type grep\n</filter>\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fluent.conf"),
        "# top\n@include conf.d/*.conf\n<match **>\n  @type null\n</match>\n",
    )
    .unwrap();
    let root = parse_file(&dir.path().join("fluent.conf"), &mut Vec::new()).unwrap();
    let filter = &root.children[0];
    assert!(filter.at.file.ends_with("conf.d/b.conf"));
    assert_eq!((filter.at.line, filter.params[0].at.line), (2, 3));
    assert_eq!(root.children[1].at.line, 3);
}

#[test]
fn an_unclosed_section_names_the_line_it_opened_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.conf");
    std::fs::write(&path, "<source>\n  @type tail\n  <parse>\n  </parse>\n").unwrap();
    let err = parse_file(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.ends_with("fluent.conf:1: <source> is never closed (expected </source> before the end of the file)"), "{err}");
}

const TAIL: &str = "<source>\n  @type tail\n  path /var/log/containers/*.log\n  tag kubernetes.*\n  read_from_head true\n</source>\n";
const SHIP: &str = "<match **>\n  @type elasticsearch\n  host es\n</match>\n";

/// Converts `conf` and validates the result for real; the warnings as `file:LINE: …` text.
fn run(conf: &str) -> (crate::config::Config, Vec<String>) {
    run_env(conf, &[])
}

/// [`run`] with these environment variables set.
fn run_env(conf: &str, vars: &[(&str, &str)]) -> (crate::config::Config, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.conf");
    std::fs::write(&path, conf).unwrap();
    let out = super::convert(&path).unwrap();
    let config = crate::config::Config::from_toml(&out.toml, |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|p| panic!("{p:?}\n{}", out.toml));
    (
        config,
        out.warnings
            .iter()
            .map(|w| {
                format!(
                    "{}:{}: {}: {}",
                    w.at.file.file_name().unwrap().to_string_lossy(),
                    w.at.line,
                    w.what,
                    w.why
                )
            })
            .collect(),
    )
}

fn has(warnings: &[String], needle: &str) -> bool {
    warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn a_concat_start_pattern_becomes_a_custom_multiline_rule() {
    let (cfg, w) = run(&format!(
        "{TAIL}<filter kubernetes.**>\n  @type concat\n  key log\n  multiline_start_regexp /^\\d{{4}}-\\d\\d-\\d\\d/\n  flush_interval 3\n</filter>\n{SHIP}"
    ));
    assert_eq!(cfg.multiline.rules, ["concat"]);
    assert_eq!(cfg.multiline.custom[0].start_pattern, r"^\d{4}-\d\d-\d\d");
    assert_eq!(cfg.multiline.flush_timeout.0.as_secs(), 3);
    assert!(!has(&w, "concat"), "{w:?}");
}

#[test]
fn detect_exceptions_becomes_the_built_in_rules_and_its_retagged_logs_stay_container_logs() {
    let conf = format!(
        "{}<match raw.kubernetes.**>\n  @type detect_exceptions\n  remove_tag_prefix raw\n  languages java, python, ruby\n  max_lines 1000\n</match>\n<filter kubernetes.**>\n  @type kubernetes_metadata\n</filter>\n{SHIP}",
        TAIL.replace("tag kubernetes.*", "tag raw.kubernetes.*")
    );
    let (cfg, w) = run(&conf);
    assert_eq!(cfg.multiline.rules, ["java", "python"]);
    assert_eq!(cfg.multiline.max_lines, 1000);
    assert!(
        cfg.kubernetes.enabled,
        "the filter after the retag applies: {w:?}"
    );
    assert!(
        has(
            &w,
            "fluent.conf:10: languages: ruby: logferry has rules for java, python, go and node only"
        ),
        "{w:?}"
    );
}

#[test]
fn https_hosts_keep_their_tls_settings_and_a_field_id_is_reported() {
    let (cfg, w) = run(&format!(
        "{TAIL}<match **>\n  @type elasticsearch_data_stream\n  hosts https://es1:9200,https://es2:9200\n  ssl_verify false\n  ca_file /etc/ca.pem\n  data_stream_name logs-app-default\n  id_key _hash\n</match>\n"
    ));
    assert_eq!(
        cfg.elasticsearch.hosts,
        ["https://es1:9200", "https://es2:9200"]
    );
    assert!(!cfg.elasticsearch.tls.verify);
    assert_eq!(
        cfg.elasticsearch.tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    assert_eq!(cfg.elasticsearch.index, "logs-app-default");
    assert!(
        has(
            &w,
            "fluent.conf:13: id_key: logferry's _id is derived from where the line was read"
        ),
        "{w:?}"
    );
    assert!(has(&w, "fluent.conf:12: data_stream_name:"), "{w:?}");
}

#[test]
fn a_buffer_limit_too_small_to_drain_is_raised_and_said() {
    let (cfg, w) = run(&format!(
        "{TAIL}<match **>\n  @type elasticsearch\n  <buffer>\n    chunk_limit_size 8m\n    total_limit_size 16m\n    flush_thread_count 4\n    retry_max_times 17\n  </buffer>\n</match>\n"
    ));
    assert_eq!(cfg.buffer.max_size.0, 48 << 20, "(4 + 2) × 8MiB");
    assert_eq!(
        cfg.buffer.chunk_limit_size.0,
        8 << 20,
        "Fluentd's lowercase m is MiB"
    );
    assert!(
        has(
            &w,
            "fluent.conf:11: total_limit_size: 16777216 bytes is below"
        ),
        "{w:?}"
    );
    assert!(
        has(
            &w,
            "fluent.conf:13: retry_max_times: logferry bounds retries by time"
        ),
        "{w:?}"
    );
}

#[test]
fn kubernetes_metadata_options_map_and_inexact_annotation_regexes_are_reported() {
    let (cfg, w) = run(&format!(
        "{TAIL}<filter kubernetes.**>\n  @type kubernetes_metadata\n  skip_labels true\n  de_dot false\n  annotation_match [\"^logferry\\\\.io/.*\", \"^team$\", \"owner\"]\n</filter>\n{SHIP}"
    ));
    assert!(cfg.kubernetes.enabled && !cfg.kubernetes.labels && !cfg.kubernetes.de_dot);
    assert_eq!(cfg.kubernetes.annotations, ["logferry.io/*", "team"]);
    assert!(
        has(
            &w,
            "fluent.conf:11: annotation_match: \"owner\": logferry takes exact keys or prefixes"
        ),
        "{w:?}"
    );
}

#[test]
fn what_logferry_cannot_do_is_reported_never_dropped() {
    let conf = format!(
        "<system>\n  log_level warn\n  workers 2\n</system>\n{TAIL}<filter kubernetes.**>\n  @type record_transformer\n  <record>\n    cluster prod-eu\n  </record>\n</filter>\n<match **>\n  @type elasticsearch\n  host es\n  <secondary>\n    @type file\n  </secondary>\n</match>\n"
    );
    let (cfg, w) = run(&conf);
    assert_eq!(cfg.log_level, "warn");
    for needle in [
        "fluent.conf:3: workers: not known to the converter for <system>;",
        "fluent.conf:11: <filter> @type record_transformer: logferry cannot add fields to records; these constant fields are (cluster) not added",
        "fluent.conf:20: <secondary>: not converted",
    ] {
        assert!(has(&w, needle), "missing {needle:?} in {w:?}");
    }
}

#[test]
fn a_secrets_fallback_is_neither_copied_nor_shown() {
    let (cfg, w) = run_env(
        &format!(
            "{TAIL}<match **>\n  @type elasticsearch\n  host es\n  user elastic\n  password \"#{{ENV['ES_PASS'] || 'changeme'}}\"\n</match>\n"
        ),
        &[("ES_PASS", "s3cret")],
    );
    let password = cfg
        .elasticsearch
        .auth
        .password
        .map(|p| p.expose().to_owned());
    assert_eq!(password.as_deref(), Some("s3cret"));
    assert!(!w.iter().any(|w| w.contains("changeme")), "{w:?}");
    assert!(
        has(
            &w,
            "fluent.conf:11: password: the fallback secret is not copied; it is read from the environment variable ES_PASS alone"
        ),
        "{w:?}"
    );
}

/// The stock fluentd-kubernetes-daemonset images' `pos_file`, and what else issue 25 found
/// turned into the wrong thing.
#[test]
fn the_stock_daemonsets_pos_file_ruby_is_evaluated_and_flags_dates_and_dead_filters_are_kept_right()
{
    let conf = "<source>\n  @type tail\n  path /var/log/containers/*.log\n  \
        pos_file \"#{File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'fluentd-containers.log.pos')}\"\n  \
        tag kubernetes.*\n  read_from_head true\n</source>\n\
        <filter kubernetes.**>\n  @type grep\n  <exclude>\n    key log\n    pattern /debug/i\n  </exclude>\n</filter>\n\
        <match **>\n  @type elasticsearch\n  host es\n  utc_index false\n</match>\n\
        <filter kubernetes.**>\n  @type grep\n  <exclude>\n    key log\n    pattern /healthz/\n  </exclude>\n</filter>\n";
    let (cfg, w) = run(conf);
    assert_eq!(
        cfg.input.fluentd_pos_file.as_deref(),
        Some(std::path::Path::new("/var/log/fluentd-containers.log.pos")),
        "{w:?}"
    );
    assert!(has(&w, "FLUENT_POS_EXTRA_DIR"), "{w:?}");
    assert!(!has(&w, "not evaluated"), "{w:?}");
    // The regex keeps its flag: `Debug` and `DEBUG` lines were dropped by Fluentd too.
    assert_eq!(cfg.routes.len(), 1, "{:?}", cfg.routes);
    let text = format!("{:?}", cfg.routes[0]);
    assert!(text.contains("(?i)debug"), "{text}");
    // A filter after the catch-all <match> never ran: not a route.
    assert!(
        has(
            &w,
            "fluent.conf:20: <filter kubernetes.**> @type grep: never reached"
        ),
        "{w:?}"
    );
    assert!(
        has(
            &w,
            "utc_index: Fluentd named indices by the node's local date"
        ),
        "{w:?}"
    );
    assert!(!w.iter().any(|w| w.contains("issue ")), "{w:?}");
}

#[test]
fn file_join_joins_as_ruby_does() {
    for (code, want) in [
        (
            "File.join('/var/log/', ENV.fetch('X', ''), 'a.pos')",
            "/var/log/a.pos",
        ),
        ("File.join('/var/log', 'a.pos')", "/var/log/a.pos"),
        ("File.join('/var/log/', '/a.pos')", "/var/log/a.pos"),
        (
            "File.join(\"/data\", ENV.fetch('X', 'sub'), 'a.pos')",
            "/data/sub/a.pos",
        ),
        (
            "File.join('/data', ENV['POS_DIR'], 'a.pos')",
            "/data/${POS_DIR}/a.pos",
        ),
    ] {
        let section = parse(&format!(
            "<source>\n  pos_file \"#{{{code}}}\"\n</source>\n"
        ));
        let v = &section.children[0].params[0].value;
        match v {
            Value::Text { text, .. } => assert_eq!(text, want, "{code}"),
            other => panic!("{code}: {other:?}"),
        }
    }
    // Anything else stays Ruby the converter does not run.
    let section = parse("<source>\n  pos_file \"#{File.join(Dir.pwd, 'a.pos')}\"\n</source>\n");
    assert!(matches!(
        section.children[0].params[0].value,
        Value::Ruby(_)
    ));
}
