//! Tailing: which files to follow, reading them, and remembering how far shipping has got.
//!
//! Owns discovery (include/exclude globs, inotify read at the reader's pace ([`watch`]), and
//! a periodic look at what inotify cannot watch), file identity (inode + a fingerprint of the first line,
//! the device only a hint, never the path: see `identity`), rotation (a renamed or deleted file
//! is read to its end and kept for `rotate_wait` before it is let go), truncation (reading
//! restarts at 0, as a new generation of the file), checkpoints, and the budget of file descriptors the tailer may hold.
//!
//! Two threads, so that a blocked buffer cannot hide a new file:
//!
//! - **discovery** ([`discover`]) finds files and *opens* them, and never touches the buffer. An
//!   open file keeps a deleted file's data readable, so a file created, written and deleted
//!   while the reader waits on a full buffer or a stalled disk is still read in full. It hands
//!   each opened file to the reader over a bounded channel, in the order things happened.
//! - **reading** (this module's [`Tailer`]) owns every followed file: reads are plain blocking
//!   syscalls on the page cache, and one thread that owns the files needs no locks around them.
//!   Each line goes through `decode` into a record, which is handed, with its pod's metadata
//!   from `kube`, to the [`Output`] the tailer was given, with the file's safe offset. This
//!   stage knows neither the encoder nor the buffer: the agent's output encodes each record
//!   into the disk buffer, and a full buffer blocks the hand-off, and with it reading: that is
//!   the backpressure. A file's checkpoint moves only once the buffer reports durable the
//!   positions the output was given.
//!
//! Descriptors ([`budget`]): the tailer holds at most the open-files limit less a reserve for
//! the rest of the agent. When new files find the budget spent, the reader closes the
//! longest-idle files it has read to their end that still sit at their path ([`parked`]), and
//! reopens them by identity when they grow; a rotated or deleted file not yet drained keeps its
//! descriptor.

mod budget;
mod checkpoint;
mod dirs;
mod discover;
mod file;
mod fluentd;
mod globs;
mod handoff;
mod health;
mod joining;
mod looks;
mod output;
mod parked;
mod reload;
mod reloads;
mod rotated;
mod throttle;
mod watch;

pub use budget::{RESERVE, RESERVE_PER_SHIPPER};
pub use checkpoint::{Checkpoints, Entry};
pub use globs::Discovery;
pub use health::{TailerCheck, TailerState};
pub use joining::{annotated_rules, configured_rules};
pub use output::{Context, Output};
pub use reloads::Reloads;

use crate::config;
use crate::vocab::FileKey;
use budget::Descriptors;
use discover::Discoverer;
use file::{ReadOutcome, Tracked};
pub use handoff::Waker;
use handoff::{Connected, Handoff, Opened, Returned, Shared, lock};
use joining::Joining;
use output::Outlet;
use parked::Parked;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One read() asks for this much; large blocks keep syscalls per line low.
const READ_BLOCK: usize = 256 * 1024;
/// How much one file may read in one pass before the others get their turn.
const PASS_BUDGET: usize = 4 * 1024 * 1024;
/// How long a graceful shutdown spends reading deleted and rotated files to their end: well
/// within the 30 s a pod is given to stop, leaving time to make it durable.
const FINAL_READ: Duration = Duration::from_secs(10);

/// The longest the loop sleeps while something waits on the clock (a partial record or a
/// multiline group to time out, a rotated file's `rotate_wait`, a file waiting for its pod's
/// metadata or for a descriptor): those deadlines are kept to within it.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// The longest it sleeps when nothing does: writes, handoffs, reloads and shutdown wake it at
/// once, so on a quiet node only the heartbeat `/health` watches (stalled after two minutes)
/// is left to wake it, and the periodic look ([`config::Input::rescan_interval`]) where files
/// could not be watched.
const QUIET_IDLE: Duration = Duration::from_secs(30);
/// How long the inotify thread lets writes gather after a batch: a quarter of the time lines may
/// wait anyway (`buffer.flush_interval`), at most 250 ms.
fn inotify_pace(buffer: &config::Buffer) -> Duration {
    (buffer.flush_interval.0 / 4).min(Duration::from_millis(250))
}

