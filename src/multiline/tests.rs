use super::*;
use crate::vocab::Flags;
use std::path::Path;

fn joiner(rules: &[&str], limits: Limits, from_start: bool) -> Joiner {
    let names: Vec<String> = rules.iter().map(|s| (*s).to_owned()).collect();
    let set = Arc::new(RuleSet::new(&names, &[]).unwrap());
    Joiner::new(set, limits, Counters::new(&Metrics::new()), from_start)
}

fn limits() -> Limits {
    Limits {
        max_lines: 500,
        max_bytes: 1 << 20,
        flush_timeout: Duration::from_secs(1),
    }
}

fn record(line: &str, offset: u64, stream: Stream) -> Record<'_> {
    Record {
        time: // A line a microsecond, by offset: far inside any flush_timeout.
        Cow::Owned(format!("2026-12-02T00:00:00.{:09}Z", offset * 1000 % 1_000_000_000)),
        stream: Some(stream),
        message: Cow::Borrowed(line.as_bytes()),
        offset,
        flags: Flags::default(),
    }
}

/// What comes out for `lines` on one stream: (first line's offset, message, flags), in order.
fn run(j: &mut Joiner, lines: &[&str]) -> Vec<(u64, String, Flags)> {
    let mut out = Vec::new();
    let mut emit = |r: &Record| {
        out.push((
            r.offset,
            String::from_utf8_lossy(&r.message).into_owned(),
            r.flags,
        ))
    };
    let mut offset = 0;
    for line in lines {
        j.push(record(line, offset, Stream::Stderr), &mut emit);
        offset += line.len() as u64 + 1;
    }
    j.finish(&mut emit);
    out
}

/// The sizes, in lines, of the records `lines` become.
fn group_sizes(rules: &[&str], lines: &[&str]) -> Vec<usize> {
    let out = run(&mut joiner(rules, limits(), false), lines);
    let total: usize = out.iter().map(|r| r.1.split('\n').count()).sum();
    assert_eq!(total, lines.len(), "every line comes out exactly once");
    out.iter().map(|r| r.1.split('\n').count()).collect()
}

#[test]
fn a_node_trace_is_one_record_with_its_first_lines_time_and_offset() {
    let lines = [
        r#"{"level":30,"msg":"listening"}"#,
        "TypeError: Cannot read properties of undefined (reading 'id')",
        "    at handler (/app/routes/user.js:14:22)",
        "    at async Server.handle (/app/server.js:42:7)",
        "plain line after",
    ];
    let out = run(&mut joiner(&["node"], limits(), false), &lines);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1].0,
        lines[0].len() as u64 + 1,
        "the first line's offset names it"
    );
    assert_eq!(out[1].1, lines[1..4].join("\n"));
    assert_eq!(out[1].2.multiline_lines, 3);
    assert_eq!(out[2].1, "plain line after");
    assert_eq!(out[2].2.multiline_lines, 0);
}

#[test]
fn an_uncaught_exception_keeps_its_prelude_and_its_trailer() {
    let lines = [
        "/app/server.js:10",
        "    throw new Error('boom');",
        "    ^",
        "",
        "Error: boom",
        "    at Object.<anonymous> (/app/server.js:10:11)",
        "    at node:internal/main/run_main_module:28:49",
        "",
        "Node.js v20.20.2",
        "next",
    ];
    assert_eq!(group_sizes(&["node"], &lines), [9, 1]);
}

#[test]
fn lines_that_only_looked_like_a_prelude_go_out_on_their_own() {
    let lines = [
        "/app/server.js:10",
        "just a line",
        "another",
        "Error code 42",
    ];
    assert_eq!(group_sizes(&["auto"], &lines), [1, 1, 1, 1]);
    let out = run(&mut joiner(&["auto"], limits(), false), &lines);
    assert!(out.iter().all(|r| r.2.multiline_lines == 0));
    let offsets: Vec<u64> = out.iter().map(|r| r.0).collect();
    assert_eq!(
        offsets,
        [0, 18, 30, 38],
        "each keeps its own offset, so its own id"
    );
}

#[test]
fn stdout_and_stderr_never_mix() {
    let mut j = joiner(&["node"], limits(), false);
    let mut out = Vec::new();
    let mut emit =
        |r: &Record| out.push((r.stream, String::from_utf8_lossy(&r.message).into_owned()));
    j.push(record("Error: a", 0, Stream::Stderr), &mut emit);
    j.push(
        record("    at stdout-looking", 10, Stream::Stdout),
        &mut emit,
    );
    j.push(
        record("    at f (/a.js:1:1)", 20, Stream::Stderr),
        &mut emit,
    );
    j.push(record("done", 30, Stream::Stdout), &mut emit);
    j.finish(&mut emit);
    assert_eq!(
        out,
        [
            (Some(Stream::Stdout), "    at stdout-looking".to_owned()),
            (Some(Stream::Stdout), "done".to_owned()),
            (
                Some(Stream::Stderr),
                "Error: a\n    at f (/a.js:1:1)".to_owned()
            ),
        ]
    );
}

