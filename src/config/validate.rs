//! The checks a value's type cannot make: globs that compile, URLs with a usable scheme, index
//! patterns Elasticsearch accepts, limits that keep the buffer able to drain, settings that only
//! make sense together.
//!
//! One function per section, called in the order the checks have always run (`data_dir`,
//! input, elasticsearch, `log_level`, kubernetes, buffer). The order matters: problems are
//! sorted by line and column afterwards, but those at the same place (several bad hosts) or at
//! no place (a key left at its default, like `buffer.max_size`) keep the order found here.
//! Each problem is a dotted key and a message; [`Config::from_toml`] locates the key in the
//! text.

use super::{
    Auth, BUILT_IN_REDACTIONS, BUILT_IN_RULES, Buffer, Config, Elasticsearch, FieldCondition,
    Input, Kubernetes, Multiline, Redact, RedactAction, Retention, Route, Secret, Tls,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The problems found so far, in the order they were found: (dotted key, message).
#[derive(Default)]
struct Findings(Vec<(String, String)>);

impl Findings {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_owned(), message.into()));
    }
}

impl Config {
    /// Checks that need more than one value's type: globs, URLs, index patterns, limits.
    pub(super) fn validate(&self) -> Vec<(String, String)> {
        let mut found = Findings::default();
        data_dir(&self.data_dir, &mut found);
        input(&self.input, &mut found);
        elasticsearch(&self.elasticsearch, self.kafka.is_none(), &mut found);
        if let Some(kafka) = &self.kafka {
            found.0.extend(kafka.problems());
        }
        log_level(&self.log_level, &mut found);
        kubernetes(&self.kubernetes, &mut found);
        buffer(&self.buffer, &mut found);
        multiline(&self.multiline, &mut found);
        redact(&self.redact, &mut found);
        routes(self, &mut found);
        throttle(&self.throttle, &mut found);
        found.0
    }
}

fn data_dir(data_dir: &Path, found: &mut Findings) {
    if data_dir.as_os_str().is_empty() {
        found.bad("data_dir", "must not be empty");
    }
}

fn input(input: &Input, found: &mut Findings) {
    // An aggregator reads no files: its records come from its listeners.
    if input.include.is_empty() && input.forward.is_empty() && input.kafka.is_empty() {
        found.bad(
            "input.include",
            "needs at least one glob (or an [[input.forward]] listener)",
        );
    }
    for (i, k) in input.kafka.iter().enumerate() {
        for (key, message) in k.problems(i) {
            found.bad(&key, message);
        }
    }
    for (i, f) in input.forward.iter().enumerate() {
        for (key, message) in f.problems(i) {
            found.bad(&key, message);
        }
    }
    for (key, globs) in [
        ("input.include", &input.include),
        ("input.exclude", &input.exclude),
    ] {
        for g in globs {
            if let Err(e) = glob::Pattern::new(g) {
                found.bad(key, format!("invalid glob {g:?}: {e}"));
            }
        }
    }
    if input.max_line_bytes.0 < 1024 {
        found.bad("input.max_line_bytes", "must be at least 1KiB");
    }
    if input.rescan_interval.0 < Duration::from_millis(100) {
        found.bad("input.rescan_interval", "must be at least 100ms");
    }
    if input.partial_timeout.0.is_zero() {
        found.bad("input.partial_timeout", "must be more than 0s");
    }
}

/// `shipping`: records go to Elasticsearch (no `[kafka]`), so it needs hosts.
fn elasticsearch(es: &Elasticsearch, shipping: bool, found: &mut Findings) {
    let https = shipping && hosts(&es.hosts, found);
    if es.sniff && es.sniff_interval.0 < Duration::from_secs(1) {
        found.bad("elasticsearch.sniff_interval", "must be at least 1s");
    }
    // Below this a rotation would delete the dead letters it has just written: they are
    // the only copy of what the cluster refused.
    if es.dead_letter_max_size.0 < 1024 * 1024 {
        found.bad(
            "elasticsearch.dead_letter_max_size",
            "must be at least 1MiB",
        );
    }
    tls(&es.tls, https, found);
    auth(&es.auth, found);
    indices(es, found);
}

