//! The side-by-side table: each scenario Fluent Bit ran, its figures beside logferry's from the
//! same run, and their ratio; then the scenarios it did not run and why.

use crate::row::{MIB, Row};

/// Prints `peers` (a label and a row each) against the logferry row of the same scenario.
pub fn print(rows: &[Row], peers: &[(String, Row)], unfair: &[(&str, &str)]) {
    println!("\nSide by side (same run, same sink; ratio = peer ÷ logferry):\n");
    println!("| scenario | peer | figure | logferry | peer's | ratio |");
    println!("|---|---|---|---:|---:|---:|");
    for (label, peer) in peers {
        let Some(ours) = rows.iter().find(|r| r.name == peer.name) else {
            continue;
        };
        for ((what, a), (_, b)) in figures(ours).into_iter().zip(figures(peer)) {
            println!(
                "| {} | {label} | {what} | {} | {} | {} |",
                peer.name,
                shown(a),
                shown(b),
                if a > 0.0 {
                    format!("{:.2}", b / a)
                } else {
                    "–".into()
                }
            );
        }
    }
    for (label, peer) in peers.iter().filter(|(_, p)| p.duplicates > 0) {
        println!(
            "\n{} with {label}: {} documents beyond those written (resent)",
            peer.name, peer.duplicates
        );
    }
    if !unfair.is_empty() {
        println!("\nNot run with Fluent Bit:");
        for (name, why) in unfair {
            println!("- {name}: {why}");
        }
    }
}

/// The figures of a row that compare across agents, in the order printed.
fn figures(r: &Row) -> Vec<(&'static str, f64)> {
    if r.quiet() {
        return vec![
            ("CPU-s per minute", r.cpu_per_minute()),
            ("RSS MiB", r.rss as f64 / MIB),
            ("peak RSS MiB", r.peak_rss as f64 / MIB),
        ];
    }
    let mut f = Vec::new();
    // A steady run's lines/s is the rate it was written at.
    if r.latency.is_none() {
        f.push(("lines/s", r.lines_per_s()));
    }
    f.push(("CPU-s per 1M lines", r.cpu_per_million()));
    f.push(("peak RSS MiB", r.peak_rss as f64 / MIB));
    if let Some((p50, p99)) = r.latency {
        f.push(("p50 ms", p50));
        f.push(("p99 ms", p99));
    }
    f
}

/// A figure with as many digits as its size needs.
fn shown(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
