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