/// Checks `elasticsearch.hosts`; true when one of them uses https (so `tls` means something).
fn hosts(hosts: &[String], found: &mut Findings) -> bool {
    if hosts.is_empty() {
        found.bad("elasticsearch.hosts", "needs at least one URL");
    }
    let mut https = false;
    for h in hosts {
        // Never echo a URL that may carry a password.
        let shown = redact_userinfo(h);
        match reqwest::Url::parse(h) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => found.bad(
                "elasticsearch.hosts",
                format!(
                    "{shown:?}: credentials in the URL would end up in logs; use [elasticsearch.auth]"
                ),
            ),
            Ok(u) if u.scheme() == "http" => {}
            Ok(u) if u.scheme() == "https" => https = true,
            Ok(_) => found.bad(
                "elasticsearch.hosts",
                format!("{shown:?}: the scheme must be http or https"),
            ),
            Err(e) => found.bad(
                "elasticsearch.hosts",
                format!("{shown:?} is not a URL: {e}"),
            ),
        }
    }
    https
}

fn tls(tls: &Tls, https: bool, found: &mut Findings) {
    let tls_set = tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.server_name.is_some()
        || !tls.verify;
    if tls_set && !https {
        found.bad(
            "elasticsearch.tls",
            "is set, but no host in elasticsearch.hosts uses https",
        );
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => found.bad("elasticsearch.tls.cert_file", "needs key_file too"),
        (None, Some(_)) => found.bad("elasticsearch.tls.key_file", "needs cert_file too"),
        _ => {}
    }
    if let Some(name) = &tls.server_name
        && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        found.bad(
            "elasticsearch.tls.server_name",
            format!("{name:?} is not a DNS name or IP address"),
        );
    }
}

fn auth(a: &Auth, found: &mut Findings) {
    let both = |file: &Option<PathBuf>, inline: &Option<Secret>| file.is_some() && inline.is_some();
    for (key, twice) in [
        (
            "elasticsearch.auth.password",
            both(&a.password_file, &a.password),
        ),
        (
            "elasticsearch.auth.api_key",
            both(&a.api_key_file, &a.api_key),
        ),
        ("elasticsearch.auth.token", both(&a.token_file, &a.token)),
    ] {
        if twice {
            found.bad(key, "set both in the config and as a file; keep one");
        }
    }
    let basic = a.user.is_some() || a.password.is_some() || a.password_file.is_some();
    let kinds = [
        basic,
        a.api_key.is_some() || a.api_key_file.is_some(),
        a.token.is_some() || a.token_file.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        found.bad(
            "elasticsearch.auth",
            "choose one of user + password, api_key, token",
        );
    }
    if basic && a.user.is_none() {
        found.bad("elasticsearch.auth.user", "is needed with a password");
    }
    if a.user.is_some() && a.password.is_none() && a.password_file.is_none() {
        found.bad(
            "elasticsearch.auth.password_file",
            "is needed with user (or password)",
        );
    }
}

/// `elasticsearch.index` and `elasticsearch.dead_letter_index`: names Elasticsearch accepts.
fn indices(es: &Elasticsearch, found: &mut Findings) {
    if let Err(e) = crate::vocab::IndexPattern::new(&es.index) {
        found.bad("elasticsearch.index", e);
    }
    if let Some(dl) = &es.dead_letter_index {
        match crate::vocab::IndexPattern::new(dl) {
            // A replayed dead letter must land where the first copy did.
            Ok(_) if dl.contains('%') => found.bad(
                "elasticsearch.dead_letter_index",
                "must be a fixed name, without strftime items",
            ),
            Ok(_) => {}
            Err(e) => found.bad("elasticsearch.dead_letter_index", e),
        }
    }
}

fn log_level(log_level: &str, found: &mut Findings) {
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(log_level) {
        found.bad(
            "log_level",
            format!("{log_level:?} is not a log filter: {e}"),
        );
    }
}

fn kubernetes(k: &Kubernetes, found: &mut Findings) {
    if let Some(url) = &k.api_server
        && reqwest::Url::parse(url).is_err()
    {
        found.bad("kubernetes.api_server", format!("{url:?} is not a URL"));
    }
}

