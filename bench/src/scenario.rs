//! The scenarios, in the order they run: each one's name, the run that measures it, and whether
//! Fluent Bit runs it too (and if not, why not). The runs live beside what they measure
//! ([`crate::backlog`], [`crate::steady`], [`crate::multiline`], [`crate::production`],
//! [`crate::reload`]); this file only lists them, multiplies their line counts and lengths by
//! the run's scale, and holds the config of the two stages that are `one-file` with a config
//! added (`redact`, `routes`).

use crate::backlog::{self, WIDE_LINES, files_at_start};
use crate::logs::Files;
use crate::peer::{Setup, Shipper};
use crate::row::Row;
use crate::sink::Sink;
use crate::{multiline, production, reload, steady};
use std::path::Path;
use std::time::Duration;

/// A scenario: its name, the run that measures it in a work directory, and whether Fluent Bit
/// runs it too. A logferry-only run is only ever given [`Shipper::Logferry`].
pub struct Scenario<'a> {
    pub name: &'static str,
    pub run: Run<'a>,
    pub fluent_bit: Comparison,
}

/// A measurement of a scenario with the shipper given, in a work directory.
pub type Run<'a> = Box<dyn Fn(&Shipper, &Path) -> anyhow::Result<Row> + 'a>;
/// One that runs logferry only.
type LogferryRun<'a> = Box<dyn Fn(&Path) -> anyhow::Result<Row> + 'a>;