/// The reading thread: follows every file discovery opened, until shutdown.
pub struct Tailer {
    /// The last pass left nothing due at a time (see [`Tailer::waits_on_the_clock`]), and
    /// nothing was handed on or reconfigured since: a pass with nothing written would do nothing
    /// but look at every file, which on a quiet node of 500 files was most of the tailer's cost.
    quiet: bool,
    cfg: config::Input,
    /// The whole config the tailer runs with, to see what a reload changes.
    running: Arc<config::Config>,
    /// Configs accepted by a reload, taken at the next turn of the loop.
    reloads: Option<Reloads>,
    checkpoints: Arc<Checkpoints>,
    out: Outlet,
    state: Arc<TailerState>,
    files: HashMap<FileKey, Tracked>,
    /// Files closed to stay within the descriptor budget: read to their end, still at their
    /// path; reopened by identity when they grow.
    parked: HashMap<FileKey, Parked>,
    /// Parked files that grew but found no descriptor yet.
    parked_wanting: HashSet<FileKey>,
    /// Real path → file, to map inotify's write events.
    by_real: HashMap<PathBuf, FileKey>,
    /// Files with data to read now.
    dirty: HashSet<FileKey>,
    /// Files inotify said were written since the last read pass.
    written: HashSet<FileKey>,
    /// Files whose pod the Kubernetes cache does not know yet: read again next pass.
    waiting_meta: HashSet<FileKey>,
    /// Files held back by throttling, and when their bucket has refilled.
    throttled: HashMap<FileKey, Instant>,
    handoffs: Receiver<Handoff>,
    shared: Arc<Shared>,
    /// Runs on its own thread once [`Tailer::run`] starts.
    discoverer: Option<Discoverer>,
    /// Paths whose read failure was already logged, so it is logged once.
    reported: HashSet<PathBuf>,
    /// The multiline rules each file is joined by.
    joining: Joining,
    waker: Waker,
}

impl Tailer {
    /// A tailer that hands what it reads to `output`.
    pub fn new(
        cfg: &config::Config,
        checkpoints: Arc<Checkpoints>,
        output: Box<dyn Output>,
        ctx: Context,
    ) -> Tailer {
        Tailer::with_descriptors(
            cfg,
            checkpoints,
            Outlet::new(output, ctx, cfg),
            Descriptors::for_this_process(cfg.buffer.flush_thread_count),
        )
    }

    fn with_descriptors(
        cfg: &config::Config,
        checkpoints: Arc<Checkpoints>,
        mut out: Outlet,
        descriptors: Descriptors,
    ) -> Tailer {
        let state = out.state.clone();
        let reloads = out.reloads.take();
        state.beat();
        let joining = Joining::new(
            &cfg.multiline,
            crate::multiline::Counters::new(&out.metrics),
        );
        let Connected {
            shared,
            waker,
            events,
            missed_events,
            handoffs,
            to_reader,
        } = handoff::connect(descriptors, inotify_pace(&cfg.buffer), state.clone());
        let discoverer = Discoverer {
            cfg: cfg.input.clone(),
            reloads: reloads.clone(),
            globs: Discovery::new(&cfg.input.include, &cfg.input.exclude),
            checkpoints: checkpoints.clone(),
            shared: shared.clone(),
            state: state.clone(),
            metrics: out.metrics.clone(),
            shutdown: out.shutdown.clone(),
            to_reader,
            events,
            missed_events,
            pending: VecDeque::new(),
            by_path: HashMap::new(),
            waiting: HashMap::new(),
            looks: HashMap::new(),
            starved: BTreeMap::new(),
            covered: false,
            warned_unwatched: false,
            unresolved: false,
            reported: HashSet::new(),
            fresh_start: checkpoints.first_start(),
            fluentd: fluentd::fluentd_positions(&cfg.input, checkpoints.first_start()),
            unsaved: false,
            previous_scan: checkpoints.last_scan(),
            this_scan: None,
        };
        Tailer {
            quiet: false,
            cfg: cfg.input.clone(),
            running: Arc::new(cfg.clone()),
            reloads,
            checkpoints,
            out,
            state,
            files: HashMap::new(),
            parked: HashMap::new(),
            parked_wanting: HashSet::new(),
            by_real: HashMap::new(),
            dirty: HashSet::new(),
            written: HashSet::new(),
            waiting_meta: HashSet::new(),
            throttled: HashMap::new(),
            handoffs,
            shared,
            discoverer: Some(discoverer),
            reported: HashSet::new(),
            joining,
            waker,
        }
    }