fn buffer(b: &Buffer, found: &mut Findings) {
    if b.chunk_limit_size.0 < 1024 {
        found.bad("buffer.chunk_limit_size", "must be at least 1KiB");
    }
    // Segments are deleted whole once acknowledged: the batches in flight, the segment
    // being written and one more must fit, or a full buffer could never drain.
    let least = b.chunk_limit_size.0 * (b.flush_thread_count as u64 + 2);
    if b.max_size.0 < least {
        found.bad(
            "buffer.max_size",
            format!("must be at least (flush_thread_count + 2) × chunk_limit_size = {least} bytes"),
        );
    }
    if let Some(p) = &b.path
        && p.trim().is_empty()
    {
        found.bad("buffer.path", "must not be empty");
    }
    if !(1..=64).contains(&b.flush_thread_count) {
        found.bad("buffer.flush_thread_count", "must be between 1 and 64");
    }
    if b.retry_wait.0.is_zero() || b.retry_wait > b.retry_max_interval {
        found.bad(
            "buffer.retry_wait",
            "must be above zero and at most retry_max_interval",
        );
    }
    if b.flush_interval.0.is_zero() {
        found.bad("buffer.flush_interval", "must be above zero");
    }
}

/// Rule names that exist, patterns that compile, limits that let a trace through.
fn multiline(m: &Multiline, found: &mut Findings) {
    let mut names: Vec<&str> = BUILT_IN_RULES.to_vec();
    names.push("auto");
    for (i, c) in m.custom.iter().enumerate() {
        let key = format!("multiline.custom[{i}]");
        if c.name.is_empty() || names.contains(&c.name.as_str()) || c.name == "none" {
            found.bad(
                &format!("{key}.name"),
                format!(
                    "{:?} is empty, \"none\", or already the name of a rule",
                    c.name
                ),
            );
        }
        names.push(&c.name);
        for (field, pattern) in [
            ("start_pattern", Some(&c.start_pattern)),
            ("continue_pattern", c.continue_pattern.as_ref()),
        ] {
            if let Some(Err(e)) = pattern.map(|p| regex::Regex::new(p)) {
                let first = e.to_string().lines().last().unwrap_or_default().to_owned();
                found.bad(
                    &format!("{key}.{field}"),
                    format!("invalid regular expression: {first}"),
                );
            }
        }
    }
    for r in &m.rules {
        if !names.contains(&r.as_str()) {
            found.bad(
                "multiline.rules",
                format!(
                    "unknown rule {r:?}: use {} or a [[multiline.custom]] name",
                    names.join(", ")
                ),
            );
        }
    }
    if m.max_lines < 2 {
        found.bad(
            "multiline.max_lines",
            "must be at least 2 (a header and a line of its trace)",
        );
    }
    if m.max_bytes.0 < 1024 || m.max_bytes.0 > 64 << 20 {
        found.bad(
            "multiline.max_bytes",
            "must be between 1KiB and 64MiB: each followed file may hold one record this large in memory",
        );
    }
    if m.max_lines > 100_000 {
        found.bad("multiline.max_lines", "must be at most 100000");
    }
    if m.flush_timeout.0.is_zero() {
        found.bad(
            "multiline.flush_timeout",
            "must be more than 0: it is how long a trace may pause",
        );
    }
}

/// Known rule names, custom rules that compile under a usable name, `hash` with its key file,
/// field patterns the stage understands. The key file is not read here: `validate` never
/// touches (or shows) the secret.
fn redact(r: &Redact, found: &mut Findings) {
    let mut names: Vec<&str> = BUILT_IN_REDACTIONS.to_vec();
    for (i, c) in r.custom.iter().enumerate() {
        let key = format!("redact.custom[{i}]");
        let label_safe = !c.name.is_empty()
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !label_safe || names.contains(&c.name.as_str()) {
            found.bad(
                &format!("{key}.name"),
                format!(
                    "{:?} must be lowercase letters, digits and _, and not already a rule's name",
                    c.name
                ),
            );
        }
        names.push(&c.name);
        if let Err(e) = regex::Regex::new(&c.pattern) {
            let first = e.to_string().lines().last().unwrap_or_default().to_owned();
            found.bad(
                &format!("{key}.pattern"),
                format!("invalid regular expression: {first}"),
            );
        }
    }
    for rule in &r.rules {
        if !names.contains(&rule.as_str()) {
            found.bad(
                "redact.rules",
                format!("unknown rule {rule:?}: use {}", names.join(", ")),
            );
        }
    }
    for (key, list) in [
        ("redact.fields", &r.fields),
        ("redact.skip_fields", &r.skip_fields),
    ] {
        for f in list {
            let stem = f.strip_suffix(".*").unwrap_or(f);
            let whole = key == "redact.fields" && f == "*";
            if !whole
                && (stem.is_empty() || stem.contains('*') || stem.split('.').any(str::is_empty))
            {
                found.bad(
                    key,
                    format!("{f:?}: use a path (\"msg\", \"user.email\"), \"path.*\" (the same: everything under it) or, in fields, \"*\""),
                );
            }
        }
    }
    if r.action == RedactAction::Hash && r.hash_key_file.is_none() {
        found.bad(
            "redact.action",
            "\"hash\" needs hash_key_file (the HMAC key; without it a phone number or an SSN could be hashed back by trying them all)",
        );
    }
}