#[test]
fn a_trace_longer_than_max_lines_is_split_never_cut_and_the_later_parts_flagged() {
    let mut lines = vec!["Error: deep recursion".to_owned()];
    lines.extend((0..11).map(|i| format!("    at f{i} (/app/x.js:{i}:1)")));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut j = joiner(
        &["node"],
        Limits {
            max_lines: 5,
            ..limits()
        },
        false,
    );
    let out = run(&mut j, &refs);
    let sizes: Vec<usize> = out.iter().map(|r| r.1.split('\n').count()).collect();
    assert_eq!(sizes, [5, 5, 2]);
    let split: Vec<bool> = out.iter().map(|r| r.2.multiline_split).collect();
    assert_eq!(split, [false, true, true]);
    let joined: String = out
        .iter()
        .map(|r| r.1.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(joined, lines.join("\n"), "nothing cut, nothing lost");
}

#[test]
fn a_trace_that_stops_growing_is_flushed_by_its_timeout_never_dropped() {
    let mut j = joiner(&["java"], limits(), false);
    let out = std::cell::RefCell::new(Vec::new());
    let mut emit = |r: &Record| {
        out.borrow_mut()
            .push(String::from_utf8_lossy(&r.message).into_owned())
    };
    j.push(
        record("java.lang.IllegalStateException: no", 0, Stream::Stderr),
        &mut emit,
    );
    j.push(
        record("\tat a.B.c(B.java:1)", 40, Stream::Stderr),
        &mut emit,
    );
    assert_eq!(
        j.held_offset(),
        Some(0),
        "the checkpoint waits at the header"
    );
    let due = j.expiry().unwrap();
    j.flush_expired(due - Duration::from_millis(1), &mut emit);
    assert!(out.borrow().is_empty(), "not yet");
    j.flush_expired(due, &mut emit);
    assert_eq!(
        *out.borrow(),
        ["java.lang.IllegalStateException: no\n\tat a.B.c(B.java:1)"]
    );
    assert_eq!(j.held_offset(), None);
}

#[test]
fn the_rest_of_a_trace_at_the_start_of_a_file_is_joined_and_flagged() {
    let lines = [
        "    at g (/app/x.js:2:1)",
        "    at h (/app/x.js:3:1)",
        "next",
    ];
    let out = run(&mut joiner(&["node"], limits(), true), &lines);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].2.multiline_lines, 2);
    assert!(out[0].2.multiline_split);
    // Read from a checkpoint (not the file's start), the same lines are no one's rest.
    assert_eq!(group_sizes(&["node"], &lines), [1, 1, 1]);
}

#[test]
fn a_custom_rule_joins_every_line_until_the_next_start() {
    let custom = [crate::config::CustomRule {
        name: "stamped".into(),
        start_pattern: r"^\d{4}-\d\d-\d\d ".into(),
        continue_pattern: None,
    }];
    let set = Arc::new(RuleSet::new(&["stamped".into()], &custom).unwrap());
    let mut j = Joiner::new(set, limits(), Counters::new(&Metrics::new()), false);
    let lines = [
        "2026-12-02 10:00:00 start of one",
        "  more of one",
        "and more",
        "2026-12-02 10:00:01 two",
    ];
    let out = run(&mut j, &lines);
    let sizes: Vec<usize> = out.iter().map(|r| r.1.split('\n').count()).collect();
    assert_eq!(sizes, [3, 1]);
}

/// The fixtures: real traces (and hand-written ones in the exact shape of versions not
/// installed here), each `NAME.log` with its expected records' sizes in `NAME.groups`.
#[test]
fn every_fixture_trace_is_joined_as_expected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multiline");
    let mut cases = 0;
    let mut wrong = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let rule = dir.file_name().unwrap().to_string_lossy().into_owned();
        let rules = if rule == "mixed" {
            "auto".to_owned()
        } else {
            rule.clone()
        };
        for f in std::fs::read_dir(&dir).unwrap() {
            let log = f.unwrap().path();
            if log.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&log).unwrap();
            let lines: Vec<&str> = text
                .strip_suffix('\n')
                .unwrap_or(&text)
                .split('\n')
                .collect();
            let expected: Vec<usize> = std::fs::read_to_string(log.with_extension("groups"))
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| l.trim().parse().unwrap())
                .collect();
            let got = group_sizes(&[rules.as_str()], &lines);
            if got != expected {
                wrong.push(format!(
                    "{}:\n  got      {got:?}\n  expected {expected:?}",
                    log.display()
                ));
            }
            // `auto` finds the same records as the language's own rule.
            let auto = group_sizes(&["auto"], &lines);
            if rule != "mixed" && auto != expected {
                wrong.push(format!(
                    "{} (auto):\n  got      {auto:?}\n  expected {expected:?}",
                    log.display()
                ));
            }
            cases += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} fixtures joined wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        cases >= 20,
        "only {cases} fixtures found under {}",
        root.display()
    );
}