    /// Wakes this tailer's threads at once (at shutdown).
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Starts discovery on its own thread, follows files until shutdown, then appends what it
    /// has.
    pub fn run(mut self) {
        let discovery = self.discoverer.take().map(|d| {
            std::thread::Builder::new()
                .name("discovery".into())
                .spawn(move || d.run())
        });
        let discovery = match discovery {
            Some(Ok(handle)) => Some(handle),
            Some(Err(e)) => {
                // Without discovery nothing is ever followed: /health reports the stall.
                tracing::error!(error = %e, "cannot start the discovery thread; nothing is tailed");
                return;
            }
            None => None,
        };
        let mut buf = vec![0u8; READ_BLOCK];
        let mut next_full_pass = Instant::now() + self.cfg.rescan_interval.0;
        // Lines that trickle in are read (and made durable, and shipped) once per
        // `flush_interval`, not at every write: a pass per few lines costs many times the CPU
        // for a latency Elasticsearch's own refresh hides. A pass that leaves a file unfinished
        // (a backlog) is followed by the next at once.
        let mut next_read = Instant::now();
        while !self.out.shutdown.load(Ordering::Relaxed) {
            let refilled = self.tick(&mut next_full_pass);
            let now = Instant::now();
            let nothing = self.quiet
                && !refilled
                && self.dirty.is_empty()
                && lock(&self.shared.written).is_empty();
            if nothing {
                next_read = next_read.max(now);
            } else if now >= next_read || refilled {
                next_read = self.pass(&mut buf, now);
            }
            if self.dirty.is_empty() || Instant::now() < next_read {
                // The periodic look has nothing to look at while inotify sees every file.
                let mut due = if self.shared.sees_every_file() {
                    Instant::now() + QUIET_IDLE
                } else {
                    next_full_pass
                };
                if let Some(d) = self.throttled.values().min() {
                    due = due.min(*d);
                }
                if !self.dirty.is_empty() || !lock(&self.shared.written).is_empty() {
                    due = due.min(next_read);
                }
                let most = if self.quiet && !self.waits_on_the_clock() {
                    QUIET_IDLE
                } else {
                    MAX_IDLE
                };
                let wait = due.saturating_duration_since(Instant::now()).min(most);
                match self.handoffs.recv_timeout(wait) {
                    Ok(h) => self.take(h),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
                }
            }
        }
        self.stop(discovery, &mut buf);
    }

    /// One read pass, started at `now`, and what follows it: partial records timed out, drained
    /// files let go, the chunk appended to the buffer. Returns when the next may start: at once
    /// after a backlog, else a `flush_interval` on.
    fn pass(&mut self, buf: &mut [u8], now: Instant) -> Instant {
        // What inotify saw is taken only now: until the set is taken, further writes add to it
        // without waking this thread.
        self.take_written();
        let written: Vec<FileKey> = self.written.drain().collect();
        self.find_rewritten(&written);
        self.read_pass(buf);
        let next = if self.dirty.is_empty() {
            now + self.running.buffer.flush_interval.0
        } else {
            now
        };
        // Partial records whose end never came are shipped flagged, even from quiet files.
        let now = Instant::now();
        for t in self.files.values_mut() {
            t.flush_expired(now, self.cfg.partial_timeout.0, &mut self.out);
        }
        self.let_go_of_drained(buf);
        self.note_quiet();
        self.out.seal();
        self.publish();
        if let Some(th) = self.out.throttle.as_mut() {
            let held = self.throttled.keys().filter_map(|k| self.files.get(k));
            th.publish(held, Instant::now());
        }
        next
    }