/// Each route on its own, then what routes must agree on together: unique names, and one
/// retention per index template (routes whose patterns give the same template pattern share
/// one template, so one lifecycle policy).
fn routes(c: &Config, found: &mut Findings) {
    let template_of = |index: &str| {
        crate::vocab::IndexPattern::new(index)
            .ok()
            .map(|p| p.wildcard())
    };
    let mut retention_of: Vec<(Option<String>, Option<Retention>, String)> = vec![(
        template_of(&c.elasticsearch.index),
        c.elasticsearch.retention,
        "elasticsearch.index".to_owned(),
    )];
    if c.elasticsearch.retention.is_some() {
        named_by_time(&c.elasticsearch.index, "elasticsearch.retention", found);
    }
    for (i, r) in c.routes.iter().enumerate() {
        let key = format!("route[{i}]");
        route(r, &key, c, found);
        if c.routes[..i].iter().any(|o| o.name == r.name) {
            found.bad(
                &format!("{key}.name"),
                format!("{:?} is the name of an earlier route", r.name),
            );
        }
        let Some(index) = &r.index else { continue };
        let template = template_of(index);
        if let Some((_, other, at)) = retention_of
            .iter()
            .find(|(t, ..)| t.is_some() && *t == template)
            && *other != r.retention
        {
            found.bad(
                &format!("{key}.retention"),
                format!(
                    "{index:?} gives index names like those of {at} ({}), kept {}: indices one \
                     template matches have one retention",
                    template.as_deref().unwrap_or(""),
                    shown(*other)
                ),
            );
        }
        retention_of.push((template, r.retention, format!("{key}.index")));
    }
    let setup = &c.elasticsearch.setup;
    let retained = retention_of.iter().any(|(_, r, _)| r.is_some());
    if retained && !setup.templates && setup.lifecycle.is_none() {
        // On Elasticsearch the template is what attaches an ILM policy: without it, no
        // index would ever be deleted. OpenSearch's ISM attaches by pattern, and says so.
        found.bad(
            "elasticsearch.setup.templates",
            "false with a retention: on Elasticsearch the index template is what attaches the retention policy, so nothing would ever be deleted; keep templates = true, or on OpenSearch (where the policy attaches itself) set setup.lifecycle = true",
        );
    }
    if let Some(warm) = c.elasticsearch.setup.warm_after {
        let shortest = retention_of.iter().filter_map(|(_, r, _)| *r).min();
        if shortest.is_some_and(|s| warm >= s) {
            found.bad(
                "elasticsearch.setup.warm_after",
                "must be shorter than every retention: an index cannot turn warm after it is deleted",
            );
        }
    }
}

fn shown(r: Option<Retention>) -> String {
    r.map_or("until deleted".to_owned(), |r| format!("{} days", r.days))
}

fn route(r: &Route, key: &str, c: &Config, found: &mut Findings) {
    let name_ok = r.name.len() <= 64
        && r.name
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && r.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok || r.name == "default" {
        found.bad(
            &format!("{key}.name"),
            format!(
                "{:?}: a route's name is up to 64 of a-z 0-9 - _ (it names a template and a \
                 metric label), starting with a letter or digit, and not \"default\" (the \
                 records no route takes)",
                r.name
            ),
        );
    }
    match (&r.index, r.drop) {
        (Some(_), true) | (None, true) if r.retention.is_some() => found.bad(
            &format!("{key}.retention"),
            "a route that drops keeps nothing: remove retention",
        ),
        (Some(_), true) => found.bad(
            &format!("{key}.index"),
            "a route that drops sends nothing to an index: remove index or drop",
        ),
        (None, false) => found.bad(key, "needs index (or drop = true)"),
        (Some(index), false) => match crate::vocab::IndexPattern::new(index) {
            Err(e) => found.bad(&format!("{key}.index"), e),
            Ok(_) if r.retention.is_some() => {
                named_by_time(index, &format!("{key}.retention"), found);
            }
            Ok(_) => {}
        },
        (None, true) => {}
    }
    conditions(r, key, c, found);
}

