//! The shape of the tree: stages import only downwards, in the order of the data path, and no
//! file or function grows past what a reader can hold in their head.
//!
//! The crate's own source is parsed as Rust (`syn`), so nested `use` groups, `super::` paths
//! that climb out of a module and paths in code are all seen. Run by `cargo test` like every
//! other test: a change that makes `buffer` import `source` (or any later layer import into an
//! earlier one), or a sink import a source, fails CI with the file and line.

use proc_macro2::Span;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// The crate's top-level modules, earliest layer first. A module may use modules of earlier
/// layers only: never a later one, never one of its own layer (siblings stay independent).
const LAYERS: &[&[&str]] = &[
    // Leaves: the shared vocabulary, the metrics registry, the agent's own files.
    &["vocab", "metrics", "disk"],
    &["config"],
    // The endpoints: they collect what components report, and know none of them.
    &["observe"],
    &["decode"],
    // After partial lines are joined, before JSON parsing.
    &["multiline"],
    // Run by encode over each finished document before it is framed.
    &["redact"],
    &["parse"],
    // Picks the index for a finished document.
    &["route"],
    // What a cut-over reads of Fluentd: used by discovery and the binary, using only config.
    &["encode", "kube", "migrate"],
    // The sources (the files, forward, Kafka) hand records to an output they are given; the
    // buffer reports durability through a callback: none knows the others.
    &["buffer", "source"],
    // The outputs (Elasticsearch, Kafka) take batches from the buffer; never a source (see
    // APART): the agent glues them.
    &["sink"],
    // Wires the stages together.
    &["agent", "top"],
    // Pipeline tests: the stages and the agent's encoder, driven offline by `logferry test`.
    &["pipetest"],
];

/// Parts of the tree that never name each other, either way, although the layers alone would
/// let one of them: the files source and the other sources (siblings of one layer before they
/// were folders of `source`), the two sinks, and the sinks and the sources.
const APART: &[(&str, &str)] = &[
    ("source::files", "source::forward"),
    ("source::files", "source::kafka"),
    ("sink::elasticsearch", "sink::kafka"),
    ("sink", "source"),
];

/// What the metrics leaf may use besides the standard library.
const METRICS_CRATES: &[&str] = &["prometheus_client", "procfs"];

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

/// The module path of a file: `src/buffer/commit.rs` → `[buffer, commit]`, `src/buffer/mod.rs`
/// → `[buffer]`, `src/lib.rs` → `[]`.
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        path.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        path.pop();
    }
    path
}

/// One use of something outside the file's own top-level module.
#[derive(Debug, PartialEq)]
enum Use {
    /// A top-level module of the crate.
    Module(String),
    /// An external crate, named in a `use`.
    Crate(String),
    /// Something the check cannot place (`use crate::*`): refused.
    Unknown(String),
}

/// Collects what a file uses, resolving `crate::`, `self::` and `super::` against the module
/// the code is in (inline `mod`s included).
struct Uses {
    module: Vec<String>,
    found: Vec<(usize, Use)>,
}

impl Uses {
    fn resolve(&mut self, segments: &[String], span: Span) {
        let line = span.start().line;
        let Some(first) = segments.first() else {
            return;
        };
        let rest = match first.as_str() {
            "crate" => &segments[1..],
            "self" => {
                if let Some(top) = self.module.first() {
                    self.found.push((line, Use::Module(top.clone())));
                }
                return;
            }
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let depth = self.module.len().saturating_sub(ups);
                if depth > 0 {
                    self.found.push((line, Use::Module(self.module[0].clone())));
                    return;
                }
                &segments[ups.min(segments.len())..]
            }
            _ => {
                self.found.push((line, Use::Crate(first.clone())));
                return;
            }
        };
        match rest.first().map(String::as_str) {
            None | Some("*") => self.found.push((line, Use::Unknown(segments.join("::")))),
            Some(top) => self.found.push((line, Use::Module(top.to_owned()))),
        }
    }

    fn tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, n.ident.to_string(), n.span()),
            syn::UseTree::Rename(r) => self.leaf(prefix, r.ident.to_string(), r.span()),
            syn::UseTree::Glob(g) => self.leaf(prefix, "*".into(), g.span()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.tree(item, prefix);
                }
            }
        }
    }

    fn leaf(&mut self, prefix: &[String], last: String, span: Span) {
        let mut full = prefix.to_vec();
        full.push(last);
        self.resolve(&full, span);
    }
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&u.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        // Paths in code: only those that name the crate's modules; a one-word path is local.
        if segments.len() > 1 && matches!(segments[0].as_str(), "crate" | "super" | "self") {
            self.resolve(&segments, p.span());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }
}

fn uses_in(module: Vec<String>, code: &str) -> Vec<(usize, Use)> {
    let file = syn::parse_file(code).unwrap();
    let mut uses = Uses {
        module,
        found: Vec::new(),
    };
    uses.visit_file(&file);
    uses.found
}

