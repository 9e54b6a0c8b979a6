//! Loading as an operator meets it: defaults, interpolation, and every problem reported with
//! its file, line, column and key.

use super::*;
use std::time::Duration;

fn load(text: &str) -> std::result::Result<Config, Vec<Problem>> {
    Config::from_toml(text, |name| match name {
        "ES_HOST" => Some("es.example:9200".into()),
        _ => None,
    })
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.input.include, vec!["/var/log/containers/*.log"]);
    assert_eq!(c.input.read_from, ReadFrom::Beginning);
    assert_eq!(c.input.max_line_bytes, ByteSize(262144));
    assert_eq!(c.elasticsearch.index, "logs-%Y.%m.%d");
    assert_eq!(c.buffer.chunk_limit_size, ByteSize(5 << 20));
    assert_eq!(c.buffer.flush_interval, Span(Duration::from_secs(1)));
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:2020");
    assert!(
        !c.kubernetes.honour_exclude_annotation,
        "a pod cannot opt out unless allowed"
    );
}

#[test]
fn env_interpolation() {
    let c = load("[elasticsearch]\nhosts = [\"http://${ES_HOST}\"]\n").unwrap();
    assert_eq!(c.elasticsearch.hosts, vec!["http://es.example:9200"]);
    let c = load("data_dir = \"/x/$${HOME}\" # ${NOT_SET} in a comment\n").unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/x/${HOME}"));
    let e = load("data_dir = \"/x\"\n[api]\nlisten = \"${NOPE}\"\n").unwrap_err();
    assert_eq!(e[0].line, Some(3));
    assert!(e[0].message.contains("NOPE is not set"), "{e:?}");
}

/// Issue 12, item 12: the environment's value used to be pasted into the TOML text, so a
/// password holding `"` ended the string (or added keys), `\` started an escape, a tab
/// was refused and `${` was expanded again.
#[test]
fn a_password_with_quotes_backslashes_tabs_and_dollar_braces_arrives_byte_for_byte() {
    let password = "p\"w\\d\t${NOT_A_VAR}\\n'x' # y $${z} \u{e9}\n";
    let text = "[elasticsearch.auth]\nuser = \"${ES_USER}\" # ${IN_A_COMMENT}\npassword = \"${ES_PASSWORD}\"\n";
    let env = |name: &str| match name {
        "ES_USER" => Some("elastic".to_owned()),
        "ES_PASSWORD" => Some(password.to_owned()),
        _ => None,
    };
    let c = Config::from_toml(text, env).unwrap();
    assert_eq!(
        c.elasticsearch.auth.password.as_ref().map(Secret::expose),
        Some(password)
    );
    assert_eq!(c.elasticsearch.auth.user.as_deref(), Some("elastic"));
    // Literal strings, arrays, escapes in the file and `$${` still work as written.
    let text = "data_dir = '/d/${ES_USER}'\n[elasticsearch]\nhosts = [\"http://a\", \"http://${ES_USER}\\u0031:9200\"]\nindex = \"x$${y}\"\n";
    let c = Config::from_toml(text, env).unwrap();
    assert_eq!(c.elasticsearch.index, "x${y}");
    assert_eq!(c.data_dir, PathBuf::from("/d/elastic"));
    assert_eq!(
        c.elasticsearch.hosts,
        vec!["http://a", "http://elastic1:9200"]
    );
}

#[test]
fn an_unset_variable_is_reported_at_its_line_and_column_with_its_key() {
    let text = "data_dir = \"/x\"\n[elasticsearch]\nhosts = [\"http://a\", \"http://${ES_HOST}\", \"https://${NOPE}:9200\"]\n[elasticsearch.auth]\nuser = \"u\"\npassword = \"${ALSO_NOPE}\"\nbad = \"${unclosed\"\n";
    let e = load(text).unwrap_err();
    let found: Vec<_> = e
        .iter()
        .map(|p| (p.line, p.column, p.key.as_deref(), p.message.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                Some(3),
                Some(52),
                Some("elasticsearch.hosts"),
                "environment variable NOPE is not set"
            ),
            (
                Some(6),
                Some(13),
                Some("elasticsearch.auth.password"),
                "environment variable ALSO_NOPE is not set"
            ),
            (
                Some(7),
                Some(8),
                Some("elasticsearch.auth.bad"),
                "unclosed ${ in interpolation"
            ),
        ]
    );
}

