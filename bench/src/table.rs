//! The results table: one Markdown row per scenario logferry ran, then each target docs/speed.md
//! sets ([`crate::targets`]), met or missed. Fluent Bit's rows have their own table
//! ([`crate::compare`]).

use crate::row::{MIB, Row};
use crate::targets::targets;

/// The results as a Markdown table, then each target docs/speed.md sets, met or missed.
pub fn print_table(rows: &[Row]) {
    print_rows(rows);
    println!();
    for (what, ok, value) in targets(rows) {
        println!("{} {what}: {value}", if ok { "met   " } else { "MISSED" });
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "| scenario | lines | input MB | seconds | lines/s | MB/s | CPU-s per 1M lines | peak RSS MiB | p50 / p99 ms | duplicates | notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let per_line = |v: f64, digits: usize| {
            if r.quiet() {
                "–".to_owned()
            } else {
                format!("{v:.digits$}")
            }
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {} | {} | {} | {:.1} | {} | {} | {} |",
            r.name,
            r.records,
            r.input_bytes as f64 / 1e6,
            r.seconds,
            per_line(r.lines_per_s(), 0),
            per_line(r.input_bytes as f64 / 1e6 / r.seconds, 1),
            per_line(r.cpu_per_million(), 2),
            r.peak_rss as f64 / MIB,
            r.latency
                .map(|(a, b)| format!("{a:.1} / {b:.1}"))
                .unwrap_or_else(|| "–".into()),
            r.duplicates,
            r.note
        );
    }
}