/// Whether a scenario is a fair comparison with Fluent Bit.
#[derive(Clone, Copy)]
pub enum Comparison {
    /// Fluent Bit runs it with each of these `Refresh_Interval`s (seconds).
    Refresh(&'static [u32]),
    /// It does not: why.
    Unfair(&'static str),
}

/// Fluent Bit rescanning every second: the soonest it finds a new file, which logferry learns
/// of from inotify at once.
const LIKE_LOGFERRY: Comparison = Comparison::Refresh(&[1]);

impl<'a> Scenario<'a> {
    /// `run` is given logferry, then each Fluent Bit `fluent_bit` asks for; logferry only where
    /// it is [`Comparison::Unfair`].
    fn new(name: &'static str, fluent_bit: Comparison, run: Run<'a>) -> Scenario<'a> {
        Scenario {
            name,
            run,
            fluent_bit,
        }
    }

    /// One whose run starts logferry itself, from its binary: Fluent Bit does not run it, for
    /// `why`.
    fn logferry_only(name: &'static str, why: &'static str, run: LogferryRun<'a>) -> Scenario<'a> {
        Scenario {
            name,
            run: Box::new(move |_: &Shipper, w: &Path| run(w)),
            fluent_bit: Comparison::Unfair(why),
        }
    }
}

/// Every scenario, in the order they run, with their line counts and lengths multiplied by
/// `scale`.
pub fn scenarios<'a>(bin: &'a Path, sink: &'a Sink, scale: f64) -> Vec<Scenario<'a>> {
    let bench = Bench { bin, sink, scale };
    [
        bench.files(),
        bench.quiet(),
        bench.rates(),
        bench.line_shapes(),
        bench.stages(),
        bench.sources(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What every scenario is built with: the agent, the sink, and the run's scale.
#[derive(Clone, Copy)]
struct Bench<'a> {
    bin: &'a Path,
    sink: &'a Sink,
    scale: f64,
}

impl<'a> Bench<'a> {
    /// `lines` at the run's scale; at least 10, so a tiny scale still ships something.
    fn lines(self, lines: u64) -> u64 {
        ((lines as f64 * self.scale).round() as u64).max(10)
    }

    /// `seconds` at the run's scale; at least `min`, so a tiny scale still measures a rate.
    fn secs(self, seconds: u64, min: u64) -> u64 {
        ((seconds as f64 * self.scale).round() as u64).max(min)
    }

    /// `files` written before the shipper starts, with logferry-only `extra` config (which
    /// only a logferry-only scenario has) and what the table notes of it.
    fn at_start(
        self,
        name: &'static str,
        files: Files,
        extra: &'static str,
        note: &'static str,
    ) -> Run<'a> {
        let setup = Setup {
            logferry: extra,
            ..Setup::default()
        };
        let sink = self.sink;
        Box::new(move |s: &Shipper, w: &Path| {
            files_at_start(s, sink, w, name, files.clone(), setup, note)
        })
    }

    /// A million lines in one CRI file, with `extra` config and what the table notes of it.
    fn one_file(self, name: &'static str, extra: &'static str, note: &'static str) -> Run<'a> {
        self.at_start(name, Files::cri(1, self.lines(1_000_000)), extra, note)
    }

    /// A writer at `lines_per_s` for `seconds`, shipped with flushes every `flush` (the
    /// default where `None`).
    fn steady(
        self,
        name: &'static str,
        lines_per_s: u64,
        seconds: u64,
        flush: Option<Duration>,
    ) -> Run<'a> {
        let rate = steady::Rate {
            lines_per_s,
            seconds,
        };
        let setup = Setup {
            flush,
            ..Setup::default()
        };
        let sink = self.sink;
        Box::new(move |s: &Shipper, w: &Path| steady::steady(s, sink, w, name, rate, setup))
    }

    /// Files to read: one, a hundred in two formats, and ten busy beside a thousand idle.
    fn files(self) -> Vec<Scenario<'a>> {
        let (bin, sink) = (self.bin, self.sink);
        let (idle_files, one_file) = (self.lines(100_000), self.lines(1_000_000));
        vec![
            Scenario::new("one-file", LIKE_LOGFERRY, self.one_file("one-file", "", "")),
            Scenario::logferry_only(
                "kafka-out",
                "logferry's Kafka output",
                Box::new(move |w| crate::kafka::run(bin, sink.addr, w, one_file)),
            ),
            Scenario::new(
                "many-files",
                Comparison::Unfair("CRI and docker files: the peer's config reads CRI only"),
                self.at_start("many-files", Files::mixed(100, self.lines(10_000)), "", ""),
            ),
            Scenario::logferry_only(
                "idle-files",
                "CRI and docker files added while it runs; idle stands for it",
                Box::new(move |w| backlog::idle_files(bin, sink, w, idle_files)),
            ),
        ]
    }

    /// A node with nothing new to ship, and one whose cluster was down.
    fn quiet(self) -> Vec<Scenario<'a>> {
        let (bin, sink) = (self.bin, self.sink);
        let (idle_secs, buffered) = (self.secs(60, 10), self.lines(1_000_000));
        vec![
            // Fluent Bit's own default rescan beside the every-second one the other comparisons
            // use: on a quiet node the rescan is most of what an agent does.
            Scenario::new(
                "idle",
                Comparison::Refresh(&[60, 1]),
                Box::new(move |s, w| steady::idle(s, sink, w, idle_secs)),
            ),
            Scenario::logferry_only(
                "catch-up",
                "reads logferry's buffer metrics; Fluent Bit buffers in memory",
                Box::new(move |w| backlog::catch_up(bin, sink, w, buffered)),
            ),
        ]
    }

    /// Lines written at a steady rate, as an application serving requests writes them.
    fn rates(self) -> Vec<Scenario<'a>> {
        let (long, short) = (self.secs(60, 10), self.secs(30, 5));
        vec![
            // The low-latency setting: a flush every 20 ms (both agents flush every second by
            // default).
            Scenario::new(
                "latency",
                LIKE_LOGFERRY,
                self.steady("latency", 10_000, short, Some(Duration::from_millis(20))),
            ),
            Scenario::new(
                "steady-1k",
                LIKE_LOGFERRY,
                self.steady("steady-1k", 1_000, long, None),
            ),
            Scenario::new(
                "steady-10k",
                LIKE_LOGFERRY,
                self.steady("steady-10k", 10_000, long, None),
            ),
        ]
    }