#[test]
fn every_problem_is_reported_with_line_and_key() {
    let text = "\
data_dir = \"/tmp/x\"
[input]
read_from = \"middle\"
[buffer]
flush_interval = \"5 parsecs\"
[elasticsearch]
index = \"logs-%Y\"
hostz = []
[nonsense]
";
    let problems = load(text).unwrap_err();
    let found: Vec<(Option<usize>, Option<&str>)> = problems
        .iter()
        .map(|p| (p.line, p.key.as_deref()))
        .collect();
    assert_eq!(
        found,
        vec![
            (Some(3), Some("input.read_from")),
            (Some(5), Some("buffer.flush_interval")),
            (Some(8), Some("elasticsearch.hostz")),
            (Some(9), Some("nonsense")),
        ],
        "{problems:#?}"
    );
    assert!(problems[0].message.contains("middle"), "{problems:#?}");
    assert!(problems[1].message.contains("5 parsecs"), "{problems:#?}");
    assert!(problems[2].message.contains("hostz"), "{problems:#?}");
}

#[test]
fn syntax_errors_have_lines() {
    let problems = load("[input]\ninclude = [\"a\"\n").unwrap_err();
    assert_eq!(problems[0].line, Some(2), "{problems:?}");
}

#[test]
fn secrets_stay_out_of_debug_output_and_problems() {
    let text = "[elasticsearch]\nhosts = [\"https://u:pw-123@es:9200\"]\n[elasticsearch.auth]\nuser = \"u\"\npassword = \"${PW}\"\n";
    let env = |n: &str| (n == "PW").then(|| "pw-123".to_owned());
    let problems = Config::from_toml(text, env).unwrap_err();
    let shown = format!("{problems:?}");
    assert!(shown.contains("elasticsearch.hosts"), "{shown}");
    assert!(!shown.contains("pw-123"), "{shown}");
    let ok = text.replace("u:pw-123@", "");
    let cfg = Config::from_toml(&ok, env).unwrap();
    assert_eq!(
        cfg.elasticsearch.auth.password.as_ref().map(Secret::expose),
        Some("pw-123")
    );
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("pw-123"), "{debug}");
    assert!(debug.contains("Secret(redacted)"));
}

#[test]
fn validation_names_the_key() {
    let problems =
        load("[elasticsearch]\nhosts = [\"ftp://x\"]\nindex = \"Logs/%Y\"\n").unwrap_err();
    let keys: Vec<_> = problems
        .iter()
        .map(|p| (p.line, p.key.clone().unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (Some(2), "elasticsearch.hosts".to_owned()),
            (Some(3), "elasticsearch.index".to_owned())
        ]
    );
}

#[test]
fn a_dead_letter_bound_too_small_to_keep_what_was_written_is_refused_by_name() {
    let problems = load("[elasticsearch]\ndead_letter_max_size = \"0B\"\n").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, Some(2));
    assert_eq!(
        problems[0].key.as_deref(),
        Some("elasticsearch.dead_letter_max_size")
    );
    assert!(load("[elasticsearch]\ndead_letter_max_size = \"1MiB\"\n").is_ok());
}

