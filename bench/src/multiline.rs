//! The multiline scenarios: one container's log as `one-file` has it, but with Node.js stack
//! traces on stderr — 2 % of the lines, about 10 lines each, with stdout lines of concurrent
//! requests landing between a trace's frames as the runtime interleaves the two streams.
//!
//! `multiline` runs the agent with `[multiline] rules = ["auto"]` and holds it to one document
//! per trace; `multiline-off` ships the same file with the default config, one document per
//! line. The file is generated the same way for both, so their costs compare.

use crate::agent::Agent;
use crate::logs::{self, Stream};
use crate::row::Row;
use crate::sink::Sink;
use anyhow::bail;
use chrono::Utc;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One trace starts every this many lines: 10.25 lines a trace on average is 2 % of them.
const TRACE_EVERY: u64 = 512;

/// The config `multiline` adds to the defaults.
const JOIN_AUTO: &str = "\n[multiline]\nrules = [\"auto\"]\n";

/// What was written into stack traces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traces {
    pub traces: u64,
    /// Lines in them (stdout lines between their frames not included).
    pub lines: u64,
}

/// One trace, as a Node 20 service logs a caught error with `console.error(err)`: the header,
/// `    at …` frames, and the error's own properties when it has some. Four shapes (8, 14, 9
/// and 10 lines, from `tests/fixtures/multiline/node`), varied by `n`.
pub fn trace(n: u64) -> Vec<String> {
    let host = format!("10.96.{}.{}", n % 7, n % 250);
    let order = 10_000 + n % 90_000;
    let text = match n % 4 {
        0 => format!(
            "Error: connect ECONNREFUSED {host}:5432\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1611:16) {{\n  errno: -111,\n  code: 'ECONNREFUSED',\n  syscall: 'connect',\n  address: '{host}',\n  port: 5432\n}}"
        ),
        1 => format!(
            "Error: fetch failed\n    at node:internal/deps/undici/undici:13502:13\n    at process.processTicksAndRejections (node:internal/process/task_queues:105:5)\n    at async getOrder (/app/src/orders.js:22:15)\n    at async /app/src/routes.js:9:18 {{\n  [cause]: Error: connect ECONNREFUSED {host}:5432\n      at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1615:16) {{\n    errno: -111,\n    code: 'ECONNREFUSED',\n    syscall: 'connect',\n    address: '{host}',\n    port: 5432\n  }}\n}}"
        ),
        2 => "TypeError: Cannot read properties of undefined (reading 'total')\n    at renderOrder (/app/src/orders/render.js:14:28)\n    at Array.map (<anonymous>)\n    at listOrders (/app/src/orders/routes.js:41:24)\n    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)\n    at next (/app/node_modules/express/lib/router/route.js:149:13)\n    at Route.dispatch (/app/node_modules/express/lib/router/route.js:119:3)\n    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)\n    at /app/node_modules/express/lib/router/index.js:284:15".to_owned(),
        _ => format!(
            "PaymentDeclinedError: card declined for order {order}\n    at ChargeService.charge (/app/src/payments/charge.js:57:13)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n    at async ChargeService.withRetry (/app/src/payments/retry.js:12:18)\n    at async PaymentsController.create (/app/src/payments/controller.js:22:20)\n    at async /app/src/routes.js:31:7 {{\n  reason: 'insufficient_funds',\n  orderId: 'ord_{order}',\n  retryable: false\n}}"
        ),
    };
    text.lines().map(str::to_owned).collect()
}

