//! Index names: the rules an index name pattern must follow, and the name a record's time gives.
//!
//! A leaf of the shared vocabulary: `config` checks patterns with it at load time (so a bad one
//! is refused with its file and line), and the encoder names each record's index with it.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

/// An index name pattern: strftime items applied to a record's timestamp in UTC.
#[derive(Debug, Clone)]
pub struct IndexPattern {
    pattern: String,
    /// Whether the pattern has any time item at all; if not the name is constant.
    dynamic: bool,
    /// The last (whole seconds, zone, index name) computed, for a time that parsed: lines
    /// arrive in time order, so almost every lookup hits.
    cache: Option<(String, String, String)>,
}

impl IndexPattern {
    /// Checks `pattern` and everything it can produce against what Elasticsearch accepts as an
    /// index name and what keeps a bulk action line one line of valid JSON: the literal text,
    /// and each strftime item, which must be on an allow-list of items that give digits only
    /// (`%b`, `%Z` or `%c` give upper case, `%n` and `%t` a newline or a tab, `%e` a space, `%s`
    /// and `%f` an index per record). The error names the item or character at fault.
    pub fn new(pattern: &str) -> Result<IndexPattern, String> {
        check_characters(pattern)?;
        let items: Vec<Item> = StrftimeItems::new(pattern).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(format!("{pattern:?} has an invalid strftime item"));
        }
        // The widest name the pattern gives: padded items, which have their most digits anyway.
        let widest = pattern.replace("%-", "%");
        let sample = DateTime::<Utc>::from_timestamp(1_764_000_000, 0)
            .unwrap_or_default()
            .format(&widest)
            .to_string();
        if sample.is_empty() || sample.starts_with(['-', '_', '+']) || sample == ".." {
            return Err(format!(
                "{pattern:?} gives index names like {sample:?}, which Elasticsearch refuses \
                 (empty, \"..\", or starting with - _ +)"
            ));
        }
        // `.` alone is refused; a leading dot makes a hidden (system) index.
        if sample.starts_with('.') {
            return Err(format!(
                "{pattern:?} gives index names like {sample:?}: a leading dot is for hidden and \
                 system indices"
            ));
        }
        if sample.len() > 255 {
            return Err(format!(
                "{pattern:?} gives index names of {} bytes; Elasticsearch allows 255",
                sample.len()
            ));
        }
        Ok(IndexPattern {
            pattern: pattern.to_owned(),
            dynamic: items
                .iter()
                .any(|i| !matches!(i, Item::Literal(_) | Item::Space(_))),
            cache: None,
        })
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The index for a record with this RFC 3339 time, or `None` when the time does not parse
    /// (whatever the pattern): the caller gives the record a time that does, never the clock's.
    pub fn index_for(&mut self, time: &str) -> Option<&str> {
        self.name_for(time)?;
        self.cache.as_ref().map(|(_, _, name)| name.as_str())
    }

    /// The index for this time, or the pattern as written when the time does not parse.
    pub fn index_or_pattern(&mut self, time: &str) -> &str {
        match (self.name_for(time), &self.cache) {
            (Some(()), Some((_, _, name))) => name,
            _ => &self.pattern,
        }
    }

    /// Caches the index name for `time`; `None` when the time does not parse.
    fn name_for(&mut self, time: &str) -> Option<()> {
        let (head, zone) = second_key(time)?;
        let hit = matches!(&self.cache, Some((h, z, _)) if h == head && z == zone);
        if !hit {
            let when = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
            let name = if self.dynamic {
                when.format(&self.pattern).to_string()
            } else {
                self.pattern.clone()
            };
            self.cache = Some((head.to_owned(), zone.to_owned(), name));
        }
        Some(())
    }
}

/// How long one index of a time-named pattern receives records, by its finest time item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
    Century,
}

impl Period {
    /// The most days one index of this period spans (a whole day for an hour: lifecycle ages
    /// are counted in days here).
    pub fn max_days(self) -> u32 {
        match self {
            Period::Hour | Period::Day => 1,
            Period::Week => 7,
            Period::Month => 31,
            Period::Year => 366,
            Period::Century => 36_525,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
            Period::Century => "centennial",
        }
    }
}

