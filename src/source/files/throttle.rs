//! Throttling: at most `lines_per_second` (with a `burst`) per container, pod or namespace, so
//! that one pod in a crash loop cannot take the node's shipping capacity and buffer.
//!
//! A token bucket per container (pod, namespace), keyed by names, not by file: a container that
//! restarts (a new `1.log`) does not get a fresh burst.
//!
//! - `slow` (the default) never drops: a file whose bucket is empty is simply not read until it
//!   has refilled; its lines wait in the log file, its checkpoint stays, and the tailer reads
//!   every other file at full speed meanwhile. A pass reads at most what the bucket holds (in
//!   bytes, from the bucket's average line length, at least one block; a new bucket reads one
//!   block first, to learn it, and the average counts a line a pass ended inside, so it errs
//!   low; the pass's last block is cut to the budget); what a block brings over that is owed
//!   and waited out, so the rate holds on average and a burst overshoots by at most one block.
//!   The time a bucket holds its files back is `logferry_throttled_seconds_total{namespace}`
//!   (each held second once, however many of its files wait),
//!   and the largest unread backlog of a held file `logferry_throttled_lag_bytes`: once that
//!   passes the kubelet's `containerLogMaxSize`, rotation may compress lines unread (an alert).
//!   A file rotated away is read to its end `rotate_wait` after its last read, bucket or not
//!   (`Tailer::let_go_of_drained`): it cannot wait, the kubelet will compress it.
//! - `drop` reads at full speed and drops each line over the rate, counted in
//!   `logferry_throttle_dropped_total{namespace}`; never silently.
//!
//! Off (no `[throttle]`): no bucket, and no cost per line or per pass.

use super::file::Tracked;
use crate::config::{self, ThrottleAction, ThrottleScope};
use crate::kube::PodRef;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buckets untouched this long are forgotten (a deleted pod's).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A pass of a throttled file reads at least this much (a few lines), so that it moves.
const LEAST_READ: usize = 4 * 1024;

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Bytes per line seen in this bucket's files, for turning tokens into a read budget;
    /// `None` until a pass has read a line (a guess could read far past the burst).
    line_bytes: Option<f64>,
    /// Until when time held back has been counted: files sharing the bucket, held over the
    /// same stretch, count it once.
    held_until: Instant,
    namespace: Arc<str>,
}

/// What reading a file may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Not throttled: the usual pass budget.
    Free,
    /// Read at most this many bytes.
    Read(usize),
    /// Held back until its bucket has refilled this much.
    Wait(Duration),
}

pub struct Throttle {
    rate: f64,
    burst: f64,
    scope: ThrottleScope,
    pub(super) action: ThrottleAction,
    except: Vec<String>,
    buckets: HashMap<Arc<str>, Bucket>,
    metrics: Arc<Metrics>,
    last_prune: Instant,
}

impl Throttle {
    pub fn new(cfg: &config::Throttle, metrics: Arc<Metrics>) -> Option<Throttle> {
        let rate = cfg.lines_per_second? as f64;
        Some(Throttle {
            rate,
            burst: cfg.burst() as f64,
            scope: cfg.per,
            action: cfg.action,
            except: cfg.except_namespaces.clone(),
            buckets: HashMap::new(),
            metrics,
            last_prune: Instant::now(),
        })
    }

    /// The bucket a file of `pod` draws from; `None` when it is not throttled (an excepted
    /// namespace, or a file outside the kubelet's layout).
    pub fn key_for(&self, pod: Option<&PodRef>) -> Option<Arc<str>> {
        let p = pod?;
        if self.except.contains(&p.namespace) {
            return None;
        }
        Some(Arc::from(match self.scope {
            ThrottleScope::Container => format!("{}/{}/{}", p.namespace, p.pod, p.container),
            ThrottleScope::Pod => format!("{}/{}", p.namespace, p.pod),
            ThrottleScope::Namespace => p.namespace.clone(),
        }))
    }

    fn bucket(&mut self, key: &Arc<str>, now: Instant) -> &mut Bucket {
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(key.clone()).or_insert_with(|| Bucket {
            tokens: burst,
            refilled: now,
            line_bytes: None,
            held_until: now,
            namespace: Arc::from(key.split('/').next().unwrap_or("")),
        });
        let gained = now.saturating_duration_since(b.refilled).as_secs_f64() * rate;
        b.tokens = (b.tokens + gained).min(burst);
        b.refilled = now;
        b
    }

