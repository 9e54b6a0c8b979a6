//! Tailing: which files to follow, reading them, and remembering how far shipping has got.
//!
//! Owns discovery (include/exclude globs, inotify through `notify`, and a periodic rescan
//! because inotify drops events), file identity (device + inode + a fingerprint of the first
//! line, never the path), rotation (a renamed or deleted file is read to its end and kept for
//! `rotate_wait` before it is let go), truncation (reading restarts at 0), and checkpoints.
//!
//! Runs on its own thread: reads are plain blocking syscalls on the page cache, and one thread
//! that owns every file needs no locks. Each line goes through `decode`, `parse` and the bulk
//! encoder straight into the open [`Chunk`], which is appended to the disk buffer when it is
//! full and at the end of every pass over the files. A full buffer (or disk) blocks the append,
//! and with it reading: that is the backpressure. A file's checkpoint moves only once the
//! buffer has fsynced the chunks holding its lines.

mod checkpoint;
mod discover;
mod file;

pub use checkpoint::{Checkpoints, Entry};
pub use discover::Discovery;

use crate::buffer::{Appender, Chunk};
use crate::config::{self, ReadFrom};
use crate::decode::Record;
use crate::kube::cache::{Cache, FileMeta};
use crate::observe::Metrics;
use crate::sink::ItemEncoder;
use file::{ReadOutcome, Tracked, identify};
use notify::{RecursiveMode, Watcher};
use prometheus_client::metrics::counter::Counter;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

/// What names a file's content across renames: device and inode, plus a fingerprint of its
/// first line so that a reused inode is not mistaken for the file that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u64,
}

impl FileKey {
    /// Stands for a file seen but not yet identifiable (its first line is incomplete): it is
    /// remembered by inode so that a crash cannot make the agent forget it.
    pub fn placeholder(dev: u64, ino: u64) -> FileKey {
        FileKey {
            dev,
            ino,
            fingerprint: 0,
        }
    }

    pub fn is_placeholder(&self) -> bool {
        self.fingerprint == 0
    }
}

/// One read() asks for this much; large blocks keep syscalls per line low.
const READ_BLOCK: usize = 256 * 1024;
/// How much one file may read in one pass before the others get their turn.
const PASS_BUDGET: usize = 4 * 1024 * 1024;
/// The tailer hands its chunk to the buffer at this size at most (less with a smaller
/// chunk_limit_size).
const CHUNK_WRITE: usize = 1024 * 1024;
/// The longest the loop sleeps, so shutdown and rotate_wait are noticed promptly.
const MAX_IDLE: Duration = Duration::from_millis(200);
/// The least time between two read passes woken by writes: at 10k lines/s written a few at a
/// time, a pass per write costs several times the CPU for latency nobody needs (see
/// README, "Speed and cost").
const COALESCE: Duration = Duration::from_millis(25);
/// inotify events waiting for the tailer; past this they are dropped and a rescan covers them.
const EVENT_QUEUE: usize = 4096;

/// The tailer's way out: the open chunk, the encoder that fills it, and the buffer it goes to.
pub struct Output {
    chunk: Chunk,
    encoder: ItemEncoder,
    appender: Appender,
    /// Chunks are sealed at this size (a write to the buffer; batches span chunks).
    chunk_limit: usize,
    /// An item on its way from a full chunk to the next one.
    carry: Vec<u8>,
    metrics: Arc<Metrics>,
    /// Per-record counters, looked up once rather than per line.
    counters: RecordCounters,
    shutdown: Arc<AtomicBool>,
    /// A chunk was dropped at shutdown; nothing more may be handed on.
    abandoned: bool,
    /// Beaten while waiting for the buffer, so a long wait is not taken for a stall.
    state: Arc<TailerState>,
    /// Pod metadata from the API server, when `[kubernetes]` is enabled.
    kube: Option<Arc<Cache>>,
    /// How long lines of a pod the cache does not know wait for it.
    wait_for_metadata: Duration,
    /// A physical line longer than this is cut before decoding: twice the message cap leaves
    /// room for the runtime's prefix and docker's JSON escaping.
    max_physical_line: usize,
    flush_interval: Duration,
}

impl Output {
    /// Documents get their pod's metadata from `cache`.
    #[must_use]
    pub fn with_kubernetes(mut self, cache: Arc<Cache>) -> Output {
        self.kube = Some(cache);
        self
    }