impl IndexPattern {
    /// The index names the pattern can give, as a wildcard pattern for an index template:
    /// each strftime item becomes `*` (`logs-%Y.%m.%d` → `logs-*.*.*`).
    pub fn wildcard(&self) -> String {
        let mut out = String::new();
        let mut chars = self.pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            // Padding modifiers, then the item itself (`new` checked every item is whole).
            for m in chars.by_ref() {
                if !matches!(m, '-' | '0') {
                    break;
                }
            }
            if !out.ends_with('*') {
                out.push('*');
            }
        }
        out
    }

    /// The characters of the pattern that are not time items: more is more specific.
    pub fn literal_len(&self) -> usize {
        self.wildcard().chars().filter(|c| *c != '*').count()
    }

    /// How long one of its indices receives records, when its name names one span of time
    /// and no other: a year, a month of a year, a day of a year, an ISO week of an ISO year,
    /// an hour of such a day. `None` for a name without time items (one index for all time)
    /// and for one that comes round again (`logs-%d` is the 5th of every month, `%Y-w%V`
    /// mixes calendar and ISO years): a lifecycle that deletes such an index by its age
    /// deletes fresh records with old ones.
    pub fn period(&self) -> Option<Period> {
        let items = self.items();
        let has = |c: char| items.contains(&c);
        let year = has('Y') || has('y');
        let day = has('F') || (year && (has('j') || (has('m') && has('d'))));
        let iso_week = (has('G') || has('g')) && has('V');
        let week = iso_week || (year && (has('U') || has('W')));
        let period = if (day || (iso_week && (has('u') || has('w')))) && has('H') {
            Period::Hour
        } else if day || (iso_week && (has('u') || has('w'))) {
            Period::Day
        } else if week {
            Period::Week
        } else if year && has('m') {
            Period::Month
        } else if year {
            Period::Year
        } else if has('C') && !items.iter().any(|c| *c != 'C') {
            Period::Century
        } else {
            return None;
        };
        // Any item finer than the span (an hour in a monthly name) makes the name come round.
        let allowed = match period {
            Period::Hour => "YymdjFGgVuwUWH",
            Period::Day => "YymdjFGgVuwUW",
            Period::Week => "YyGgVUW",
            Period::Month => "Yym",
            Period::Year => "Yy",
            Period::Century => "C",
        };
        items.iter().all(|c| allowed.contains(*c)).then_some(period)
    }

    /// The strftime items of the pattern, modifiers left out (`%-m` is `m`).
    fn items(&self) -> Vec<char> {
        let mut out = Vec::new();
        let mut chars = self.pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                continue;
            }
            let mut spec = chars.next();
            while let Some('-' | '0') = spec {
                spec = chars.next();
            }
            out.extend(spec);
        }
        out
    }
}

/// The literal text and each strftime item of `pattern`: see [`IndexPattern::new`].
fn check_characters(pattern: &str) -> Result<(), String> {
    /// Items that give ASCII digits (and `-` for `%F`), whatever the time: a conservative
    /// list, because an index name that is refused stops shipping for good.
    const ALLOWED: &str = "YCyGgmdjVUWuwHMF";
    const SHOWN: &str = "%Y %C %y %G %g %m %d %j %V %U %W %u %w %H %M %F";
    /// Elasticsearch refuses these in index names (`:` since 7.0); `"` and `\` would also
    /// end or escape the JSON string of the action line.
    const REFUSED: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            if c.is_uppercase() || c.is_control() || c.is_whitespace() || REFUSED.contains(&c) {
                return Err(format!(
                    "{pattern:?}: {c:?} is not allowed in an index name (no upper case, \
                         whitespace, control characters or any of \\ / * ? \" < > | , # :)"
                ));
            }
            continue;
        }
        // chrono's padding modifiers: `-` (none) and `0` (zeros) keep digits only; `_` pads
        // with spaces.
        let mut item = String::from('%');
        let mut spec = chars.next();
        while let Some(m @ ('-' | '0')) = spec {
            item.push(m);
            spec = chars.next();
        }
        let Some(spec) = spec else {
            return Err(format!("{pattern:?} ends with an unfinished strftime item"));
        };
        item.push(spec);
        if matches!(spec, 's' | 'f' | '.' | 'S' | '3' | '6' | '9') {
            return Err(format!(
                "{pattern:?}: {item} would create an index per second or per record"
            ));
        }
        if !ALLOWED.contains(spec) {
            return Err(format!(
                "{pattern:?}: the strftime item {item} can give characters an index name \
                     cannot hold (upper case, spaces, newlines, tabs, punctuation) or is not \
                     supported; use only {SHOWN}"
            ));
        }
    }
    Ok(())
}

