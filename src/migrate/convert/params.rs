//! How the plugin mappings (`inputs.rs`, `outputs.rs`) read a section: which parameter becomes which logferry
//! key, which ones mean what logferry does anyway, and why the others cannot be said.
//!
//! Every function reads its section through [`Params`], which remembers what was read: a
//! parameter no function asked about is reported at the end ("not known to the converter"), so
//! a plugin option nobody thought of is never dropped silently.

use super::emit::{Draft, Toml};
use super::syntax::{Param, Section, Value};
use super::{Origin, Warning};
use crate::config::{parse_duration, parse_size};

/// A section's parameters, and which of them a mapping has dealt with.
pub struct Params<'a> {
    pub section: &'a Section,
    used: Vec<bool>,
    /// Which subsections a mapping has dealt with.
    sections_used: Vec<bool>,
    /// What the warnings call the section (`<match **> @type elasticsearch`).
    pub label: String,
}

impl<'a> Params<'a> {
    pub fn new(section: &'a Section) -> Params<'a> {
        let ty = section.params.iter().find(|p| p.key == "@type");
        let ty = ty.and_then(|p| p.value.text()).unwrap_or("");
        let tag = if section.arg.is_empty() {
            format!("<{}>", section.name)
        } else {
            format!("<{} {}>", section.name, section.arg)
        };
        let label = if ty.is_empty() {
            tag
        } else {
            format!("{tag} @type {ty}")
        };
        let mut p = Params {
            section,
            used: vec![false; section.params.len()],
            sections_used: vec![false; section.children.len()],
            label,
        };
        // Fluentd's own bookkeeping, with no meaning for the logs.
        p.same(&["@type", "@id", "@log_level", "@label", "type", "id"]);
        p
    }

    /// The last value of `key` (Fluentd keeps the last), marked as dealt with.
    pub fn param(&mut self, key: &str) -> Option<&'a Param> {
        let mut found = None;
        for (i, p) in self.section.params.iter().enumerate() {
            if p.key == key {
                self.used[i] = true;
                found = Some(p);
            }
        }
        found
    }

    /// The text of `key`; a value Fluentd leaves unset or that needs Ruby is reported and
    /// treated as absent; an environment fallback is reported (logferry's `${X}` has none).
    pub fn text(&mut self, key: &str, warnings: &mut Vec<Warning>) -> Option<(String, &'a Origin)> {
        let p = self.param(key)?;
        value_text(p, warnings).map(|t| (t, &p.at))
    }

    /// Parameters that mean what logferry does anyway: no key, no warning.
    pub fn same(&mut self, keys: &[&str]) {
        for k in keys {
            self.param(k);
        }
    }

    /// Subsections (by name) a mapping reads or reports itself.
    pub fn sections(&mut self, names: &[&str]) {
        for (c, used) in self.section.children.iter().zip(&mut self.sections_used) {
            *used |= names.contains(&c.name.as_str());
        }
    }

    /// Every subsection is the caller's to read or report.
    pub fn all_sections(&mut self) {
        self.sections_used.iter_mut().for_each(|u| *u = true);
    }

    /// Parameters logferry cannot express, each reported with `why` where it is set.
    pub fn cannot(&mut self, keys: &[&str], why: &str, warnings: &mut Vec<Warning>) {
        for k in keys {
            if let Some(p) = self.param(k) {
                warnings.push(Warning::new(&p.at, k, why));
            }
        }
    }

    /// Reports every parameter and subsection no mapping dealt with.
    pub fn finish(self, warnings: &mut Vec<Warning>) {
        for (c, used) in self.section.children.iter().zip(&self.sections_used) {
            if !used {
                let why = format!(
                    "a section the converter does not know in {}; not converted",
                    self.label
                );
                warnings.push(Warning::new(&c.at, &format!("<{}>", c.name), &why));
            }
        }
        for (p, used) in self.section.params.iter().zip(&self.used) {
            if !used {
                let why = format!(
                    "not known to the converter for {}; not converted",
                    self.label
                );
                warnings.push(Warning::new(&p.at, &p.key, &why));
            }
        }
    }
}