/// A source file, its module path, and what it uses (by line).
type FileUses = (PathBuf, Vec<String>, Vec<(usize, Use)>);

/// Every crate source file with its module path and what it uses.
fn crate_uses() -> Vec<FileUses> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let module = module_path(&root, &file);
            let code = std::fs::read_to_string(&file).unwrap();
            let uses = uses_in(module.clone(), &code);
            (file, module, uses)
        })
        .collect()
}

#[test]
fn no_stage_imports_a_later_or_sibling_one() {
    let mut wrong = Vec::new();
    let mut unplaced = BTreeSet::new();
    for (file, module, uses) in crate_uses() {
        // The crate root and the binary sit above every layer.
        let Some(own) = module.first() else { continue };
        if file.ends_with("main.rs") && module.is_empty() {
            continue;
        }
        let Some(layer) = layer_of(own) else {
            unplaced.insert(own.clone());
            continue;
        };
        for (line, used) in uses {
            let ok = match &used {
                Use::Module(m) => m == own || layer_of(m).is_some_and(|l| l < layer),
                Use::Crate(_) => true,
                Use::Unknown(_) => false,
            };
            if !ok {
                wrong.push(format!(
                    "{}:{line}: `{own}` uses {used:?}, which is not in an earlier layer",
                    file.display()
                ));
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
    let mut wrong = Vec::new();
    for (file, module, uses) in crate_uses() {
        let Some(own) = module.first() else { continue };
        if !LAYERS[0].contains(&own.as_str()) {
            continue;
        }
        for (line, used) in uses {
            let ok = match &used {
                Use::Module(m) => m == own,
                Use::Crate(c) => {
                    own != "metrics"
                        || ["std", "core", "alloc"].contains(&c.as_str())
                        || METRICS_CRATES.contains(&c.as_str())
                }
                Use::Unknown(_) => false,
            };
            if !ok {
                wrong.push(format!("{}:{line}: {used:?}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "leaf modules importing:\n{}",
        wrong.join("\n")
    );
}

/// Every `fn` (free, in an impl, in a trait) with its first line and its length in lines.
struct Functions(Vec<(usize, String, usize)>);

impl Functions {
    fn add(&mut self, name: &syn::Ident, span: Span) {
        let (start, end) = (span.start().line, span.end().line);
        self.0.push((start, name.to_string(), end - start + 1));
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.add(&f.sig.ident, f.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.add(&f.sig.ident, f.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if f.default.is_some() {
            self.add(&f.sig.ident, f.span());
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn functions(code: &str) -> Vec<(usize, String, usize)> {
    let mut f = Functions(Vec::new());
    f.visit_file(&syn::parse_file(code).unwrap());
    f.0
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
        for (line, name, len) in functions(&src) {
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
    let module = |m: &[&str]| m.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let code = "use crate::{buffer::{Appender, Chunk}, config};\n\
                use super::super::source::X;\n\
                use crate :: agent :: Y;\n\
                use crate::*;\n\
                use serde::Deserialize;\n\
                // crate::sink in a comment\n\
                fn f() { let _ = \"crate::kube\"; crate::parse::f(); }\n\
                mod tests { use super::super::Z; }\n";
    let used: Vec<Use> = uses_in(module(&["buffer", "commit"]), code)
        .into_iter()
        .map(|u| u.1)
        .collect();
    let m = |s: &str| Use::Module(s.to_owned());
    assert_eq!(
        used,
        [
            m("buffer"),
            m("buffer"),
            m("config"),
            m("source"),
            m("agent"),
            Use::Unknown("crate::*".into()),
            Use::Crate("serde".into()),
            m("parse"),
            // `super::super` from buffer::commit::tests is buffer itself.
            m("buffer"),
        ]
    );
    let f = functions(
        "fn a() -> [u8; 32] {\n    let c = '}';\n    [0; 32]\n}\nfn b<'a>(x: &'a str) {\n}\n",
    );
    assert_eq!(f, [(1, "a".to_owned(), 4), (5, "b".to_owned(), 2)]);
}

/// The absolute module paths a file names (`crate::`, `super::` and `self::` resolved against
/// the module the code is in), outside `#[cfg(test)]` modules unless `tests`.
struct Named {
    module: Vec<String>,
    found: BTreeSet<Vec<String>>,
    tests: bool,
}

impl Named {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else {
            return;
        };
        let abs: Vec<String> = match first.as_str() {
            "crate" => segments[1..].to_vec(),
            "self" => [&self.module[..], &segments[1..]].concat(),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let base = &self.module[..self.module.len().saturating_sub(ups)];
                [base, &segments[ups..]].concat()
            }
            _ => return,
        };
        self.found.insert(abs);
    }

    fn tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, n.ident.to_string()),
            syn::UseTree::Rename(r) => self.leaf(prefix, r.ident.to_string()),
            syn::UseTree::Glob(_) => self.leaf(prefix, "*".into()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.tree(item, prefix);
                }
            }
        }
    }

    fn leaf(&mut self, prefix: &[String], last: String) {
        let mut full = prefix.to_vec();
        full.push(last);
        self.resolve(&full);
    }
}

impl<'ast> Visit<'ast> for Named {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&u.tree, &mut Vec::new());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 && matches!(segments[0].as_str(), "crate" | "super" | "self") {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test_only = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if test_only && !self.tests {
            return;
        }
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }
}

/// Within one folder, which sibling files each file names: `source/files/discover.rs` naming
/// `super::rotated::…` is the edge `discover → rotated`. The folder's `mod.rs` is the parent
/// of them all and is left out.
fn sibling_edges() -> Vec<(Vec<String>, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut edges = Vec::new();
    for file in files {
        if file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs")
        {
            continue;
        }
        let module = module_path(&root, &file);
        let Some((own, parent)) = module.split_last() else {
            continue;
        };
        let mut named = Named {
            module: module.clone(),
            found: BTreeSet::new(),
            tests: false,
        };
        named.visit_file(&syn::parse_file(&std::fs::read_to_string(&file).unwrap()).unwrap());
        for path in named.found {
            if path.len() > parent.len() && path.starts_with(parent) {
                let sibling = &path[parent.len()];
                let is_file = root
                    .join(parent.join("/"))
                    .join(format!("{sibling}.rs"))
                    .is_file()
                    || root
                        .join(parent.join("/"))
                        .join(sibling)
                        .join("mod.rs")
                        .is_file();
                if sibling != own && is_file {
                    edges.push((parent.to_vec(), own.clone(), sibling.clone()));
                }
            }
        }
    }
    edges.sort();
    edges.dedup();
    edges
}

#[test]
fn no_two_files_of_a_folder_import_each_other_even_through_others() {
    let edges = sibling_edges();
    let mut circles = Vec::new();
    for (folder, from, to) in &edges {
        // Is `from` reachable from `to` among the same folder's files?
        let mut seen = BTreeSet::new();
        let mut todo = vec![to.clone()];
        while let Some(at) = todo.pop() {
            if !seen.insert(at.clone()) {
                continue;
            }
            for (f, a, b) in &edges {
                if f == folder && *a == at {
                    todo.push(b.clone());
                }
            }
        }
        if seen.contains(from) {
            circles.push(format!(
                "src/{}: {from} → {to} → … → {from}",
                folder.join("/")
            ));
        }
    }
    assert!(
        circles.is_empty(),
        "files of one folder importing each other (one decision, one home; move the shared \
         piece down to a file both use):\n{}",
        circles.join("\n")
    );
}

/// What code in `module` names against [`APART`], tests included: "`a::b` names `c::d::E`".
fn apart_in(module: &[String], code: &str) -> Vec<String> {
    let mut named = Named {
        module: module.to_vec(),
        found: BTreeSet::new(),
        tests: true,
    };
    named.visit_file(&syn::parse_file(code).unwrap());
    let within = |path: &[String], part: &str| {
        let part: Vec<&str> = part.split("::").collect();
        path.len() >= part.len() && path.iter().zip(&part).all(|(a, b)| a == b)
    };
    let mut wrong = Vec::new();
    for path in &named.found {
        for &(a, b) in APART {
            for (from, to) in [(a, b), (b, a)] {
                if within(module, from) && within(path, to) {
                    wrong.push(format!(
                        "`{}` names `{}`",
                        module.join("::"),
                        path.join("::")
                    ));
                }
            }
        }
    }
    wrong
}

#[test]
fn the_sources_and_the_sinks_stay_apart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let module = module_path(&root, &file);
        for w in apart_in(&module, &std::fs::read_to_string(&file).unwrap()) {
            wrong.push(format!("{}: {w}", file.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "sources and sinks that know each other (the buffer is what both know; the agent glues \
         them):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_apart_check_sees_what_it_must() {
    let module = |m: &[&str]| m.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // A sink naming the other sink (climbing out with `super::super`) and two sources, one of
    // them only in its tests; what both sinks share and the buffer are fine.
    let code = "use crate::sink::SinkState;\n\
                use super::super::elasticsearch::Connector;\n\
                fn f() { crate::source::files::Output::x(); crate::buffer::now_ms(); }\n\
                #[cfg(test)]\n\
                mod tests { use crate::source::forward::Entry; }\n";
    assert_eq!(
        apart_in(&module(&["sink", "kafka", "producer"]), code),
        [
            "`sink::kafka::producer` names `sink::elasticsearch::Connector`",
            "`sink::kafka::producer` names `source::files::Output::x`",
            "`sink::kafka::producer` names `source::forward::Entry`",
        ]
    );
    // Kafka's source may use forward's parts, not the files source's.
    let code = "use super::forward::{Deliver, Entry};\nuse super::files::Output;\n";
    assert_eq!(
        apart_in(&module(&["source", "kafka"]), code),
        ["`source::kafka` names `source::files::Output`"]
    );
}