/// Issue 12, item 11: a pattern whose names Elasticsearch refuses, or that would break the
/// NDJSON action line, is caught by `validate`, naming the item or character at fault,
/// instead of stopping shipping on the first record.
#[test]
fn index_patterns_elasticsearch_would_refuse_or_that_break_ndjson_are_refused() {
    let cases: &[(&str, Option<&str>)] = &[
        ("logs-%Y.%m.%d", None),
        ("logs-%F", None),
        ("logs-%G.%V", None),
        ("logs-%Y.%j-%H.%M", None),
        ("logs-%-m.%-d", None),
        ("app.logs_v2-%y%m%d", None),
        ("logs-%Y%n", Some("%n")),
        ("logs-%Y%t", Some("%t")),
        ("logs-%b", Some("%b")),
        ("logs-%B", Some("%B")),
        ("logs-%A", Some("%A")),
        ("logs-%a", Some("%a")),
        ("logs-%Z", Some("%Z")),
        ("logs-%z", Some("%z")),
        ("logs-%c", Some("%c")),
        ("logs-%+", Some("%+")),
        ("logs-%e", Some("%e")),
        ("logs-%_m", Some("%_")),
        ("logs-%D", Some("%D")),
        ("logs-%T", Some("%T")),
        ("logs-%p", Some("%p")),
        ("logs-%s", Some("per record")),
        ("logs-%f", Some("per record")),
        ("logs-%Q", Some("%Q")),
        ("logs-%", Some("unfinished")),
        ("Logs-%Y", Some("'L'")),
        ("logs\\%Y", Some("'\\\\'")),
        ("logs/%Y", Some("'/'")),
        ("logs*", Some("'*'")),
        ("logs?", Some("'?'")),
        ("logs\"x", Some("'\"'")),
        ("logs<", Some("'<'")),
        ("logs>", Some("'>'")),
        ("logs|", Some("'|'")),
        ("logs %Y", Some("' '")),
        ("logs,x", Some("','")),
        ("logs#x", Some("'#'")),
        ("logs:x", Some("':'")),
        ("logs\tx", Some("'\\t'")),
        ("logs\nx", Some("'\\n'")),
        ("-logs", Some("starting with")),
        ("_logs", Some("starting with")),
        ("+logs", Some("starting with")),
        (".", Some("leading dot")),
        ("..", Some("\"..\"")),
        ("", Some("empty")),
    ];
    for (pattern, refused) in cases {
        let got = crate::vocab::IndexPattern::new(pattern);
        match (refused, &got) {
            (None, Ok(_)) => {}
            (Some(what), Err(e)) => assert!(e.contains(what), "{pattern:?}: {e}"),
            _ => panic!("{pattern:?}: {:?}", got.err()),
        }
    }
    let long = format!("logs-{}-%Y", "a".repeat(245));
    assert!(crate::vocab::IndexPattern::new(&long).is_ok(), "255 bytes");
    let too_long = format!("logs-{}-%Y", "a".repeat(246));
    let e = crate::vocab::IndexPattern::new(&too_long)
        .err()
        .unwrap_or_default();
    assert!(e.contains("256 bytes"), "{e}");
    // Through the config: the key and line are named.
    let p = load("[elasticsearch]\nindex = \"logs-%b\"\n").unwrap_err();
    assert_eq!(p[0].key.as_deref(), Some("elasticsearch.index"));
    assert_eq!(p[0].line, Some(2));
    assert!(p[0].message.contains("%b"), "{p:?}");
}

