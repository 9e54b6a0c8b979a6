//! `${NAME}` references in the config's string values, resolved from the environment after the
//! text is parsed (so a value can never change the file's structure).

use super::locate::problem_at;
use super::{DATA_DIR, Problem};
use std::borrow::Cow;
use toml::Spanned;
use toml::de::DeValue;

/// Replaces `${NAME}` with the environment's value in every string value of the parsed file,
/// never in its text: a value holding `"`, `\\`, a tab or `${` arrives byte for byte, and
/// cannot change the file's structure (add keys, end a string). The replacement is not scanned
/// again. `$${` is a literal `${`. Keys and comments are left alone. An unset variable is an
/// error, not an empty string: an empty host or password would fail later and far less clearly.
pub(super) fn interpolate(
    text: &str,
    dotted: &mut String,
    value: &mut Spanned<DeValue<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match substitute(s, env) {
            Ok(None) => {}
            Ok(Some(replaced)) => *s = Cow::Owned(replaced),
            Err(unresolved) => {
                for (needle, message) in unresolved {
                    // Point at the reference itself when the value's text shows it as written
                    // (it does unless escapes spell it), else at the value.
                    let raw = text.get(span.clone()).unwrap_or("");
                    let at = raw.find(&needle).map_or(span.start, |i| span.start + i);
                    problems.push(problem_at(
                        text,
                        Some(at..at),
                        Some(dotted.clone()),
                        &message,
                    ));
                }
            }
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(text, dotted, item, env, problems);
            }
        }
        DeValue::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = dotted.len();
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(key.get_ref());
                interpolate(text, dotted, item, env, problems);
                dotted.truncate(len);
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

/// `s` with its `${NAME}` references resolved; `None` when it has none (nothing to copy). On
/// failure, each unresolved reference as it is written and what is wrong with it.
fn substitute(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Option<String>, Vec<(String, String)>> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            problems.push(("${".to_owned(), "unclosed ${ in interpolation".to_owned()));
            rest = "";
            break;
        };
        let name = &rest[i + 2..i + end];
        if name == "data_dir" {
            // Resolved once data_dir is known (see Config::buffer_dir).
            out.push_str(DATA_DIR);
        } else {
            match env(name) {
                Some(v) => out.push_str(&v),
                None => problems.push((
                    format!("${{{name}}}"),
                    format!("environment variable {name} is not set"),
                )),
            }
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(Some(out))
    } else {
        Err(problems)
    }
}
