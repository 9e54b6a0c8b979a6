//! The book — README.md and the chapters in docs/ — against the repository and the code.
//!
//! Two promises a reader relies on: a link goes somewhere (every relative link names a file of
//! the repository, and every `#anchor` a heading of its target, as GitHub makes slugs), and the
//! configuration reference (docs/configuration.md) lists exactly the keys the agent accepts.
//! The accepted keys are not written down here: they are read from the agent itself, which
//! answers a config with an unknown key in a table with serde's "unknown field `zz`, expected
//! one of `a`, `b`, …" (every table is `deny_unknown_fields`). A key added to a struct, or one
//! removed, changes that answer, so the reference cannot drift from the code unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The book's files: README.md and every docs/*.md, relative to the repository.
fn book() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).expect("docs/ exists") {
        let path = entry.expect("read docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("a file name").to_owned();
            files.push(Path::new("docs").join(name));
        }
    }
    files.sort();
    files
}

fn read(rel: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel))
        .unwrap_or_else(|e| panic!("read {}: {e}", rel.display()))
}

/// The text's lines outside fenced code blocks, with their numbers (from 1).
fn outside_fences(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// A line with its code spans blanked: a link written inside backticks is not a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// A heading's anchor as GitHub makes it: lower case; letters, digits, `_` and `-` kept;
/// each space a `-`; everything else (punctuation, backticks, brackets) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
            _ => None,
        })
        .collect()
}

/// The headings of a Markdown text (ATX, outside code blocks), without their `#`s.
fn headings(text: &str) -> Vec<String> {
    outside_fences(text)
        .into_iter()
        .filter_map(|(_, line)| {
            let level = line.chars().take_while(|&c| c == '#').count();
            let rest = &line[level..];
            ((1..=6).contains(&level) && rest.starts_with(' '))
                .then(|| rest.trim().trim_end_matches('#').trim().to_owned())
        })
        .collect()
}

/// Every anchor a Markdown text has: its headings' slugs, a repeated one suffixed `-1`, `-2`…
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for heading in headings(text) {
        let base = slug(&heading);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links and images in a text, with the line each closes on. Only
/// the `](target)` part is looked for, so a link whose text breaks across lines is found too.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in outside_fences(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push((number, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    out
}

/// What is wrong with one link target written in `from` (a file of the book), if anything.
fn broken(from: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_owned()
    } else {
        from.parent().unwrap_or(Path::new("")).join(path)
    };
    let on_disk = Path::new(ROOT).join(&file);
    if !on_disk.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let anchor = anchor?;
    if on_disk.extension().is_none_or(|e| e != "md") {
        return Some(format!(
            "#{anchor} points into {}, not Markdown",
            file.display()
        ));
    }
    let text = std::fs::read_to_string(&on_disk).unwrap_or_default();
    (!anchors(&text).contains(anchor)).then(|| {
        format!(
            "{} has no heading whose anchor is #{anchor}",
            file.display()
        )
    })
}