    /// Before a pass over `t` (slow): how much it may read.
    pub fn allowance(&mut self, t: &Tracked, now: Instant) -> Allowance {
        let Some(key) = &t.throttle_key else {
            return Allowance::Free;
        };
        if self.action == ThrottleAction::Drop {
            return Allowance::Free;
        }
        let rate = self.rate;
        let b = self.bucket(key, now);
        if b.tokens < 1.0 {
            let wait =
                Duration::from_secs_f64((1.0 - b.tokens) / rate).max(Duration::from_millis(10));
            // Only what no other file of the bucket was already held for.
            let until = now + wait;
            let new = until.saturating_duration_since(b.held_until.max(now));
            b.held_until = b.held_until.max(until);
            let ns = b.namespace.clone();
            self.metrics
                .throttled_seconds
                .get_or_create(&vec![("namespace", ns.to_string())])
                .inc_by(new.as_secs_f64());
            return Allowance::Wait(wait);
        }
        match b.line_bytes {
            Some(per_line) => Allowance::Read(((b.tokens * per_line) as usize).max(LEAST_READ)),
            // The lines' length is not known yet: one block, to learn it.
            None => Allowance::Read(LEAST_READ),
        }
    }

    /// After a pass over `t` that read `lines` lines in `bytes` bytes: they are paid for.
    pub fn charge(&mut self, t: &Tracked, lines: u64, bytes: u64, now: Instant) {
        let (Some(key), true) = (&t.throttle_key, lines > 0) else {
            return;
        };
        if self.action == ThrottleAction::Drop {
            return;
        }
        let b = self.bucket(key, now);
        b.tokens -= lines as f64;
        // A pass ends in the middle of a line as often as not: counting that line too keeps
        // the estimate low, so a budget made of it reads at most what the tokens pay for.
        let seen = bytes as f64 / (lines + 1) as f64;
        b.line_bytes = Some(b.line_bytes.map_or(seen, |l| 0.8 * l + 0.2 * seen));
    }

    /// Drop mode, per line of a file drawing from `key`: whether it may go on.
    pub fn admit(&mut self, key: &Arc<str>, now: Instant) -> bool {
        let b = self.bucket(key, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        let ns = b.namespace.to_string();
        self.metrics
            .throttle_dropped
            .get_or_create(&vec![("namespace", ns)])
            .inc();
        false
    }

    /// Once per pass: the largest backlog of the files held back now, and forgetting buckets
    /// nobody drew from for a while.
    pub fn publish<'t>(&mut self, held: impl Iterator<Item = &'t Tracked>, now: Instant) {
        let lag = held
            .map(|t| {
                t.file
                    .metadata()
                    .map_or(0, |m| m.len().saturating_sub(t.read_pos))
            })
            .max()
            .unwrap_or(0);
        self.metrics
            .throttled_lag_bytes
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        if now.saturating_duration_since(self.last_prune) >= FORGET_AFTER {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.refilled) < FORGET_AFTER);
            self.last_prune = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(text: &str) -> Throttle {
        let cfg = config::Config::from_toml(text, |_| None).unwrap();
        Throttle::new(&cfg.throttle, Arc::new(Metrics::new())).unwrap()
    }

