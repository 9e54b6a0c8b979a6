//! The rules: each a small state machine over a stream's lines, as Fluent Bit's multiline
//! parsers are. A line matching one of a rule's *starts* opens a record in the state that start
//! names; in a state, a line matching one of its transitions belongs to the record and moves it
//! on; any other line ends the record. A state without transitions ends the record at once.
//!
//! A transition either *joins* its line (and every tentative line before it) to the record, or
//! holds it *tentatively*: Node's `/app/server.js:10` prelude before an `Error:` header, the
//! empty line before Python's "During handling of the above exception", the empty lines of a Go
//! goroutine dump. Tentative lines that no joined line follows go out as records of their own,
//! so a line that only looked like the start of a trace is never swallowed.
//!
//! A JSON line (`{` in its first column) is never part of a record: it is an application's
//! structured log line, parsed on its own.

use crate::config::CustomRule;
use regex::Regex;
use std::sync::{Arc, LazyLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Join,
    Tentative,
}

struct Transition {
    pattern: Regex,
    /// Matches the lines the pattern does *not* match (a custom rule without
    /// `continue_pattern`: every line that is not a start continues).
    negate: bool,
    step: Step,
    next: usize,
}

impl Transition {
    fn matches(&self, line: &str) -> bool {
        self.pattern.is_match(line) != self.negate
    }
}

/// Where a line takes a record: how it is held, and the state after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Move {
    pub rule: usize,
    pub step: Step,
    pub next: usize,
}

pub struct Rule {
    name: String,
    starts: Vec<Transition>,
    /// Transitions that open a record in the middle of a trace, for the first lines of a file:
    /// the rest of a trace whose head was written to the file before a rotation.
    resumes: Vec<Transition>,
    /// Each state's transitions; a state with none ends the record.
    states: Vec<Vec<Transition>>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The rules a container's lines are tried against, in order.
#[derive(Clone)]
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
}

