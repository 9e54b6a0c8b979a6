//! The Elasticsearch outputs (`elasticsearch`, `elasticsearch_data_stream`, `opensearch`) and
//! their `<buffer>`: `[elasticsearch]` with its `tls` and `auth`, and `[buffer]`.
//!
//! Secrets written inline (a password, an API key, credentials in a host URL) are never copied:
//! the converted config reads them from the environment, and a warning says which variable.

use super::Warning;
use super::emit::{Draft, Toml};
use super::params::{Params, as_bool, as_duration, as_int, as_size, boolean, copy_all, list, size};
use super::syntax::{Section, Value};

/// Fluentd's default `chunk_limit_size` for both buffer kinds, needed to size the buffer from
/// `queue_limit_length` alone.
const FLUENTD_CHUNK_DEFAULT: u64 = 8 << 20;

/// An Elasticsearch `<match>` into `draft`'s `[elasticsearch]`, `[buffer]` and their tables.
pub fn elasticsearch(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    p.all_sections();
    let data_stream = s
        .params
        .iter()
        .any(|q| q.key == "@type" && q.value.text() == Some("elasticsearch_data_stream"));
    let https = hosts(&mut p, draft, warnings);
    credentials(&mut p, draft, warnings);
    tls(&mut p, draft, https, warnings);
    if let Some((v, at)) = p.text("ssl_version", warnings)
        && !matches!(v.as_str(), "TLSv1_2" | "TLSv1_3")
    {
        warnings.push(Warning::new(
            at,
            "ssl_version",
            "logferry speaks TLS 1.2 and 1.3 only",
        ));
    }
    index(&mut p, draft, data_stream, warnings);
    copy_all(
        &mut p,
        draft,
        &[(
            "request_timeout",
            ("elasticsearch", "request_timeout"),
            as_duration,
        )],
        warnings,
    );
    if let Some((level, at)) = p.text("compression_level", warnings) {
        let gzip = if level == "no_compression" {
            "none"
        } else {
            "gzip"
        };
        draft.set("elasticsearch", "compression", Toml::Str(gzip.into()), at);
    }
    if let Some((op, at)) = p.text("write_operation", warnings)
        && op != "create"
    {
        warnings.push(Warning::new(at, "write_operation", "logferry always uses create with its own deterministic _id, so that a replay gives 409s, not duplicates"));
    }
    if let Some((class, at)) = p.text("sniffer_class_name", warnings)
        && !class.contains("SimpleSniffer")
    {
        warnings.push(Warning::new(
            at,
            "sniffer_class_name",
            "logferry sniffs with elasticsearch.sniff (GET _nodes/http) or not at all",
        ));
    }
    options(&mut p, warnings);
    for child in &s.children {
        match child.name.as_str() {
            "buffer" => buffer(child, draft, warnings),
            other => warnings.push(Warning::new(&child.at, &format!("<{other}>"), "not converted: logferry's dead letters (under data_dir) take what the cluster refuses for good")),
        }
    }
    p.finish(warnings);
}

/// `[elasticsearch.tls]`, for https hosts only: Fluentd ignores TLS settings for http ones, and
/// logferry refuses them.
fn tls(p: &mut Params, draft: &mut Draft, https: bool, warnings: &mut Vec<Warning>) {
    if !https {
        p.same(&["ssl_verify", "ca_file", "client_cert", "client_key"]);
        return;
    }
    copy_all(
        p,
        draft,
        &[
            ("ssl_verify", ("elasticsearch.tls", "verify"), as_bool),
            ("ca_file", ("elasticsearch.tls", "ca_file"), as_path),
            ("client_cert", ("elasticsearch.tls", "cert_file"), as_path),
            ("client_key", ("elasticsearch.tls", "key_file"), as_path),
        ],
        warnings,
    );
}

fn as_path(t: &str) -> Option<Toml> {
    Some(Toml::Str(t.to_owned()))
}