/// Every validation rule at once, and the rules whose key is not in the file (no line):
/// the full text an operator reads, pinned before `validate` was split by section so the
/// split could not reorder, reword or relocate a single problem.
#[test]
fn validation_problems_keep_their_wording_order_and_place() {
    let cases: &[&str] = &[
        "data_dir = \"\"\nlog_level = \"[[[\"\n[input]\ninclude = [\"a[\", \"ok\"]\nexclude = [\"b[\"]\nmax_line_bytes = \"1B\"\nrescan_interval = \"1ms\"\npartial_timeout = \"0s\"\n[elasticsearch]\nhosts = [\"http://u:p@h\", \"ftp://x\", \"not a url\", \"http://ok\"]\nindex = \"Logs\"\ndead_letter_index = \"dl-%Y\"\ndead_letter_max_size = \"1KiB\"\nsniff = true\nsniff_interval = \"10ms\"\n[elasticsearch.tls]\ncert_file = \"/c\"\nserver_name = \"not a name!\"\n[elasticsearch.auth]\npassword = \"x\"\npassword_file = \"/p\"\ntoken = \"t\"\napi_key = \"k\"\napi_key_file = \"/k\"\ntoken_file = \"/t\"\n[kubernetes]\napi_server = \"::nope\"\n[buffer]\nchunk_limit_size = \"1B\"\nflush_thread_count = 0\npath = \" \"\nretry_wait = \"0s\"\nflush_interval = \"0s\"\n",
        "[input]\ninclude = []\n[elasticsearch]\nhosts = []\ndead_letter_index = \"Bad\"\n[elasticsearch.tls]\nkey_file = \"/k\"\n[elasticsearch.auth]\nuser = \"u\"\n[buffer]\nchunk_limit_size = \"512MiB\"\nretry_wait = \"1m\"\nretry_max_interval = \"1s\"\nflush_thread_count = 65\n",
        "[elasticsearch]\nhosts = [\"https://es:9200\"]\n[elasticsearch.auth]\npassword = \"p\"\n[buffer]\nchunk_limit_size = \"600MiB\"\n",
    ];
    let shown: Vec<String> = cases
        .iter()
        .map(|text| {
            let problems = load(text).unwrap_err();
            let e = Error {
                file: PathBuf::from("f.toml"),
                problems,
            };
            e.to_string()
        })
        .collect();
    let expected: &[&[&str]] = &[
        &[
            r#"f.toml: elasticsearch.auth.user: is needed with a password"#,
            r#"f.toml:1:12: data_dir: must not be empty"#,
            r#"f.toml:2:13: log_level: "[[[" is not a log filter: invalid filter directive"#,
            r#"f.toml:4:11: input.include: invalid glob "a[": Pattern syntax error near position 1: invalid range pattern"#,
            r#"f.toml:5:11: input.exclude: invalid glob "b[": Pattern syntax error near position 1: invalid range pattern"#,
            r#"f.toml:6:18: input.max_line_bytes: must be at least 1KiB"#,
            r#"f.toml:7:19: input.rescan_interval: must be at least 100ms"#,
            r#"f.toml:8:19: input.partial_timeout: must be more than 0s"#,
            r#"f.toml:10:9: elasticsearch.hosts: "http://…@h": credentials in the URL would end up in logs; use [elasticsearch.auth]"#,
            r#"f.toml:10:9: elasticsearch.hosts: "ftp://x": the scheme must be http or https"#,
            r#"f.toml:10:9: elasticsearch.hosts: "not a url" is not a URL: relative URL without a base"#,
            r#"f.toml:11:9: elasticsearch.index: "Logs": 'L' is not allowed in an index name (no upper case, whitespace, control characters or any of \ / * ? " < > | , # :)"#,
            r#"f.toml:12:21: elasticsearch.dead_letter_index: must be a fixed name, without strftime items"#,
            r#"f.toml:13:24: elasticsearch.dead_letter_max_size: must be at least 1MiB"#,
            r#"f.toml:15:18: elasticsearch.sniff_interval: must be at least 1s"#,
            r#"f.toml:16:1: elasticsearch.tls: is set, but no host in elasticsearch.hosts uses https"#,
            r#"f.toml:17:13: elasticsearch.tls.cert_file: needs key_file too"#,
            r#"f.toml:18:15: elasticsearch.tls.server_name: "not a name!" is not a DNS name or IP address"#,
            r#"f.toml:19:1: elasticsearch.auth: choose one of user + password, api_key, token"#,
            r#"f.toml:20:12: elasticsearch.auth.password: set both in the config and as a file; keep one"#,
            r#"f.toml:22:9: elasticsearch.auth.token: set both in the config and as a file; keep one"#,
            r#"f.toml:23:11: elasticsearch.auth.api_key: set both in the config and as a file; keep one"#,
            r#"f.toml:27:14: kubernetes.api_server: "::nope" is not a URL"#,
            r#"f.toml:29:20: buffer.chunk_limit_size: must be at least 1KiB"#,
            r#"f.toml:30:22: buffer.flush_thread_count: must be between 1 and 64"#,
            r#"f.toml:31:8: buffer.path: must not be empty"#,
            r#"f.toml:32:14: buffer.retry_wait: must be above zero and at most retry_max_interval"#,
            r#"f.toml:33:18: buffer.flush_interval: must be above zero"#,
        ],
        &[
            r#"f.toml: elasticsearch.auth.password_file: is needed with user (or password)"#,
            r#"f.toml: buffer.max_size: must be at least (flush_thread_count + 2) × chunk_limit_size = 35970351104 bytes"#,
            r#"f.toml:2:11: input.include: needs at least one glob (or an [[input.forward]] listener)"#,
            r#"f.toml:4:9: elasticsearch.hosts: needs at least one URL"#,
            r#"f.toml:5:21: elasticsearch.dead_letter_index: "Bad": 'B' is not allowed in an index name (no upper case, whitespace, control characters or any of \ / * ? " < > | , # :)"#,
            r#"f.toml:6:1: elasticsearch.tls: is set, but no host in elasticsearch.hosts uses https"#,
            r#"f.toml:7:12: elasticsearch.tls.key_file: needs cert_file too"#,
            r#"f.toml:12:14: buffer.retry_wait: must be above zero and at most retry_max_interval"#,
            r#"f.toml:14:22: buffer.flush_thread_count: must be between 1 and 64"#,
        ],
        &[
            r#"f.toml: elasticsearch.auth.user: is needed with a password"#,
            r#"f.toml: buffer.max_size: must be at least (flush_thread_count + 2) × chunk_limit_size = 2516582400 bytes"#,
        ],
    ];
    for (shown, expected) in shown.iter().zip(expected) {
        assert_eq!(shown.lines().collect::<Vec<_>>(), *expected);
    }
    assert_eq!(shown.len(), expected.len());
}

