//! What the config asks to have in the cluster: an index template per index pattern (the
//! default's and each route's) and a retention policy per distinct lifecycle, with their bodies
//! for Elasticsearch (composable templates, ILM) and OpenSearch (composable templates, ISM).
//!
//! Pure: built from the config alone, so `logferry setup`, every agent at start and the tests
//! see the same plan.
//!
//! - **Patterns.** A template's `index_patterns` is its index pattern with each strftime item a
//!   `*` (`audit-%Y.%m` → `audit-*.*`). Routes writing the same pattern share one template
//!   (validation has made them agree on retention).
//! - **Priority.** 500 and up, past Elasticsearch's built-in templates (priority 100–200, e.g.
//!   `logs-*-*`, which would otherwise make a data stream of `logs-app-2026.12.02`): 500 + 100 ×
//!   the pattern's literal characters + (99 − the route's place), so a narrower pattern always
//!   wins over a wider one and ties go to the earlier route; no two templates share one (the
//!   cluster refuses two overlapping templates of one priority).
//! - **Keep.** On OpenSearch a retention policy attaches by pattern, whatever template an index
//!   got, so a wider pattern's policy would delete a narrower route's indices that have no
//!   retention: those get `logferry-keep`, an ISM policy that never deletes, at their template's
//!   (higher) priority. Elasticsearch needs none: the narrower template, without a lifecycle,
//!   wins.
//! - **Retention.** An index named by time receives records for up to one period (a month, for
//!   `%Y.%m`), and a lifecycle age counts from the index's creation: the delete phase starts at
//!   the retention *plus* the period, so the last record of the month is kept the full retention
//!   too. No rollover: the indices are named by time, so no write alias is needed.
//! - **Warm.** With `warm_after`, a phase that only lowers the index's recovery priority: no
//!   read-only, force-merge or shrink, which would refuse the late records a replay brings.

use crate::config::{self, Retention};
use crate::vocab::{IndexPattern, Period};
use serde_json::{Value, json};

/// The agent's mark on what it installs: `overwrite` replaces only what carries it.
pub const MANAGED_BY: &str = "logferry";

/// Elasticsearch's built-in templates stay below this.
const BASE_PRIORITY: u64 = 500;
/// Priorities per literal character: room for this many routes between two lengths.
const SPREAD: u64 = 100;

/// The ISM policy of indices kept until someone deletes them.
pub const KEEP: &str = "logferry-keep";

/// A keyword longer than this (in characters) is not indexed rather than refused: 8,191 UTF-8
/// characters stay under Lucene's 32,766-byte term limit (a long annotation value).
const KEYWORD_IGNORE_ABOVE: u64 = 8191;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub policies: Vec<Policy>,
    pub templates: Vec<Template>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `logferry-<route>` (`logferry-default` for `elasticsearch.index`).
    pub name: String,
    pub route: String,
    /// The index pattern, as configured (`audit-%Y.%m`).
    pub index: String,
    /// Its names as a wildcard (`audit-*.*`).
    pub pattern: String,
    pub priority: u64,
    /// The policy its indices are kept by, when it has a retention.
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `logferry-<retention>d-<period>`: one per distinct delete age; [`KEEP`] for none.
    pub name: String,
    /// `None` for [`KEEP`].
    pub retention: Option<Retention>,
    /// Days from an index's creation to its deletion; `None` for [`KEEP`].
    pub delete_after_days: Option<u32>,
    pub warm_after_days: Option<u32>,
    /// The templates' patterns and priorities it applies to (ISM attaches by pattern).
    pub patterns: Vec<(String, u64)>,
}

/// Which product answers: the two differ in their lifecycle APIs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Index lifecycle management, attached by the template's `index.lifecycle.name`.
    Elasticsearch,
    /// Index state management, attached by the policy's `ism_template`.
    OpenSearch,
}

/// What the answering cluster's version takes, beyond its flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Lifecycle policies can be installed (ILM policies with `_meta` need Elasticsearch
    /// 7.14; an older cluster gets templates without a lifecycle rather than nothing).
    pub lifecycle: bool,
    /// `index.mapping.total_fields.ignore_dynamic_beyond_limit` (Elasticsearch 8.13): fields
    /// past the limit are kept in `_source` unindexed instead of refusing the document.
    pub ignore_dynamic_beyond_limit: bool,
}