    pub fn new(
        encoder: ItemEncoder,
        appender: Appender,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
        cfg: &config::Config,
    ) -> Output {
        let outcome = |name| metrics.records.get_or_create(&[("outcome", name)]).clone();
        let counters = RecordCounters {
            ok: outcome("ok"),
            invalid_utf8: outcome("invalid_utf8"),
            truncated: outcome("truncated"),
            malformed: outcome("malformed"),
            unterminated: outcome("unterminated"),
            joined: outcome("partial_joined"),
            json_failed: metrics.json_failures.clone(),
        };
        Output {
            chunk: Chunk::new(),
            encoder,
            // Smaller than a batch: the chunk is the tailer's memory, and it is reused.
            chunk_limit: appender.buffer().chunk_limit().min(CHUNK_WRITE),
            carry: Vec::new(),
            appender,
            counters,
            metrics,
            shutdown,
            abandoned: false,
            state: Arc::new(TailerState::default()),
            kube: None,
            wait_for_metadata: cfg.kubernetes.wait_for_metadata.0,
            max_physical_line: cfg.input.max_line_bytes.as_usize() * 2 + 4096,
            flush_interval: cfg.buffer.flush_interval.0,
        }
    }

    /// Encodes one record. `before` is the file's safe offset before this record: if the item
    /// overflows the chunk, the full chunk is sealed with that offset and the item starts the
    /// next one.
    fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        if meta.excluded {
            self.metrics.kubernetes_excluded.inc();
            return;
        }
        if meta.partial {
            self.metrics.kubernetes_partial.inc();
        }
        let outcome = self
            .encoder
            .encode(&mut self.chunk, key, rec, &meta.fields, meta.parse_json);
        let c = &self.counters;
        c.ok.inc();
        for (set, counter) in [
            (outcome.invalid_utf8, &c.invalid_utf8),
            (outcome.json_failed, &c.json_failed),
            (rec.flags.truncated, &c.truncated),
            (rec.flags.malformed, &c.malformed),
            (rec.flags.unterminated, &c.unterminated),
            (rec.flags.joined, &c.joined),
        ] {
            if set {
                counter.inc();
            }
        }
        if self.chunk.body.len() > self.chunk_limit && self.chunk.items.len() > 1 {
            // The item starts the next chunk: its frame moves out and back in after the append.
            let last = self.chunk.items.pop().map_or(0, |s| s as usize);
            self.carry.clear();
            self.carry.extend_from_slice(&self.chunk.body[last..]);
            self.chunk.body.truncate(last);
            self.chunk.advance(*key, before);
            self.seal();
            if !self.abandoned {
                self.chunk.push_frame(&self.carry);
            }
        } else if self.chunk.body.len() >= self.chunk_limit {
            self.chunk.advance(*key, before);
            self.seal();
        }
    }

    /// A block of `key` was handled up to `offset`. Also where a long pass (a big backlog)
    /// hands its chunk on once it has waited `flush_interval`: checking per block, not per
    /// line, keeps the clock off the hot path.
    fn block_done(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
        if !self.chunk.items.is_empty() && self.chunk.created.elapsed() >= self.flush_interval {
            self.seal();
        }
    }

    fn advance(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
    }

    /// Appends the open chunk to the buffer.
    fn seal(&mut self) {
        if self.abandoned {
            return;
        }
        let (shutdown, state) = (&self.shutdown, &self.state);
        if self
            .appender
            .append(&mut self.chunk, || {
                state.beat();
                shutdown.load(Ordering::Relaxed)
            })
            .is_err()
        {
            // Shutting down while the buffer (or disk) is full: these lines are not buffered,
            // so their checkpoints did not move and the next start reads them again. Every later
            // chunk must be dropped too: committing one would move checkpoints past these lines.
            self.abandoned = true;
            tracing::info!(
                records = self.chunk.items.len(),
                "shutdown while the buffer was full; unbuffered lines will be read again on restart"
            );
        }
    }
}

struct RecordCounters {
    ok: Counter,
    invalid_utf8: Counter,
    truncated: Counter,
    malformed: Counter,
    unterminated: Counter,
    joined: Counter,
    json_failed: Counter,
}

