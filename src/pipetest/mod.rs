//! Pipeline tests (`logferry test`): a config's promises checked against lines written as a
//! container runtime writes them — this e-mail is masked, this audit line goes to the index
//! kept seven years, this probe is dropped — offline, by the agent's own stages.
//!
//! - [`case`]: the case file (`[[case]]` with a pod, lines, and `[[case.expect]]`), read
//!   strictly, every problem located like the config's own;
//! - [`pipeline`]: one case through decode, multiline, pod metadata, and the agent's encoder
//!   (parse, redaction, routing, the `_bulk` item), nothing re-implemented;
//! - [`verdict`]: expectations against outcomes, and the diff a failing case prints.
//!
//! Named for what it is — tests of a pipeline, beside the agent that runs the same pipeline on
//! a node. It uses the stages and the agent's encoder and is used by nothing but the binary.
//! Exit codes: 0 every case passed, 1 a case failed, 2 a case file or the config is broken
//! (nothing is run then: a half-read suite is no evidence).

pub mod case;
pub mod pipeline;
pub mod verdict;

use crate::config::Config;
use pipeline::Pipeline;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Every case passed.
pub const PASSED: u8 = 0;
/// At least one case failed.
pub const FAILED: u8 = 1;
/// A case file or the config could not be read as written.
pub const BROKEN: u8 = 2;

/// Runs every case of `files` against the config at `config`: a line per case on `out`, a
/// diff under each failing one, a summary last; problems with the files themselves on `err`.
/// Returns the exit code.
pub fn run(config: &Path, files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return BROKEN;
        }
    };
    let mut cases = Vec::new();
    let mut broken = false;
    for file in files {
        match case::load(file) {
            Ok(c) => cases.extend(c),
            Err(e) => {
                let _ = writeln!(err, "{e}");
                broken = true;
            }
        }
    }
    if broken {
        return BROKEN;
    }
    let mut pipeline = match Pipeline::new(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "{}: {e:#}", config.display());
            return BROKEN;
        }
    };
    let failed = cases
        .iter()
        .filter(|c| !run_case(&mut pipeline, &cfg, c, out))
        .count();
    let passed = cases.len() - failed;
    let _ = writeln!(
        out,
        "\n{} against {}: {passed} passed, {failed} failed",
        verdict::count(cases.len(), "case"),
        config.display()
    );
    if failed == 0 { PASSED } else { FAILED }
}

/// Runs one case and reports it; true when it passed.
fn run_case(pipeline: &mut Pipeline, cfg: &Config, case: &case::Case, out: &mut dyn Write) -> bool {
    let label = format!("{}: {}", case.file.display(), case.name);
    let (problems, shown) = match pipeline.run(case) {
        Ok(outcomes) => (
            verdict::judge(&case.expect, &outcomes),
            verdict::render(&outcomes),
        ),
        Err(reason) => (vec![format!("cannot run: {reason}")], String::new()),
    };
    if problems.is_empty() {
        let _ = writeln!(out, "ok   {label}");
        return true;
    }
    let _ = writeln!(out, "FAIL {label}");
    for p in &problems {
        let _ = writeln!(out, "  {p}");
    }
    let pod_says = case.pod.as_ref().is_some_and(|p| {
        !(p.labels.is_empty() && p.annotations.is_empty() && p.namespace_labels.is_empty())
    });
    if pod_says && !cfg.kubernetes.enabled {
        let _ = writeln!(
            out,
            "  note: [kubernetes] is off in this config, so the agent knows only what a log \
             file's path says: the pod's labels, annotations and namespace labels play no part"
        );
    }
    if !shown.is_empty() {
        let _ = writeln!(out, "{}", verdict::indent(&shown, "  "));
    }
    false
}

#[cfg(test)]
mod tests;