/// Splits an RFC 3339 time into the part up to whole seconds and its zone, leaving out the
/// fraction: all times with the same two parts fall into the same index.
/// `None` when the time cannot be RFC 3339 (too short, or a fraction without digits), so that a
/// cache hit is only ever a time that parses.
fn second_key(time: &str) -> Option<(&str, &str)> {
    if time.len() < 20 || !time.is_char_boundary(19) {
        return None;
    }
    let (head, rest) = time.split_at(19);
    let zone = match rest.strip_prefix('.') {
        Some(fraction) => {
            let zone = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
            if zone.len() == fraction.len() {
                return None;
            }
            zone
        }
        None => rest,
    };
    Some((head, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_the_record_time_in_utc() {
        let mut p = IndexPattern::new("logs-%Y.%m.%d").unwrap();
        let cases = [
            ("2026-11-26T17:00:00.123456789Z", "logs-2026.11.26"),
            ("2026-11-26T23:59:59.999Z", "logs-2026.11.26"),
            ("2026-11-27T00:30:00+02:00", "logs-2026.11.26"),
            ("2026-12-31T23:00:00-05:00", "logs-2027.01.01"),
            ("2026-12-31T23:00:00.1-05:00", "logs-2027.01.01"),
        ];
        for (time, want) in cases {
            assert_eq!(p.index_for(time), Some(want), "{time}");
        }
        let mut fixed = IndexPattern::new("klear-karma-logs").unwrap();
        assert_eq!(
            fixed.index_for("2026-11-26T17:00:00Z"),
            Some("klear-karma-logs")
        );
    }

    #[test]
    fn a_time_that_does_not_parse_gets_no_index_rather_than_todays() {
        for pattern in ["logs-%Y.%m.%d", "klear-karma-logs"] {
            let mut p = IndexPattern::new(pattern).unwrap();
            // A good time first, so the cache is warm: none of these may hit it.
            assert!(p.index_for("2026-11-26T17:00:00.5Z").is_some());
            for bad in [
                "",
                "garbage",
                "2026-11-26T17:00:00",
                "2026-11-26T17:00:00.Z",
                "2026-11-26T17:00:00.5",
                "2026-11-26T17:00:00.5Zjunk",
                "2026-13-26T17:00:00Z",
            ] {
                assert_eq!(p.index_for(bad), None, "{pattern} {bad:?}");
            }
        }
    }

    #[test]
    fn templates_match_every_name_a_pattern_gives_and_know_its_period() {
        let cases = [
            ("logs-%Y.%m.%d", "logs-*.*.*", Some(Period::Day)),
            ("audit-%Y.%m", "audit-*.*", Some(Period::Month)),
            ("audit-%-m%Y", "audit-*", Some(Period::Month)),
            ("w-%G-w%V", "w-*-w*", Some(Period::Week)),
            ("h-%F-%H", "h-*-*", Some(Period::Hour)),
            ("klear-karma-logs", "klear-karma-logs", None),
            ("y-%Y", "y-*", Some(Period::Year)),
            ("d-%j.%Y", "d-*.*", Some(Period::Day)),
            ("iso-%G.%V.%u", "iso-*.*.*", Some(Period::Day)),
            // Names that come round again: no span to keep them by.
            ("logs-%d", "logs-*", None),
            ("audit-%m", "audit-*", None),
            ("logs-%Y.%d", "logs-*.*", None),
            ("x-%H", "x-*", None),
            ("mixed-%Y-w%V", "mixed-*-w*", None),
            ("hourly-in-month-%Y.%m-%H", "hourly-in-month-*.*-*", None),
        ];
        for (pattern, wildcard, period) in cases {
            let mut p = IndexPattern::new(pattern).unwrap();
            assert_eq!(
                (p.wildcard().as_str(), p.period()),
                (wildcard, period),
                "{pattern}"
            );
            let name = p.index_for("2026-12-02T06:00:00Z").unwrap().to_owned();
            let glob: Vec<String> = wildcard.split('*').map(regex::escape).collect();
            let re = regex::Regex::new(&format!("^{}$", glob.join(".*"))).unwrap();
            assert!(re.is_match(&name), "{pattern}: {name} not in {wildcard}");
        }
        assert_eq!(IndexPattern::new("logs-%Y.%m.%d").unwrap().literal_len(), 7);
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "Logs-%Y", "logs/%Y", "_logs", "logs-%Q", "logs-%s", "logs %Y",
        ] {
            assert!(IndexPattern::new(p).is_err(), "{p}");
        }
    }
}