/// Issue 13: the variant was renamed for what it drops (a segment); a Fluentd user's config
/// says `drop_oldest_chunk`, and must go on meaning that, and the refusal of anything else
/// must go on naming the value to write.
#[test]
fn drop_oldest_chunk_in_a_fluentd_users_config_still_drops_the_oldest_segment() {
    let c = load("[buffer]\noverflow_action = \"drop_oldest_chunk\"\n").unwrap();
    assert_eq!(c.buffer.overflow_action, OverflowAction::DropOldestSegment);
    assert_eq!(
        load("").unwrap().buffer.overflow_action,
        OverflowAction::Block
    );
    let p = load("[buffer]\noverflow_action = \"drop_oldest_segment\"\n").unwrap_err();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key.as_deref(), Some("buffer.overflow_action"));
    assert!(
        p[0].message
            .contains("expected `block` or `drop_oldest_chunk`"),
        "{p:?}"
    );
}

/// The three roles of `chunk_limit_size`, each as its caller uses it today: the segment size
/// (the buffer, and the free-space warning of `logferry validate`), the cap of a shipped batch
/// (`Buffer::chunk_limit`, the same number), and the tailer's chunk (capped at 1 MiB).
#[test]
fn chunk_limit_size_gives_each_role_the_bytes_it_uses_today() {
    let roles = |text: &str| {
        let b = load(text).unwrap().buffer;
        (b.segment_size(), b.batch_max_bytes(), b.write_chunk_max())
    };
    assert_eq!(roles(""), (5 << 20, 5 << 20, 1 << 20), "the defaults");
    let set = |size: &str| roles(&format!("[buffer]\nchunk_limit_size = \"{size}\"\n"));
    assert_eq!(set("1KiB"), (1024, 1024, 1024));
    assert_eq!(set("64KiB"), (64 << 10, 64 << 10, 64 << 10));
    assert_eq!(set("1MiB"), (1 << 20, 1 << 20, 1 << 20));
    assert_eq!(set("1000001B"), (1_000_001, 1_000_001, 1_000_001));
    assert_eq!(set("1048577B"), (1_048_577, 1_048_577, 1 << 20));
    assert_eq!(set("64MiB"), (64 << 20, 64 << 20, 1 << 20));
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["config/logferry.toml", "config/fluentd-equivalent.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let env = |name: &str| Some(format!("test-{name}"));
        if let Err(p) = Config::from_toml(&text, env) {
            panic!("{file}: {p:#?}");
        }
    }
}

#[test]
fn multiline_is_off_by_default_and_its_mistakes_are_located() {
    let c = load("").unwrap();
    assert!(!c.multiline.enabled(), "off unless rules are named");
    assert_eq!(c.multiline.max_lines, 500);
    assert_eq!(c.multiline.max_bytes, ByteSize(1 << 20));
    assert_eq!(c.multiline.flush_timeout, Span(Duration::from_secs(1)));
    let c = load("[multiline]\nrules = [\"auto\", \"stamped\"]\n[[multiline.custom]]\nname = \"stamped\"\nstart_pattern = '^\\d{4}-'\n").unwrap();
    assert!(c.multiline.enabled());
    let text = "[multiline]\nrules = [\"node\", \"ruby\"]\nmax_lines = 1\n\
                [[multiline.custom]]\nname = \"ok\"\nstart_pattern = '^\\d{4}-'\n\
                [[multiline.custom]]\nname = \"bad\"\nstart_pattern = '^(unclosed'\n";
    let problems = load(text).unwrap_err();
    let shown: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{:?}:{:?} {}: {}",
                p.line,
                p.column,
                p.key.as_deref().unwrap_or(""),
                p.message
            )
        })
        .collect();
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no problem for {key}: {shown:#?}"))
    };
    let rules = find("multiline.rules");
    assert_eq!(rules.line, Some(2));
    assert!(rules.message.contains("\"ruby\""), "{}", rules.message);
    assert_eq!(find("multiline.max_lines").line, Some(3));
    let bad = find("multiline.custom[1].start_pattern");
    assert_eq!((bad.line, bad.column), (Some(9), Some(17)), "{shown:#?}");
    assert!(
        bad.message.contains("invalid regular expression"),
        "{}",
        bad.message
    );
    assert_eq!(problems.len(), 3, "{shown:#?}");
}