impl RuleSet {
    /// The rules named (built-ins, `auto` for all of them, or `custom` names), in order, each
    /// once. An unknown name is an error naming it.
    pub fn new(names: &[String], custom: &[CustomRule]) -> Result<RuleSet, String> {
        let mut rules: Vec<Arc<Rule>> = Vec::new();
        let add = |r: Arc<Rule>, rules: &mut Vec<Arc<Rule>>| {
            if !rules.iter().any(|x| x.name == r.name) {
                rules.push(r);
            }
        };
        for name in names {
            let name = name.trim();
            if name == "auto" {
                for r in BUILT_INS.iter() {
                    add(r.clone(), &mut rules);
                }
            } else if let Some(r) = BUILT_INS.iter().find(|r| r.name == name) {
                add(r.clone(), &mut rules);
            } else if let Some(c) = custom.iter().find(|c| c.name == name) {
                add(Arc::new(custom_rule(c)?), &mut rules);
            } else {
                return Err(format!("unknown multiline rule {name:?}"));
            }
        }
        Ok(RuleSet { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name()).collect()
    }

    /// The first rule a line starts a record of.
    pub(super) fn start(&self, line: &str) -> Option<Move> {
        self.first_match(line, |r| &r.starts)
    }

    /// The first rule whose trace a line is the middle of: for a file's first lines only.
    pub(super) fn resume(&self, line: &str) -> Option<Move> {
        self.first_match(line, |r| &r.resumes)
    }

    fn first_match(&self, line: &str, edges: impl Fn(&Rule) -> &[Transition]) -> Option<Move> {
        if is_json(line) {
            return None;
        }
        self.rules.iter().enumerate().find_map(|(i, r)| {
            let t = edges(r).iter().find(|t| t.matches(line))?;
            Some(Move {
                rule: i,
                step: t.step,
                next: t.next,
            })
        })
    }

    /// Where `line` takes a record of `rule` in `state`, if it belongs to it.
    pub(super) fn continues(&self, rule: usize, state: usize, line: &str) -> Option<Move> {
        if is_json(line) {
            return None;
        }
        let t = self.rules[rule].states[state]
            .iter()
            .find(|t| t.matches(line))?;
        Some(Move {
            rule,
            step: t.step,
            next: t.next,
        })
    }

    /// A record in this state can take no more lines.
    pub(super) fn ends(&self, rule: usize, state: usize) -> bool {
        self.rules[rule].states[state].is_empty()
    }
}

fn is_json(line: &str) -> bool {
    line.as_bytes().first() == Some(&b'{')
}

fn custom_rule(c: &CustomRule) -> Result<Rule, String> {
    let compile = |p: &str| Regex::new(p).map_err(|e| format!("rule {:?}: {e}", c.name));
    let start = compile(&c.start_pattern)?;
    let cont = match &c.continue_pattern {
        Some(p) => Transition {
            pattern: compile(p)?,
            negate: false,
            step: Step::Join,
            next: 0,
        },
        None => Transition {
            pattern: start.clone(),
            negate: true,
            step: Step::Join,
            next: 0,
        },
    };
    Ok(Rule {
        name: c.name.clone(),
        starts: vec![Transition {
            pattern: start,
            negate: false,
            step: Step::Join,
            next: 0,
        }],
        resumes: Vec::new(),
        states: vec![vec![cont]],
    })
}

/// A built-in rule written as (pattern, step, next state's name) lists; state names are
/// resolved once, when the rules are first used.
struct Spec {
    name: &'static str,
    starts: &'static [Edge],
    resumes: &'static [Edge],
    states: &'static [(&'static str, &'static [Edge])],
}

/// (pattern, step, the next state's name).
type Edge = (&'static str, Step, &'static str);

impl Spec {
    fn build(&self) -> Rule {
        let index = |name: &str| {
            self.states
                .iter()
                .position(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("rule {}: no state {name}", self.name))
        };
        let list = |ts: &[(&str, Step, &str)]| -> Vec<Transition> {
            ts.iter()
                .map(|(p, step, next)| Transition {
                    pattern: Regex::new(p)
                        .unwrap_or_else(|e| panic!("rule {}: {p}: {e}", self.name)),
                    negate: false,
                    step: *step,
                    next: index(next),
                })
                .collect()
        };
        Rule {
            name: self.name.to_owned(),
            starts: list(self.starts),
            resumes: list(self.resumes),
            states: self.states.iter().map(|(_, ts)| list(ts)).collect(),
        }
    }
}

use Step::{Join, Tentative};

/// V8's header: `Error: …`, `TypeError: …`, `Error [ERR_X]: …`, `Uncaught Error …`, `Error`,
/// and the bracketed form of an error printed with its properties (`[AggregateError: …] {`,
/// `[UnhandledPromiseRejection: …] {`).
const NODE_HEADER: &str = r"^\[?(?:Uncaught )?(?:[A-Z][A-Za-z0-9_$]*)?(?:Error|Exception|Rejection)(?: \[[^\]]+\])?(?::|\]|$)";
/// The first line Node prints for an uncaught exception: where it was thrown.
const NODE_PRELUDE: &str = r"^(?:(?:/|file://|[A-Za-z]:\\)\S*\.[cm]?[jt]sx?|node:\S+):\d+$";

const NODE: Spec = Spec {
    name: "node",
    starts: &[
        (NODE_HEADER, Join, "frames"),
        (NODE_PRELUDE, Tentative, "code"),
    ],
    resumes: &[(r"^\s+at ", Join, "frames")],
    states: &[
        ("code", &[(r"^.*$", Tentative, "caret")]),
        ("caret", &[(r"^\s*\^+\s*$", Tentative, "blank")]),
        (
            "blank",
            &[(r"^$", Tentative, "header"), (NODE_HEADER, Join, "frames")],
        ),
        ("header", &[(NODE_HEADER, Join, "frames")]),
        (
            "frames",
            &[
                // Frames, `... N more lines matching cause stack trace`, `[cause]: Error: …`,
                // an error's own properties (`  code: 'ECONNREFUSED',`): all indented.
                (r"^\s+\S", Join, "frames"),
                // The end of the properties block (`}`, `]`).
                (r"^\s*[}\]][,;]?\s*$", Join, "frames"),
                // An unhandled 'error' event says where it was emitted, with frames of its own.
                (r"^Emitted '[^']+' event on .* at:$", Join, "frames"),
                (r"^$", Tentative, "trailer"),
            ],
        ),
        ("trailer", &[(r"^Node\.js v\d", Join, "end")]),
        ("end", &[]),
    ],
};

const JAVA_HEADER: &str = r#"^(?:Exception in thread "[^"]*" )?(?:[a-zA-Z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)(?:: .*)?$"#;

const JAVA: Spec = Spec {
    name: "java",
    starts: &[(JAVA_HEADER, Join, "frames")],
    resumes: &[
        (r"^\s+at ", Join, "frames"),
        (r"^\s*Caused by: ", Join, "frames"),
    ],
    states: &[(
        "frames",
        &[
            // `\tat …`, `\t... N more`, `\tSuppressed: …`, and the further lines of a message
            // (PostgreSQL's `  Detail: …`): all indented.
            (r"^\s+\S", Join, "frames"),
            (
                r"^\s*\.\.\. \d+ (?:more|common frames omitted)",
                Join,
                "frames",
            ),
            (r"^\s*Caused by: ", Join, "frames"),
            (r"^\s*Suppressed: ", Join, "frames"),
        ],
    )],
};

const PY_TRACEBACK: &str = r"^Traceback \(most recent call last\):$";
const PY_GROUP: &str = r"^\s*\+ Exception Group Traceback \(most recent call last\):$";

const PYTHON: Spec = Spec {
    name: "python",
    starts: &[(PY_TRACEBACK, Join, "frames"), (PY_GROUP, Join, "group")],
    resumes: &[(r#"^  File ".*", line \d+"#, Join, "frames")],
    states: &[
        (
            "frames",
            &[
                // `  File "…", line N, in f`, the code line, carets, `[Previous line repeated]`.
                (r"^\s+\S", Join, "frames"),
                // The exception itself, in the first column, ends the traceback.
                (r"^\S", Join, "raised"),
            ],
        ),
        ("raised", &[(r"^$", Tentative, "chained")]),
        (
            "chained",
            &[(
                r"^(?:During handling of the above exception, another exception occurred:|The above exception was the direct cause of the following exception:)$",
                Tentative,
                "gap",
            )],
        ),
        ("gap", &[(r"^$", Tentative, "next")]),
        (
            "next",
            &[(PY_TRACEBACK, Join, "frames"), (PY_GROUP, Join, "group")],
        ),
        (
            "group",
            &[(r"^\s+[|+]", Join, "group"), (r"^$", Tentative, "chained")],
        ),
    ],
};

const GO: Spec = Spec {
    name: "go",
    starts: &[
        (r"^panic: ", Join, "dump"),
        (r"^fatal error: ", Join, "dump"),
        // net/http logs it through the standard logger: with its date and time, by default.
        (
            r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? )?http: panic serving ",
            Join,
            "dump",
        ),
    ],
    resumes: &[
        (r"^goroutine \d+ \[.*\]:$", Join, "dump"),
        (r"^\t\S+\.go:\d+", Join, "dump"),
    ],
    states: &[
        (
            "dump",
            &[
                (r"^$", Tentative, "dump"),
                (r"^goroutine \d+ \[.*\]:$", Join, "dump"),
                // File lines (`\t/app/main.go:12 +0x1d`), `\tpanic: …` of a re-panic.
                (r"^\s+\S", Join, "dump"),
                (r"^\[signal ", Join, "dump"),
                (r"^created by ", Join, "dump"),
                (r"^panic: ", Join, "dump"),
                // Function lines: `main.main()`, `main.(*T).f(0xc000010000, …)`, `panic({…})`.
                (r"^[^\s(]+\(.*\)$", Join, "dump"),
                (r"^exit status \d+$", Join, "end"),
            ],
        ),
        ("end", &[]),
    ],
};

/// Built once, at first use: compiling every pattern takes a few milliseconds.
static BUILT_INS: LazyLock<Vec<Arc<Rule>>> = LazyLock::new(|| {
    [NODE, JAVA, PYTHON, GO]
        .iter()
        .map(|s| Arc::new(s.build()))
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_rule_compiles_and_auto_is_all_of_them_in_order() {
        let set = RuleSet::new(&["auto".into()], &[]).unwrap();
        assert_eq!(set.names(), crate::config::BUILT_IN_RULES);
        let err = RuleSet::new(&["ruby".into()], &[]).err().unwrap();
        assert!(err.contains("ruby"), "{err}");
    }

    #[test]
    fn a_json_line_or_a_line_that_merely_mentions_an_error_starts_nothing() {
        let set = RuleSet::new(&["auto".into()], &[]).unwrap();
        for line in [
            r#"{"level":"error","msg":"Error: boom"}"#,
            "request failed: Error code 42",
            "Error code 42 while talking to upstream",
            "the Traceback module is loaded",
            "INFO panic: not at the start",
        ] {
            assert_eq!(set.start(line), None, "{line}");
        }
        for line in [
            "Error: boom",
            "TypeError: Cannot read properties of undefined (reading 'id')",
            "Error [ERR_HTTP_HEADERS_SENT]: Cannot set headers after they are sent",
            "java.lang.IllegalStateException: no",
            "Exception in thread \"main\" java.lang.NullPointerException",
            "Traceback (most recent call last):",
            "panic: runtime error: index out of range [5] with length 3",
        ] {
            assert!(set.start(line).is_some(), "{line}");
        }
    }
}