#[test]
fn every_relative_link_and_anchor_in_the_book_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in book() {
        for (line, target) in links(&read(&file)) {
            checked += 1;
            if let Some(why) = broken(&file, &target) {
                problems.push(format!("{}:{line}: ({target}): {why}", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    // The front door links every chapter; a parser that found none would pass vacuously.
    assert!(
        checked >= 30,
        "only {checked} links found: is the parser blind?"
    );
}

#[test]
fn the_link_checker_sees_what_github_renders() {
    assert_eq!(
        slug("Watching one agent: `logferry top`"),
        "watching-one-agent-logferry-top"
    );
    assert_eq!(slug("`[elasticsearch.tls]`"), "elasticsearchtls");
    assert_eq!(slug("Not done yet"), "not-done-yet");
    let text = "# A\n## Dup\n```\n## not a heading [x](nowhere.md)\n```\n## Dup\n";
    assert_eq!(
        anchors(text),
        ["a", "dup", "dup-1"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert!(links(text).is_empty(), "a link in a code block is no link");
    let prose = "see [the\n   chapter](docs/x.md#y), `[code](z.md)` and ![img](i.png)";
    let found: Vec<String> = links(prose).into_iter().map(|(_, t)| t).collect();
    assert_eq!(found, ["docs/x.md#y", "i.png"]);
    let readme = Path::new("README.md");
    assert!(broken(readme, "docs/nowhere.md").is_some());
    assert!(broken(readme, "#no-such-heading").is_some());
    assert!(
        broken(readme, "Cargo.toml#x").is_some(),
        "an anchor into a non-Markdown file"
    );
    assert!(broken(readme, "https://example.com/x#y").is_none());
    assert!(broken(readme, "deploy/k8s/logferry.yaml").is_none());
}

/// One step on the way to a table: its key, and whether it is an array of tables there.
type Segment = (String, bool);

/// The TOML header a table is written under: `[a.b]`, or `[[a.b]]` for an array of tables;
/// the top level is "".
fn header(path: &[Segment]) -> String {
    let dotted: Vec<&str> = path.iter().map(|(k, _)| k.as_str()).collect();
    match path.last() {
        None => String::new(),
        Some((_, true)) => format!("[[{}]]", dotted.join(".")),
        Some((_, false)) => format!("[{}]", dotted.join(".")),
    }
}

/// A config holding only the key `zz` in the table at `path`, written inline so that any
/// nesting (arrays of tables included) is one line, and the key path validate reports for it.
fn probe_config(path: &[Segment]) -> (String, String) {
    if path.is_empty() {
        return ("zz = 1".to_owned(), "zz".to_owned());
    }
    let mut value = "{ zz = 1 }".to_owned();
    let mut key = "zz".to_owned();
    for (i, (name, array)) in path.iter().enumerate().rev() {
        if *array {
            value = format!("[{value}]");
            key = format!("{name}[0].{key}");
        } else {
            key = format!("{name}.{key}");
        }
        if i > 0 {
            value = format!("{{ {name} = {value} }}");
        } else {
            value = format!("{name} = {value}");
        }
    }
    (value, key)
}

/// The keys the agent accepts in the table at `path`, read from `logferry validate`'s answer
/// to an unknown key there; `None` when `path` is not a table of that shape (a value of
/// another type: the answer is then not about an unknown field).
fn accepted_keys(dir: &Path, path: &[Segment]) -> Option<Vec<String>> {
    let (toml, key) = probe_config(path);
    let file = dir.join("probe.toml");
    std::fs::write(&file, &toml).expect("write the probe config");
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .expect("run logferry validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{toml:?} was accepted:\n{err}");
    let unknown = err
        .lines()
        .find(|l| l.contains("unknown field `zz`") || l.contains(": zz: unknown key"))?;
    assert!(
        unknown.contains(&format!(": {key}: ")),
        "{toml:?}: the unknown key is reported elsewhere than {key}: {unknown}"
    );
    if unknown.contains("there are no fields") {
        return Some(Vec::new());
    }
    let (_, expected) = unknown.split_once("expected ")?;
    let expected = expected.trim_start_matches("one of ");
    let keys: Vec<String> = if expected.contains('`') {
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    } else {
        expected.split(", ").map(|k| k.trim().to_owned()).collect()
    };
    assert!(!keys.is_empty(), "no keys read from: {unknown}");
    Some(keys)
}

/// Every table the agent accepts (by header) with its keys that are values, not tables: the
/// table at `path` has `keys`; each is tried as a table and as an array of tables, and
/// followed down when it is one.
fn accepted(
    dir: &Path,
    path: Vec<Segment>,
    keys: Vec<String>,
    out: &mut BTreeMap<String, BTreeSet<String>>,
) {
    let mut values = BTreeSet::new();
    for key in keys {
        let table = [false, true].into_iter().find_map(|array| {
            let mut inner = path.clone();
            inner.push((key.clone(), array));
            accepted_keys(dir, &inner).map(|keys| (inner, keys))
        });
        match table {
            Some((inner, keys)) => accepted(dir, inner, keys, out),
            None => {
                values.insert(key);
            }
        }
    }
    out.insert(header(&path), values);
}

/// The reference's tables and keys: each heading naming a table in backticks (`[input]`,
/// `[[route]]`), or "Top-level keys", and the first cell of each row of its Markdown table.
fn documented(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut table: Option<String> = None;
    for (number, line) in outside_fences(text) {
        if line.starts_with('#') {
            table = if line.trim_start_matches('#').trim() == "Top-level keys" {
                Some(String::new())
            } else {
                line.split('`')
                    .find(|s| s.starts_with('['))
                    .map(String::from)
            };
            if let Some(t) = &table {
                assert!(
                    out.insert(t.clone(), BTreeSet::new()).is_none(),
                    "{t} twice"
                );
            }
            continue;
        }
        let (Some(t), Some(row)) = (&table, line.strip_prefix('|')) else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default().trim();
        if first == "key" || first.starts_with("---") {
            continue;
        }
        let names: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        assert!(
            names.len() == 1 && first == format!("`{}`", names[0]),
            "configuration.md:{number}: one key per row, in backticks: {first}"
        );
        let keys = out.get_mut(t).expect("the table's heading came first");
        assert!(keys.insert(names[0].to_owned()), "{t} {} twice", names[0]);
    }
    out
}

#[test]
fn the_configuration_reference_lists_exactly_the_keys_the_agent_accepts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let top = accepted_keys(dir.path(), &[]).expect("the top level answers with its keys");
    let mut code = BTreeMap::new();
    accepted(dir.path(), Vec::new(), top, &mut code);
    // The reader sees every table there is: a parser that stopped at the top would pass
    // vacuously against a reference cut down the same way.
    for table in [
        "[elasticsearch.tls]",
        "[[route]]",
        "[route.when.field]",
        "[[redact.custom]]",
    ] {
        assert!(
            code.contains_key(table),
            "{table} not found in the agent's answers"
        );
    }
    let book = documented(&read(Path::new("docs/configuration.md")));
    let name = |t: &String| {
        if t.is_empty() {
            "the top level".to_owned()
        } else {
            t.clone()
        }
    };
    let mut problems = Vec::new();
    for (table, keys) in &code {
        let Some(listed) = book.get(table) else {
            problems.push(format!("{}: accepted, but has no section", name(table)));
            continue;
        };
        for key in keys.difference(listed) {
            problems.push(format!(
                "{} {key}: accepted, but not in the reference",
                name(table)
            ));
        }
        for key in listed.difference(keys) {
            problems.push(format!(
                "{} {key}: in the reference, but refused",
                name(table)
            ));
        }
    }
    for table in book.keys().filter(|t| !code.contains_key(*t)) {
        problems.push(format!(
            "{}: a section for a table the agent refuses",
            name(table)
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md against the agent:\n{}",
        problems.join("\n")
    );
}
