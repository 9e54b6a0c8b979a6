//! Which agent a comparable scenario runs: logferry with its defaults, or Fluent Bit with the
//! equivalent of them (`bench/fluent-bit.conf`). Both are started on the same work directory,
//! ship to the same sink and are measured the same way (/proc of their process), so a scenario
//! that takes a [`Shipper`] measures either without knowing which.

use crate::agent::Agent;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Fluent Bit's config, placeholders and all.
const CONFIG: &str = include_str!("../fluent-bit.conf");

/// A Fluent Bit build and how it is run.
#[derive(Clone, Debug)]
pub struct FluentBit {
    pub bin: PathBuf,
    /// Its parsers.conf, for the `json` parser the filter names.
    pub parsers: PathBuf,
    /// `Refresh_Interval`, seconds: how often it looks for new files (it has no directory
    /// watch), so what a quiet node costs it depends on this.
    pub refresh_secs: u32,
}

impl FluentBit {
    /// `bin` with the parsers of its build tree (`OUT/b/bin/fluent-bit` → `OUT/conf`) unless
    /// `parsers` names others.
    pub fn find(bin: &Path, parsers: Option<&Path>) -> anyhow::Result<FluentBit> {
        if !bin.is_file() {
            bail!("no Fluent Bit at {}", bin.display());
        }
        let parsers = match parsers {
            Some(p) => p.to_owned(),
            None => bin
                .ancestors()
                .nth(3)
                .context("no build tree above the Fluent Bit binary")?
                .join("conf/parsers.conf"),
        };
        if !parsers.is_file() {
            bail!(
                "no parsers.conf at {}: name it with --fluent-bit-parsers",
                parsers.display()
            );
        }
        Ok(FluentBit {
            bin: bin.to_owned(),
            parsers,
            refresh_secs: 1,
        })
    }

    /// The config for a scenario in `work`, with `flush` between flushes.
    fn config(&self, work: &Path, sink: SocketAddr, flush: Duration) -> String {
        let mut text = String::new();
        for line in CONFIG.lines().filter(|l| !l.starts_with('#')) {
            let line = line
                .replace("LOGDIR", &work.join("containers").display().to_string())
                .replace(
                    "DBFILE",
                    &work.join("data/fluent-bit.db").display().to_string(),
                )
                .replace("PORT", &sink.port().to_string())
                .replace("PARSERS", &self.parsers.display().to_string())
                .replace("FLUSH", &flush.as_secs_f64().to_string())
                .replace("REFRESH", &self.refresh_secs.to_string());
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

/// What a scenario sets beyond the defaults.
#[derive(Clone, Copy, Default)]
pub struct Setup<'s> {
    /// Time between flushes for both agents (logferry's `buffer.flush_interval`, Fluent Bit's
    /// `Flush`); both default to 1 s.
    pub flush: Option<Duration>,
    /// Config only logferry has, appended to its file: a scenario with any is not a comparison.
    pub logferry: &'s str,
}

/// The agent a scenario runs.
#[derive(Clone, Copy)]
pub enum Shipper<'a> {
    /// logferry's release binary.
    Logferry(&'a Path),
    FluentBit(&'a FluentBit),
}

impl Shipper<'_> {
    /// Starts it on `work`'s containers directory, shipping to `sink`.
    pub fn start(&self, work: &Path, sink: SocketAddr, setup: Setup) -> anyhow::Result<Agent> {
        match self {
            Shipper::Logferry(bin) => {
                let flush = setup.flush.map_or(String::new(), |f| {
                    format!("\n[buffer]\nflush_interval = \"{}ms\"\n", f.as_millis())
                });
                Agent::start_with(bin, work, sink, &format!("{flush}{}", setup.logferry))
            }
            Shipper::FluentBit(fb) => {
                if !setup.logferry.is_empty() {
                    bail!("Fluent Bit cannot run a scenario with logferry-only config");
                }
                let config = work.join("fluent-bit.conf");
                let flush = setup.flush.unwrap_or(Duration::from_secs(1));
                std::fs::write(&config, fb.config(work, sink, flush))?;
                Agent::spawn(&fb.bin, &["-c".as_ref(), config.as_os_str()], work, None)
            }
        }
    }

    /// What the tables call it.
    pub fn label(&self) -> String {
        match self {
            Shipper::Logferry(_) => "logferry".into(),
            Shipper::FluentBit(fb) => format!("Fluent Bit (Refresh_Interval {})", fb.refresh_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_replaced_and_the_comments_dropped() {
        let fb = FluentBit {
            bin: "/fb".into(),
            parsers: "/p/parsers.conf".into(),
            refresh_secs: 60,
        };
        let sink: SocketAddr = "127.0.0.1:9201".parse().unwrap();
        let text = fb.config(Path::new("/w"), sink, Duration::from_millis(20));
        for want in [
            "Flush        0.02",
            "Parsers_File /p/parsers.conf",
            "Path              /w/containers/*.log",
            "DB                /w/data/fluent-bit.db",
            "Refresh_Interval  60",
            "Port               9201",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        for placeholder in [
            "LOGDIR", "DBFILE", "PORT", "PARSERS", "FLUSH", "REFRESH", "#",
        ] {
            assert!(!text.contains(placeholder), "{placeholder} left in\n{text}");
        }
        let one_s = fb.config(Path::new("/w"), sink, Duration::from_secs(1));
        assert!(one_s.contains("Flush        1\n"), "{one_s}");
    }
}
