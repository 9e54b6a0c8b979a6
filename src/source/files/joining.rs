//! Which multiline rules each file's lines are joined by: `[multiline]` for every container,
//! unless its pod's `logferry.io/multiline` annotation names others (or `none`).

use super::Outlet;
use super::file::Tracked;
use crate::config;
use crate::multiline::{Counters, Joiner, Limits, RuleSet};
use crate::vocab::FileMeta;
use std::collections::HashMap;
use std::sync::Arc;

/// Distinct annotation values remembered; pods choose them, so the map is bounded.
const REMEMBERED: usize = 64;

pub(super) struct Joining {
    /// `[multiline] rules`, or `None` when off.
    default: Option<Arc<RuleSet>>,
    custom: Vec<config::CustomRule>,
    limits: Limits,
    counters: Counters,
    /// Annotation value → its rules (`None`: joining off for the pod).
    by_annotation: HashMap<Arc<str>, Option<Arc<RuleSet>>>,
}

/// The rules `[multiline]` joins every container's lines by; `None` when it is off.
pub fn configured_rules(cfg: &config::Multiline) -> Option<Arc<RuleSet>> {
    // Validation has checked every name; a failure here would be a bug, not a config.
    RuleSet::new(&cfg.rules, &cfg.custom)
        .ok()
        .filter(|r| !r.is_empty())
        .map(Arc::new)
}

/// The rules a pod's `logferry.io/multiline` annotation `value` picks: `none` turns joining
/// off, names (`"java,python"`, custom ones from `custom`) pick those, and names that do not
/// exist leave the pod with `default` (`[multiline]`'s), said in the log. The tailer and
/// `logferry test` both ask here.
pub fn annotated_rules(
    value: &str,
    default: Option<&Arc<RuleSet>>,
    custom: &[config::CustomRule],
) -> Option<Arc<RuleSet>> {
    let names: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
    match RuleSet::new(&names, custom) {
        _ if value.trim() == "none" => None,
        Ok(r) => Some(Arc::new(r)).filter(|r| !r.is_empty()),
        Err(e) => {
            tracing::warn!(annotation = crate::kube::metadata::MULTILINE, value = %value, error = %e, "a pod names multiline rules that do not exist; its lines are joined by [multiline] rules");
            default.cloned()
        }
    }
}

impl Joining {
    pub(super) fn new(cfg: &config::Multiline, counters: Counters) -> Joining {
        Joining {
            default: configured_rules(cfg),
            custom: cfg.custom.clone(),
            limits: Limits::from_config(cfg),
            counters,
            by_annotation: HashMap::new(),
        }
    }

    fn rules_for(&mut self, meta: &FileMeta) -> Option<Arc<RuleSet>> {
        let Some(value) = &meta.multiline else {
            return self.default.clone();
        };
        if let Some(rules) = self.by_annotation.get(value) {
            return rules.clone();
        }
        let rules = annotated_rules(value, self.default.as_ref(), &self.custom);
        if self.by_annotation.len() >= REMEMBERED
            && let Some(any) = self.by_annotation.keys().next().cloned()
        {
            self.by_annotation.remove(&any);
        }
        self.by_annotation.insert(value.clone(), rules.clone());
        rules
    }

    /// Gives `t` the joiner its pod's metadata asks for. A joiner whose rules change hands on
    /// what it holds first, as complete records: nothing held is lost.
    pub(super) fn apply(&mut self, t: &mut Tracked, out: &mut Outlet) {
        self.apply_as(t, out, false);
    }

    /// [`Joining::apply`] after a reload changed `[multiline]`: every joiner is built again
    /// from the new section, even under the same rule names (a custom rule's pattern, or the
    /// limits, may be what changed).
    pub(super) fn apply_reloaded(&mut self, t: &mut Tracked, out: &mut Outlet) {
        self.apply_as(t, out, true);
    }

    fn apply_as(&mut self, t: &mut Tracked, out: &mut Outlet, rebuild: bool) {
        let rules = self.rules_for(&t.meta);
        let current = t.joiner.as_ref().map(Joiner::rules);
        // By name, not by pointer: a value the bounded map forgot is built again, and must not
        // look like a change (which would hand a held trace on half-way).
        let same = match (&rules, current) {
            (None, None) => true,
            (Some(a), Some(b)) => !rebuild && (Arc::ptr_eq(a, b) || a.names() == b.names()),
            _ => false,
        };
        if same {
            return;
        }
        let before = t.safe_offset();
        t.finish_joining(before, out);
        t.joiner =
            rules.map(|r| Joiner::new(r, self.limits, self.counters.clone(), t.read_pos == 0));
    }
}