/// `(line, key, message)` of each problem, for asserting on routes' mistakes.
fn located(text: &str) -> Vec<(Option<usize>, String, String)> {
    load(text)
        .unwrap_err()
        .into_iter()
        .map(|p| (p.line, p.key.unwrap_or_default(), p.message))
        .collect()
}

#[test]
fn routes_are_read_in_order_with_their_conditions() {
    let c = load(
        "[kubernetes]\nenabled = true\n\
         [[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\nretention = \"7y\"\n\
         [route.when]\nnamespaces = [\"payments\", \"auth-*\"]\n\
         labels = { \"logging.klear.io/class\" = \"audit\" }\n\
         [[route]]\nname = \"noise\"\ndrop = true\n\
         [route.when]\nfield = { path = \"http.path\", matches = '^/healthz' }\n\
         [[route]]\nname = \"slow\"\nindex = \"slow-%Y.%m.%d\"\n\
         when.field = { path = \"duration_ms\", equals = 1500 }\n",
    )
    .unwrap();
    let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["audit", "noise", "slow"]);
    assert_eq!(c.routes[0].retention, Some(Retention { days: 2557 }));
    assert_eq!(
        c.routes[0].when.namespaces.as_deref(),
        Some(&["payments".to_owned(), "auth-*".to_owned()][..])
    );
    assert_eq!(c.routes[0].when.labels["logging.klear.io/class"], "audit");
    assert!(c.routes[1].drop && c.routes[1].index.is_none());
    let f = c.routes[2].when.field.as_ref().unwrap();
    assert_eq!(
        (f.path.as_str(), &f.equals),
        ("duration_ms", &Some(Scalar::Integer(1500)))
    );
    assert!(c.elasticsearch.setup.enabled && c.elasticsearch.setup.templates);
    assert_eq!(c.elasticsearch.retention, None);
}

#[test]
fn a_routes_mistakes_are_located_by_line_and_key() {
    let text = "[[route]]\nname = \"Audit\"\nindex = \"audit-%Y\"\n\
                [route.when]\nlabels = { team = \"x\" }\n\
                [[route]]\nname = \"two\"\nindex = \"two-%Y\"\n\
                when.field = { path = \"a..b\", matches = '(unclosed' }\n\
                [[route]]\nname = \"three\"\nindex = \"kept-forever\"\nretention = \"90d\"\n\
                when.namespaces = [\"a*b\"]\n\
                [[route]]\nname = \"three\"\nindex = \"two-%Y\"\nretention = \"1y\"\n\
                when.field = { path = \"level\", equals = \"audit\", exists = true }\n";
    let problems = located(text);
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.1 == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {problems:#?}"))
    };
    assert_eq!(find("route[0].name").0, Some(2));
    assert!(find("route[0].when.labels").2.contains("[kubernetes]"));
    assert_eq!(find("route[1].when.field.path").0, Some(9));
    assert!(
        find("route[1].when.field.matches")
            .2
            .contains("regular expression")
    );
    let forever = find("route[2].retention");
    assert_eq!(forever.0, Some(13));
    assert!(
        forever.2.contains("deletes an index whole"),
        "{}",
        forever.2
    );
    assert!(find("route[2].when.namespaces").2.contains("prefix"));
    assert!(find("route[3].name").2.contains("earlier route"));
    assert!(find("route[3].retention").2.contains("have one retention"));
    assert!(find("route[3].when.field").2.contains("exactly one of"));
    assert_eq!(problems.len(), 9, "{problems:#?}");
    // A type error inside a route names the route, its key and the line.
    let typo = located("[[route]]\nname = \"a\"\nindex = \"a-%Y\"\nwhen.namespace = [\"x\"]\n");
    assert_eq!(typo.len(), 1, "{typo:#?}");
    assert_eq!(typo[0].0, Some(4), "{typo:#?}");
    assert!(typo[0].1.starts_with("route[0].when"), "{typo:#?}");
    assert!(typo[0].2.contains("unknown field `namespace`"), "{typo:#?}");
}

