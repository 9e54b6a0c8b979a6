//! The `reload` scenario: `one-file`'s million lines while the config is rewritten and the
//! agent sent SIGHUP every 200 ms, each file different from the last (the flush interval and the
//! throttle alternate), so every reload is taken and applied. Its CPU per line compares with
//! `one-file`'s, and its duplicates are counted like every scenario's.

use crate::agent::Agent;
use crate::logs;
use crate::row::{Row, wait_for};
use crate::sink::Sink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the config is reloaded, as issue 18's test has it.
const EVERY: Duration = Duration::from_millis(200);

/// The two files the reloads alternate between, after the scenario's base config.
const VARIANTS: [&str; 2] = [
    "\n[buffer]\nflush_interval = \"1s\"\n",
    "\n[buffer]\nflush_interval = \"900ms\"\n[throttle]\nlines_per_second = 100000000\n",
];

pub fn run(bin: &Path, sink: &Sink, work: &Path, lines: u64) -> anyhow::Result<Row> {
    let input_bytes = logs::write_files(&work.join("containers"), 0, 1, lines, false)?;
    let mut agent = Agent::start_with(bin, work, sink.addr, VARIANTS[0])?;
    let config = work.join("logferry.toml");
    let base = std::fs::read_to_string(&config)?.replace(VARIANTS[0], "");
    let (done, reloads) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let reloading = {
        let (done, reloads, pid) = (done.clone(), reloads.clone(), agent.pid());
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(EVERY);
                let n = reloads.fetch_add(1, Ordering::Relaxed) + 1;
                std::fs::write(&config, format!("{base}{}", VARIANTS[(n % 2) as usize]))?;
                // SAFETY: kill(2) on the agent's own pid; the child is alive until stopped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
            }
            Ok(())
        })
    };
    let finished = wait_for(sink, &mut agent, lines, Duration::from_secs(900));
    done.store(true, Ordering::Relaxed);
    let reloaded = reloading
        .join()
        .map_err(|_| anyhow::anyhow!("reload thread panicked"))?;
    let finished = finished?;
    reloaded?;
    let usage = agent.usage()?;
    let started = agent.started;
    agent.stop()?;
    Ok(Row {
        name: "reload",
        records: lines,
        input_bytes,
        seconds: (finished - started).as_secs_f64(),
        cpu: usage.cpu,
        peak_rss: usage.peak_rss,
        note: format!(
            "1 file(s), CRI; SIGHUP every 200 ms: {} reloads",
            reloads.load(Ordering::Relaxed)
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}
