//! The `[throttle]` section: how many lines per second one container (or pod, or namespace)
//! may ship, so that one pod in a crash loop cannot take the node's shipping capacity and
//! buffer.
//!
//! Off by default (no `lines_per_second`). A pod cannot raise its own limit (there is no
//! annotation for it); only this config can, by listing namespaces that are not throttled.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// What one limit applies to: each container's log (`container`, the default), each pod's
    /// containers together (`pod`), or each namespace's pods together (`namespace`).
    pub per: ThrottleScope,
    /// The sustained rate; unset turns throttling off.
    pub lines_per_second: Option<u64>,
    /// Lines that may go at once above the rate, after a quiet spell. Default: the rate × 4.
    pub burst: Option<u64>,
    /// `slow` (the default): the excess stays in the log file and is read later, as the rate
    /// allows; `drop`: the excess is dropped, and counted per namespace.
    pub action: ThrottleAction,
    /// Namespaces never throttled (the platform's own, say).
    pub except_namespaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleScope {
    Container,
    Pod,
    Namespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleAction {
    Slow,
    Drop,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            per: ThrottleScope::Container,
            lines_per_second: None,
            burst: None,
            action: ThrottleAction::Slow,
            except_namespaces: Vec::new(),
        }
    }
}

impl Throttle {
    pub fn enabled(&self) -> bool {
        self.lines_per_second.is_some()
    }

    /// The burst, or its default.
    pub fn burst(&self) -> u64 {
        self.burst
            .unwrap_or_else(|| self.lines_per_second.unwrap_or(0).saturating_mul(4))
    }
}