/// Writes one CRI file of `records` lines into `dir`, timestamps a microsecond apart ending
/// now: `one-file`'s lines on stdout, a trace on stderr every [`TRACE_EVERY`] lines, every other
/// one with a stdout line after its third. The last line is a Node warning on stderr, so the
/// last trace ends on a line, not on `flush_timeout`. Returns the bytes and the traces written.
pub fn write_file(dir: &Path, records: u64) -> anyhow::Result<(u64, Traces)> {
    let start = Utc::now() - chrono::Duration::microseconds(records as i64);
    let at = |n: u64| start + chrono::Duration::microseconds(n as i64);
    let (mut w, _) = logs::Writer::create(dir, 0, logs::Format::Cri)?;
    let mut written = Traces::default();
    let mut next_trace = TRACE_EVERY / 2;
    let last = records.saturating_sub(1);
    while w.records < last {
        let lines = trace(written.traces);
        // +1: the stdout line some traces have between their frames.
        if w.records < next_trace || w.records + lines.len() as u64 + 1 >= last {
            w.record(at(w.records))?;
            continue;
        }
        for (i, line) in lines.iter().enumerate() {
            w.line(at(w.records), Stream::Stderr, line)?;
            if i == 2 && written.traces % 2 == 1 {
                w.record(at(w.records))?;
            }
        }
        written.traces += 1;
        written.lines += lines.len() as u64;
        next_trace += TRACE_EVERY;
    }
    if w.records < records {
        let warning = "(node:1) Warning: Closing file descriptor 23 on garbage collection";
        w.line(at(w.records), Stream::Stderr, warning)?;
    }
    w.flush()?;
    Ok((w.bytes, written))
}

/// The documents the sink should hold for `records` lines with `traces` in them: one per
/// trace when `joined`, one per line otherwise.
pub fn expected_documents(records: u64, traces: Traces, joined: bool) -> u64 {
    if joined {
        records - (traces.lines - traces.traces)
    } else {
        records
    }
}