/// A file has one checkpoint. Were a stdout trace held at 100 while a stderr trace from 80 to
/// 120 was handed on, a restart from 100 would ship the line at 120 again, on its own.
#[test]
fn a_trace_starting_on_the_other_stream_hands_the_held_one_on_so_none_straddles_the_checkpoint() {
    let mut j = joiner(&["node"], limits(), false);
    let out = std::cell::RefCell::new(Vec::new());
    let mut emit = |r: &Record| {
        out.borrow_mut()
            .push((r.offset, String::from_utf8_lossy(&r.message).into_owned()))
    };
    j.push(record("Error: first", 80, Stream::Stderr), &mut emit);
    j.push(record("Error: second", 100, Stream::Stdout), &mut emit);
    assert_eq!(*out.borrow(), [(80, "Error: first".to_owned())]);
    assert_eq!(j.held_offset(), Some(100));
    j.push(
        record("    at f (/a.js:1:1)", 120, Stream::Stderr),
        &mut emit,
    );
    j.push(
        record("    at g (/a.js:2:1)", 130, Stream::Stdout),
        &mut emit,
    );
    j.finish(&mut emit);
    // Every handed-on record lies wholly before or wholly after the held offset it was handed on
    // under; the stderr frame after the second trace started is a record of its own.
    assert_eq!(
        *out.borrow(),
        [
            (80, "Error: first".to_owned()),
            (120, "    at f (/a.js:1:1)".to_owned()),
            (100, "Error: second\n    at g (/a.js:2:1)".to_owned()),
        ]
    );
}

/// The cut a timeout made on the first reading is made again by the times written in the file,
/// so a record read a second time (after a crash, from an older checkpoint) has the same lines.
#[test]
fn a_line_written_after_a_pause_longer_than_flush_timeout_never_continues_a_trace() {
    let mut j = joiner(&["java"], limits(), false);
    let out = std::cell::RefCell::new(Vec::new());
    let mut emit = |r: &Record| {
        out.borrow_mut()
            .push(String::from_utf8_lossy(&r.message).into_owned())
    };
    let at = |line: &'static str, offset: u64, time: &'static str| Record {
        time: Cow::Borrowed(time),
        ..record(line, offset, Stream::Stderr)
    };
    j.push(
        at(
            "java.lang.IllegalStateException: x",
            0,
            "2026-12-02T10:00:00.000Z",
        ),
        &mut emit,
    );
    j.push(
        at("\tat a.B.c(B.java:1)", 40, "2026-12-02T10:00:00.900Z"),
        &mut emit,
    );
    // 1.5 s later by the runtime's clock: the trace had been handed on by its timeout.
    j.push(
        at("\tat a.B.d(B.java:2)", 60, "2026-12-02T10:00:02.400Z"),
        &mut emit,
    );
    j.finish(&mut emit);
    assert_eq!(
        *out.borrow(),
        [
            "java.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)",
            "\tat a.B.d(B.java:2)"
        ]
    );
}

/// Read again from the start of a later part, a split trace's lines are no one's frames and
/// would be shipped a second time, on their own: the checkpoint waits at the trace's start.
#[test]
fn while_a_split_traces_later_part_is_held_the_checkpoint_waits_at_the_traces_start() {
    let mut j = joiner(
        &["go"],
        Limits {
            max_lines: 3,
            ..limits()
        },
        false,
    );
    let mut emitted = Vec::new();
    let mut emit = |r: &Record| emitted.push(r.offset);
    let lines = [
        "panic: boom",
        "",
        "goroutine 1 [running]:",
        "main.f()",
        "\t/src/main.go:7",
    ];
    let mut offset = 100;
    for line in lines {
        j.push(record(line, offset, Stream::Stderr), &mut emit);
        offset += 10;
    }
    assert_eq!(emitted, [100], "the first part is out");
    assert_eq!(
        j.held_offset(),
        Some(100),
        "the second part (from 130) holds the trace's start"
    );
}