/// The output's options that mean what logferry does anyway, and those it cannot say.
fn options(p: &mut Params, warnings: &mut Vec<Warning>) {
    p.same(&[
        "reload_connections",
        "reload_on_failure",
        "reconnect_on_error",
        "reload_after",
        "log_es_400_reason",
        "type_name",
        "suppress_type_name",
        "include_timestamp",
        "default_elasticsearch_version",
        "verify_es_version_at_startup",
        "http_backend",
        "with_transporter_log",
        "prefer_oj_serializer",
        "emit_error_for_missing_id",
        "bulk_message_request_threshold",
        "fail_on_putting_template_retry_exceed",
        "ssl_max_version",
        "ssl_min_version",
    ]);
    if let Some((utc, at)) = p.text("utc_index", warnings)
        && boolean(&utc) == Some(false)
    {
        warnings.push(Warning::new(at, "utc_index", "Fluentd named indices by the node's local date; logferry names them by the record's UTC date, so near midnight (local) lines land in the neighbouring day's index"));
    }
    p.cannot(&["id_key"], "logferry's _id is derived from where the line was read (file and offset), so a replay gives 409s, not duplicates; an id taken from a field is not supported", warnings);
    p.cannot(
        &["include_tag_key", "tag_key"],
        "logferry has no Fluentd tags; no tag field is added",
        warnings,
    );
    p.cannot(
        &["target_index_key", "target_type_key"],
        "an index taken from a field is not supported; use [[route]]",
        warnings,
    );
    p.cannot(&["template_name", "template_file", "template_overwrite", "templates", "customize_template", "enable_ilm", "ilm_policy_id", "ilm_policy", "ilm_policies", "ilm_policy_overwrite", "rollover_index", "index_date_pattern", "deflector_alias", "data_stream_template_name", "data_stream_ilm_name", "data_stream_ilm_policy", "data_stream_ilm_policy_overwrite", "data_stream_template_use_index_patterns"], "index templates and lifecycle policies are not converted: logferry installs its own ([elasticsearch.setup], with a retention per route); to keep yours, set [elasticsearch.setup] templates = false", warnings);
    p.cannot(
        &[
            "time_key",
            "time_key_format",
            "time_precision",
            "time_parse_error_tag",
            "pipeline",
            "routing_key",
            "remove_keys",
            "application_name",
            "custom_headers",
            "headers",
            "client_key_pass",
            "cloud_id",
            "cloud_auth",
            "unrecoverable_error_types",
            "api_key_file",
        ],
        "logferry has no equivalent; not converted",
        warnings,
    );
}

/// `hosts`, or `scheme`/`host`/`port`/`path`, as `elasticsearch.hosts`; true when https.
fn hosts(p: &mut Params, draft: &mut Draft, warnings: &mut Vec<Warning>) -> bool {
    let scheme = p
        .text("scheme", warnings)
        .map_or("http".to_owned(), |(t, _)| t);
    let port = p
        .text("port", warnings)
        .map_or("9200".to_owned(), |(t, _)| t);
    let path = p.text("path", warnings).map(|(t, _)| t).unwrap_or_default();
    let path = if path.is_empty() || path.starts_with('/') || path.starts_with("${") {
        path
    } else {
        format!("/{path}")
    };
    let mut urls = Vec::new();
    let at = if let Some((list_text, at)) = p.text("hosts", warnings) {
        for h in list(&list_text) {
            let url = if h.contains("://") {
                h
            } else if h.contains(':') {
                format!("{scheme}://{h}")
            } else {
                format!("{scheme}://{h}:{port}")
            };
            urls.push(url);
        }
        at.clone()
    } else {
        let (host, at) = p
            .text("host", warnings)
            .map_or(("localhost".to_owned(), p.section.at.clone()), |(t, at)| {
                (t, at.clone())
            });
        urls.push(format!("{scheme}://{host}:{port}{path}"));
        at
    };
    for url in &mut urls {
        if let (Some(s), Some(a)) = (url.find("://"), url.rfind('@'))
            && a > s
        {
            warnings.push(Warning::new(&at, "hosts", "credentials in a host URL are not copied; the user and password are read from ELASTICSEARCH_USER and ELASTICSEARCH_PASSWORD"));
            *url = format!("{}{}", &url[..s + 3], &url[a + 1..]);
            draft.set(
                "elasticsearch.auth",
                "user",
                Toml::Str("${ELASTICSEARCH_USER}".into()),
                &at,
            );
            draft.set(
                "elasticsearch.auth",
                "password",
                Toml::Str("${ELASTICSEARCH_PASSWORD}".into()),
                &at,
            );
        }
    }
    let https = urls.iter().any(|u| u.starts_with("https://"));
    draft.set("elasticsearch", "hosts", Toml::List(urls), &at);
    https
}