/// The text of a parameter, reporting what Fluentd would compute that the TOML cannot.
pub fn value_text(p: &Param, warnings: &mut Vec<Warning>) -> Option<String> {
    match &p.value {
        Value::Text { text, env } => {
            for e in env {
                if let Some(f) = &e.fallback {
                    let why = format!(
                        "ENV['{}'] with the fallback {f:?}: logferry's ${{{}}} has no fallback, so the fallback was written; write \"${{{}}}\" to take it from the environment",
                        e.name, e.name, e.name
                    );
                    warnings.push(Warning::new(&p.at, &p.key, &why));
                }
            }
            Some(text.clone())
        }
        Value::Unset { unless_env: None } => None,
        Value::Unset {
            unless_env: Some(name),
        } => {
            let why = format!(
                "set only when {name} is set; logferry has no conditional keys, so it was left out (write \"${{{name}}}\" if {name} is always set)"
            );
            warnings.push(Warning::new(&p.at, &p.key, &why));
            None
        }
        Value::Ruby(code) => {
            let why = format!("embedded Ruby #{{{code}}} is not evaluated; not converted");
            warnings.push(Warning::new(&p.at, &p.key, &why));
            None
        }
    }
}

/// Fluentd's boolean spellings.
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "yes" | "" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// A Fluentd time (`5s`, `30`, `0.5`, `1m`, `1h`, `1d`) as a logferry duration.
pub fn duration(text: &str) -> Option<String> {
    let t = text.trim();
    let with_unit = if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        format!("{t}s")
    } else {
        t.to_owned()
    };
    parse_duration(&with_unit).ok().map(|_| with_unit)
}

/// A Fluentd size (`2M`, `8m`, `256k`, `1g`, bytes) as a logferry size; Fluentd's units are
/// powers of 1024 whatever their case.
pub fn size(text: &str) -> Option<(String, u64)> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" => "",
        "k" => "KiB",
        "m" => "MiB",
        "g" => "GiB",
        "t" => return None,
        _ => return None,
    };
    let written = format!("{num}{unit}");
    parse_size(&written).ok().map(|b| (written, b))
}

/// Reads `key` with `convert`, and writes it to `table.target`; a value that does not convert
/// (or comes from the environment where a number is needed) is reported.
pub fn copy(
    params: &mut Params,
    key: &str,
    draft: &mut Draft,
    target: (&str, &str),
    convert: impl Fn(&str) -> Option<Toml>,
    warnings: &mut Vec<Warning>,
) -> Option<Toml> {
    let (text, at) = params.text(key, warnings)?;
    match convert(&text) {
        Some(v) => {
            draft.set(target.0, target.1, v.clone(), at);
            Some(v)
        }
        None => {
            let why = format!(
                "{text:?} is not a value logferry's {}.{} takes; not converted",
                target.0, target.1
            );
            warnings.push(Warning::new(at, key, &why));
            None
        }
    }
}

/// How a Fluentd value becomes a logferry one (None: it cannot).
pub type Conversion = fn(&str) -> Option<Toml>;

/// [`copy`] for several parameters: (Fluentd key, (table, key), conversion).
pub fn copy_all(
    params: &mut Params,
    draft: &mut Draft,
    keys: &[(&str, (&str, &str), Conversion)],
    warnings: &mut Vec<Warning>,
) {
    for (key, target, convert) in keys {
        copy(params, key, draft, *target, convert, warnings);
    }
}

pub fn as_duration(t: &str) -> Option<Toml> {
    duration(t).map(Toml::Str)
}

pub fn as_size(t: &str) -> Option<Toml> {
    size(t).map(|(s, _)| Toml::Str(s))
}

pub fn as_bool(t: &str) -> Option<Toml> {
    boolean(t).map(Toml::Bool)
}

pub fn as_int(t: &str) -> Option<Toml> {
    t.trim().parse::<i64>().ok().map(Toml::Int)
}

/// A list: a JSON array, or Fluentd's comma-separated form.
pub fn list(text: &str) -> Vec<String> {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) {
        return items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    text.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `/regex/flags` or a bare regex, as the regex text.
pub fn regex_text(text: &str) -> String {
    let t = text.trim();
    let Some((inner, flags)) = t
        .strip_prefix('/')
        .and_then(|r| r.rfind('/').map(|end| (&r[..end], &r[end + 1..])))
    else {
        return t.to_owned();
    };
    // Ruby's flags in the regex crate's spelling: `m` (dot matches a newline) is `s`.
    let flags: String = flags
        .chars()
        .filter_map(|f| match f {
            'i' => Some('i'),
            'm' => Some('s'),
            'x' => Some('x'),
            _ => None,
        })
        .collect();
    if flags.is_empty() {
        inner.to_owned()
    } else {
        format!("(?{flags}){inner}")
    }
}