/// Shared flags the HTTP endpoints read.
#[derive(Default)]
pub struct TailerState {
    /// The first discovery pass has completed.
    pub ready: AtomicBool,
    /// When the tailer last showed it is alive (Unix ms): every turn of its loop, every file it
    /// reads, and every wait on a full buffer or disk. `/health` calls it stalled when this
    /// stops moving.
    pub heartbeat_ms: std::sync::atomic::AtomicU64,
}

pub struct Tailer {
    cfg: config::Input,
    discovery: Discovery,
    checkpoints: Arc<Checkpoints>,
    out: Output,
    state: Arc<TailerState>,
    files: HashMap<FileKey, Tracked>,
    /// Include-matched path → the file that currently lives there.
    by_path: HashMap<PathBuf, FileKey>,
    /// Real path → file, to map inotify events.
    by_real: HashMap<PathBuf, FileKey>,
    /// Files with data to read now.
    dirty: HashSet<FileKey>,
    /// Files whose pod the Kubernetes cache does not know yet: read again next pass.
    waiting_meta: HashSet<FileKey>,
    /// Matched paths whose file has no identity yet (its first line is incomplete), held open
    /// from the first look so that a deletion or rename cannot take their lines away.
    waiting: HashMap<PathBuf, Waiting>,
    /// What each matched path led to when last looked at, to notice rotations that happened
    /// between two looks.
    looks: HashMap<PathBuf, Look>,
    watcher: Option<notify::RecommendedWatcher>,
    watched_roots: HashSet<PathBuf>,
    events: Receiver<notify::Event>,
    /// inotify events were dropped (queue overflow or watcher error): rescan and read all.
    missed_events: Arc<AtomicBool>,
    /// Paths whose open/read failure was already logged, so it is logged once.
    reported: HashSet<PathBuf>,
    /// When the scan before the current one started — during the first scan, the last scan of
    /// the agent's previous run, from the checkpoint file (`None` on a node's very first start):
    /// files renamed after it cannot have been seen by any look before.
    previous_scan: Option<SystemTime>,
    /// When the current scan started.
    this_scan: Option<SystemTime>,
    /// Checkpoint entries were added since the last save. New files are saved at once (at the
    /// end of the pass), not on the next timer tick: a file the agent knows about survives a
    /// crash even if it is rotated away right after.
    unsaved: bool,
    /// No checkpoints existed at start-up: the agent has never run on this node. Only then does
    /// `read_from = "end"` skip content; after that, a file without a checkpoint appeared while
    /// the agent was down, and all of it is new.
    fresh_start: bool,
}

impl TailerState {
    fn beat(&self) {
        self.heartbeat_ms
            .store(crate::buffer::now_ms(), Ordering::Relaxed);
    }
}

impl Tailer {
    pub fn new(
        cfg: &config::Config,
        checkpoints: Arc<Checkpoints>,
        mut out: Output,
        state: Arc<TailerState>,
    ) -> Tailer {
        out.state = state.clone();
        state.beat();
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let missed = Arc::new(AtomicBool::new(false));
        let watcher = make_watcher(tx, missed.clone());
        Tailer {
            cfg: cfg.input.clone(),
            discovery: Discovery::new(&cfg.input.include, &cfg.input.exclude),
            fresh_start: checkpoints.entries().is_empty(),
            unsaved: false,
            previous_scan: checkpoints.last_scan(),
            this_scan: None,
            checkpoints,
            out,
            state,
            files: HashMap::new(),
            by_path: HashMap::new(),
            by_real: HashMap::new(),
            dirty: HashSet::new(),
            waiting_meta: HashSet::new(),
            waiting: HashMap::new(),
            looks: HashMap::new(),
            watcher,
            watched_roots: HashSet::new(),
            events: rx,
            missed_events: missed,
            reported: HashSet::new(),
        }
    }