/// `user`, `password`, `api_key`: environment references stay; inline secrets become ones.
fn credentials(p: &mut Params, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    if let Some((user, at)) = p.text("user", warnings) {
        draft.set("elasticsearch.auth", "user", Toml::Str(user), at);
    }
    for (key, var) in [
        ("password", "ELASTICSEARCH_PASSWORD"),
        ("api_key", "ELASTICSEARCH_API_KEY"),
    ] {
        // A fallback is a secret written in the config too: it is neither copied nor shown.
        let with_fallback = p.param(key).and_then(|q| match &q.value {
            Value::Text { env, .. } => env
                .iter()
                .find(|e| e.fallback.is_some())
                .map(|e| (e.name.clone(), &q.at)),
            _ => None,
        });
        if let Some((name, at)) = with_fallback {
            let why = format!(
                "the fallback secret is not copied; it is read from the environment variable {name} alone (set it from a Kubernetes Secret)"
            );
            warnings.push(Warning::new(at, key, &why));
            draft.set(
                "elasticsearch.auth",
                key,
                Toml::Str(format!("${{{name}}}")),
                at,
            );
            continue;
        }
        let Some((secret, at)) = p.text(key, warnings) else {
            continue;
        };
        if secret.contains("${") {
            draft.set("elasticsearch.auth", key, Toml::Str(secret), at);
        } else if !secret.is_empty() {
            let why = format!(
                "a secret written in the config is not copied; it is read from the environment variable {var} (set it from a Kubernetes Secret)"
            );
            warnings.push(Warning::new(at, key, &why));
            draft.set(
                "elasticsearch.auth",
                key,
                Toml::Str(format!("${{{var}}}")),
                at,
            );
        }
    }
}

/// `index_name`, `logstash_*`, or `data_stream_name` as `elasticsearch.index`.
fn index(p: &mut Params, draft: &mut Draft, data_stream: bool, warnings: &mut Vec<Warning>) {
    let logstash = p.text("logstash_format", warnings);
    let prefix = p
        .text("logstash_prefix", warnings)
        .map_or("logstash".to_owned(), |(t, _)| t);
    let separator = p
        .text("logstash_prefix_separator", warnings)
        .map_or("-".to_owned(), |(t, _)| t);
    let dateformat = p
        .text("logstash_dateformat", warnings)
        .map_or("%Y.%m.%d".to_owned(), |(t, _)| t);
    let name = p.text("index_name", warnings);
    let stream = p.text("data_stream_name", warnings);
    let (index, at) = match (logstash, name, stream) {
        (_, _, Some((s, at))) if data_stream => {
            warnings.push(Warning::new(at, "data_stream_name", "logferry's create actions (with @timestamp) write to a data stream only once an index template that makes this name one exists; create it as before"));
            (s, at.clone())
        }
        (Some((t, at)), _, _) if boolean(&t) == Some(true) => {
            (format!("{prefix}{separator}{dateformat}"), at.clone())
        }
        (_, Some((n, at)), _) => (n, at.clone()),
        _ => ("fluentd".to_owned(), p.section.at.clone()),
    };
    if index.contains("$${") {
        warnings.push(Warning::new(&at, "index_name", "Fluentd placeholders (${tag}, ${record[…]}) in the index are not supported; use [[route]]"));
        return;
    }
    // fluent-plugin-elasticsearch lowercases the index name; logferry wants it written so.
    draft.set(
        "elasticsearch",
        "index",
        Toml::Str(lowercase_name(&index)),
        &at,
    );
}

/// A `<buffer>` into `[buffer]`.
pub fn buffer(s: &Section, draft: &mut Draft, warnings: &mut Vec<Warning>) {
    let mut p = Params::new(s);
    if !s.arg.is_empty() {
        warnings.push(Warning::new(&s.at, &format!("<buffer {}>", s.arg), "chunk keys do not exist in logferry: batches are bounded by chunk_limit_size and flush_interval"));
    }
    match p.text("@type", warnings) {
        Some((t, at)) if t == "file" => warnings.push(Warning::new(at, "<buffer> @type file", "logferry keeps its own disk buffer under data_dir and does not read Fluentd's chunks: let Fluentd flush them (flush_at_shutdown true) before it is replaced, or the records still in them are not shipped")),
        Some((t, at)) if t != "memory" => warnings.push(Warning::new(at, "<buffer> @type", "logferry's buffer is always on disk")),
        _ => {}
    }
    p.cannot(
        &["path"],
        "logferry's buffer lives under data_dir (buffer.path); Fluentd's buffer files are not read",
        warnings,
    );
    copy_all(
        &mut p,
        draft,
        &[
            ("flush_interval", ("buffer", "flush_interval"), as_duration),
            ("chunk_limit_size", ("buffer", "chunk_limit_size"), as_size),
            (
                "flush_thread_count",
                ("buffer", "flush_thread_count"),
                as_thread_count,
            ),
            (
                "overflow_action",
                ("buffer", "overflow_action"),
                as_overflow_action,
            ),
            ("retry_wait", ("buffer", "retry_wait"), as_duration),
            (
                "retry_max_interval",
                ("buffer", "retry_max_interval"),
                as_duration,
            ),
            ("retry_timeout", ("buffer", "retry_timeout"), as_duration),
            ("retry_forever", ("buffer", "retry_forever"), as_bool),
        ],
        warnings,
    );
    buffer_kinds(&mut p, warnings);
    let chunk_bytes = match draft.get("buffer", "chunk_limit_size") {
        Some(Toml::Str(s)) => crate::config::parse_size(s).ok(),
        _ => None,
    };
    let threads = draft.get("buffer", "flush_thread_count").cloned();
    max_size(&mut p, draft, chunk_bytes, threads, warnings);
    p.finish(warnings);
}