    /// What each turn of the loop does before reading: take what discovery handed on, the
    /// periodic look at every file, and keeping within the descriptor budget. True when a
    /// throttled file's bucket has refilled: it is read at once, whatever the pace, so that a
    /// throttled file is read at its rate over every stretch of time.
    fn tick(&mut self, next_full_pass: &mut Instant) -> bool {
        self.state.beat();
        if let Some(new) = reloads::newer(&mut self.reloads) {
            self.reconfigure(new);
        }
        self.dirty.extend(self.waiting_meta.drain());
        let now = Instant::now();
        let before = self.dirty.len();
        self.dirty.extend(
            self.throttled
                .extract_if(|_, due| *due <= now)
                .map(|(k, _)| k),
        );
        let refilled = self.dirty.len() > before;
        while let Ok(h) = self.handoffs.try_recv() {
            self.take(h);
        }
        if self.shared.missed_writes.swap(false, Ordering::Relaxed) {
            self.full_pass(true);
        }
        if Instant::now() >= *next_full_pass {
            self.full_pass(false);
            *next_full_pass = Instant::now() + self.cfg.rescan_interval.0;
        }
        self.reopen_wanting();
        self.make_room();
        refilled
    }

    /// Discovery stops first; what it opened last is read once more, so that a file deleted
    /// just before shutdown does not take its lines with it. Then the open chunk is appended.
    fn stop(&mut self, discovery: Option<JoinHandle<VecDeque<Handoff>>>, buf: &mut [u8]) {
        let unsent = match discovery.map(|h| h.join()) {
            Some(Ok(unsent)) => unsent,
            Some(Err(_)) => {
                tracing::error!("the discovery thread panicked");
                VecDeque::new()
            }
            None => VecDeque::new(),
        };
        while let Ok(h) = self.handoffs.try_recv() {
            self.take(h);
        }
        for h in unsent {
            self.take(h);
        }
        self.take_written();
        self.read_pass(buf);
        // A deleted file cannot be read again at the next start, nor a rotated one once the
        // kubelet has compressed it: each is read to its end now, whatever its throttle bucket
        // holds, within the time shutdown allows. What a deleted file still holds (half a
        // record, a trace in the making) is handed on as it is. Every other file's held lines
        // stay where its checkpoint is, and are read and joined again then.
        let deadline = Instant::now() + FINAL_READ;
        for t in self.files.values_mut() {
            let deleted = t.file.metadata().is_ok_and(|m| m.nlink() == 0);
            if deleted || t.draining {
                while Instant::now() < deadline
                    && let Ok(ReadOutcome::More) = t.read(buf, &mut self.out, PASS_BUDGET)
                {
                }
            }
            if deleted {
                t.finish(&mut self.out);
            }
        }
        self.out.seal();
        tracing::info!(
            files = self.files.len() + self.parked.len(),
            "tailer stopped"
        );
    }

    fn publish(&self) {
        self.shared.descriptors.set_reader(self.files.len());
        let m = &self.out.metrics;
        m.files_watched
            .set((self.files.len() + self.parked.len()) as i64);
        m.files_open.set(self.shared.descriptors.in_use() as i64);
        self.state
            .waiting_parked
            .store(self.parked_wanting.len(), Ordering::Relaxed);
    }