impl Capabilities {
    /// What every supported version takes: lifecycle policies, and nothing newer.
    pub const BASE: Capabilities = Capabilities {
        lifecycle: true,
        ignore_dynamic_beyond_limit: false,
    };
}

impl Plan {
    /// What `cfg` asks for; empty when setup is off.
    pub fn new(cfg: &config::Config) -> Plan {
        let setup = &cfg.elasticsearch.setup;
        let lifecycle = setup.lifecycle.unwrap_or_else(|| {
            cfg.elasticsearch.retention.is_some()
                || cfg.routes.iter().any(|r| r.retention.is_some())
        });
        let mut plan = Plan {
            policies: Vec::new(),
            templates: Vec::new(),
        };
        let targets = cfg
            .routes
            .iter()
            .filter(|r| !r.drop)
            .filter_map(|r| Some((r.name.as_str(), r.index.as_deref()?, r.retention)))
            .chain([(
                crate::route::DEFAULT_ROUTE,
                cfg.elasticsearch.index.as_str(),
                cfg.elasticsearch.retention,
            )]);
        for (place, (route, index, retention)) in targets.enumerate() {
            let Ok(index) = IndexPattern::new(index) else {
                continue;
            };
            let pattern = index.wildcard();
            if plan.templates.iter().any(|t| t.pattern == pattern) {
                continue;
            }
            let place = (place as u64).min(SPREAD - 1);
            let priority =
                BASE_PRIORITY + index.literal_len() as u64 * SPREAD + (SPREAD - 1 - place);
            let policy = match (lifecycle, retention, index.period()) {
                (true, Some(kept), Some(period)) => {
                    Some(plan.policy_for(kept, period, setup.warm_after, (&pattern, priority)))
                }
                _ => None,
            };
            plan.templates.push(Template {
                name: format!("logferry-{route}"),
                route: route.to_owned(),
                index: index.as_str().to_owned(),
                pattern,
                priority,
                policy,
            });
        }
        plan.keep_the_rest();
        if !setup.templates {
            plan.templates.clear();
        }
        plan
    }

    /// With any retention policy, the templates without one get [`KEEP`] (see the module's doc).
    fn keep_the_rest(&mut self) {
        let kept: Vec<(String, u64)> = self
            .templates
            .iter()
            .filter(|t| t.policy.is_none())
            .map(|t| (t.pattern.clone(), t.priority))
            .collect();
        if self.policies.is_empty() || kept.is_empty() {
            return;
        }
        self.policies.push(Policy {
            name: KEEP.to_owned(),
            retention: None,
            delete_after_days: None,
            warm_after_days: None,
            patterns: kept,
        });
    }

    /// The policy for this retention and period (made if new), now also for `applies_to`.
    fn policy_for(
        &mut self,
        kept: Retention,
        period: Period,
        warm: Option<Retention>,
        applies_to: (&str, u64),
    ) -> String {
        let name = format!("logferry-{}d-{}", kept.days, period.as_str());
        let policy = match self.policies.iter_mut().find(|p| p.name == name) {
            Some(p) => p,
            None => {
                let delete = kept.days.saturating_add(period.max_days());
                self.policies.push(Policy {
                    name: name.clone(),
                    retention: Some(kept),
                    delete_after_days: Some(delete),
                    // A warm phase only while there is time before the delete.
                    warm_after_days: warm
                        .map(|w| w.days.saturating_add(period.max_days()))
                        .filter(|w| *w < delete),
                    patterns: Vec::new(),
                });
                self.policies.last_mut().expect("just pushed")
            }
        };
        policy
            .patterns
            .push((applies_to.0.to_owned(), applies_to.1));
        name
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.templates.is_empty()
    }
}

impl Template {
    /// An index name it is for: today's.
    pub fn sample(&self) -> String {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        IndexPattern::new(&self.index)
            .ok()
            .and_then(|mut p| p.index_for(&now).map(str::to_owned))
            .unwrap_or_else(|| self.pattern.clone())
    }

    /// The `PUT _index_template/<name>` body, for a cluster that takes what every supported
    /// version takes.
    pub fn body(&self, flavor: Flavor) -> Value {
        self.body_for(flavor, Capabilities::BASE)
    }

