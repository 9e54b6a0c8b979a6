//! The walk over a parsed Fluentd configuration, in Fluentd's order: sources decide which tags
//! are container logs, filters on those tags shape the records, and the `<match>`es, first match
//! wins, become `[elasticsearch]` (the last catch-all) and `[[route]]`s (a namespace's tag
//! pattern, or `@type null` to drop).

use super::emit::{Draft, Route, Toml};
use super::params::{Params, value_text};
use super::syntax::Section;
use super::{Warning, inputs, outputs};
use regex::Regex;
use std::sync::LazyLock;

/// What the walk has learnt so far.
#[derive(Default)]
struct Walk {
    /// Tag prefixes of the container-log sources (`kubernetes` for `tag kubernetes.*`).
    tags: Vec<String>,
    /// A `parser` filter parses the message as JSON.
    parsed: bool,
    /// A catch-all `<match>` was seen: later ones never get a container log.
    caught: bool,
}

pub fn map(root: &Section, warnings: &mut Vec<Warning>) -> Draft {
    let mut draft = Draft::default();
    let mut walk = Walk::default();
    let mut top = Params::new(root);
    top.all_sections();
    top.finish(warnings);
    for s in &root.children {
        match s.name.as_str() {
            "system" => system(s, &mut draft, warnings),
            "source" => source(s, &mut walk, &mut draft, warnings),
            "filter" => filter(s, &mut walk, &mut draft, warnings),
            "match" => matches(s, &mut walk, &mut draft, warnings),
            "label" if s.arg == "@FLUENT_LOG" => {
                // Fluentd's own logs; logferry's go to stderr and never into the pipeline.
            }
            "label" => warnings.push(Warning::new(
                &s.at,
                &format!("<label {}>", s.arg),
                "@label routing is not converted; nothing inside it was",
            )),
            other => warnings.push(Warning::new(
                &s.at,
                &format!("<{other}>"),
                "not a section the converter knows; not converted",
            )),
        }
    }
    if !walk.tags.is_empty() && !walk.parsed {
        draft.note(
            "parse",
            "json",
            Toml::Bool(false),
            None,
            "no parser filter parsed the message in Fluentd: it was shipped as a string",
        );
    }
    if draft.get("api", "listen").is_none() {
        draft.note("api", "listen", Toml::Str("0.0.0.0:2020".into()), None, "on every address, so the kubelet's probes and Prometheus reach /health, /ready and /metrics at the pod's IP");
    }
    if !walk.caught {
        warnings.push(Warning::new(&root.at, "<match **>", "no <match> ships every container log to Elasticsearch; [elasticsearch] keeps logferry's defaults"));
    }
    draft
}

fn type_of(s: &Section) -> String {
    s.params
        .iter()
        .rev()
        .find(|p| p.key == "@type" || p.key == "type")
        .and_then(|p| p.value.text())
        .unwrap_or("")
        .to_owned()
}

fn system(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    if let Some((level, at)) = p.text("log_level", warnings) {
        let level = if level == "fatal" {
            "error".to_owned()
        } else {
            level
        };
        draft.set("", "log_level", Toml::Str(level), at);
    }
    p.finish(warnings);
}

fn source(s: &Section, walk: &mut Walk, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    match type_of(s).as_str() {
        "tail" => {
            if let Some(tag) = inputs::tail(s, draft, warnings) {
                walk.tags.push(
                    tag.trim_end_matches(".*")
                        .trim_end_matches(".**")
                        .to_owned(),
                );
            }
        }
        "prometheus" => {
            let mut p = Params::new(s);
            let bind = p
                .text("bind", warnings)
                .map_or("0.0.0.0".to_owned(), |(t, _)| t);
            let port = p
                .text("port", warnings)
                .map_or("24231".to_owned(), |(t, _)| t);
            draft.set("api", "listen", Toml::Str(format!("{bind}:{port}")), &s.at);
            p.same(&["metrics_path"]);
            p.finish(warnings);
            warnings.push(Warning::new(&s.at, "<source> @type prometheus", "logferry's /metrics has metrics of its own (logferry_*); dashboards and alerts on Fluentd's need rewriting"));
        }
        "prometheus_monitor"
        | "prometheus_output_monitor"
        | "prometheus_tail_monitor"
        | "monitor_agent" => {
            warnings.push(Warning::new(
                &s.at,
                &format!("<source> @type {}", type_of(s)),
                "Fluentd's own metrics; logferry's are on /metrics",
            ));
        }
        other => warnings.push(Warning::new(
            &s.at,
            &format!("<source> @type {other}"),
            "logferry reads container log files only; not converted",
        )),
    }
}

/// Whether a tag pattern can match a container log's tag.
fn applies(patterns: &str, walk: &Walk) -> bool {
    patterns.split_whitespace().any(|pat| {
        pat.starts_with("**")
            || walk
                .tags
                .iter()
                .any(|t| pat == t || pat.starts_with(&format!("{t}.")))
    })
}