    fn pod(ns: &str, name: &str, container: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            pod: name.into(),
            container: container.into(),
            container_id: None,
            pod_id: None,
        }
    }

    #[test]
    fn one_bucket_per_container_pod_or_namespace_and_none_for_exceptions() {
        let t =
            throttle("[throttle]\nlines_per_second = 10\nexcept_namespaces = [\"kube-system\"]\n");
        let a = t.key_for(Some(&pod("shop", "api-1", "app")));
        assert_eq!(a.as_deref(), Some("shop/api-1/app"));
        assert_eq!(t.key_for(Some(&pod("kube-system", "dns", "coredns"))), None);
        assert_eq!(t.key_for(None), None, "a file outside the kubelet's layout");
        let t = throttle("[throttle]\nlines_per_second = 10\nper = \"namespace\"\n");
        assert_eq!(
            t.key_for(Some(&pod("shop", "api-1", "app"))).as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn drop_admits_the_burst_then_the_rate_and_counts_the_rest() {
        let mut t =
            throttle("[throttle]\nlines_per_second = 100\nburst = 200\naction = \"drop\"\n");
        let key: Arc<str> = Arc::from("shop/api-1/app");
        let start = Instant::now();
        let admitted = (0..1000).filter(|_| t.admit(&key, start)).count();
        assert_eq!(admitted, 200, "the burst");
        // Half a second later: 50 more.
        let later = start + Duration::from_millis(500);
        let admitted = (0..1000).filter(|_| t.admit(&key, later)).count();
        assert!((49..=51).contains(&admitted), "{admitted}");
        let dropped = t
            .metrics
            .throttle_dropped
            .get_or_create(&vec![("namespace", "shop".to_owned())])
            .get();
        assert_eq!(dropped, 2000 - 200 - admitted as u64);
    }

    /// A followed file of the pod `shop/api-1/app`, drawing from `t`'s bucket for it.
    fn followed(t: &Throttle) -> (tempfile::NamedTempFile, Tracked) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut tracked = Tracked::open(
            file.path(),
            file.reopen().unwrap(),
            crate::vocab::FileKey::new(1, 1, 1),
            0,
            1024,
        );
        tracked.throttle_key = t.key_for(Some(&pod("shop", "api-1", "app")));
        assert!(tracked.throttle_key.is_some());
        (file, tracked)
    }

    fn held_seconds(t: &Throttle) -> f64 {
        t.metrics
            .throttled_seconds
            .get_or_create(&vec![("namespace", "shop".to_owned())])
            .get()
    }

    /// A file with an endless backlog of `line`-byte lines, read as `Tailer::read_pass` reads a
    /// throttled one: `Read(limit)` reads blocks of at most `READ_BLOCK` until `limit` bytes are
    /// done, and the whole lines completed are charged.
    struct Backlog {
        line: u64,
        pos: u64,
    }

    impl Backlog {
        /// One pass allowed `limit` bytes: the (lines, bytes) it read. Blocks of at most
        /// `READ_BLOCK`, the last one cut to the limit (`Tracked::read`): exactly `limit`.
        fn pass(&mut self, limit: usize) -> (u64, u64) {
            let bytes = limit as u64;
            let lines = (self.pos + bytes) / self.line - self.pos / self.line;
            self.pos += bytes;
            (lines, bytes)
        }
    }

    /// The bytes a `Read` allows, to within rounding.
    fn read_of(a: Allowance) -> usize {
        match a {
            Allowance::Read(n) => n,
            other => panic!("held: {other:?}"),
        }
    }

    fn near(a: usize, b: usize) -> bool {
        a.abs_diff(b) <= 1
    }

    #[test]
    fn slow_starts_full_reads_what_the_bucket_holds_then_holds_the_file_until_one_line_refilled() {
        let mut t = throttle("[throttle]\nlines_per_second = 100\nburst = 100\n");
        let (_f, file) = followed(&t);
        let t0 = Instant::now();
        // A new bucket is full, but how long its lines are is not known: one block, to learn.
        assert_eq!(t.allowance(&file, t0), Allowance::Read(LEAST_READ));
        // 100 lines of 100 bytes read: the bucket is empty, held until one line has refilled.
        t.charge(&file, 100, 10_000, t0);
        assert_eq!(
            t.allowance(&file, t0),
            Allowance::Wait(Duration::from_millis(10))
        );
        assert_eq!(held_seconds(&t), 0.01);
        // The clock alone refills it, and the line length is learned, on the low side (the
        // pass may have ended inside a line: 10,000 bytes over 101 lines): 10 lines a tenth of
        // a second later, but never less than a block.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(t.allowance(&file, later), Allowance::Read(LEAST_READ));
        let much_later = t0 + Duration::from_millis(600);
        assert!(near(
            read_of(t.allowance(&file, much_later)),
            60 * 10_000 / 101
        ));
        // Never more than the burst, however long the file was left alone.
        let next_day = t0 + Duration::from_secs(86_400);
        assert!(near(
            read_of(t.allowance(&file, next_day)),
            100 * 10_000 / 101
        ));
        // A pass that brought more than the bucket held is owed, and waited out: 30 lines over
        // wait (30 + 1) / 100 s, counted as time held back.
        t.charge(&file, 130, 130 * 260, next_day);
        let Allowance::Wait(owed) = t.allowance(&file, next_day) else {
            panic!("a bucket in debt reads")
        };
        assert!(
            owed.abs_diff(Duration::from_millis(310)) < Duration::from_micros(1),
            "{owed:?}"
        );
        assert!(
            (held_seconds(&t) - 0.32).abs() < 1e-9,
            "{}",
            held_seconds(&t)
        );
        let almost = next_day + owed - Duration::from_millis(1);
        assert!(matches!(t.allowance(&file, almost), Allowance::Wait(_)));
        // (A microsecond more: the wait is rounded down, and a bucket a hair short of a line
        // would be held another 10 ms.)
        let waited = next_day + owed + Duration::from_micros(1);
        assert!(matches!(t.allowance(&file, waited), Allowance::Read(_)));
        // A pass that read nothing (the end of the file) costs nothing.
        let mut u = throttle("[throttle]\nlines_per_second = 100\nburst = 100\n");
        let (_g, idle) = followed(&u);
        u.charge(&idle, 0, 0, t0);
        assert_eq!(u.allowance(&idle, t0), Allowance::Read(LEAST_READ));
    }

    #[test]
    fn a_second_held_is_counted_once_however_many_files_of_the_bucket_wait() {
        let mut t = throttle("[throttle]\nper = \"pod\"\nlines_per_second = 100\nburst = 100\n");
        let (_f, a) = followed(&t);
        let (_g, mut b) = followed(&t);
        b.throttle_key = t.key_for(Some(&pod("shop", "api-1", "sidecar")));
        assert_eq!(a.throttle_key, b.throttle_key, "one pod, one bucket");
        let t0 = Instant::now();
        t.charge(&a, 150, 15_000, t0);
        // 50 lines owed: both files are held 0.51 s, over the same stretch of time.
        assert!(matches!(t.allowance(&a, t0), Allowance::Wait(_)));
        assert!(matches!(t.allowance(&b, t0), Allowance::Wait(_)));
        let later = t0 + Duration::from_millis(100);
        assert!(matches!(t.allowance(&b, later), Allowance::Wait(_)));
        assert!(
            (held_seconds(&t) - 0.51).abs() < 1e-6,
            "{}",
            held_seconds(&t)
        );
    }

    #[test]
    fn slow_draws_one_bucket_per_container_and_leaves_other_files_free() {
        let mut t = throttle(
            "[throttle]\nlines_per_second = 100\nburst = 100\nexcept_namespaces = [\"kube-system\"]\n",
        );
        let (_f, noisy) = followed(&t);
        let (_g, mut quiet) = followed(&t);
        quiet.throttle_key = t.key_for(Some(&pod("shop", "api-2", "app")));
        let (_h, mut exempt) = followed(&t);
        exempt.throttle_key = t.key_for(Some(&pod("kube-system", "dns", "coredns")));
        let t0 = Instant::now();
        t.charge(&noisy, 1000, 100_000, t0);
        assert!(matches!(t.allowance(&noisy, t0), Allowance::Wait(_)));
        // Another container's bucket is its own, full (its lines' length still to learn).
        assert_eq!(t.allowance(&quiet, t0), Allowance::Read(LEAST_READ));
        // An excepted namespace has no bucket at all, whatever it reads.
        t.charge(&exempt, 1_000_000, 100_000_000, t0);
        assert_eq!(t.allowance(&exempt, t0), Allowance::Free);
        // Drop mode never holds a file back: it sheds lines instead (`admit`).
        let mut d = throttle("[throttle]\nlines_per_second = 10\naction = \"drop\"\n");
        let (_i, dropping) = followed(&d);
        d.charge(&dropping, 1000, 100_000, t0);
        assert_eq!(d.allowance(&dropping, t0), Allowance::Free);
    }

    /// Reads a backlog of `line`-byte lines for 30 s on a fake clock, as the allowance says:
    /// after each pass, the seconds since the start and the lines read so far.
    fn read_throttled(t: &mut Throttle, line: u64) -> Vec<(f64, u64)> {
        let (_f, file) = followed(t);
        let mut backlog = Backlog { line, pos: 0 };
        let start = Instant::now();
        let (mut now, mut read, mut passes) = (start, 0, Vec::new());
        while now < start + Duration::from_secs(30) {
            match t.allowance(&file, now) {
                Allowance::Wait(d) => now += d,
                Allowance::Read(limit) => {
                    let (lines, bytes) = backlog.pass(limit);
                    read += lines;
                    t.charge(&file, lines, bytes, now);
                    passes.push(((now - start).as_secs_f64(), read));
                }
                Allowance::Free => panic!("a throttled file read freely"),
            }
        }
        passes
    }

    const LIMITS: [&str; 3] = [
        "[throttle]\nlines_per_second = 500\nburst = 500\n",
        "[throttle]\nlines_per_second = 20\nburst = 20\n",
        "[throttle]\nlines_per_second = 5000\nburst = 20000\n",
    ];
    const LINES: [u64; 5] = [80, 219, 300, 1200, 6000];

    /// One block (`LEAST_READ`) in whole lines of `line` bytes: one more for a line it cuts.
    fn one_block(line: u64) -> f64 {
        (LEAST_READ as u64).div_ceil(line) as f64 + 1.0
    }

    #[test]
    fn slow_holds_the_rate_over_every_interval_within_one_block_once_lines_are_known() {
        let mut wrong = Vec::new();
        for text in LIMITS {
            for line in LINES {
                let mut t = throttle(text);
                let (rate, burst) = (t.rate, t.burst);
                let passes = read_throttled(&mut t, line);
                let case = format!("{line}-byte lines, {text:?}");
                // After the burst (and the first passes that learn the line length), any
                // stretch of time reads at most the rate over it and one block. Several passes
                // can fall on one instant (the bucket's tokens spent in turns); a stretch runs
                // from what was read by the end of one instant to the end of a later one.
                let mut steady: Vec<&(f64, u64)> = Vec::new();
                for p in passes.iter().filter(|(at, _)| *at >= 5.0) {
                    match steady.last_mut() {
                        Some(last) if last.0 == p.0 => *last = p,
                        _ => steady.push(p),
                    }
                }
                let worst = steady
                    .iter()
                    .enumerate()
                    .flat_map(|(i, a)| steady[i + 1..].iter().map(move |b| (a, b)))
                    .map(|((t0, r0), (t1, r1))| (*r1 - *r0) as f64 - rate * (t1 - t0))
                    .fold(f64::MIN, f64::max);
                // (One line more: a pass can leave up to a line's token unspent.)
                if worst > one_block(line) + 1.0 {
                    wrong.push(format!(
                        "{case}: {worst:.1} lines over the rate in a stretch, more than one block"
                    ));
                }
                // And no slower than the rate: held only for what it owed (and at most the
                // 10 ms a hold lasts at least).
                let &(at, read) = passes.last().expect("passes");
                let least = burst + rate * at - (rate * 0.01).max(1.0) - one_block(line);
                if (read as f64) < least {
                    wrong.push(format!(
                        "{case}: {read} lines in {at:.1} s, fewer than the burst and the rate ({least:.0})"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The module's promise for a full bucket: "a burst overshoots by at most one block".
    #[test]
    fn slow_overshoots_a_full_bucket_by_at_most_one_block_whatever_the_line_length() {
        let mut wrong = Vec::new();
        for text in LIMITS {
            for line in LINES {
                let mut t = throttle(text);
                let (rate, burst) = (t.rate, t.burst);
                let passes = read_throttled(&mut t, line);
                let over = passes
                    .iter()
                    .map(|(at, read)| *read as f64 - (burst + rate * at))
                    .fold(f64::MIN, f64::max);
                if over > one_block(line) {
                    wrong.push(format!(
                        "{line}-byte lines, {text:?}: {over:.0} lines over the burst and the rate \
                         ({:.0} bytes), one block is {:.0} lines ({LEAST_READ} bytes)",
                        over * line as f64,
                        one_block(line)
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