    /// The `PUT _index_template/<name>` body for a cluster that takes `caps`.
    ///
    /// A document with one value of the wrong type (`"status":"OK"` where another app wrote
    /// numbers) keeps its other fields (`index.mapping.ignore_malformed`); where the cluster
    /// knows it, fields past the field limit are kept unindexed. On Elasticsearch, a daily
    /// index's lifecycle age counts from the date in its name
    /// (`index.lifecycle.parse_origination_date`), so an index created late (a cut-over reading
    /// old files, a replay after an outage) is deleted when its records' day passes the
    /// retention, not a retention after it was created.
    pub fn body_for(&self, flavor: Flavor, caps: Capabilities) -> Value {
        let keyword = json!({"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE});
        let mut template = json!({
            "mappings": {
                "dynamic_templates": [
                    {"logferry_kubernetes": {"path_match": "kubernetes.*", "match_mapping_type": "string", "mapping": keyword}},
                    {"logferry_docker": {"path_match": "docker.*", "match_mapping_type": "string", "mapping": keyword}},
                ],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "log": {"type": "text"},
                },
            },
        });
        let mut index = json!({"mapping": {"ignore_malformed": true}});
        if caps.ignore_dynamic_beyond_limit {
            index["mapping"]["total_fields"] = json!({"ignore_dynamic_beyond_limit": true});
        }
        if let (Some(policy), Flavor::Elasticsearch, true) = (&self.policy, flavor, caps.lifecycle)
        {
            index["lifecycle"] = json!({"name": policy});
            // The name must end in `-yyyy.MM.dd` (or the index is refused): only daily ones.
            if self.index.ends_with("-%Y.%m.%d") {
                index["lifecycle"]["parse_origination_date"] = json!(true);
            }
        }
        template["settings"] = json!({ "index": index });
        json!({
            "index_patterns": [self.pattern],
            "priority": self.priority,
            "template": template,
            "_meta": {"managed_by": MANAGED_BY, "route": self.route},
        })
    }
}

impl Policy {
    fn description(&self) -> String {
        let patterns = self
            .patterns
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match self.retention {
            Some(r) => format!(
                "logferry: keeps {patterns} indices {} days after their last day, then deletes them (managed_by: {MANAGED_BY})",
                r.days
            ),
            None => format!(
                "logferry: keeps {patterns} indices until someone deletes them (managed_by: {MANAGED_BY})"
            ),
        }
    }

    /// Whether `flavor` needs it installed: [`KEEP`] only exists for ISM.
    pub fn wanted_by(&self, flavor: Flavor) -> bool {
        self.delete_after_days.is_some() || flavor == Flavor::OpenSearch
    }

    /// The body for `flavor`: an ILM policy, or an ISM policy.
    pub fn body(&self, flavor: Flavor) -> Value {
        match flavor {
            Flavor::Elasticsearch => self.ilm(),
            Flavor::OpenSearch => self.ism(),
        }
    }

    fn ilm(&self) -> Value {
        let delete = self.delete_after_days.unwrap_or(u32::MAX);
        let mut phases = json!({
            "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
            "delete": {"min_age": format!("{delete}d"), "actions": {"delete": {}}},
        });
        if let Some(warm) = self.warm_after_days {
            phases["warm"] = json!({"min_age": format!("{warm}d"), "actions": {"set_priority": {"priority": 50}}});
        }
        json!({"policy": {
            "_meta": {"managed_by": MANAGED_BY, "description": self.description()},
            "phases": phases,
        }})
    }

    fn ism(&self) -> Value {
        let to = |state: &str, days: u32| json!([{"state_name": state, "conditions": {"min_index_age": format!("{days}d")}}]);
        let mut states = Vec::new();
        match (self.delete_after_days, self.warm_after_days) {
            (None, _) => states.push(json!({"name": "hot", "actions": [], "transitions": []})),
            (Some(delete), Some(warm)) => {
                states.push(json!({"name": "hot", "actions": [], "transitions": to("warm", warm)}));
                states.push(json!({"name": "warm", "actions": [{"index_priority": {"priority": 50}}], "transitions": to("delete", delete)}));
            }
            (Some(delete), None) => states
                .push(json!({"name": "hot", "actions": [], "transitions": to("delete", delete)})),
        }
        if self.delete_after_days.is_some() {
            states.push(json!({"name": "delete", "actions": [{"delete": {}}], "transitions": []}));
        }
        let templates: Vec<Value> = self
            .patterns
            .iter()
            .map(|(p, priority)| json!({"index_patterns": [p], "priority": priority}))
            .collect();
        json!({"policy": {
            "description": self.description(),
            "default_state": "hot",
            "states": states,
            "ism_template": templates,
        }})
    }
}
