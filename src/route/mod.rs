//! Routing: which index a finished document goes to — the first `[[route]]` whose conditions
//! all hold, else `elasticsearch.index` — or that its route drops it.
//!
//! The decision depends only on the record, its file's pod and the config, never on the clock
//! or on what was sent before: a record read again after a crash is routed again to the same
//! index, where its id (which does not depend on the route) turns the copy into a 409. Pod
//! labels are the ones known when the line is read; the tailer waits briefly for an unknown
//! pod's metadata before it reads, and when the API server is away a label condition does not
//! hold (docs/routing.md).
//!
//! With no routes configured this costs one branch per record.

mod field;

use crate::config::{self, Route};
use crate::parse::View;
use crate::vocab::{FileMeta, IndexPattern};
use field::FieldTest;

/// The route of a record: an index into [`Router::names`]; the last is the default.
pub type RouteId = usize;

/// The name the records no route takes are counted under.
pub const DEFAULT_ROUTE: &str = "default";

/// Where a route sends what it takes.
#[derive(Debug, Clone)]
enum Target {
    Index(IndexPattern),
    Drop,
}

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    /// Exact names, and prefixes (`payments-*` as `payments-`).
    namespaces: Option<Vec<Namespace>>,
    labels: Vec<(String, String)>,
    field: Option<FieldTest>,
    target: Target,
}

#[derive(Debug, Clone)]
enum Namespace {
    Exact(String),
    Prefix(String),
}

/// The configured routes, compiled, and the default index.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Compiled>,
    default: IndexPattern,
}

impl Router {
    /// From a validated config; an error only for what validation would have refused.
    pub fn new(cfg: &config::Config) -> Result<Router, String> {
        let routes = cfg.routes.iter().map(compile).collect::<Result<_, _>>()?;
        Ok(Router {
            routes,
            default: IndexPattern::new(&cfg.elasticsearch.index)?,
        })
    }

    /// Every route's name, in order, and [`DEFAULT_ROUTE`] last: what [`RouteId`]s index.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| r.name.as_str())
            .chain([DEFAULT_ROUTE])
    }

    /// The first route that takes this document of a file of `pod`'s.
    pub fn pick(&self, doc: &View, pod: &FileMeta) -> RouteId {
        self.routes
            .iter()
            .position(|r| r.takes(doc, pod))
            .unwrap_or(self.routes.len())
    }

    /// The index `route` sends a record with this time to; `None` when the route drops. A time
    /// that does not parse (the encoder settles every record's time before it asks, so not
    /// reached) gets the pattern as written, never the clock's index.
    pub fn index_for(&mut self, route: RouteId, time: &str) -> Option<&str> {
        let pattern = match self.routes.get_mut(route).map(|r| &mut r.target) {
            Some(Target::Drop) => return None,
            Some(Target::Index(pattern)) => pattern,
            None => &mut self.default,
        };
        Some(pattern.index_or_pattern(time))
    }

    /// The default index pattern: every record's time is checked against it.
    pub fn default_index(&mut self) -> &mut IndexPattern {
        &mut self.default
    }
}

impl Compiled {
    /// Cheapest first: the namespace, the labels, then the document.
    fn takes(&self, doc: &View, pod: &FileMeta) -> bool {
        if let Some(allowed) = &self.namespaces {
            let Some(ns) = pod.namespace.as_deref() else {
                return false;
            };
            if !allowed.iter().any(|a| match a {
                Namespace::Exact(name) => name == ns,
                Namespace::Prefix(stem) => ns.starts_with(stem.as_str()),
            }) {
                return false;
            }
        }
        if !self
            .labels
            .iter()
            .all(|(k, v)| pod.labels.get(k).is_some_and(|have| have == v))
        {
            return false;
        }
        self.field.as_ref().is_none_or(|f| f.holds(doc))
    }
}

fn compile(r: &Route) -> Result<Compiled, String> {
    let target = match (&r.index, r.drop) {
        (_, true) => Target::Drop,
        (Some(index), false) => Target::Index(IndexPattern::new(index)?),
        (None, false) => return Err(format!("route {:?} has no index", r.name)),
    };
    let namespaces = r.when.namespaces.as_ref().map(|list| {
        list.iter()
            .map(|n| match n.strip_suffix('*') {
                Some(stem) => Namespace::Prefix(stem.to_owned()),
                None => Namespace::Exact(n.clone()),
            })
            .collect()
    });
    let field = r.when.field.as_ref().map(FieldTest::new).transpose()?;
    Ok(Compiled {
        name: r.name.clone(),
        namespaces,
        labels: r
            .when
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        field,
        target,
    })
}

#[cfg(test)]
mod tests;
