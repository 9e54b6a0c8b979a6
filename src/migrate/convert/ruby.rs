//! Embedded Ruby in a Fluentd value (`"#{…}"`): not run, but the forms a Kubernetes DaemonSet's
//! config is written in are recognised — an environment variable with or without a fallback
//! (`ENV['X'] || 'd'`, `ENV.fetch('X', 'd')`), `use_default`/`use_nil`, and `File.join` of
//! those and literals (the stock fluentd-kubernetes-daemonset images' `pos_file`). Anything
//! else is [`Piece::Ruby`], which the mapper reports.

use regex::Regex;
use std::sync::LazyLock;

/// An environment variable a value reads, and Fluentd's fallback when it is unset.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvUse {
    pub name: String,
    pub fallback: Option<String>,
}

/// What one `#{…}` stands for.
pub(super) enum Piece {
    Env(EnvUse),
    /// `File.join(…)` of literals and environment forms: the joined text.
    Joined(Vec<Part>),
    Unset(Option<String>),
    Ruby,
}

/// A piece of a joined path: text as written (a literal, or an environment form's fallback),
/// or a variable without one.
pub(super) enum Part {
    Text(String),
    Env(String),
}

/// `File.join('/var/log/', ENV.fetch('FLUENT_POS_EXTRA_DIR', ''), 'x.pos')`, as the stock
/// fluentd-kubernetes-daemonset images write their `pos_file`: each argument a quoted literal
/// or an environment form. Joined as Ruby joins: one `/` between two parts, however many
/// either side has, and an empty part adds none. None when an argument is anything else.
fn file_join(code: &str) -> Option<Vec<Part>> {
    let args = code.strip_prefix("File.join(")?.strip_suffix(')')?;
    let mut parts: Vec<Part> = Vec::new();
    for arg in split_args(args)? {
        let arg = arg.trim();
        let part = match quoted(arg) {
            Some(lit) => Part::Text(lit.to_owned()),
            None => match ruby(arg) {
                Piece::Env(EnvUse {
                    fallback: Some(f), ..
                }) => Part::Text(f),
                Piece::Env(EnvUse { name, .. }) => Part::Env(name),
                _ => return None,
            },
        };
        if matches!(&part, Part::Text(t) if t.is_empty()) {
            continue;
        }
        // The first part keeps its own leading `/` (or its lack of one).
        let Some(last) = parts.last() else {
            parts.push(part);
            continue;
        };
        let ends = matches!(last, Part::Text(t) if t.ends_with('/'));
        match part {
            Part::Text(t) => {
                let t = t.trim_start_matches('/');
                parts.push(Part::Text(if ends {
                    t.to_owned()
                } else {
                    format!("/{t}")
                }));
            }
            Part::Env(n) => {
                if !ends {
                    parts.push(Part::Text("/".into()));
                }
                parts.push(Part::Env(n));
            }
        }
    }
    Some(parts)
}

/// The environment variables a `File.join` reads, for the converter's warnings.
pub(super) fn joined_env(code: &str) -> Vec<EnvUse> {
    let Some(args) = code
        .strip_prefix("File.join(")
        .and_then(|a| a.strip_suffix(')'))
        .and_then(split_args)
    else {
        return Vec::new();
    };
    args.iter()
        .filter_map(|a| match ruby(a.trim()) {
            Piece::Env(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// Arguments at the top level of `args`, split at commas outside quotes and parentheses.
fn split_args(args: &str) -> Option<Vec<&str>> {
    let (mut out, mut depth, mut quote, mut start) = (Vec::new(), 0usize, None, 0);
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.checked_sub(1)?,
            (None, ',') if depth == 0 => {
                out.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&args[start..]);
    Some(out)
}

/// The text of a single- or double-quoted literal without escapes.
fn quoted(arg: &str) -> Option<&str> {
    ['\'', '"'].iter().find_map(|q| {
        let inner = arg.strip_prefix(*q)?.strip_suffix(*q)?;
        (!inner.contains(*q) && !inner.contains('\\')).then_some(inner)
    })
}

static ENV_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:ENV\[\s*['"](\w+)['"]\s*\]|ENV\.fetch\(\s*['"](\w+)['"]\s*(?:,\s*(?:'([^']*)'|"([^"]*)")\s*)?\))\s*(?:\|\|\s*(?:'([^']*)'|"([^"]*)"|(use_default|use_nil|nil)|(true|false|-?\d+(?:\.\d+)?)))?$"#,
    )
    .unwrap_or_else(|e| unreachable!("the pattern is a constant: {e}"))
});

/// Recognises the environment forms of embedded Ruby; everything else is [`Piece::Ruby`].
pub(super) fn ruby(code: &str) -> Piece {
    let code = code.trim();
    if code == "use_default" || code == "use_nil" {
        return Piece::Unset(None);
    }
    if let Some(parts) = file_join(code) {
        return Piece::Joined(parts);
    }
    let Some(m) = ENV_FORM.captures(code) else {
        return Piece::Ruby;
    };
    let name = m.get(1).or(m.get(2)).map(|n| n.as_str().to_owned());
    let Some(name) = name else {
        return Piece::Ruby;
    };
    if m.get(7).is_some() {
        return Piece::Unset(Some(name));
    }
    let fallback = [3, 4, 5, 6, 8]
        .iter()
        .find_map(|i| m.get(*i))
        .map(|f| f.as_str().to_owned());
    Piece::Env(EnvUse { name, fallback })
}