/// `multiline` (`joined`) or `multiline-off`: the file of [`write_file`], shipped from its
/// start. Fails when the documents are not one per trace (or one per line, off).
pub fn run(
    bin: &Path,
    sink: &Sink,
    work: &Path,
    records: u64,
    joined: bool,
) -> anyhow::Result<Row> {
    let (input_bytes, traces) = write_file(&work.join("containers"), records)?;
    let expected = expected_documents(records, traces, joined);
    let extra = if joined { JOIN_AUTO } else { "" };
    let mut agent = Agent::start_with(bin, work, sink.addr, extra)?;
    let (done, usage) = settle(sink, &mut agent, expected)?;
    let timeouts = agent
        .metric("logferry_multiline_timeouts_total")
        .unwrap_or(0.0);
    let started = agent.started;
    agent.stop()?;
    let note = check(sink, records, traces, joined, timeouts)?;
    Ok(Row {
        name: if joined { "multiline" } else { "multiline-off" },
        records,
        input_bytes,
        seconds: (done - started).as_secs_f64(),
        cpu: usage.cpu,
        peak_rss: usage.peak_rss,
        note,
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}

/// The sink's documents against what the file holds; the row's note when they agree.
fn check(
    sink: &Sink,
    records: u64,
    traces: Traces,
    joined: bool,
    timeouts: f64,
) -> anyhow::Result<String> {
    let st = &sink.state;
    let got = st.accepted.load(Ordering::SeqCst);
    let documents = st.joined_documents.load(Ordering::SeqCst);
    let lines = st.joined_lines.load(Ordering::SeqCst);
    let split = st.split_documents.load(Ordering::SeqCst);
    let miscounted = st.joined_miscounted.load(Ordering::SeqCst);
    let expected = expected_documents(records, traces, joined);
    let want = if joined { traces } else { Traces::default() };
    let seen = Traces {
        traces: documents,
        lines,
    };
    if got != expected || seen != want || split > 0 || miscounted > 0 {
        bail!(
            "{got} documents for {records} lines with {} traces of {} lines, {expected} expected; \
             the sink saw {documents} joined documents of {lines} lines ({split} flagged split, \
             {miscounted} whose text does not hold the lines they say), {timeouts} flush timeouts",
            traces.traces,
            traces.lines
        );
    }
    let share = traces.lines as f64 / records as f64 * 100.0;
    Ok(if joined {
        format!(
            "1 file, CRI; rules auto: {} Node traces on stderr ({} lines, {share:.2} %) joined into {documents} documents; {timeouts} flush timeouts",
            traces.traces, traces.lines
        )
    } else {
        format!(
            "the same file, multiline off: {} trace lines shipped one document each",
            traces.lines
        )
    })
}

/// Waits until the sink holds `expected` documents and nothing more arrives for a while (more
/// would be lines left unjoined), or until it stops growing short of them (lines joined that
/// should not have been). Returns when the last document was answered and the agent's usage
/// when the expected count was reached.
fn settle(
    sink: &Sink,
    agent: &mut Agent,
    expected: u64,
) -> anyhow::Result<(Instant, crate::agent::Usage)> {
    const QUIET_AFTER: Duration = Duration::from_secs(3);
    const STALLED_AFTER: Duration = Duration::from_secs(60);
    let until = Instant::now() + Duration::from_secs(900);
    let (mut seen, mut changed) = (0, Instant::now());
    let mut usage = None;
    loop {
        let got = sink.state.accepted.load(Ordering::SeqCst);
        if got != seen {
            (seen, changed) = (got, Instant::now());
        }
        if got >= expected && usage.is_none() {
            usage = Some(agent.usage()?);
        }
        let quiet = changed.elapsed();
        if (usage.is_some() && quiet > QUIET_AFTER) || quiet > STALLED_AFTER {
            break;
        }
        if Instant::now() > until {
            bail!("the sink has {got} of {expected} documents after 900 s");
        }
        if let Ok(Some(status)) = agent.exited() {
            bail!("the agent exited ({status}) with {got} of {expected} documents shipped");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let malformed = sink.state.malformed.load(Ordering::SeqCst);
    if malformed > 0 {
        bail!("the sink found {malformed} malformed documents");
    }
    let last = sink.state.last_ack.lock().ok().and_then(|l| *l);
    match (last, usage) {
        (Some(last), Some(usage)) => Ok((last, usage)),
        (Some(last), None) => Ok((last, agent.usage()?)),
        (None, _) => bail!("no acknowledgement recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr_lines(file: &str) -> Vec<&str> {
        file.lines()
            .filter_map(|l| l.split_once(" stderr F ").map(|(_, text)| text))
            .collect()
    }

    #[test]
    fn two_percent_of_the_lines_are_in_node_traces_on_stderr() {
        let dir = std::env::temp_dir().join(format!("bench-multiline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (bytes, traces) = write_file(&dir, 100_000).unwrap();
        let path = dir.join(logs::file_name(0, "server"));
        let file = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(bytes, file.len() as u64);
        // Every record is one line, but the runtime's 16 KiB parts of a long one.
        let records = file.lines().filter(|l| !l.contains(" stdout P ")).count();
        assert_eq!(records, 100_000);
        let share = traces.lines as f64 / 100_000.0;
        assert!((0.019..0.021).contains(&share), "{share}");
        assert_eq!(traces.traces, 100_000 / TRACE_EVERY);
        let stderr = stderr_lines(&file);
        let headers = stderr.iter().filter(|l| !l.starts_with(' ')).count() as u64;
        // Each trace's header, its closing brace when it has properties, and the last warning.
        let closing = stderr.iter().filter(|l| **l == "}").count() as u64;
        assert_eq!(headers, traces.traces + closing + 1);
        assert_eq!(stderr.len() as u64, traces.lines + 1);
        assert!(stderr.last().unwrap().starts_with("(node:1) Warning:"));
        // A stdout line lands between the frames of every other trace.
        let (mut between, mut stdout_since) = (0, false);
        for line in file.lines() {
            if line.contains(" stdout ") {
                stdout_since = true;
            } else if let Some((_, text)) = line.split_once(" stderr F ") {
                between += u64::from(stdout_since && text.starts_with(' '));
                stdout_since = false;
            }
        }
        assert_eq!(between, traces.traces / 2);
        assert_eq!(
            expected_documents(100_000, traces, true),
            100_000 - traces.lines + traces.traces
        );
    }

    #[test]
    fn traces_have_the_shapes_node_prints_about_ten_lines_each() {
        let sizes: Vec<usize> = (0..4).map(|n| trace(n).len()).collect();
        assert_eq!(sizes, [8, 14, 9, 10]);
        for n in 0..4 {
            let t = trace(n);
            assert!(t[0].contains("Error: "), "{}", t[0]);
            assert!(t[1].starts_with("    at "), "{}", t[1]);
        }
    }
}