fn filter(s: &Section, walk: &mut Walk, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let ty = type_of(s);
    if walk.caught && applies(&s.arg, walk) {
        // Events leave Fluentd's pipeline at the first <match> that takes them: this filter
        // never saw a container log, and must not become a route that drops some.
        warnings.push(Warning::new(
            &s.at,
            &format!("<filter {}> @type {ty}", s.arg),
            "never reached in Fluentd: an earlier <match> takes every container log; not converted",
        ));
        return;
    }
    if !applies(&s.arg, walk) {
        warnings.push(Warning::new(
            &s.at,
            &format!("<filter {}> @type {ty}", s.arg),
            "matches no container log's tag; not converted",
        ));
        return;
    }
    match ty.as_str() {
        "kubernetes_metadata" => inputs::kubernetes_metadata(s, draft, warnings),
        "parser" => {
            walk.parsed = true;
            inputs::parser(s, draft, warnings);
        }
        "concat" => inputs::concat(s, draft, warnings),
        "grep" => inputs::grep(s, draft, warnings),
        "record_transformer" => inputs::record_transformer(s, warnings),
        other => warnings.push(Warning::new(
            &s.at,
            &format!("<filter> @type {other}"),
            &format!("unknown plugin {other}: not converted"),
        )),
    }
}

/// `kubernetes.var.log.containers.**_<ns>_**` or `**_<ns>_**`.
static NAMESPACE_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[\w.-]+\.)?\*\*_([a-z0-9]([a-z0-9-]*[a-z0-9])?)_\*\*$")
        .unwrap_or_else(|e| unreachable!("a constant pattern: {e}"))
});

enum Target {
    Everything,
    Namespaces(Vec<String>),
    Other,
}

fn target(patterns: &str, walk: &Walk) -> Target {
    let mut namespaces = Vec::new();
    for pat in patterns.split_whitespace() {
        if pat == "**"
            || walk
                .tags
                .iter()
                .any(|t| pat == format!("{t}.**") || pat == t)
        {
            return Target::Everything;
        }
        if let Some(c) = NAMESPACE_TAG.captures(pat)
            && applies(pat, walk)
        {
            namespaces.push(c[1].to_owned());
        }
    }
    if namespaces.is_empty() {
        Target::Other
    } else {
        Target::Namespaces(namespaces)
    }
}

fn matches(s: &Section, walk: &mut Walk, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let ty = type_of(s);
    let what = format!("<match {}> @type {ty}", s.arg);
    if ty == "detect_exceptions" && applies(&s.arg, walk) {
        if let Some(prefix) = inputs::detect_exceptions(s, draft, warnings) {
            let stripped: Vec<String> = walk
                .tags
                .iter()
                .filter_map(|t| t.strip_prefix(&format!("{prefix}.")).map(str::to_owned))
                .collect();
            walk.tags.extend(stripped);
        }
        return;
    }
    let target = target(&s.arg, walk);
    if matches!(target, Target::Other) {
        warnings.push(Warning::new(&s.at, &what, "matches no container log's tag (or a pattern the converter cannot read as a namespace); not converted"));
        return;
    }
    if walk.caught {
        warnings.push(Warning::new(
            &s.at,
            &what,
            "never reached in Fluentd: an earlier <match> takes every container log; not converted",
        ));
        return;
    }
    let es = matches!(
        ty.as_str(),
        "elasticsearch" | "elasticsearch_data_stream" | "opensearch" | "opensearch_data_stream"
    );
    match (target, es, ty.as_str()) {
        (Target::Everything, true, _) => {
            walk.caught = true;
            outputs::elasticsearch(s, draft, warnings);
        }
        (Target::Namespaces(ns), true, _) => {
            let mut scratch = Draft::default();
            outputs::elasticsearch(s, &mut scratch, warnings);
            warnings.push(Warning::new(&s.at, &what, "a route picks only the index: this <match>'s hosts, credentials and buffer are not used, the default [elasticsearch]'s are"));
            let index = match scratch.get("elasticsearch", "index") {
                Some(Toml::Str(i)) => Some(i.clone()),
                _ => None,
            };
            push_route(draft, s, &ns, index, false);
        }
        (Target::Namespaces(ns), false, "null") => push_route(draft, s, &ns, None, true),
        (Target::Everything, false, "null") => {
            walk.caught = true;
            warnings.push(Warning::new(&s.at, &what, "drops every container log not matched before; logferry ships them to [elasticsearch]"));
        }
        (_, _, other) => warnings.push(Warning::new(
            &s.at,
            &what,
            &format!("unknown plugin {other}: not converted"),
        )),
    }
}

fn push_route(
    draft: &mut Draft,
    s: &Section,
    namespaces: &[String],
    index: Option<String>,
    drop: bool,
) {
    let id = s
        .params
        .iter()
        .find(|p| p.key == "@id")
        .and_then(|p| value_text(p, &mut Vec::new()));
    let base = id
        .filter(|i| {
            i.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && i != "default"
        })
        .unwrap_or_else(|| {
            let ns = namespaces.join("-");
            if drop { format!("drop-{ns}") } else { ns }
        });
    let mut name = base.clone();
    let mut n = 2;
    while draft.routes.iter().any(|r| r.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    draft.routes.push(Route {
        name,
        index,
        namespaces: namespaces.to_vec(),
        field_matches: None,
        drop,
        from: s.at.clone(),
    });
}
