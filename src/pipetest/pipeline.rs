//! One case through the agent's own stages, in the agent's order, offline: the lines are
//! decoded ([`Decoder`], partials joined), joined by the multiline rules the pod gets
//! ([`Joiner`], rules chosen by [`crate::source::files::configured_rules`] and
//! [`crate::source::files::annotated_rules`], as the tailer chooses them), given the pod's metadata (a
//! [`Cache`] filled from the case's pod and asked as the tailer asks it, or what the file's path
//! says without `[kubernetes]`), then encoded by the agent's own [`ItemEncoder`]
//! ([`crate::agent::encoder`]: parse, redaction, routing, the `_bulk` item). No file, thread,
//! buffer, cluster or network is involved.
//!
//! Where the runner stands in for the tailer: the case's lines are one file read from its start
//! to its end, and what is still held at the end (a partial without its final piece, a trace)
//! is handed on as the tailer does when it lets a file go; a line is cut at the same length as
//! the tailer cuts it. Throttling is not applied: it depends on the rate lines come at.

use super::case::{Case, CasePod};
use crate::config::{Config, Retention};
use crate::decode::{Decoder, Format};
use crate::encode::ItemEncoder;
use crate::kube::PodRef;
use crate::kube::cache::Cache;
use crate::metrics::Metrics;
use crate::multiline::{Counters, Joiner, Limits, RuleSet};
use crate::vocab::{FileKey, FileMeta, IdBasis, Record};
use serde_json::Value;
use std::sync::Arc;

/// The uid a case's pod has (`kubernetes.pod_id` with `[kubernetes]`): cases name no uid.
pub const POD_UID: &str = "00000000-0000-0000-0000-000000000000";

/// What became of one record.
#[derive(Debug, Clone)]
pub enum Outcome {
    Document {
        /// The index its `_bulk` action names.
        index: String,
        /// The route that took it (`default`: none did).
        route: String,
        /// How long its index is kept.
        retention: Option<Retention>,
        /// The document line, as sent.
        text: String,
        doc: Value,
    },
    Dropped {
        /// The route that dropped it, or why nothing was routed.
        route: String,
        why: &'static str,
    },
}

/// The stages built once from the config, run for every case.
pub struct Pipeline<'c> {
    cfg: &'c Config,
    metrics: Arc<Metrics>,
    encoder: ItemEncoder,
    /// `[multiline]`'s rules; a pod's annotation may pick others.
    rules: Option<Arc<RuleSet>>,
    /// By [`crate::route::RouteId`]: each route's name and retention, the default last.
    routes: Vec<(String, Option<Retention>)>,
}

impl<'c> Pipeline<'c> {
    /// The agent's encoder for `cfg`; fails where the agent would not start (a redaction key
    /// file that cannot be read, say).
    pub fn new(cfg: &'c Config) -> anyhow::Result<Pipeline<'c>> {
        let metrics = Arc::new(Metrics::new());
        let encoder = crate::agent::encoder(cfg, &metrics, None)?;
        let retentions = cfg
            .routes
            .iter()
            .map(|r| r.retention)
            .chain([cfg.elasticsearch.retention]);
        let routes = encoder
            .router()
            .names()
            .map(str::to_owned)
            .zip(retentions)
            .collect();
        Ok(Pipeline {
            cfg,
            metrics,
            encoder,
            rules: crate::source::files::configured_rules(&cfg.multiline),
            routes,
        })
    }

    /// Every outcome of `case`'s lines, in order; `Err` says why the case cannot be run as
    /// written (a line that is not CRI or docker json-file, a time that does not parse).
    pub fn run(&mut self, case: &Case) -> Result<Vec<Outcome>, String> {
        let meta = self.meta_for(case.pod.as_ref())?;
        let rules = match &meta.multiline {
            None => self.rules.clone(),
            Some(value) => crate::source::files::annotated_rules(
                value,
                self.rules.as_ref(),
                &self.cfg.multiline.custom,
            ),
        };
        let limits = Limits::from_config(&self.cfg.multiline);
        let counters = Counters::new(&self.metrics);
        let mut joiner = rules.map(|r| Joiner::new(r, limits, counters, true));
        let mut decoder = Decoder::new(self.cfg.input.max_line_bytes.as_usize());
        decoder.cut_by_the_runtimes_time(self.cfg.input.partial_timeout.0);
        let cap = self.cfg.input.max_physical_line();
        let mut file = CaseFile {
            encoder: &mut self.encoder,
            routes: &self.routes,
            meta: &meta,
            key: FileKey {
                ids: IdBasis::V2 { seed: 0 },
                ..FileKey::new(0, 1, 1)
            },
            starts: Vec::new(),
            outcomes: Vec::new(),
        };
        let mut offset = 0u64;
        for (i, line) in case.lines.iter().enumerate() {
            if line.contains('\n') {
                return Err(format!(
                    "line {} holds a newline: write each physical line as an entry of its own",
                    i + 1
                ));
            }
            file.starts.push(offset);
            let bytes = line.as_bytes();
            let cut = bytes.len() > cap;
            let decoded = decoder.decode(&bytes[..bytes.len().min(cap)], offset);
            if let Some(head) = decoder.take_cut() {
                file.hand_on(&mut joiner, head);
            }
            if let Some(mut rec) = decoded {
                rec.flags.truncated |= cut;
                if rec.flags.malformed {
                    return Err(malformed(i + 1, line, decoder.format()));
                }
                file.hand_on(&mut joiner, rec);
            }
            offset += bytes.len() as u64 + 1;
        }
        // The end of the case is the file let go: what is held is handed on, flagged.
        for rec in decoder.finish() {
            file.hand_on(&mut joiner, rec);
        }
        if let Some(j) = &mut joiner {
            j.finish(&mut |r| file.encode(r));
        }
        file.outcomes.into_iter().collect()
    }

    /// The pod's metadata as the tailer would have it once the pod is known.
    fn meta_for(&self, pod: Option<&CasePod>) -> Result<FileMeta, String> {
        let Some(p) = pod else {
            return Ok(FileMeta::default());
        };
        let file = PodRef {
            namespace: p.namespace.clone(),
            pod: p.name.clone(),
            container: p.container.clone(),
            container_id: None,
            pod_id: None,
        };
        if !self.cfg.kubernetes.enabled {
            return Ok(file.file_meta());
        }
        let cache = Cache::new(&self.cfg.kubernetes, self.metrics.clone());
        cache.know_pod(&api_pod(p)?);
        if !p.namespace_labels.is_empty() {
            cache.know_namespace(&p.namespace, p.namespace_labels.clone());
        }
        Ok(cache.lookup(&file))
    }
}

/// The case's pod as the API server would send it.
fn api_pod(p: &CasePod) -> Result<k8s_openapi::api::core::v1::Pod, String> {
    let pod = serde_json::json!({
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": POD_UID,
            "labels": p.labels,
            "annotations": p.annotations,
        },
        "spec": { "containers": [{ "name": p.container }] },
    });
    serde_json::from_value(pod).map_err(|e| format!("the case's pod is not a valid Pod: {e}"))
}

