//! Every metric the agent exports, and nothing else: a leaf that imports nothing of the crate,
//! only `prometheus-client`.
//!
//! Stages get an `Arc<Metrics>` and update their counters in place (one atomic add, no lookup on
//! the hot path); `observe` renders them for `/metrics`, with the standard `process_*` metrics
//! read from `/proc` at each scrape (`process.rs`) and, for scrapers that do not negotiate
//! OpenMetrics, in the classic text format (`text.rs`).

mod process;
mod text;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

pub type Labels = [(&'static str, &'static str); 1];
type GaugeF64 = Gauge<f64, AtomicU64>;

/// Every metric the agent exports. Labels are low-cardinality by design: never a pod or a file.
pub struct Metrics {
    registry: Registry,
    process: process::Process,
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub files_watched: Gauge,
    /// Followed log files holding a descriptor now (at most the tailer's descriptor budget).
    pub files_open: Gauge,
    /// Bytes written to followed files and not yet safe in the buffer, summed over files.
    pub input_lag_bytes: Gauge,
    pub read_errors: Counter,
    pub truncations: Counter,
    /// Records by decode outcome (`ok` counts every record; the others are flags on some).
    pub records: Family<Labels, Counter>,
    pub json_failures: Counter,
    /// Documents by what Elasticsearch made of them.
    pub documents: Family<Labels, Counter>,
    /// Dead-lettered documents by the cluster's reason (its error type: a bounded set).
    pub dead_letters: Family<Vec<(&'static str, String)>, Counter>,
    /// Documents refused for their mapping and sent again salvaged, by what became of that.
    pub mapping_conflicts: Family<Labels, Counter>,
    /// Bulk requests by HTTP status class, or `error` when no response came.
    pub bulk_requests: Family<Labels, Counter>,
    pub bulk_duration: Histogram,
    /// Bulk requests sent again after a failure (whole or of some items).
    pub bulk_retries: Counter,
    /// The wait before the next retry, 0 while requests succeed.
    pub backoff_seconds: GaugeF64,
    /// 2xx bulk answers that could not be trusted (and were retried whole), by reason.
    pub bulk_invalid_responses: Family<Labels, Counter>,
    /// Shippers that failed (panicked) and were started again with the batch they held.
    pub shipper_restarts: Counter,
    /// From a record being read (and buffered) to Elasticsearch acknowledging it.
    pub delivery_latency: Histogram,
    pub buffer_bytes: Gauge,
    pub buffer_records: Gauge,
    pub buffer_max_bytes: Gauge,
    /// On the wall clock, unlike liveness (see `vocab::clock`): it is about when the oldest
    /// waiting line was read, a calendar fact an operator compares with the time of day.
    pub buffer_oldest_age: GaugeF64,
    /// Records deleted unsent by `overflow_action = "drop_oldest_chunk"`.
    pub buffer_dropped: Counter,
    /// Damage found in the buffer: `torn_write` (cut off at start-up), `corrupt_record` (skipped),
    /// `unreadable_segment` (moved aside), `damaged_header` (rewritten, frames kept).
    pub buffer_damage: Family<Labels, Counter>,
    pub buffer_write_errors: Counter,
    /// The agent's own files (issue 12, items 15-17): waits for the buffer's directory to open
    /// for its fsync (EMFILE and the like, never fatal), and dead-letter records deleted with
    /// the oldest dead-letter file when `dead_letter_max_size` is reached.
    pub buffer_sync_open_waits: Counter,
    /// Bytes of files read again at start-up that the buffer already held records of (the
    /// positions it keeps make this 0; anything else is a bug worth a look).
    pub reread_bytes: Counter,
    pub dead_letters_rotated_out: Counter,
    pub checkpoint_errors: Counter,
    /// Pods in the metadata cache (this node's, and recently deleted ones).
    pub kubernetes_pods: Gauge,
    /// Failed list/watch calls to the API server (each one is retried: a watch restart).
    pub kubernetes_watch_errors: Counter,
    /// Records shipped with only what the file path says.
    pub kubernetes_partial: Counter,
    /// Records dropped because their pod says `logferry.io/exclude: "true"` (only with
    /// `kubernetes.honour_exclude_annotation`).
    pub kubernetes_excluded: Counter,
    /// Pods that say `logferry.io/exclude: "true"` while `honour_exclude_annotation` is off:
    /// their lines are shipped anyway; counted once per pod.
    pub kubernetes_exclude_ignored: Counter,
    /// Connections to the API closed at once because `MAX_CONNECTIONS` were being served.
    pub api_connections_refused: Counter,
    /// Elasticsearch hosts requests go to (`alive`) and hosts set aside after failing.
    pub elasticsearch_hosts: Family<Labels, Gauge>,
    /// `GET _nodes/http` attempts that failed (sniffing keeps the hosts it knew).
    pub elasticsearch_sniff_failures: Counter,
    /// Records joined from several lines by a multiline rule, and the lines in them.
    pub multiline_records: Counter,
    pub multiline_lines: Counter,
    /// Multiline records split at `max_lines` or `max_bytes`.
    pub multiline_splits: Counter,
    /// Multiline records handed on because they stopped growing for `flush_timeout`.
    pub multiline_timeouts: Counter,
    /// Records by the route that took them (`route` is a configured name, or `default`).
    pub route_records: Family<Vec<(&'static str, String)>, Counter>,
    /// Records dropped by their route, by route.
    pub route_dropped: Family<Vec<(&'static str, String)>, Counter>,
    /// Seconds files were held back by throttling (`slow`), by namespace.
    pub throttled_seconds: Family<Vec<(&'static str, String)>, Counter<f64, AtomicU64>>,
    /// Lines dropped by throttling (`drop`), by namespace.
    pub throttle_dropped: Family<Vec<(&'static str, String)>, Counter>,
    /// The largest unread backlog of a file held back by throttling in the last pass.
    pub throttled_lag_bytes: Gauge,
    /// Fluentd pos_file positions, by what became of them (`resumed`, `rotated`, `refused`,
    /// `gone`).
    pub fluentd_positions: Family<Labels, Counter>,
    /// Values replaced by `[redact]`, by rule (a built-in or a configured name: bounded).
    pub redactions: Family<Vec<(&'static str, String)>, Counter>,
    /// 1 once every template and policy the config asks for is in place (or setup is off).
    pub setup_complete: Gauge,
    /// Setup attempts that failed (each is retried with backoff; shipping goes on).
    pub setup_failures: Counter,
    /// Config reloads refused (the file did not validate, or its TLS and credential files
    /// could not be used): the running config stays.
    pub config_reload_failures: Counter,
    /// When a config was last taken, at start or by a reload (Unix seconds).
    pub config_last_reload_success: GaugeF64,
    /// Records consumed from `[[input.kafka]]` topics and durable in the buffer.
    pub kafka_input_records: Counter,
    pub kafka_input_skipped: Counter,
    /// Forward protocol connections open now.
    pub forward_connections: Gauge,
    /// Entries taken from forward protocol frames into the buffer.
    pub forward_entries: Counter,
    /// Forward protocol connections closed for their peer's fault, by reason.
    pub forward_refused: Family<Vec<(&'static str, String)>, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("logferry");
        let m = Metrics::unregistered();
        m.register(&mut registry);
        m.start_known_series();
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { registry, ..m }
    }

    /// Every metric at zero, in an empty registry.
    fn unregistered() -> Metrics {
        Metrics {
            lines_read: Counter::default(),
            bytes_read: Counter::default(),
            files_watched: Gauge::default(),
            files_open: Gauge::default(),
            input_lag_bytes: Gauge::default(),
            read_errors: Counter::default(),
            truncations: Counter::default(),
            records: Family::default(),
            json_failures: Counter::default(),
            documents: Family::default(),
            dead_letters: Family::default(),
            mapping_conflicts: Family::default(),
            bulk_requests: Family::default(),
            bulk_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            bulk_retries: Counter::default(),
            backoff_seconds: GaugeF64::default(),
            bulk_invalid_responses: Family::default(),
            shipper_restarts: Counter::default(),
            delivery_latency: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            buffer_bytes: Gauge::default(),
            buffer_records: Gauge::default(),
            buffer_max_bytes: Gauge::default(),
            buffer_oldest_age: GaugeF64::default(),
            buffer_dropped: Counter::default(),
            buffer_damage: Family::default(),
            buffer_write_errors: Counter::default(),
            buffer_sync_open_waits: Counter::default(),
            reread_bytes: Counter::default(),
            dead_letters_rotated_out: Counter::default(),
            checkpoint_errors: Counter::default(),
            kubernetes_pods: Gauge::default(),
            kubernetes_watch_errors: Counter::default(),
            kubernetes_partial: Counter::default(),
            kubernetes_excluded: Counter::default(),
            kubernetes_exclude_ignored: Counter::default(),
            api_connections_refused: Counter::default(),
            elasticsearch_hosts: Family::default(),
            elasticsearch_sniff_failures: Counter::default(),
            multiline_records: Counter::default(),
            multiline_lines: Counter::default(),
            multiline_splits: Counter::default(),
            multiline_timeouts: Counter::default(),
            route_records: Family::default(),
            route_dropped: Family::default(),
            fluentd_positions: Family::default(),
            throttled_seconds: Family::default(),
            throttle_dropped: Family::default(),
            throttled_lag_bytes: Gauge::default(),
            redactions: Family::default(),
            setup_complete: Gauge::default(),
            setup_failures: Counter::default(),
            config_reload_failures: Counter::default(),
            config_last_reload_success: GaugeF64::default(),
            kafka_input_records: Counter::default(),
            kafka_input_skipped: Counter::default(),
            forward_connections: Gauge::default(),
            forward_entries: Counter::default(),
            forward_refused: Family::default(),
            registry: Registry::default(),
            process: process::Process::default(),
        }
    }

    /// Adds every metric to `r`, in this order; names get the `logferry_` prefix.
    fn register(&self, r: &mut Registry) {
        let m = self;
        macro_rules! register {
            ($($name:literal, $help:literal, $metric:expr;)*) => {
                $(r.register($name, $help, $metric.clone());)*
            };
        }
        register! {
            "input_lines", "Physical lines read from log files", m.lines_read;
            "input_bytes", "Bytes read from log files", m.bytes_read;
            "files_watched", "Log files currently followed", m.files_watched;
            "files_open", "Followed log files holding a file descriptor (idle ones are closed when the budget is spent)", m.files_open;
            "input_lag_bytes", "Bytes written to followed log files and not yet read into the buffer", m.input_lag_bytes;
            "input_read_errors", "Failed opens and reads of log files", m.read_errors;
            "input_truncations", "Log files found truncated (copytruncate)", m.truncations;
            "records", "Records decoded, by outcome (ok counts all; the others are flags on some)", m.records;
            "json_parse_failures", "Messages that looked like JSON objects but did not parse", m.json_failures;
            "documents", "Documents by Elasticsearch outcome", m.documents;
            "dead_letters", "Documents written to the dead-letter store, by reason", m.dead_letters;
            "mapping_conflicts", "Documents refused for their mapping (a field of another type in the index, too many fields) and sent again with the message as a string in log, by outcome: salvaged (indexed so) or dead_lettered (refused again)", m.mapping_conflicts;
            "bulk_requests", "Bulk requests by HTTP status class", m.bulk_requests;
            "bulk_request_duration_seconds", "Bulk request latency", m.bulk_duration;
            "bulk_retries", "Bulk requests sent again after a failure of the request or of some items", m.bulk_retries;
            "backoff_seconds", "Wait before the next retry; 0 while requests succeed", m.backoff_seconds;
            "bulk_invalid_responses", "2xx bulk answers not taken at their word (not JSON, cut short, too large, wrong item count, an item without status), retried whole, by reason", m.bulk_invalid_responses;
            "shipper_restarts", "Shippers that failed unexpectedly and were restarted with the batch they held", m.shipper_restarts;
            "delivery_latency_seconds", "From a line being read and buffered to Elasticsearch acknowledging it", m.delivery_latency;
            "buffer_bytes", "Size of the buffer's segment files", m.buffer_bytes;
            "buffer_max_bytes", "The buffer's size limit (buffer.max_size)", m.buffer_max_bytes;
            "buffer_records", "Records buffered and not yet acknowledged", m.buffer_records;
            "buffer_oldest_record_age_seconds", "Age of the oldest record not yet acknowledged", m.buffer_oldest_age;
            "buffer_dropped_records", "Records deleted unsent because the buffer was full (drop_oldest_chunk)", m.buffer_dropped;
            "buffer_damage", "Damage found in buffer segments, by kind (torn_write, corrupt_record, unreadable_segment, damaged_header)", m.buffer_damage;
            "buffer_write_errors", "Failed writes to the buffer (a full disk, usually)", m.buffer_write_errors;
            "buffer_sync_open_waits", "Times the buffer's directory could not be opened for its fsync (EMFILE, ENFILE) and the commit waited", m.buffer_sync_open_waits;
            "reread_bytes", "Bytes of files read again at start-up that the buffer already held (0 unless something resumed before the buffer's positions)", m.reread_bytes;
            "dead_letters_rotated_out", "Dead-letter records deleted with the oldest dead-letter file to keep dead_letter_max_size", m.dead_letters_rotated_out;
            "checkpoint_write_errors", "Failed writes of the checkpoint or buffer cursor files", m.checkpoint_errors;
            "kubernetes_pods_cached", "Pods in the metadata cache (this node's, and recently deleted ones)", m.kubernetes_pods;
            "kubernetes_watch_errors", "Failed list or watch calls to the Kubernetes API (each retried)", m.kubernetes_watch_errors;
            "kubernetes_records_without_metadata", "Records shipped with only what the file path says (kubernetes.metadata partial)", m.kubernetes_partial;
            "kubernetes_excluded_records", "Records dropped because their pod is annotated logferry.io/exclude (kubernetes.honour_exclude_annotation)", m.kubernetes_excluded;
            "kubernetes_exclude_ignored_pods", "Pods annotated logferry.io/exclude whose logs are shipped anyway (kubernetes.honour_exclude_annotation is false)", m.kubernetes_exclude_ignored;
            "api_connections_refused", "Connections to /metrics, /health and /ready closed at once because too many were open", m.api_connections_refused;
            "elasticsearch_hosts", "Elasticsearch hosts by state: alive (taking requests) or set_aside (failed, retried after a backoff)", m.elasticsearch_hosts;
            "elasticsearch_sniff_failures", "Failed GET _nodes/http attempts (sniffing keeps the hosts it knew)", m.elasticsearch_sniff_failures;
            "multiline_records", "Records joined from several lines by a multiline rule (a stack trace)", m.multiline_records;
            "multiline_lines", "Lines joined into multiline records", m.multiline_lines;
            "multiline_splits", "Multiline records split at multiline.max_lines or max_bytes (the later parts are flagged multiline_split)", m.multiline_splits;
            "multiline_timeouts", "Multiline records handed on because they stopped growing for multiline.flush_timeout", m.multiline_timeouts;
            "route_records", "Records by the route that took them (default: no route did)", m.route_records;
            "route_dropped", "Records dropped because their route says drop = true", m.route_dropped;
            "throttled_seconds", "Seconds files were held back by [throttle] (action slow), by namespace: their lines wait in the log files", m.throttled_seconds;
            "throttle_dropped", "Lines dropped by [throttle] (action drop), by namespace", m.throttle_dropped;
            "throttled_lag_bytes", "The largest unread backlog of a file held back by [throttle] in the last read pass; past containerLogMaxSize, rotation may compress lines unread", m.throttled_lag_bytes;
            "fluentd_positions", "Positions imported from Fluentd's pos_file on the first start, by outcome (resumed, rotated, refused, gone)", m.fluentd_positions;
            "redactions", "Values masked or hashed by redaction rules before encoding, by rule", m.redactions;
            "setup_complete", "1 once the index templates and lifecycle policies the config asks for are in place", m.setup_complete;
            "setup_failures", "Attempts to install index templates or lifecycle policies that failed (retried with backoff)", m.setup_failures;
            "config_reload_failures", "Config reloads (SIGHUP, --watch-config) refused: the file did not validate or its TLS and credential files could not be used; the running config stays", m.config_reload_failures;
            "config_last_reload_success_timestamp_seconds", "When the running config was taken, at start or by the last successful reload (Unix time)", m.config_last_reload_success;
            "kafka_input_records", "Records consumed from [[input.kafka]] topics and durable in the buffer (their offsets committed after)", m.kafka_input_records;
            "kafka_input_skipped", "Records consumed again from [[input.kafka]] topics that the buffer already held (below its positions there): not buffered twice", m.kafka_input_skipped;
            "forward_connections", "Forward protocol connections open ([[input.forward]])", m.forward_connections;
            "forward_entries", "Entries of forward protocol frames appended to the buffer", m.forward_entries;
            "forward_refused", "Forward protocol connections closed for what their peer did, by reason (invalid, too_large, stalled, too_many_connections, unauthorized, tls)", m.forward_refused;
        }
    }

    /// Known label values exist from the start, at 0: a series that appears only on its first
    /// event makes rate() and alerts miss that event.
    fn start_known_series(&self) {
        let m = self;
        for outcome in [
            "ok",
            "partial_joined",
            "truncated",
            "invalid_utf8",
            "malformed",
            "unterminated",
        ] {
            let _ = m.records.get_or_create(&[("outcome", outcome)]);
        }
        for outcome in ["indexed", "duplicate", "retried", "dead_lettered"] {
            let _ = m.documents.get_or_create(&[("outcome", outcome)]);
        }
        for status in ["2xx", "4xx", "5xx", "error"] {
            let _ = m.bulk_requests.get_or_create(&[("status", status)]);
        }
        for state in ["alive", "set_aside"] {
            let _ = m.elasticsearch_hosts.get_or_create(&[("state", state)]);
        }
        for kind in [
            "torn_write",
            "corrupt_record",
            "unreadable_segment",
            "damaged_header",
        ] {
            let _ = m.buffer_damage.get_or_create(&[("kind", kind)]);
        }
        for outcome in ["salvaged", "dead_lettered"] {
            let _ = m.mapping_conflicts.get_or_create(&[("outcome", outcome)]);
        }
        for outcome in ["resumed", "rotated", "refused", "gone", "excluded"] {
            let _ = m.fluentd_positions.get_or_create(&[("outcome", outcome)]);
        }
        for reason in [
            "invalid",
            "too_large",
            "stalled",
            "too_many_connections",
            "unauthorized",
            "tls",
        ] {
            let _ = m
                .forward_refused
                .get_or_create(&vec![("reason", reason.to_owned())]);
        }
    }

    /// Every metric in the OpenMetrics text format, or in Prometheus' classic text format
    /// (0.0.4) when `openmetrics` is false: Prometheus negotiates OpenMetrics, while
    /// `promtool check metrics`, older scrapers and people with curl get the classic one.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        // Formatting into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        let mut process = String::new();
        let _ = encode(&mut process, &self.process.registry());
        let mut all = out.trim_end().trim_end_matches("# EOF").to_owned();
        all.push_str(&process);
        if openmetrics {
            all
        } else {
            text::classic(&all)
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