/// A lifecycle policy deletes an index whole, counting from its creation: its name must name
/// one span of time, or the delete takes this morning's records with those of years ago.
fn named_by_time(index: &str, key: &str, found: &mut Findings) {
    let pattern = crate::vocab::IndexPattern::new(index);
    if pattern.is_ok_and(|p| p.period().is_none()) {
        found.bad(
            key,
            format!(
                "{index:?} does not name one span of time (it is one index for ever, or its name \
                 comes round again, like %d every month), and retention deletes an index whole: \
                 fresh records with old ones. Name indices by year and time, like \
                 \"audit-%Y.%m\", \"logs-%Y.%m.%d\" or \"logs-%G.%V\""
            ),
        );
    }
}

fn conditions(r: &Route, key: &str, c: &Config, found: &mut Findings) {
    let when = format!("{key}.when");
    if r.when.is_empty() {
        found.bad(
            &if r.drop { key.to_owned() } else { when.clone() },
            "needs at least one condition (namespaces, labels or field): a route without any \
             would take every record",
        );
    }
    for ns in r.when.namespaces.iter().flatten() {
        let stem = ns.strip_suffix('*').unwrap_or(ns);
        if stem.is_empty() || stem.contains('*') {
            found.bad(
                &format!("{when}.namespaces"),
                format!("{ns:?}: write a namespace's name, or a prefix ending in one *"),
            );
        }
    }
    if r.when.namespaces.as_ref().is_some_and(Vec::is_empty) {
        found.bad(
            &format!("{when}.namespaces"),
            "an empty list matches nothing",
        );
    }
    // Forwarded records carry their pod's labels (a forwarder's kubernetes filter).
    if !r.when.labels.is_empty() && !c.kubernetes.enabled && c.input.forward.is_empty() {
        found.bad(
            &format!("{when}.labels"),
            "pod labels come from the Kubernetes API: needs [kubernetes] enabled = true",
        );
    }
    if let Some(f) = &r.when.field {
        field(f, &format!("{when}.field"), &c.parse.target, found);
    }
}

fn field(f: &FieldCondition, key: &str, target: &str, found: &mut Findings) {
    let tests = [f.equals.is_some(), f.exists.is_some(), f.matches.is_some()];
    if tests.iter().filter(|t| **t).count() != 1 {
        found.bad(key, "needs exactly one of equals, exists, matches");
    }
    if f.path.is_empty() || f.path.split('.').any(str::is_empty) {
        found.bad(
            &format!("{key}.path"),
            format!(
                "{:?} is not a dotted path like \"log_type\" or \"http.status\"",
                f.path
            ),
        );
    } else if f.path == "logferry" || f.path.starts_with("logferry.") {
        found.bad(
            &format!("{key}.path"),
            "the logferry object says what the agent did to a line; it cannot route",
        );
    }
    // With parse.target, a message's fields are under it in the document: any other path is
    // one of the agent's fields, or never there.
    let agents = ["@timestamp", "stream", "log", "kubernetes", "docker"];
    let top = f.path.split('.').next().unwrap_or("");
    if !target.is_empty() && top != target && !agents.contains(&top) {
        found.bad(
            &format!("{key}.path"),
            format!(
                "parse.target is {target:?}: the message's fields are under it, so this path \
                 is never in a document; write \"{target}.{}\"",
                f.path
            ),
        );
    }
    if let Some(Err(e)) = f.matches.as_deref().map(regex::Regex::new) {
        let first = e.to_string().lines().last().unwrap_or_default().to_owned();
        found.bad(
            &format!("{key}.matches"),
            format!("invalid regular expression: {first}"),
        );
    }
}

fn throttle(t: &super::Throttle, found: &mut Findings) {
    if t.lines_per_second == Some(0) {
        found.bad(
            "throttle.lines_per_second",
            "must be at least 1 (leave it out to turn throttling off)",
        );
    }
    if let (Some(rate), Some(burst)) = (t.lines_per_second, t.burst)
        && burst < rate
    {
        found.bad(
            "throttle.burst",
            format!("must be at least lines_per_second ({rate}): a second's lines must fit"),
        );
    }
    if t.lines_per_second.is_none() && (t.burst.is_some() || !t.except_namespaces.is_empty()) {
        found.bad(
            "throttle.lines_per_second",
            "is needed: without it nothing is throttled",
        );
    }
}

/// `scheme://user:password@host` → `scheme://…@host`, for messages.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}…{}", &url[..s + 3], &url[at..]),
        (None, Some(at)) => format!("…{}", &url[at..]),
        _ => url.to_owned(),
    }
}
