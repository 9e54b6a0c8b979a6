//! The classic Prometheus text format (0.0.4), from the OpenMetrics text `prometheus-client`
//! writes.

/// OpenMetrics text as the classic Prometheus text format: counter and info families are named
/// with their `_total` / `_info` sample names (an info becomes a gauge), `# UNIT` and `# EOF`
/// go. Everything else — samples, label escaping, histograms — is the same in both.
pub(super) fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut kinds = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds.insert(name.to_owned(), kind.to_owned());
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        if let Some((prefix, rest)) = header {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, tail) = match kinds.get(name).map(String::as_str) {
                Some("counter") => (format!("{name}_total"), tail),
                Some("info") if prefix == "# TYPE " => (format!("{name}_info"), "gauge"),
                Some("info") => (format!("{name}_info"), tail),
                _ => (name.to_owned(), tail),
            };
            out.push_str(prefix);
            out.push_str(&name);
            out.push(' ');
            out.push_str(tail);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    #[test]
    fn the_classic_format_names_counter_and_info_families_by_their_samples() {
        let m = Metrics::new();
        m.lines_read.inc_by(3);
        let om = m.render(true);
        assert!(om.contains("# TYPE logferry_input_lines counter"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"));
        assert_eq!(om.matches("# EOF").count(), 1);
        let text = m.render(false);
        assert!(
            text.contains(
                "# TYPE logferry_input_lines_total counter\nlogferry_input_lines_total 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE logferry_build_info gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
