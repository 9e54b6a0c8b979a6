//! The plugins that read and shape records: `in_tail` with its `<parse>`, and the filters
//! (`kubernetes_metadata`, `parser`, `concat`, `grep`, `record_transformer`) plus the
//! `detect_exceptions` output, which is a filter in effect.
//!
//! Each maps onto `[input]`, `[parse]`, `[kubernetes]`, `[multiline]` or a dropping
//! `[[route]]`, and reports what it cannot say.

use super::Warning;
use super::emit::{Draft, Route, Toml};
use super::params::{
    Params, as_bool, as_duration, as_int, as_size, boolean, copy_all, list, regex_text, value_text,
};
use super::syntax::Section;

const CONTAINER_DIRS: &[&str] = &["/var/log/containers/", "/var/log/pods/"];

/// `<source> @type tail`. Returns the source's tag when it reads container logs (the only kind
/// logferry reads), None when the source is not converted.
pub fn tail(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) -> Option<String> {
    let mut p = Params::new(s);
    let paths = p
        .text("path", warnings)
        .map(|(t, _)| list(&t))
        .unwrap_or_default();
    let containers = !paths.is_empty()
        && paths.iter().all(|path| {
            path.starts_with("${") || CONTAINER_DIRS.iter().any(|d| path.starts_with(d))
        });
    p.sections(&["parse"]);
    let parse = s.children.iter().find(|c| c.name == "parse");
    let format_ok = parse.is_none_or(|parse| line_format(parse, warnings));
    if !containers || !format_ok {
        let why = format!(
            "logferry reads container log files (CRI or docker json-file lines under {}) only; this source ({}) is not converted",
            CONTAINER_DIRS.join(" or "),
            paths.join(", ")
        );
        warnings.push(Warning::new(&s.at, &p.label, &why));
        return None;
    }
    let tag = p.text("tag", warnings).map(|(t, _)| t).unwrap_or_default();
    let mut include = match draft.get("input", "include") {
        Some(Toml::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    include.extend(paths);
    draft.set("input", "include", Toml::List(include), &s.at);
    if let Some((t, at)) = p.text("exclude_path", warnings) {
        draft.set("input", "exclude", Toml::List(list(&t)), at);
    }
    match p.text("read_from_head", warnings) {
        Some((t, at)) if boolean(&t) == Some(true) => {
            draft.set("input", "read_from", Toml::Str("beginning".into()), at)
        }
        Some((_, at)) => draft.set("input", "read_from", Toml::Str("end".into()), at),
        None => draft.note(
            "input",
            "read_from",
            Toml::Str("end".into()),
            Some(&s.at),
            "read_from_head is false by default in Fluentd",
        ),
    }
    copy_all(
        &mut p,
        draft,
        &[
            (
                "refresh_interval",
                ("input", "rescan_interval"),
                as_duration,
            ),
            ("rotate_wait", ("input", "rotate_wait"), as_duration),
            ("max_line_size", ("input", "max_line_bytes"), as_size),
        ],
        warnings,
    );
    if let Some((t, at)) = p.text("pos_file", warnings) {
        draft.note(
            "input",
            "fluentd_pos_file",
            Toml::Str(t),
            Some(at),
            "read once, on the agent's first start on a node: each file Fluentd was reading starts where Fluentd stopped (mount its directory read-only; see the cut-over in docs/fluentd.md)",
        );
    }
    tail_options(&mut p, warnings);
    p.finish(warnings);
    Some(tag)
}

/// The tail options that mean what logferry does anyway, and those it cannot say.
fn tail_options(p: &mut Params, warnings: &mut Vec<Warning>) {
    p.same(&[
        "follow_inodes",
        "enable_stat_watcher",
        "enable_watch_timer",
        "skip_refresh_on_startup",
        "pos_file_compaction_interval",
        "open_on_every_update",
        "ignore_repeated_permission_error",
        "emit_unmatched_lines",
    ]);
    p.cannot(
        &[
            "limit_recently_modified",
            "read_lines_limit",
            "read_bytes_limit_per_second",
            "path_key",
            "encoding",
            "from_encoding",
            "multiline_flush_interval",
            "path_timezone",
        ],
        "logferry has no equivalent; not converted",
        warnings,
    );
}

/// A tail source's `<parse>`: true when it reads the lines logferry decodes itself (CRI,
/// docker json-file), reporting what a regexp there captured that logferry will not.
fn line_format(parse: &Section, warnings: &mut Vec<Warning>) -> bool {
    let mut p = Params::new(parse);
    p.sections(&["pattern"]);
    let ty = p
        .text("@type", warnings)
        .map(|(t, _)| t)
        .unwrap_or_default();
    p.same(&[
        "time_format",
        "time_key",
        "time_type",
        "keep_time_key",
        "merge_cri_fields",
        "json_parser",
        "time_format_fallbacks",
        "utc",
        "localtime",
    ]);
    let ok = match ty.as_str() {
        "cri" | "json" => true,
        "multi_format" => parse
            .children
            .iter()
            .filter(|c| c.name == "pattern")
            .all(|pat| {
                let mut pp = Params::new(pat);
                pp.same(&[
                    "time_format",
                    "time_key",
                    "keep_time_key",
                    "time_type",
                    "utc",
                    "localtime",
                ]);
                let format = pp
                    .text("format", warnings)
                    .map(|(t, _)| t)
                    .unwrap_or_default();
                let ok = match format.as_str() {
                    "json" | "cri" => true,
                    "regexp" | "" => {
                        let expr = pp
                            .text("expression", warnings)
                            .map(|(t, _)| t)
                            .unwrap_or_default();
                        regexp_of_line(pat, &expr, warnings)
                    }
                    _ => false,
                };
                pp.finish(warnings);
                ok
            }),
        "regexp" => {
            let expr = p
                .text("expression", warnings)
                .map(|(t, _)| t)
                .unwrap_or_default();
            regexp_of_line(parse, &expr, warnings)
        }
        _ => false,
    };
    p.finish(warnings);
    ok
}

/// A regexp over a container file's whole line: logferry decodes CRI lines itself, so one that
/// reads the CRI shape is fine, but what else it captured is not extracted.
fn regexp_of_line(at: &Section, expr: &str, warnings: &mut Vec<Warning>) -> bool {
    let why = if expr.contains("stdout|stderr") {
        "logferry decodes CRI lines itself; this expression was not translated: fields it captured beyond time, stream, the tag and log are not extracted"
    } else {
        "a regexp over the whole line is not supported: logferry decodes CRI and docker lines itself, and does not extract these fields"
    };
    warnings.push(Warning::new(&at.at, "<parse> @type regexp", why));
    true
}

/// `<filter> @type kubernetes_metadata`.
pub fn kubernetes_metadata(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    draft.set("kubernetes", "enabled", Toml::Bool(true), &s.at);
    copy_all(
        &mut p,
        draft,
        &[("de_dot", ("kubernetes", "de_dot"), as_bool)],
        warnings,
    );
    let negated = |t: &str| boolean(t).map(|b| Toml::Bool(!b));
    copy_all(
        &mut p,
        draft,
        &[
            ("skip_labels", ("kubernetes", "labels"), negated),
            (
                "skip_namespace_metadata",
                ("kubernetes", "namespace_labels"),
                negated,
            ),
        ],
        warnings,
    );
    metadata_flags(&mut p, warnings);
    if let Some((t, at)) = p.text("annotation_match", warnings) {
        let mut keys = Vec::new();
        for re in list(&t) {
            match annotation_key(&re) {
                Some(k) => keys.push(k),
                None => warnings.push(Warning::new(at, "annotation_match", &format!("{re:?}: logferry takes exact keys or prefixes ending in \"*\"; not converted"))),
            }
        }
        draft.set("kubernetes", "annotations", Toml::List(keys), at);
    }
    // Where the API server is: in-cluster (the service account), as the DaemonSet runs.
    if let Some(param) = p.param("kubernetes_url") {
        match &param.value {
            super::syntax::Value::Ruby(code) if code.contains("KUBERNETES_SERVICE_HOST") => {}
            _ => {
                if let Some(url) = value_text(param, warnings) {
                    draft.set("kubernetes", "api_server", Toml::Str(url), &param.at);
                }
            }
        }
    }
    p.same(&[
        "verify_ssl",
        "ca_file",
        "bearer_token_file",
        "client_cert",
        "client_key",
        "secret_dir",
        "stats_interval",
        "watch_retry_interval",
    ]);
    p.cannot(
        &["cache_size", "cache_ttl"],
        "logferry caches this node's pods, and deleted ones for kubernetes.deleted_pod_ttl",
        warnings,
    );
    p.finish(warnings);
}

/// The filter's switches whose other setting logferry does not have.
fn metadata_flags(p: &mut Params, warnings: &mut Vec<Warning>) {
    for (key, unsupported, why) in [
        (
            "de_dot_separator",
            "_",
            "logferry's de_dot always writes \"_\"",
        ),
        (
            "skip_container_metadata",
            "false",
            "logferry always adds the container's image",
        ),
        (
            "skip_master_url",
            "true",
            "logferry never adds kubernetes.master_url",
        ),
        ("watch", "true", "logferry always watches this node's pods"),
    ] {
        if let Some(param) = p.param(key)
            && value_text(param, warnings).is_some_and(|t| t.trim() != unsupported)
        {
            warnings.push(Warning::new(&param.at, key, why));
        }
    }
}

/// An annotation regex as logferry's key or prefix.
fn annotation_key(re: &str) -> Option<String> {
    // Unanchored, a regex matches anywhere in the key: neither an exact key nor a prefix.
    if !re.starts_with('^') {
        return None;
    }
    let body = re.trim_start_matches('^').trim_end_matches('$');
    let (stem, prefix) = match body.strip_suffix(".*") {
        Some(stem) => (stem, true),
        None => (body, !re.ends_with('$')),
    };
    let literal = stem.replace("\\.", ".");
    let plain = literal
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !plain {
        return None;
    }
    Some(if prefix {
        format!("{literal}*")
    } else {
        literal
    })
}

/// `<filter> @type parser` on the message: logferry's JSON parsing.
pub fn parser(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    p.sections(&["parse"]);
    let format = s.children.iter().find(|c| c.name == "parse");
    let json = format.is_some_and(|f| {
        f.params
            .iter()
            .any(|q| q.key == "@type" && q.value.text() == Some("json"))
    });
    if !json {
        warnings.push(Warning::new(
            &s.at,
            &p.label,
            "logferry parses JSON messages only; this parser is not converted",
        ));
        return;
    }
    if let Some(f) = format {
        let mut fp = Params::new(f);
        fp.same(&[
            "time_format",
            "time_key",
            "keep_time_key",
            "json_parser",
            "time_type",
        ]);
        fp.finish(warnings);
    }
    draft.set("parse", "json", Toml::Bool(true), &s.at);
    if let Some((k, at)) = p.text("key_name", warnings)
        && k != "log"
        && k != "message"
    {
        warnings.push(Warning::new(
            at,
            "key_name",
            "logferry parses the line's message (log); another field is not parsed",
        ));
    }
    match p.text("reserve_data", warnings) {
        Some((t, _)) if boolean(&t) == Some(true) => draft.set("parse", "target", Toml::Str(String::new()), &s.at),
        Some((_, at)) => warnings.push(Warning::new(at, "reserve_data", "logferry always keeps the record's other fields")),
        None => warnings.push(Warning::new(&s.at, "reserve_data", "is false by default in Fluentd (the record is replaced by the parsed fields); logferry always keeps the record's other fields")),
    }
    if let Some((field, at)) = p.text("hash_value_field", warnings) {
        draft.set("parse", "target", Toml::Str(field), at);
    }
    match p.text("remove_key_name_field", warnings) {
        Some((t, at)) => draft.set("parse", "keep_original", Toml::Bool(boolean(&t) != Some(true)), at),
        None => draft.note("parse", "keep_original", Toml::Bool(false), None, "Fluentd's parser filter also keeps the parsed \"log\" unless remove_key_name_field is true; set true to keep it too"),
    }
    p.same(&["emit_invalid_record_to_error", "replace_invalid_sequence"]);
    p.cannot(
        &["inject_key_prefix"],
        "logferry merges the parsed fields under parse.target, without a prefix",
        warnings,
    );
    p.finish(warnings);
}

/// `<filter> @type concat`: a custom multiline rule, or nothing when it only joins partial lines
/// (logferry joins CRI and docker pieces itself).
pub fn concat(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    p.same(&[
        "key",
        "stream_identity_key",
        "timeout_label",
        "use_partial_metadata",
        "use_partial_cri_logtag",
        "partial_key",
        "partial_value",
        "partial_cri_logtag_key",
        "partial_cri_stream_key",
        "keep_partial_key",
        "separator",
    ]);
    let Some((start, at)) = p.text("multiline_start_regexp", warnings) else {
        p.cannot(
            &["multiline_end_regexp", "continuous_line_regexp", "n_lines"],
            "logferry's custom multiline rules need a start pattern; not converted",
            warnings,
        );
        p.finish(warnings);
        return;
    };
    let n = (0..)
        .find(|i| {
            draft
                .get(&format!("multiline.custom.{i}"), "name")
                .is_none()
        })
        .unwrap_or(0);
    let name = if n == 0 {
        "concat".to_owned()
    } else {
        format!("concat{n}")
    };
    let table = format!("multiline.custom.{n}");
    let start = regex_text(&start);
    if let Err(e) = regex::Regex::new(&start) {
        warnings.push(Warning::new(
            at,
            "multiline_start_regexp",
            &format!("not a regular expression logferry reads: {e}"),
        ));
        p.finish(warnings);
        return;
    }
    draft.set(&table, "name", Toml::Str(name.clone()), &s.at);
    draft.set(&table, "start_pattern", Toml::Str(start), at);
    if let Some((cont, at)) = p.text("continuous_line_regexp", warnings) {
        draft.set(&table, "continue_pattern", Toml::Str(regex_text(&cont)), at);
    }
    let mut rules = match draft.get("multiline", "rules") {
        Some(Toml::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    rules.push(name);
    draft.set("multiline", "rules", Toml::List(rules), &s.at);
    copy_all(
        &mut p,
        draft,
        &[(
            "flush_interval",
            ("multiline", "flush_timeout"),
            as_duration,
        )],
        warnings,
    );
    p.cannot(
        &["multiline_end_regexp", "n_lines"],
        "logferry's multiline rules end a record at the next start line or the flush timeout",
        warnings,
    );
    p.finish(warnings);
}

/// `<match> @type detect_exceptions`: the built-in multiline rules. Returns the tag prefix it
/// removes, so later `<match>`es still see container logs.
pub fn detect_exceptions(
    s: &Section,
    draft: &mut Draft,
    warnings: &mut Vec<Warning>,
) -> Option<String> {
    let mut p = Params::new(s);
    let langs = p
        .text("languages", warnings)
        .or_else(|| p.text("language", warnings));
    let mut rules = Vec::new();
    match langs {
        None => rules.push("auto".to_owned()),
        Some((t, at)) => {
            for lang in list(&t) {
                match lang.as_str() {
                    "all" => rules.push("auto".into()),
                    "java" | "python" | "go" => rules.push(lang.clone()),
                    "golang" => rules.push("go".into()),
                    "js" | "javascript" | "node" | "nodejs" => rules.push("node".into()),
                    other => warnings.push(Warning::new(
                        at,
                        "languages",
                        &format!("{other}: logferry has rules for java, python, go and node only"),
                    )),
                }
            }
        }
    }
    draft.set("multiline", "rules", Toml::List(rules), &s.at);
    copy_all(
        &mut p,
        draft,
        &[
            ("max_lines", ("multiline", "max_lines"), as_int),
            ("max_bytes", ("multiline", "max_bytes"), as_size),
            (
                "multiline_flush_interval",
                ("multiline", "flush_timeout"),
                as_duration,
            ),
        ],
        warnings,
    );
    p.same(&["message", "stream", "force_line_breaks"]);
    let prefix = p.text("remove_tag_prefix", warnings).map(|(t, _)| t);
    p.finish(warnings);
    prefix
}

/// `<filter> @type grep`: each `<exclude>` becomes a dropping route (a namespace list when
/// the pattern is one, else a field match); `<regexp>` (keep only what matches) cannot be said.
pub fn grep(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    p.all_sections();
    for child in &s.children {
        let mut c = Params::new(child);
        if child.name != "exclude" {
            warnings.push(Warning::new(
                &child.at,
                &format!("<{}>", child.name),
                "logferry's routes drop what matches; keeping only what matches is not supported",
            ));
            c.same(&["key", "pattern"]);
            continue;
        }
        let (Some((key, _)), Some((pattern, at))) =
            (c.text("key", warnings), c.text("pattern", warnings))
        else {
            c.finish(warnings);
            continue;
        };
        c.finish(warnings);
        let path = key
            .trim_start_matches("$.")
            .replace("']['", ".")
            .replace("$['", "")
            .replace("']", "");
        let regex = regex_text(&pattern);
        let name = format!("drop-{}", draft.routes.len() + 1);
        let namespaces = if path == "kubernetes.namespace_name" {
            namespace_list(&regex)
        } else {
            None
        };
        let field_matches = if namespaces.is_none() {
            Some((path, regex))
        } else {
            None
        };
        draft.routes.push(Route {
            name,
            index: None,
            namespaces: namespaces.unwrap_or_default(),
            field_matches,
            drop: true,
            from: at.clone(),
        });
    }
    p.finish(warnings);
}

/// `^(a|b)$`, `^a$`, `^kube-` as namespaces and prefixes; None when the regex says more.
fn namespace_list(re: &str) -> Option<Vec<String>> {
    let body = re.strip_prefix('^')?;
    let (body, anchored) = match body.strip_suffix('$') {
        Some(b) => (b, true),
        None => (body, false),
    };
    let body = body
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or(body);
    let mut out = Vec::new();
    for alt in body.split('|') {
        let (stem, prefix) = match alt.strip_suffix(".*") {
            Some(stem) => (stem, true),
            None => (alt, !anchored),
        };
        if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return None;
        }
        out.push(if prefix {
            format!("{stem}*")
        } else {
            stem.to_owned()
        });
    }
    Some(out)
}

/// `<filter> @type record_transformer`: logferry does not add fields to records.
pub fn record_transformer(s: &Section, warnings: &mut Vec<Warning>) {
    let fields: Vec<&str> = s
        .children
        .iter()
        .filter(|c| c.name == "record")
        .flat_map(|r| r.params.iter().map(|q| q.key.as_str()))
        .collect();
    let computed = s
        .children
        .iter()
        .flat_map(|r| r.params.iter())
        .any(|q| q.value.text().is_none_or(|t| t.contains("$${")));
    let why = format!(
        "logferry cannot add fields to records; {} ({}) not added",
        if computed {
            "these computed fields are"
        } else {
            "these constant fields are"
        },
        fields.join(", ")
    );
    warnings.push(Warning::new(
        &s.at,
        "<filter> @type record_transformer",
        &why,
    ));
    let mut p = Params::new(s);
    p.sections(&["record"]);
    p.cannot(
        &["remove_keys", "keep_keys", "renew_record"],
        "logferry does not remove or rename fields",
        warnings,
    );
    p.same(&["enable_ruby", "auto_typecast"]);
    p.finish(warnings);
}