fn malformed(n: usize, line: &str, format: Option<Format>) -> String {
    let format = match format {
        Some(Format::Docker) => "docker json-file",
        _ => "CRI",
    };
    format!(
        "line {n} is not a {format} line (the first line decides a file's format); the agent \
         would ship it whole, flagged logferry.malformed: {line:?}"
    )
}

/// The case's lines as one file: what each record becomes.
struct CaseFile<'a> {
    encoder: &'a mut ItemEncoder,
    routes: &'a [(String, Option<Retention>)],
    meta: &'a FileMeta,
    key: FileKey,
    /// Each line's offset, to name the line a record starts at.
    starts: Vec<u64>,
    outcomes: Vec<Result<Outcome, String>>,
}

impl CaseFile<'_> {
    /// As the tailer hands a decoded record on: through the joiner when multiline is on.
    fn hand_on(&mut self, joiner: &mut Option<Joiner>, rec: Record<'_>) {
        match joiner {
            None => self.encode(&rec),
            Some(j) => j.push(rec, &mut |r| self.encode(r)),
        }
    }

    /// As the agent's output does with a record: an excluded pod's go nowhere, the rest are
    /// encoded into a `_bulk` item (or dropped by their route).
    fn encode(&mut self, rec: &Record) {
        let route = |id: usize| self.routes.get(id).cloned().unwrap_or_default();
        if self.meta.excluded {
            let outcome = Outcome::Dropped {
                route: "-".into(),
                why: "its pod asks to be excluded (logferry.io/exclude)",
            };
            self.outcomes.push(Ok(outcome));
            return;
        }
        let mut item = Vec::new();
        let encoded = self.encoder.encode(&mut item, &self.key, rec, self.meta);
        let (name, retention) = route(encoded.route);
        let outcome = if encoded.dropped {
            Ok(Outcome::Dropped {
                route: name,
                why: "its route drops it",
            })
        } else {
            self.document(&item, name, retention, rec.offset)
        };
        self.outcomes.push(outcome);
    }

    fn document(
        &self,
        item: &[u8],
        route: String,
        retention: Option<Retention>,
        offset: u64,
    ) -> Result<Outcome, String> {
        let text = String::from_utf8_lossy(item);
        let (action, text) = text.split_once('\n').unwrap_or((&text, ""));
        let text = text.trim_end_matches('\n').to_owned();
        let bad = |e: serde_json::Error| format!("the encoder wrote what is not JSON: {e}");
        let action: Value = serde_json::from_str(action).map_err(bad)?;
        let doc: Value = serde_json::from_str(&text).map_err(bad)?;
        if doc.pointer("/logferry/time_inferred") == Some(&Value::Bool(true)) {
            let line = self.starts.partition_point(|&s| s <= offset);
            return Err(format!(
                "the time of line {line} does not parse; the agent would give the record its \
                 file's birth time"
            ));
        }
        let index = action
            .pointer("/create/_index")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Outcome::Document {
            index,
            route,
            retention,
            text,
            doc,
        })
    }
}
