//! `[[route]]`: which index a record goes to, and how long that index is kept.
//!
//! Routes are tried in the order written; the first whose conditions all hold decides the
//! index. A record no route takes goes to `elasticsearch.index`, kept for
//! `elasticsearch.retention`. A route may drop what it takes instead (`drop = true`, counted
//! per route); nothing is dropped unless a route says so.
//!
//! Conditions (all that are given must hold; at least one must be given):
//! - `namespaces`: the pod's namespace, by exact name or `prefix*`;
//! - `labels`: the pod's labels, each key equal to its value (needs `[kubernetes]`);
//! - `field`: a field of the document as it will be indexed, by dotted `path`, which
//!   `equals` a value, `exists`, or `matches` a regular expression.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique; names the route in metrics (`route` label) and its template and policy.
    pub name: String,
    /// The index pattern, strftime from the record's own time, like `elasticsearch.index`.
    /// Required unless the route drops.
    #[serde(default)]
    pub index: Option<String>,
    /// How long the route's indices are kept; unset keeps them until someone deletes them.
    #[serde(default)]
    pub retention: Option<Retention>,
    #[serde(default)]
    pub when: When,
    /// Drop what the route takes (counted in `logferry_route_dropped_total`).
    #[serde(default)]
    pub drop: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct When {
    /// Exact namespace names, or prefixes ending in `*`.
    pub namespaces: Option<Vec<String>>,
    /// Pod labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
    pub field: Option<FieldCondition>,
}

impl When {
    /// Whether the route names no condition at all (it would take every record).
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_none() && self.labels.is_empty() && self.field.is_none()
    }
}

/// A condition on one field of the document; exactly one of `equals`, `exists`, `matches`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    /// Dotted: `http.status` reaches into the object `http`, and also finds a key written
    /// `"http.status"` whole, as Elasticsearch treats both alike.
    pub path: String,
    #[serde(default)]
    pub equals: Option<Scalar>,
    #[serde(default)]
    pub exists: Option<bool>,
    /// A regular expression (the `regex` crate's syntax), unanchored: `^…$` for the whole value.
    #[serde(default)]
    pub matches: Option<String>,
}

/// A value a field can equal: TOML's string, integer, float or boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Integer)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// How long indices are kept: `"90d"`, `"12w"`, `"7y"`. A year counts its possible leap days
/// (`7y` is 2,557 days), so nothing is ever deleted before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retention {
    pub days: u32,
}

impl Retention {
    pub fn parse(s: &str) -> Result<Retention, String> {
        let bad = || {
            format!(
                "invalid retention {s:?}: write a whole number of days, weeks or years, like \
                 \"90d\", \"12w\", \"7y\""
            )
        };
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u32 = s[..split].parse().map_err(|_| bad())?;
        let days = match &s[split..] {
            "d" => Some(n),
            "w" => n.checked_mul(7),
            // At most one leap day in every four years, and one more for a part of four.
            "y" => n
                .checked_mul(365)
                .and_then(|d| d.checked_add(n.div_ceil(4))),
            _ => None,
        };
        match days {
            Some(days) if days > 0 => Ok(Retention { days }),
            _ => Err(bad()),
        }
    }

    /// A name for the policy that keeps indices this long: `logferry-2557d`.
    pub fn policy_name(&self) -> String {
        format!("logferry-{}d", self.days)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Retention::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_never_falls_short_of_the_years_it_names() {
        let days = |s| Retention::parse(s).map(|r| r.days);
        assert_eq!(days("90d"), Ok(90));
        assert_eq!(days("12w"), Ok(84));
        // Seven calendar years hold at most two leap days; one year at most one.
        assert_eq!(days("7y"), Ok(2557));
        assert_eq!(days("1y"), Ok(366));
        assert_eq!(days("4y"), Ok(1461));
        for bad in [
            "",
            "7",
            "0d",
            "1.5y",
            "3m",
            "-1d",
            "7 years",
            "99999999999y",
        ] {
            assert!(days(bad).is_err(), "{bad:?}");
        }
    }
}
