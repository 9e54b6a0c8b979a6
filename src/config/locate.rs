//! Where a problem is: a byte span of the config text turned into a line and column, and the
//! dotted key (`elasticsearch.auth.password`) a span or a key belongs to.

use super::Problem;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// Finds the dotted key whose value holds byte `pos`, by re-parsing the (already valid) text.
pub(super) fn key_path_at(text: &str, section: &str, pos: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let (_, value) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == section)?;
    let mut path = section.to_owned();
    let mut current = value;
    loop {
        match current.get_ref() {
            DeValue::Table(t) => {
                let Some((k, v)) = t
                    .iter()
                    .find(|(k, v)| k.span().contains(&pos) || holds(v, pos))
                else {
                    break;
                };
                path.push('.');
                path.push_str(k.get_ref());
                current = v;
            }
            // `[[route]]`: the element, by its index.
            DeValue::Array(a) => {
                let Some((i, v)) = a.iter().enumerate().find(|(_, v)| holds(v, pos)) else {
                    break;
                };
                path.push_str(&format!("[{i}]"));
                current = v;
            }
            _ => break,
        }
    }
    Some(path)
}

/// The top-level key whose value (or name) holds byte `pos`.
pub(super) fn top_key_at(text: &str, pos: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    table
        .get_ref()
        .iter()
        .find(|(k, v)| k.span().contains(&pos) || holds(v, pos))
        .map(|(k, _)| k.get_ref().to_string())
}

/// Whether `pos` is in `v`: its own span, or (for a table of an array of tables, whose span
/// may be only its header) any of its keys and values.
fn holds(v: &toml::Spanned<DeValue<'_>>, pos: usize) -> bool {
    v.span().contains(&pos)
        || match v.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .any(|(k, v)| k.span().contains(&pos) || holds(v, pos)),
            DeValue::Array(a) => a.iter().any(|v| holds(v, pos)),
            _ => false,
        }
}

/// The span of `a.b`'s value, for validation problems that know only the key; `a.list[2].b`
/// reaches into an array of tables (`[[a.list]]`).
pub(super) fn find_key_span(text: &str, dotted: &str) -> Option<Range<usize>> {
    let table = DeTable::parse(text).ok()?;
    let mut parts = dotted.split('.');
    let (first, index) = indexed(parts.next()?);
    let (_, mut value) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == first)?;
    value = element(value, index)?;
    for part in parts {
        let DeValue::Table(t) = value.get_ref() else {
            return None;
        };
        let (name, index) = indexed(part);
        (_, value) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        value = element(value, index)?;
    }
    Some(value.span())
}

/// `custom[2]` → (`custom`, Some(2)); `custom` → (`custom`, None).
fn indexed(part: &str) -> (&str, Option<usize>) {
    match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
        Some((name, i)) => (name, i.parse().ok()),
        None => (part, None),
    }
}

fn element<'a>(
    value: &'a toml::Spanned<DeValue<'a>>,
    index: Option<usize>,
) -> Option<&'a toml::Spanned<DeValue<'a>>> {
    match (index, value.get_ref()) {
        (None, _) => Some(value),
        (Some(i), DeValue::Array(a)) => a.get(i),
        (Some(_), _) => None,
    }
}

pub(super) fn problem_at(
    text: &str,
    span: Option<Range<usize>>,
    key: Option<String>,
    msg: &str,
) -> Problem {
    let (line, column) = match span {
        Some(s) => {
            let (l, c) = line_col(text, s.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    Problem {
        line,
        column,
        key,
        message: msg.trim().replace('\n', "; "),
    }
}

fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