fn as_thread_count(t: &str) -> Option<Toml> {
    as_int(t).filter(|n| matches!(n, Toml::Int(1..=64)))
}

fn as_overflow_action(t: &str) -> Option<Toml> {
    matches!(t, "block" | "drop_oldest_chunk").then(|| Toml::Str(t.to_owned()))
}

/// The buffer parameters that are one fixed kind in logferry, or none at all.
fn buffer_kinds(p: &mut Params, warnings: &mut Vec<Warning>) {
    for (key, fine) in [
        ("retry_type", "exponential_backoff"),
        ("flush_mode", "interval"),
        ("retry_exponential_backoff_base", "2"),
    ] {
        if let Some((v, at)) = p.text(key, warnings)
            && v != fine
            && !(key == "flush_mode" && matches!(v.as_str(), "default" | "immediate"))
        {
            warnings.push(Warning::new(at, key, &format!("logferry's only kind is {fine}: retries back off exponentially with full jitter, and a batch goes out at once when the shipper is idle")));
        }
    }
    p.same(&[
        "flush_at_shutdown",
        "flush_thread_interval",
        "flush_thread_burst_interval",
        "delayed_commit_timeout",
        "chunk_full_threshold",
        "queued_chunks_limit_size",
        "retry_randomize",
    ]);
    p.cannot(
        &[
            "chunk_limit_records",
            "compress",
            "timekey",
            "timekey_wait",
            "timekey_use_utc",
            "timekey_zone",
            "disable_chunk_backup",
            "retry_secondary_threshold",
        ],
        "logferry has no equivalent; not converted",
        warnings,
    );
    p.cannot(
        &["retry_max_times"],
        "logferry bounds retries by time (retry_timeout, or retry_forever), not by a count",
        warnings,
    );
}

/// `total_limit_size`, or Fluentd's older `chunk_limit_size × queue_limit_length`, as
/// `buffer.max_size`, raised to what logferry needs to drain if it is below that.
fn max_size(
    p: &mut Params,
    draft: &mut Draft,
    chunk: Option<u64>,
    threads: Option<Toml>,
    warnings: &mut Vec<Warning>,
) {
    let total = p.text("total_limit_size", warnings);
    let queue = p.text("queue_limit_length", warnings);
    let (bytes, at, how) = match (total, queue) {
        (Some((t, at)), _) => match size(&t) {
            Some((_, b)) => (b, at.clone(), "total_limit_size".to_owned()),
            None => return,
        },
        (None, Some((q, at))) => match q.trim().parse::<u64>() {
            Ok(n) => {
                let c = chunk.unwrap_or(FLUENTD_CHUNK_DEFAULT);
                (
                    c * n,
                    at.clone(),
                    format!(
                        "chunk_limit_size × queue_limit_length {n} (Fluentd's older spelling of total_limit_size)"
                    ),
                )
            }
            Err(_) => return,
        },
        (None, None) => return,
    };
    let threads = match threads {
        Some(Toml::Int(n)) => n as u64,
        _ => 2,
    };
    let least = chunk.unwrap_or(5 << 20) * (threads + 2);
    let bytes = if bytes < least {
        warnings.push(Warning::new(&at, "total_limit_size", &format!("{bytes} bytes is below what logferry needs to drain a full buffer, (flush_thread_count + 2) × chunk_limit_size = {least} bytes; raised to that")));
        least
    } else {
        bytes
    };
    draft.note(
        "buffer",
        "max_size",
        Toml::Str(human(bytes)),
        Some(&at),
        &how,
    );
}

/// Bytes as the largest exact binary unit.
fn human(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes.is_multiple_of(1 << shift) && bytes >= 1 << shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The index name lowercased, its strftime items (`%Y`, `%m`) kept as written.
fn lowercase_name(index: &str) -> String {
    let mut out = String::new();
    let mut after_percent = false;
    for c in index.chars() {
        out.push(if after_percent {
            c
        } else {
            c.to_ascii_lowercase()
        });
        after_percent = c == '%' && !after_percent;
    }
    out
}