    /// Applies what discovery handed on.
    fn take(&mut self, h: Handoff) {
        self.quiet = false;
        match h {
            Handoff::Follow(o) => self.follow(o),
            Handoff::Drain(key) => self.start_draining(key),
            Handoff::Unmatched(key) => self.unmatched(key),
            // The set is taken at the next pass (see `run`).
            Handoff::Written => {}
            Handoff::ReadAll => self.full_pass(true),
        }
    }

    fn follow(&mut self, o: Opened) {
        lock(&self.shared.followed).insert(o.key);
        if let Some(t) = self.files.get_mut(&o.key) {
            // Already followed (matched again, or through a second path): keep the one open.
            // Matched again: no longer let go at its end, should a reload have excluded it a
            // moment ago.
            if !o.draining {
                t.draining = false;
                t.unmatched = false;
            }
            drop(o.file);
            self.shared.descriptors.handed_over();
            return;
        }
        self.parked_wanting.remove(&o.key);
        let (key, offset) = match self.parked.remove_entry(&o.key) {
            // Found again at another path while closed: continue where reading was, under the
            // key its checkpoint settled.
            Some((key, p)) if key.same_file(&o.key) => (key, p.read_pos),
            // The closed file is gone and a new one has its inode and first line.
            Some(_) => (o.key, o.offset),
            None => (o.key, o.offset),
        };
        let mut t = Tracked::open(
            &o.path,
            o.file,
            key,
            offset,
            self.cfg.max_line_bytes.as_usize(),
        );
        t.decoder
            .cut_by_the_runtimes_time(self.cfg.partial_timeout.0);
        t.draining = o.draining;
        t.throttle_key = self.out.throttle_key(t.pod.as_ref());
        self.joining.apply(&mut t, &mut self.out);
        self.by_real.insert(t.real.clone(), key);
        self.dirty.insert(key);
        self.files.insert(key, t);
        self.shared.descriptors.set_reader(self.files.len());
        self.shared.descriptors.handed_over();
    }

    /// The file's path no longer leads to it: read it to its end, then let it go.
    fn start_draining(&mut self, key: FileKey) {
        if self.parked.contains_key(&key) {
            self.unpark_to_drain(key);
        }
        if let Some(t) = self.files.get_mut(&key) {
            t.draining = true;
            // The writer may not have reopened yet: give it rotate_wait from now.
            t.last_data = Instant::now();
            t.gone_since.get_or_insert(t.last_data);
            self.dirty.insert(key);
        }
    }

    fn read_pass(&mut self, buf: &mut [u8]) {
        let mut keys: Vec<FileKey> = self.dirty.drain().collect();
        keys.extend(self.files.values().filter(|t| t.draining).map(|t| t.key));
        // The file served longest ago first: files sharing a throttle bucket take turns at
        // it instead of the first in some fixed order taking it all.
        let served = |k: &FileKey| self.files.get(k).map(|t| t.last_data);
        keys.sort_by_cached_key(|k| (served(k), k.dev, k.ino));
        keys.dedup();
        for key in keys {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            if let Some(cache) = self.out.kube.clone()
                && let Some(pod) = &t.pod
            {
                let generation = cache.generation();
                if t.meta_generation != generation {
                    t.meta = cache.lookup(pod);
                    t.meta_generation = generation;
                    self.joining.apply(t, &mut self.out);
                }
                // A pod the cache does not know yet is likely just created, and before the
                // first lists are in nothing is known: lines wait a little for metadata,
                // unless the API server is known to be away.
                if (t.meta.partial || !cache.ready())
                    && cache.healthy()
                    && t.opened.elapsed() < self.out.wait_for_metadata
                {
                    self.waiting_meta.insert(key);
                    continue;
                }
            }
            self.state.beat();
            let now = Instant::now();
            // Gone for rotate_wait: read to its end, bucket or not.
            let overdue = t
                .gone_since
                .is_some_and(|g| now.saturating_duration_since(g) >= self.cfg.rotate_wait.0);
            let throttle = self.out.throttle.as_mut().filter(|_| !overdue);
            let limit = match throttle.map(|th| th.allowance(t, now)) {
                Some(throttle::Allowance::Wait(d)) => {
                    self.throttled.insert(key, now + d);
                    continue;
                }
                Some(throttle::Allowance::Read(n)) => n,
                _ => PASS_BUDGET,
            };
            // A throttled pass reads in smaller blocks, so it overshoots its bucket by little.
            let block = buf.len().min(limit);
            let (lines, at) = (self.out.metrics.lines_read.get(), t.read_pos);
            let read = t.read(&mut buf[..block], &mut self.out, limit);
            if let Some(th) = self.out.throttle.as_mut() {
                let lines = self.out.metrics.lines_read.get() - lines;
                th.charge(t, lines, t.read_pos - at, now);
            }
            match read {
                Ok(ReadOutcome::More) => {
                    self.dirty.insert(key);
                }
                Ok(ReadOutcome::Eof) => {
                    self.reported.remove(&t.path);
                    if t.unmatched {
                        self.let_go_of_unmatched(key);
                    }
                }
                Ok(ReadOutcome::Truncated) => self.truncated(key),
                Err(e) => {
                    self.out.metrics.read_errors.inc();
                    if self.reported.insert(t.path.clone()) {
                        tracing::warn!(path = %t.path.display(), error = %e, "cannot read file; will retry");
                    }
                }
            }
        }
    }

