//! The shape of the tree: stages import only downwards, in the order of the data path, and no
//! file or function grows past what a reader can hold in their head.
//!
//! Run by `cargo test` like every other test, so a change that makes `buffer` import `tail` (or
//! any later layer import into an earlier one) fails CI with the file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, earliest layer first. A module may use modules of earlier
/// layers only: never a later one, never one of its own layer (siblings stay independent).
const LAYERS: &[&[&str]] = &[
    // Leaves: the shared vocabulary, the metrics registry, the agent's own files.
    &["vocab", "metrics", "disk"],
    &["config"],
    // The endpoints: they collect what components report, and know none of them.
    &["observe"],
    &["decode"],
    &["parse"],
    &["encode", "kube"],
    // The tailer hands records to an output it is given; the buffer reports durability
    // through a callback: neither knows the other.
    &["tail", "buffer"],
    &["sink"],
    // Wires the stages together.
    &["agent"],
];

/// "~600 lines" per file and "~80" per function, with the tilde as slack.
const MAX_FILE_LINES: usize = 650;
const MAX_FN_LINES: usize = 90;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, strings and char literals blanked out (lengths and lines kept),
/// so that neither a doc comment naming a module nor a `'{'` can fool the checks.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    if depth == 0 {
                        out.extend_from_slice(b"  ");
                        i += 2;
                        break;
                    }
                }
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let open = rest.iter().position(|&c| c == b'"').unwrap() + 1;
            for &c in &rest[..open] {
                blank(&mut out, c);
            }
            i += open;
            while i < b.len() && !b[i..].starts_with(&close) {
                blank(&mut out, b[i]);
                i += 1;
            }
            let n = close.len().min(b.len() - i);
            out.extend(std::iter::repeat_n(b' ', n));
            i += n;
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
            out.push(b' ');
            i += 1;
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            let n = char_literal_len(rest).unwrap();
            out.extend(std::iter::repeat_n(b' ', n));
            i += n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"`, `r#"`, `br##"`…: the number of `#`s.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal at the start of `s` (`'x'`, `'\n'`, `'\u{1F600}'`), or `None`
/// for a lifetime (`'a`).
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.get(1) == Some(&b'\\') {
        return s[2..].iter().position(|&c| c == b'\'').map(|p| p + 3);
    }
    let text = std::str::from_utf8(&s[1..s.len().min(6)])
        .ok()
        .or_else(|| {
            // A cut in the middle of a multi-byte character: take what decodes.
            (1..5)
                .rev()
                .find_map(|n| std::str::from_utf8(&s[1..s.len().min(1 + n)]).ok())
        })?;
    let c = text.chars().next()?;
    (s.get(1 + c.len_utf8()) == Some(&b'\'')).then_some(2 + c.len_utf8())
}

/// The top-level module a file belongs to: `src/tail/file.rs` → `tail`, `src/disk.rs` → `disk`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Every crate module `code` names: `crate::x` anywhere, and the members of `crate::{x, y}`.
fn modules_used(code: &str) -> Vec<(usize, String)> {
    let mut used = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let boundary = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            rest = &rest[at + "crate::".len()..];
            if !boundary {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // A group may span lines: the rest of the file up to its closing brace.
                let tail = &code[offset(code, group)..];
                let end = tail.find('}').unwrap_or(tail.len());
                for item in tail[..end].split(',') {
                    let name = ident(item.trim_start());
                    if !name.is_empty() {
                        used.push((n + 1, name));
                    }
                }
            } else {
                used.push((n + 1, ident(rest)));
            }
        }
    }
    used
}

/// Where `part`, a slice of `whole`, starts in it.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn no_stage_imports_a_later_or_sibling_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let module = module_of(&root, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (line, used) in modules_used(&code) {
            if used == module || used.is_empty() {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                _ => wrong.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, which is not in an earlier layer",
                    file.display()
                )),
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS in tests/layers.rs (place each in the data path): {unplaced:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_leaves_import_nothing_of_the_crate_and_metrics_only_prometheus_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&root, file);
        if !LAYERS[0].contains(&module.as_str()) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            let Some(path) = line
                .strip_prefix("use ")
                .or_else(|| line.strip_prefix("pub use "))
            else {
                continue;
            };
            let first = ident(path);
            let allowed = match first.as_str() {
                "crate" => path.starts_with(&format!("crate::{module}::")),
                "std" | "super" | "self" => true,
                // The /proc readers behind the `process_*` metrics use procfs.
                external => {
                    module != "metrics" || ["prometheus_client", "procfs"].contains(&external)
                }
            };
            if !allowed {
                wrong.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "leaf modules importing:\n{}",
        wrong.join("\n")
    );
}

/// Each `fn` from its line to its closing brace.
fn functions(code: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let before_ok = words[..at].iter().all(|w| {
            ["pub", "async", "const", "unsafe", "extern", "default"].contains(w)
                || w.starts_with("pub(")
        });
        if !before_ok || at + 1 >= words.len() {
            continue;
        }
        let name = ident(words[at + 1]);
        let mut depth = 0usize;
        let mut opened = false;
        'scan: for (i, l) in lines.iter().enumerate().skip(start) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth = depth.saturating_sub(1);
                        if opened && depth == 0 {
                            out.push((start + 1, name.clone(), i - start + 1));
                            break 'scan;
                        }
                    }
                    ';' if !opened => break 'scan,
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn no_file_or_function_is_too_long_to_read() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "bench/src", "harness/src"] {
        if here.join(dir).is_dir() {
            sources(&here.join(dir), &mut files);
        }
    }
    let mut long = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        let lines = src.lines().count();
        if lines > MAX_FILE_LINES {
            long.push(format!("{}: {lines} lines", file.display()));
        }
        for (line, name, len) in functions(&code_only(&src)) {
            if len > MAX_FN_LINES {
                long.push(format!(
                    "{}:{line}: fn {name} is {len} lines",
                    file.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these (files over {MAX_FILE_LINES} lines, functions over {MAX_FN_LINES}):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    // A group import across lines, a path in code, and nothing from comments or strings.
    let code = code_only(
        "use crate::{\n    buffer::Chunk,\n    tail,\n};\n// crate::sink in a comment\nlet s = \"crate::kube\";\nlet c = '{';\nx(crate::parse::f());\n",
    );
    let used: Vec<String> = modules_used(&code).into_iter().map(|u| u.1).collect();
    assert_eq!(used, ["buffer", "tail", "parse"]);
    let f = functions(&code_only(
        "fn a() {\n    let c = '}';\n    let s = \"}\";\n}\nfn b<'a>(x: &'a str) {\n}\n",
    ));
    assert_eq!(f, [(1, "a".to_owned(), 4), (5, "b".to_owned(), 2)]);
}
