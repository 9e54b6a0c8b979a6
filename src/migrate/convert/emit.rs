//! The converted configuration before it is text ([`Draft`]), and its rendering as TOML with a
//! comment above each key naming the Fluentd line it came from.
//!
//! Written by hand rather than through `toml`'s serializer because the comments are the point:
//! an operator reads the result next to the old `fluent.conf`. Strings are quoted by `toml`
//! itself, so any value (quotes, backslashes, newlines) stays one valid TOML string.

use super::Origin;
use std::fmt::Write;
use std::path::Path;

/// A TOML value the converter writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Toml {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
}

impl Toml {
    fn render(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        match self {
            Toml::Str(s) => quote(s),
            Toml::Bool(b) => b.to_string(),
            Toml::Int(i) => i.to_string(),
            Toml::List(items) => {
                let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
                format!("[{}]", inner.join(", "))
            }
        }
    }
}

/// One key of a table, with where it came from and, when the mapping is not one to one, why.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Toml,
    pub from: Option<Origin>,
    pub note: Option<String>,
}

/// A `[[route]]` (issue 15's shape): documents matching `when` go to `index`, or nowhere when
/// `drop`.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub index: Option<String>,
    pub namespaces: Vec<String>,
    /// `field = {path, matches}`: a grep exclude on a field other than the namespace.
    pub field_matches: Option<(String, String)>,
    pub drop: bool,
    pub from: Origin,
}

/// The whole converted configuration, in the order it is written.
#[derive(Debug, Default)]
pub struct Draft {
    /// (table name, "" for the top level; its keys).
    tables: Vec<(String, Vec<Entry>)>,
    pub routes: Vec<Route>,
}

impl Draft {
    /// Sets `table.key` (replacing an earlier value: the later Fluentd line wins, as in
    /// Fluentd).
    pub fn set(&mut self, table: &str, key: &str, value: Toml, from: &Origin) {
        self.put(table, key, value, Some(from.clone()), None);
    }

    /// Sets a key with a comment that says why it has this value.
    pub fn note(&mut self, table: &str, key: &str, value: Toml, from: Option<&Origin>, why: &str) {
        self.put(table, key, value, from.cloned(), Some(why.to_owned()));
    }

    fn put(
        &mut self,
        table: &str,
        key: &str,
        value: Toml,
        from: Option<Origin>,
        note: Option<String>,
    ) {
        let pos = match self.tables.iter().position(|(t, _)| t == table) {
            Some(p) => p,
            None => {
                self.tables.push((table.to_owned(), Vec::new()));
                self.tables.len() - 1
            }
        };
        let entries = &mut self.tables[pos].1;
        let entry = Entry {
            key: key.to_owned(),
            value,
            from,
            note,
        };
        match entries.iter_mut().find(|e| e.key == key) {
            Some(old) => *old = entry,
            None => entries.push(entry),
        }
    }

    pub fn get(&self, table: &str, key: &str) -> Option<&Toml> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .and_then(|(_, es)| es.iter().find(|e| e.key == key))
            .map(|e| &e.value)
    }

    /// The TOML text; `source` is named in the header.
    pub fn render(&self, source: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Converted from {} by `logferry convert`. Each key's comment names the Fluentd line\n\
             # it came from; what could not be converted was listed on stderr. Every key not\n\
             # written here has logferry's default (config/logferry.toml). Check with:\n\
             # logferry validate --config FILE",
            source.display()
        );
        let order = [
            "",
            "input",
            "parse",
            "elasticsearch",
            "elasticsearch.tls",
            "elasticsearch.auth",
            "buffer",
            "kubernetes",
            "multiline",
            "api",
        ];
        let mut tables: Vec<&(String, Vec<Entry>)> = self
            .tables
            .iter()
            .filter(|(_, es)| !es.is_empty())
            .collect();
        tables.sort_by_key(|(t, _)| order.iter().position(|o| o == t).unwrap_or(order.len()));
        for (table, entries) in tables {
            if table.starts_with("multiline.custom") {
                let _ = write!(out, "\n[[multiline.custom]]\n");
            } else if !table.is_empty() {
                let _ = write!(out, "\n[{table}]\n");
            }
            for e in entries {
                entry(&mut out, e);
            }
        }
        for r in &self.routes {
            route(&mut out, r);
        }
        out
    }
}

fn entry(out: &mut String, e: &Entry) {
    match (&e.from, &e.note) {
        (Some(at), Some(note)) => {
            let _ = writeln!(out, "# {at}: {note}");
        }
        (Some(at), None) => {
            let _ = writeln!(out, "# {at}");
        }
        (None, Some(note)) => {
            let _ = writeln!(out, "# {note}");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "{} = {}", e.key, e.value.render());
}

fn route(out: &mut String, r: &Route) {
    let _ = write!(
        out,
        "\n# {}\n[[route]]\nname = {}\n",
        r.from,
        Toml::Str(r.name.clone()).render()
    );
    if let Some(index) = &r.index {
        let _ = writeln!(out, "index = {}", Toml::Str(index.clone()).render());
    }
    if r.drop {
        let _ = writeln!(out, "drop = true");
    }
    let _ = writeln!(out, "[route.when]");
    if !r.namespaces.is_empty() {
        let _ = writeln!(
            out,
            "namespaces = {}",
            Toml::List(r.namespaces.clone()).render()
        );
    }
    if let Some((path, matches)) = &r.field_matches {
        let _ = writeln!(
            out,
            "field = {{ path = {}, matches = {} }}",
            Toml::Str(path.clone()).render(),
            Toml::Str(matches.clone()).render()
        );
    }
}