    /// The file was cut short (copytruncate): what was read stays shipped, and the file is
    /// followed again from its new beginning.
    fn truncated(&mut self, key: FileKey) {
        let Some(mut t) = self.files.remove(&key) else {
            return;
        };
        tracing::info!(path = %t.path.display(), at = t.read_pos, "file was truncated; reading it again from the start");
        self.out.metrics.truncations.inc();
        t.finish(&mut self.out);
        // The old content is gone, so its checkpoint has nothing left to protect. New content
        // with the very same first line has the same key: it starts a new generation, with ids
        // of its own and a checkpoint that late acknowledgements of the old content cannot move.
        self.checkpoints.start_over(&key, !t.draining);
        lock(&self.shared.followed).remove(&key);
        if self.by_real.get(&t.real) == Some(&key) {
            self.by_real.remove(&t.real);
        }
        // A rotated file's path leads elsewhere now; only a live one is followed again, by
        // discovery, through the descriptor already open (so its new lines cannot go missing).
        if !t.draining {
            self.shared.descriptors.given_back();
            lock(&self.shared.returned).push(Returned {
                path: t.path,
                file: t.file,
            });
            self.waker.wake_discovery();
        }
        self.shared.descriptors.set_reader(self.files.len());
    }

    /// Lets go of draining files that have been quiet for rotate_wait, shipping their last
    /// unterminated line.
    fn let_go_of_drained(&mut self, buf: &mut [u8]) {
        let wait = self.cfg.rotate_wait.0;
        let done: Vec<FileKey> = self
            .files
            .values()
            .filter(|t| t.draining && t.last_data.elapsed() >= wait)
            .map(|t| t.key)
            .collect();
        for key in done {
            let Some(mut t) = self.files.remove(&key) else {
                continue;
            };
            // One last read, in case the final write landed after the last pass.
            while let Ok(ReadOutcome::More) = t.read(buf, &mut self.out, PASS_BUDGET) {}
            let end = t.finish(&mut self.out);
            self.let_go(key, &t.real, end);
            tracing::debug!(path = %t.real.display(), end, "finished rotated or deleted file");
        }
        self.shared.descriptors.set_reader(self.files.len());
    }

    /// Forgets a file read to `end`: its checkpoint retires once everything is durable.
    fn let_go(&mut self, key: FileKey, real: &std::path::Path, end: u64) {
        self.checkpoints.retire(key, end);
        lock(&self.shared.followed).remove(&key);
        // After a rotation the real path belongs to the new file: leave its mapping and watch.
        if self.by_real.get(real) == Some(&key) {
            self.by_real.remove(real);
            self.shared.unwatch(real);
        }
    }
}