    /// Follows files until shutdown, then appends what it has.
    pub fn run(mut self) {
        let mut buf = vec![0u8; READ_BLOCK];
        self.rescan(true);
        self.recover_rotated_while_down();
        self.save_if_new();
        self.state.ready.store(true, Ordering::Relaxed);
        let mut next_rescan = Instant::now() + self.cfg.rescan_interval.0;
        while !self.out.shutdown.load(Ordering::Relaxed) {
            self.state.beat();
            self.dirty.extend(self.waiting_meta.drain());
            let mut rescan = self.drain_events();
            if self.missed_events.swap(false, Ordering::Relaxed) || Instant::now() >= next_rescan {
                rescan = true;
                // A periodic full pass catches writes whose events were lost.
                self.dirty.extend(self.files.keys().copied());
            }
            if rescan {
                self.rescan(false);
                next_rescan = Instant::now() + self.cfg.rescan_interval.0;
            }
            self.retry_waiting();
            let pass_started = Instant::now();
            self.read_pass(&mut buf);
            // Partial records whose end never came are shipped flagged, even from quiet files.
            let now = Instant::now();
            for t in self.files.values_mut() {
                t.flush_expired(now, self.cfg.partial_timeout.0, &mut self.out);
            }
            self.save_if_new();
            self.let_go_of_drained(&mut buf);
            self.out.seal();
            self.out.metrics.files_watched.set(self.files.len() as i64);
            if self.dirty.is_empty() {
                let wait = next_rescan
                    .saturating_duration_since(Instant::now())
                    .min(MAX_IDLE);
                match self.events.recv_timeout(wait) {
                    Ok(ev) => {
                        if self.handle_event(ev) {
                            next_rescan = Instant::now();
                        }
                        // A writer that writes a few lines at a time wakes the tailer for each
                        // write; the lines of a few milliseconds are read, made durable and
                        // shipped together instead.
                        std::thread::sleep(COALESCE.saturating_sub(pass_started.elapsed()));
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
                }
            }
        }
        self.out.seal();
        if let Some(at) = self.this_scan {
            self.checkpoints.note_scan(at, true);
        }
        tracing::info!(files = self.files.len(), "tailer stopped");
    }

    /// Handles all queued events; true when the set of files may have changed.
    fn drain_events(&mut self) -> bool {
        let mut rescan = false;
        while let Ok(ev) = self.events.try_recv() {
            rescan |= self.handle_event(ev);
        }
        rescan
    }

    fn handle_event(&mut self, ev: notify::Event) -> bool {
        use notify::EventKind;
        let rescan = matches!(
            ev.kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        for p in &ev.paths {
            // Other paths: a write to a waiting file only needs the loop to wake, which it has.
            if let Some(k) = self.by_real.get(p) {
                self.dirty.insert(*k);
            }
        }
        rescan
    }

    fn read_pass(&mut self, buf: &mut [u8]) {
        let mut keys: Vec<FileKey> = self.dirty.drain().collect();
        keys.extend(self.files.values().filter(|t| t.draining).map(|t| t.key));
        keys.sort_unstable_by_key(|k| (k.dev, k.ino));
        keys.dedup();
        for key in keys {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            if let Some(cache) = &self.out.kube
                && let Some(pod) = &t.pod
            {
                let generation = cache.generation();
                if t.meta_generation != generation {
                    t.meta = cache.lookup(pod);
                    t.meta_generation = generation;
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
            match t.read(buf, &mut self.out, PASS_BUDGET) {
                Ok(ReadOutcome::More) => {
                    self.dirty.insert(key);
                }
                Ok(ReadOutcome::Eof) => {
                    self.reported.remove(&t.path);
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
        // The old content is gone, so its checkpoint has nothing left to protect. (If the new
        // content starts with the very same first line, it has the same key, and a late
        // acknowledgement of the old content could move the new checkpoint; after a crash that
        // would skip lines. The kubelet never truncates; copytruncate setups with constant
        // headers are the only exposure.)
        self.checkpoints.forget(&key);
        self.by_path.retain(|_, k| *k != key);
        if self.by_real.get(&t.real) == Some(&key) {
            self.by_real.remove(&t.real);
        }
        // A rotated file's path leads elsewhere now; only a live one is followed again.
        if !t.draining {
            self.open(&t.path, Start::Over);
        }
    }

    /// Expands the globs: opens new files, notices rotated and deleted ones.
    fn rescan(&mut self, first: bool) {
        let now = SystemTime::now();
        if let Some(before) = self.this_scan.replace(now) {
            self.previous_scan = Some(before);
        }
        self.watch_roots();
        let found = self.discovery.scan();
        let found_set: HashSet<&PathBuf> = found.iter().collect();
        let gone: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| !found_set.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(key) = self.by_path.remove(&path) {
                self.start_draining(key);
            }
        }
        let vanished: Vec<(PathBuf, Look)> = self
            .looks
            .extract_if(|p, _| !found_set.contains(p))
            .collect();
        for (path, _) in vanished {
            if let Some(w) = self.waiting.remove(&path) {
                self.abandon_waiting(w);
            }
        }
        for path in &found {
            let Some(meta) = self.look(path) else {
                continue;
            };
            if let Some(&key) = self.by_path.get(path) {
                if key.dev == meta.dev() && key.ino == meta.ino() {
                    // Same inode, other first line: truncated and written again since the last
                    // look, too fast for the size check to notice.
                    let rewritten = self.files.get(&key).is_some_and(
                        |t| matches!(identify(&t.file, false), Ok(Some(now)) if now != key),
                    );
                    if rewritten {
                        self.truncated(key);
                    }
                    continue;
                }
                // The path now names another file: the old one was rotated away.
                self.by_path.remove(path);
                self.start_draining(key);
            }
            let start = if first && self.cfg.read_from == ReadFrom::End && self.fresh_start {
                Start::AtEnd
            } else {
                Start::Beginning
            };
            self.open(path, start);
        }
        self.checkpoints.note_scan(now, false);
    }

    /// Starts following the file at `path`.
    fn open(&mut self, path: &Path, start: Start) {
        let held = match self.waiting.remove(path) {
            Some(w)
                if self
                    .looks
                    .get(path)
                    .is_some_and(|l| (l.dev, l.ino) == (w.dev, w.ino)) =>
            {
                Some(w.file)
            }
            Some(w) => {
                self.abandon_waiting(w);
                None
            }
            None => None,
        };
        let file = match held.map_or_else(|| File::open(path), Ok) {
            Ok(f) => f,
            Err(e) => {
                self.out.metrics.read_errors.inc();
                if self.reported.insert(path.to_owned()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open file; will retry");
                }
                return;
            }
        };
        let key = match identify(&file, false) {
            Ok(Some(k)) => k,
            Ok(None) => {
                self.wait_for_first_line(path, file);
                return;
            }
            Err(e) => {
                if self.reported.insert(path.to_owned()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read file; will retry");
                }
                return;
            }
        };
        self.reported.remove(path);
        self.checkpoints
            .forget(&FileKey::placeholder(key.dev, key.ino));
        if let Some(t) = self.files.get_mut(&key) {
            // Already followed (matched again, or through a second path).
            t.draining = false;
            self.by_path.insert(path.to_owned(), key);
            return;
        }
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let checkpoint = self.checkpoints.get(&key).map(|e| e.offset);
        let offset = match (start, checkpoint) {
            (Start::Over, _) => 0,
            // A checkpoint past the end means the content was replaced: start over.
            (_, Some(c)) if c <= size => c,
            (Start::AtEnd, _) => size,
            _ => 0,
        };
        let t = Tracked::open(path, file, key, offset, self.cfg.max_line_bytes.as_usize());
        self.unsaved |= self.checkpoints.track(key, &t.real, offset);
        self.follow(path, t);
    }

    /// Holds a file without an identity yet, and makes sure a crash cannot forget it.
    fn wait_for_first_line(&mut self, path: &Path, file: File) {
        let Ok(meta) = file.metadata() else { return };
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let placeholder = FileKey::placeholder(meta.dev(), meta.ino());
        self.unsaved |= self.checkpoints.track(placeholder, &real, 0);
        // Its writes must wake the loop, or a short-lived file could come and go unread.
        self.watch_file(&real);
        let w = Waiting {
            file,
            real,
            dev: meta.dev(),
            ino: meta.ino(),
        };
        self.waiting.insert(path.to_owned(), w);
    }

    /// A waiting file's path went away or leads elsewhere now: whatever it holds will not grow
    /// into a whole first line, so it is read to its end as it is.
    fn abandon_waiting(&mut self, w: Waiting) {
        self.checkpoints.forget(&FileKey::placeholder(w.dev, w.ino));
        match identify(&w.file, true) {
            Ok(Some(key)) if !self.files.contains_key(&key) => {
                let path = w.real.clone();
                self.follow_draining(&path, w.file, key, 0);
            }
            _ => {
                if let Some(watcher) = &mut self.watcher {
                    let _ = watcher.unwatch(&w.real);
                }
            }
        }
    }

    fn save_if_new(&mut self) {
        if std::mem::take(&mut self.unsaved)
            && let Err(e) = self.checkpoints.save()
        {
            self.out.metrics.checkpoint_errors.inc();
            tracing::error!(error = %e, "checkpoint write failed; will retry");
        }
    }

    fn follow(&mut self, path: &Path, t: Tracked) {
        tracing::debug!(path = %path.display(), offset = t.read_pos, "following file");
        self.watch_file(&t.real);
        let key = t.key;
        self.by_real.insert(t.real.clone(), key);
        self.by_path.insert(path.to_owned(), key);
        self.files.insert(key, t);
        self.dirty.insert(key);
    }

    /// The file's path no longer leads to it: read it to its end, then let it go.
    fn start_draining(&mut self, key: FileKey) {
        if let Some(t) = self.files.get_mut(&key) {
            t.draining = true;
            // The writer may not have reopened yet: give it rotate_wait from now.
            t.last_data = Instant::now();
            self.dirty.insert(key);
        }
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
            self.checkpoints.retire(key, end);
            self.by_path.retain(|_, k| *k != key);
            // After a rotation the real path belongs to the new file: leave its mapping and watch.
            if self.by_real.get(&t.real) == Some(&key) {
                self.by_real.remove(&t.real);
                if let Some(w) = &mut self.watcher {
                    let _ = w.unwatch(&t.real);
                }
            }
            tracing::debug!(path = %t.real.display(), end, "finished rotated or deleted file");
        }
    }

    /// Paths whose first line was incomplete: try to identify them again.
    fn retry_waiting(&mut self) {
        let paths: Vec<PathBuf> = self.waiting.keys().cloned().collect();
        for p in paths {
            if self.look(&p).is_none() {
                if let Some(w) = self.waiting.remove(&p) {
                    self.abandon_waiting(w);
                }
                continue;
            }
            self.open(&p, Start::Beginning);
        }
    }

    /// Looks at what `path` leads to now. If that is another file than last time, the file it
    /// led to was renamed away in between — possibly before it was ever read (a file still
    /// waiting for its first line, or one rotated twice between two looks) — so renamed
    /// siblings changed since the last look are picked up and read to their end.
    fn look(&mut self, path: &Path) -> Option<std::fs::Metadata> {
        let meta = std::fs::metadata(path).ok()?;
        let inode = (meta.dev(), meta.ino());
        let prev = self.looks.remove(path);
        // Resolving the symlink costs a syscall per path component: only when it may have changed.
        let real = match &prev {
            Some(p) if (p.dev, p.ino) == inode => p.real.clone(),
            _ => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
        };
        match (&prev, self.previous_scan) {
            (Some(p), _) if (p.dev, p.ino) != inode => self.rescue_renamed(&p.real, p.at),
            // A path never looked at before: a file there may already have been created,
            // written and renamed since the previous scan (of this run, or of the last one),
            // before anything could see it.
            (None, Some(since)) => self.rescue_renamed(&real, since),
            _ => {}
        }
        self.looks.insert(
            path.to_owned(),
            Look {
                real,
                dev: meta.dev(),
                ino: meta.ino(),
                at: SystemTime::now(),
            },
        );
        Some(meta)
    }

    /// Follows files renamed from `real` (kubelet style, `0.log.<suffix>`) since `since` that
    /// are not followed yet.
    fn rescue_renamed(&mut self, real: &Path, since: SystemTime) {
        let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let n = entry.file_name();
            let n = n.to_string_lossy();
            if !n.starts_with(&prefix) || n.ends_with(".gz") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let known = self
                .files
                .keys()
                .any(|k| (k.dev, k.ino) == (meta.dev(), meta.ino()));
            // A rename sets the inode's change time: older files were rotated before the last
            // look and are not ours to read.
            let changed = SystemTime::UNIX_EPOCH
                + Duration::new(
                    meta.ctime().max(0) as u64,
                    meta.ctime_nsec().clamp(0, 999_999_999) as u32,
                );
            if known || !meta.is_file() || changed + Duration::from_secs(1) < since {
                continue;
            }
            let path = entry.path();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(Some(key)) = identify(&file, true) else {
                continue;
            };
            if self.files.contains_key(&key) {
                continue;
            }
            let offset = self.checkpoints.get(&key).map_or(0, |e| e.offset);
            tracing::info!(path = %path.display(), offset, "reading a file that was rotated before it was read to its end");
            self.checkpoints
                .forget(&FileKey::placeholder(key.dev, key.ino));
            self.follow_draining(&path, file, key, offset);
        }
    }

    /// A file rotated while the agent was down is no longer matched by the globs (the kubelet
    /// renames `0.log` to `0.log.<timestamp>`), but its checkpoint says where it was: look for it
    /// next to its old path and read the rest of it.
    fn recover_rotated_while_down(&mut self) {
        for (key, entry) in self.checkpoints.entries() {
            if self.files.contains_key(&key) {
                continue;
            }
            if key.is_placeholder()
                && self
                    .looks
                    .values()
                    .any(|l| (l.dev, l.ino) == (key.dev, key.ino))
            {
                // Still where it was, still waiting for its first line.
                continue;
            }
            let found = find_rotated(&entry.path, |file, meta| {
                let same_inode = (meta.dev(), meta.ino()) == (key.dev, key.ino);
                if !same_inode {
                    return None;
                }
                identify(file, true)
                    .ok()
                    .flatten()
                    .filter(|k| key.is_placeholder() || *k == key)
            });
            if key.is_placeholder() {
                self.checkpoints.forget(&key);
            }
            match found {
                Some((path, file, found)) if !self.files.contains_key(&found) => {
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let offset = if key.is_placeholder() {
                        0
                    } else {
                        entry.offset.min(size)
                    };
                    tracing::info!(path = %path.display(), offset, "finishing a file rotated while the agent was down");
                    self.follow_draining(&path, file, found, offset);
                }
                Some(_) => {}
                None => {
                    tracing::info!(path = %entry.path.display(), "file from the last run is gone");
                    self.checkpoints.forget(&key);
                }
            }
        }
    }

    /// Follows a file no include glob leads to any more, to its end.
    fn follow_draining(&mut self, path: &Path, file: File, key: FileKey, offset: u64) {
        let mut t = Tracked::open(path, file, key, offset, self.cfg.max_line_bytes.as_usize());
        t.draining = true;
        self.unsaved |= self.checkpoints.track(key, &t.real, offset);
        self.follow(path, t);
        self.by_path.remove(path);
    }

    fn watch_roots(&mut self) {
        let Some(w) = &mut self.watcher else {
            return;
        };
        for root in self.discovery.roots() {
            if !self.watched_roots.contains(&root)
                && root.is_dir()
                && w.watch(&root, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched_roots.insert(root);
            }
        }
    }

    fn watch_file(&mut self, real: &Path) {
        if let Some(w) = &mut self.watcher
            && let Err(e) = w.watch(real, RecursiveMode::NonRecursive)
        {
            // Reading still works through the periodic pass; only latency suffers.
            tracing::debug!(path = %real.display(), error = %e, "cannot watch file");
        }
    }
}

/// A file seen at a matched path whose first line is not complete yet.
struct Waiting {
    file: File,
    real: PathBuf,
    dev: u64,
    ino: u64,
}

/// What a matched path led to at one moment.
struct Look {
    real: PathBuf,
    dev: u64,
    ino: u64,
    at: SystemTime,
}

/// Where a newly seen file starts when it has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Beginning,
    /// `read_from = "end"` for files present at start-up.
    AtEnd,
    /// The file was truncated: from 0, whatever the checkpoint says.
    Over,
}

/// Looks at `old` and at the files renamed from it (`old.<suffix>`, not compressed) for the one
/// `pick` recognises, and returns it with the identity `pick` gave it.
fn find_rotated(
    old: &Path,
    pick: impl Fn(&File, &std::fs::Metadata) -> Option<FileKey>,
) -> Option<(PathBuf, File, FileKey)> {
    let dir = old.parent()?;
    let name = old.file_name()?.to_str()?;
    let mut candidates = vec![old.to_owned()];
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let n = entry.file_name();
        let Some(n) = n.to_str() else { continue };
        if n.starts_with(name) && n.len() > name.len() && !n.ends_with(".gz") {
            candidates.push(entry.path());
        }
    }
    candidates.into_iter().find_map(|p| {
        let f = File::open(&p).ok()?;
        let meta = f.metadata().ok()?;
        let key = pick(&f, &meta)?;
        Some((p, f, key))
    })
}

fn make_watcher(
    tx: SyncSender<notify::Event>,
    missed: Arc<AtomicBool>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                missed.store(true, Ordering::Relaxed);
            }
        }
        Err(_) => missed.store(true, Ordering::Relaxed),
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify is unavailable; new lines are found by the periodic rescan only");
            None
        }
    }
}