#[test]
fn retention_needs_names_that_never_come_round_and_one_retention_per_template() {
    let problems = located(
        "[elasticsearch]\nindex = \"logs-%d\"\nretention = \"90d\"\n\
         [elasticsearch.setup]\nwarm_after = \"120d\"\n\
         [parse]\ntarget = \"app\"\n\
         [[route]]\nname = \"a\"\nindex = \"audit-%Y.%m\"\nretention = \"7y\"\n\
         when.field = { path = \"log_type\", equals = \"audit\" }\n\
         [[route]]\nname = \"b\"\nindex = \"audit-%Y.%U\"\nretention = \"90d\"\n\
         when.field = { path = \"app.kind\", equals = \"audit\" }\n",
    );
    let find = |key: &str| {
        problems
            .iter()
            .find(|p| p.1 == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {problems:#?}"))
    };
    // logs-05 is the 5th of every month: deleting it by age deletes this month's 5th too.
    assert!(
        find("elasticsearch.retention")
            .2
            .contains("comes round again")
    );
    // audit-%Y.%m and audit-%Y.%U both give audit-*.*: one template, one lifecycle.
    assert!(
        find("route[1].retention").2.contains("audit-*.*"),
        "{problems:#?}"
    );
    // Under parse.target the message's fields are app.*: log_type is never there.
    assert!(find("route[0].when.field.path").2.contains("app.log_type"));
    assert!(
        find("elasticsearch.setup.warm_after")
            .2
            .contains("shorter than every retention")
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn a_reload_keeps_the_running_values_of_what_needs_a_restart_and_names_them() {
    let running = load("data_dir = \"/var/lib/a\"\n[api]\nlisten = \"127.0.0.1:2020\"\n").unwrap();
    let mut new = load(
        "data_dir = \"/var/lib/b\"\n[api]\nlisten = \"0.0.0.0:9999\"\n\
         [buffer]\nretry_wait = \"5s\"\nflush_thread_count = 8\n",
    )
    .unwrap();
    let keys = new.keep_restart_only(&running);
    assert_eq!(
        keys,
        ["data_dir", "api.listen", "buffer.flush_thread_count"]
    );
    assert_eq!(new.data_dir, running.data_dir);
    assert_eq!(new.api.listen, running.api.listen);
    assert_eq!(
        new.buffer.flush_thread_count,
        running.buffer.flush_thread_count
    );
    // What can change live still does.
    assert_eq!(new.buffer.retry_wait.0, std::time::Duration::from_secs(5));
    assert!(new.clone().keep_restart_only(&new).is_empty());
    // Batches take a new chunk_limit_size; only its segment role waits, and is named.
    let mut smaller = running.clone();
    smaller.buffer.chunk_limit_size = crate::config::ByteSize(1 << 20);
    assert_eq!(
        smaller.keep_restart_only(&running),
        ["buffer.chunk_limit_size (as the buffer's segment size)"]
    );
    assert_eq!(smaller.buffer.chunk_limit_size.0, 1 << 20);
}

#[test]
fn a_retention_without_templates_is_refused_unless_the_lifecycle_is_asked_for_explicitly() {
    let base = "[input]\ninclude = [\"/var/log/containers/*.log\"]\n\
                [elasticsearch]\nindex = \"logs-%Y.%m.%d\"\nretention = \"90d\"\n";
    let problems = load(&format!("{base}[elasticsearch.setup]\ntemplates = false\n"))
        .expect_err("nothing would attach the policy on Elasticsearch");
    assert!(
        problems.iter().any(
            |p| p.key.as_deref() == Some("elasticsearch.setup.templates")
                && p.message.contains("attaches")
        ),
        "{problems:?}"
    );
    // OpenSearch's ISM attaches by pattern: the operator says they know.
    load(&format!(
        "{base}[elasticsearch.setup]\ntemplates = false\nlifecycle = true\n"
    ))
    .expect("explicit lifecycle");
    // No retention: nothing to attach.
    let kept = base.replace("retention = \"90d\"\n", "");
    load(&format!("{kept}[elasticsearch.setup]\ntemplates = false\n")).expect("no retention");
}