    /// Lines of other shapes than the usual one: very wide, and stack traces across lines.
    fn line_shapes(self) -> Vec<Scenario<'a>> {
        let (bin, sink) = (self.bin, self.sink);
        let (wide, lines) = (self.lines(WIDE_LINES), self.lines(1_000_000));
        vec![
            Scenario::logferry_only(
                "wide-lines",
                "not wired yet (its file is plain CRI, so it could be)",
                Box::new(move |w| backlog::wide_lines(bin, sink, w, wide)),
            ),
            Scenario::logferry_only(
                "multiline",
                "logferry's multiline auto rules",
                Box::new(move |w| multiline::run(bin, sink, w, lines, true)),
            ),
            Scenario::logferry_only(
                "multiline-off",
                "the control of logferry's multiline (one-file stands for its plain CRI)",
                Box::new(move |w| multiline::run(bin, sink, w, lines, false)),
            ),
        ]
    }

    /// logferry's stages on `one-file`'s kind of input, each held to that file's cost.
    fn stages(self) -> Vec<Scenario<'a>> {
        let (bin, sink) = (self.bin, self.sink);
        let (per_pod, lines) = (self.lines(10_000), self.lines(1_000_000));
        vec![
            Scenario::new(
                "redact",
                Comparison::Unfair("logferry's redaction"),
                self.one_file("redact", REDACT, "; the default redaction rules"),
            ),
            Scenario::logferry_only(
                "production",
                "logferry's metadata, multiline, redaction and throttling",
                Box::new(move |w| production::run(bin, sink, w, per_pod)),
            ),
            Scenario::logferry_only(
                "reload",
                "logferry's config reload",
                Box::new(move |w| reload::run(bin, sink, w, lines)),
            ),
            Scenario::new(
                "routes",
                Comparison::Unfair("logferry's routes"),
                self.one_file("routes", ROUTES, "; 5 routes, 3 on a field"),
            ),
        ]
    }
}

impl<'a> Bench<'a> {
    /// Records that come to the agent rather than being read: the aggregator role.
    fn sources(self) -> Vec<Scenario<'a>> {
        let (bin, sink, records) = (self.bin, self.sink, self.lines(1_000_000));
        vec![Scenario::logferry_only(
            "forward-in",
            "logferry's forward listener (Fluent Bit's in_forward would be the peer)",
            Box::new(move |w| crate::forward::run(bin, sink, w, records)),
        )]
    }
}

/// `routes`: `one-file`'s file with five routes, three of them on a field of the document
/// (one a regular expression over every line's `path`), none taking the shop's lines but the
/// 2 % that are errors: every record is tried against all of them, the worst case of a route
/// list, and every record is shipped, so the CPU per line compares with `one-file`'s.
const ROUTES: &str = r#"
[[route]]
name = "audit"
index = "audit-%Y.%m"
when.namespaces = ["payments", "auth-*"]
[[route]]
name = "audit-events"
index = "audit-%Y.%m"
when.field = { path = "log_type", equals = "audit" }
[[route]]
name = "probes"
drop = true
when.field = { path = "path", matches = '^/(livez|readyz)' }
[[route]]
name = "errors"
index = "errors-%Y.%m.%d"
when.field = { path = "status", equals = 500 }
[[route]]
name = "billing"
index = "billing-%Y.%m.%d"
when.namespaces = ["billing"]
"#;

/// `redact`: `one-file`'s file with the default redaction rules on the default fields.
const REDACT: &str = "\n[redact]\nrules = [\"email\", \"card\", \"us_ssn\", \"phone\", \"jwt\", \"bearer\", \"aws_key\", \"ipv4\"]\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are what `--only` takes and the order is the table's: a scenario renamed,
    /// dropped or moved shows here, and so does one Fluent Bit starts or stops running.
    #[test]
    fn the_scenarios_run_in_the_documented_order_and_fluent_bit_runs_the_fair_ones()
    -> anyhow::Result<()> {
        let sink = Sink::start()?;
        let all = scenarios(Path::new("logferry"), &sink, 1.0);
        let names: Vec<_> = all.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "one-file",
                "kafka-out",
                "many-files",
                "idle-files",
                "idle",
                "catch-up",
                "latency",
                "steady-1k",
                "steady-10k",
                "wide-lines",
                "multiline",
                "multiline-off",
                "redact",
                "production",
                "reload",
                "routes",
                "forward-in",
            ]
        );
        let compared: Vec<_> = all
            .iter()
            .filter_map(|s| match s.fluent_bit {
                Comparison::Refresh(every) => Some((s.name, every)),
                Comparison::Unfair(_) => None,
            })
            .collect();
        assert_eq!(
            compared,
            [
                ("one-file", &[1][..]),
                ("idle", &[60, 1][..]),
                ("latency", &[1][..]),
                ("steady-1k", &[1][..]),
                ("steady-10k", &[1][..]),
            ]
        );
        Ok(())
    }
}
