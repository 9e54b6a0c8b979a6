//! The agent the models drive: the real tailer writing into the real disk buffer, a committer,
//! and an in-process sink thread standing in for Elasticsearch. A run can stop gracefully or
//! crash; what it delivered (the index) and the file keys its tailer handed records on with
//! outlive it, so that the next run adds to them.
//!
//! A crash is a crash, not a stop: at its moment (see [`Moment`]) everything the next run will
//! find on disk is frozen — the data directory is copied, checkpoints as the agent last saved
//! them or saved just then, each buffer segment with how much of it was fsynced — while the
//! threads are still running. From then on nothing the dying run does counts: the tailer's
//! output takes nothing more (no last read pass, no deleted file drained, the open chunk
//! dropped), checkpoints stop moving, the sink acknowledges nothing more. Once its threads are
//! gone, the copy replaces the data directory, and every segment is cut somewhere in what was
//! written but not yet fsynced (the model chooses where), as a power loss may cut it.

use logferry::agent::BufferOutput;
use logferry::buffer::{self, Appender, Buffer};
use logferry::config::Config;
use logferry::config::OverflowAction;
use logferry::encode::ItemEncoder;
use logferry::metrics::Metrics;
use logferry::parse::DocumentWriter;
use logferry::source::files::Entry;
use logferry::source::files::{self, Checkpoints, Output, Tailer, TailerState};
use logferry::vocab::FileMeta;
use logferry::vocab::{FileKey, Record};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The in-process stand-in for Elasticsearch: id → document, first write wins; a `create`
/// of an id it has is a 409 (counted), not a second document.
#[derive(Default)]
pub struct Index {
    pub docs: HashMap<String, Value>,
    pub conflicts: usize,
}

/// The keys (with the id basis their checkpoints settled) the tailer handed records on with,
/// by pod name and inode: what a document's id must be computed from.
pub type Keys = Arc<Mutex<HashMap<(String, u64), FileKey>>>;

/// One running tailer with its buffer, committer, and a sink thread acknowledging batches.
pub struct Running {
    shutdown: Arc<AtomicBool>,
    /// As the agent does at shutdown: a quiet tailer sleeps until it is woken.
    wake: files::Waker,
    tailer: JoinHandle<()>,
    committer: JoinHandle<()>,
    sink: JoinHandle<()>,
    crash: Arc<Crash>,
    checkpoints: Arc<Checkpoints>,
    buffer: Arc<Buffer>,
}

/// When a crash strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// When the model says, whatever the agent is doing.
    Now,
    /// Just after the committer reported a chunk durable and its files' checkpoints moved:
    /// what it reported must survive whatever the crash cuts.
    AtCommit,
    /// Just after the tailer appended a chunk, most likely before the committer's fsync: the cut
    /// falls in what was written but is not durable yet.
    AfterAppend,
}

/// A crash as the model chooses it.
#[derive(Debug, Clone, Copy)]
pub struct CrashAt {
    pub moment: Moment,
    /// How much of what each segment holds past its last fsync survives, in thousandths: 0
    /// cuts it at the fsync, 1000 keeps every byte written (a torn frame included).
    pub keep: u16,
    /// The checkpoints were saved just before the crash (as the agent's periodic save may have
    /// been), rather than left as last saved: then lines already in the buffer, or already
    /// indexed, are read again, and only their ids keep them from being duplicates.
    pub fresh_checkpoints: bool,
}

impl CrashAt {
    /// A crash now that keeps nothing that was not fsynced.
    pub const NOW: CrashAt = CrashAt {
        moment: Moment::Now,
        keep: 0,
        fresh_checkpoints: false,
    };
}

pub fn crash_at() -> impl Strategy<Value = CrashAt> {
    let moment = prop_oneof![
        Just(Moment::Now),
        Just(Moment::AtCommit),
        Just(Moment::AfterAppend)
    ];
    (moment, 0..=1000u16, any::<bool>()).prop_map(|(moment, keep, fresh_checkpoints)| CrashAt {
        moment,
        keep,
        fresh_checkpoints,
    })
}

/// What a crash did, for the model.
#[derive(Debug)]
pub struct Crashed {
    /// The chosen moment came (else the crash struck when the model asked, a while later).
    pub at_moment: bool,
    /// Bytes written to the buffer but not fsynced that the crash cut off.
    pub cut: u64,
    /// The checkpoints at the crash, as the agent had moved them (not necessarily saved): a
    /// deleted file cannot be read again, so its lines past these were lost by the crash.
    pub checkpoints: Vec<(FileKey, Entry)>,
}

/// How long a crash waits for its moment before striking anyway.
const MOMENT_WAIT: Duration = Duration::from_millis(400);

/// The switch a crash throws, shared by every thread of a run, and what it froze.
struct Crash {
    /// From this moment on nothing the run does reaches what the next run finds.
    crashed: AtomicBool,
    /// The [`Moment`] a crash is waiting for: 0 none, else 1 + its index.
    armed: AtomicU8,
    armed_with: Mutex<Option<CrashAt>>,
    /// Held by whatever moves what a crash must freeze (a checkpoint advance), and by the crash
    /// while it copies the data directory.
    frozen: Mutex<Option<Frozen>>,
    data_dir: PathBuf,
    checkpoints: Arc<Checkpoints>,
    buffer: Arc<Buffer>,
}

/// The data directory as the crash left it.
struct Frozen {
    /// Directories (with their mode) and files (contents, mode), parents first.
    entries: Vec<(PathBuf, Option<Vec<u8>>, u32)>,
    /// Each buffer segment's fsynced length at the crash.
    durable: HashMap<PathBuf, u64>,
    checkpoints: Vec<(FileKey, Entry)>,
    at_moment: bool,
}

impl Crash {
    fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    fn armed_for(&self, moment: Moment) -> bool {
        self.armed.load(Ordering::SeqCst) == moment as u8 + 1
    }

    fn arm(&self, at: CrashAt) {
        *self.armed_with.lock().unwrap() = Some(at);
        self.armed.store(at.moment as u8 + 1, Ordering::SeqCst);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Frozen>> {
        self.frozen.lock().unwrap()
    }

    /// The crash strikes (once): the data directory is frozen as the next run will find it.
    fn strike(&self, frozen: &mut MutexGuard<'_, Option<Frozen>>, at_moment: bool) {
        if frozen.is_some() {
            return;
        }
        self.crashed.store(true, Ordering::SeqCst);
        let at = self.armed_with.lock().unwrap().unwrap_or(CrashAt::NOW);
        // Checkpoints cannot move any more (their advances wait for `frozen`): each one covers
        // only what was durable before now.
        let durable: HashMap<PathBuf, u64> = self.buffer.durable_lengths().into_iter().collect();
        if at.fresh_checkpoints {
            self.checkpoints.save().unwrap();
        }
        let checkpoints = self.checkpoints.entries();
        // The checkpoints first: segments copied later hold at least what they covered.
        let mut entries = Vec::new();
        let first = self.data_dir.join("checkpoints.json");
        if let (Ok(bytes), Ok(meta)) = (std::fs::read(&first), std::fs::metadata(&first)) {
            entries.push((
                first.clone(),
                Some(bytes),
                meta.permissions().mode() & 0o7777,
            ));
        }
        copy_tree(&self.data_dir, &first, &mut entries);
        **frozen = Some(Frozen {
            entries,
            durable,
            checkpoints,
            at_moment,
        });
    }
}

/// Appends `dir`'s directories and files below it to `out`, parents first, all but `skip`.
/// Files that go while it looks (a segment deleted) are left out.
fn copy_tree(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, Option<Vec<u8>>, u32)>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = read.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.push((path.clone(), None, mode));
            copy_tree(&path, skip, out);
        } else if path != skip
            && let Ok(bytes) = std::fs::read(&path)
        {
            out.push((path, Some(bytes), mode));
        }
    }
}

impl Frozen {
    /// Puts the data directory back as the crash left it, each segment cut `keep` thousandths
    /// into what it held past its last fsync. Returns the bytes cut.
    fn restore(self, data_dir: &Path, keep: u16) -> u64 {
        std::fs::remove_dir_all(data_dir).unwrap();
        std::fs::create_dir_all(data_dir).unwrap();
        let mut cut = 0;
        for (path, bytes, mode) in self.entries {
            match bytes {
                None => std::fs::create_dir_all(&path).unwrap(),
                Some(mut bytes) => {
                    if path.extension().is_some_and(|e| e == "seg") {
                        // A segment created after the crash looked at the buffer holds nothing
                        // durable.
                        let len = bytes.len() as u64;
                        let durable = self.durable.get(&path).copied().unwrap_or(0).min(len);
                        let kept = durable + (len - durable) * u64::from(keep) / 1000;
                        bytes.truncate(kept as usize);
                        cut += len - kept;
                    }
                    std::fs::write(&path, bytes).unwrap();
                }
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        cut
    }
}

/// The tailer's output as the agent wires it, noting each file's key on the way; after a crash
/// it takes nothing more.
struct KeyWitness {
    output: BufferOutput,
    keys: Keys,
    /// Keys already noted by this run: the shared map is locked once per file, not per record.
    noted: HashSet<FileKey>,
    crash: Arc<Crash>,
}

impl KeyWitness {
    /// Hands `f` on to the output unless the run has crashed; strikes a crash waiting for the
    /// next append once one has happened.
    fn pass(&mut self, f: impl FnOnce(&mut BufferOutput)) {
        if self.crash.crashed() {
            return;
        }
        if !self.crash.armed_for(Moment::AfterAppend) {
            f(&mut self.output);
            return;
        }
        let before = self.crash.buffer.stats().bytes;
        f(&mut self.output);
        if self.crash.buffer.stats().bytes > before {
            self.crash.strike(&mut self.crash.lock(), true);
        }
    }
}

impl Output for KeyWitness {
    fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        if self.crash.crashed() {
            return;
        }
        if self.noted.insert(*key)
            && let Some(pod) = pod_name(&meta.fields)
        {
            self.keys.lock().unwrap().insert((pod, key.ino), *key);
        }
        self.pass(|o| o.emit(key, rec, meta, before));
    }

    fn advance(&mut self, key: FileKey, offset: u64) {
        self.pass(|o| o.advance(key, offset));
    }

    fn block_done(&mut self, key: FileKey, offset: u64) {
        self.pass(|o| o.block_done(key, offset));
    }

    fn flush(&mut self) {
        self.pass(|o| o.flush());
    }

    fn reconfigure(&mut self, cfg: &logferry::config::Config) {
        self.pass(|o| o.reconfigure(cfg));
    }
}

/// The pod name in a file's document fields (`,"kubernetes":{…},…`).
fn pod_name(fields: &[u8]) -> Option<String> {
    let object = [b"{", fields.strip_prefix(b",")?, b"}"].concat();
    let v: Value = serde_json::from_slice(&object).ok()?;
    Some(v["kubernetes"]["pod_name"].as_str()?.to_owned())
}

pub fn start(cfg: &Config, index: Arc<Mutex<Index>>, keys: Keys) -> Running {
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let checkpoints = Arc::new(Checkpoints::open(&cfg.data_dir).unwrap());
    let metrics = Arc::new(Metrics::new());
    let buffer = Arc::new(
        Buffer::open(
            buffer::Options {
                dir: cfg.buffer_dir(),
                max_size: 1 << 20,
                segment_size: 64 * 1024,
                overflow: OverflowAction::Block,
            },
            metrics.clone(),
        )
        .unwrap(),
    );
    let crash = Arc::new(Crash {
        crashed: AtomicBool::new(false),
        armed: AtomicU8::new(0),
        armed_with: Mutex::new(None),
        frozen: Mutex::new(None),
        data_dir: cfg.data_dir.clone(),
        checkpoints: checkpoints.clone(),
        buffer: buffer.clone(),
    });
    let committer = {
        let (buffer, checkpoints, crash) = (buffer.clone(), checkpoints.clone(), crash.clone());
        std::thread::spawn(move || {
            buffer.commit_loop(|durable| {
                let mut frozen = crash.lock();
                if crash.crashed() {
                    return;
                }
                checkpoints.advance(durable);
                if crash.armed_for(Moment::AtCommit) {
                    crash.strike(&mut frozen, true);
                }
            })
        })
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let encoder = ItemEncoder::new(
        logferry::route::Router::new(cfg).unwrap(),
        DocumentWriter::new(&cfg.parse),
    );
    let state = Arc::new(TailerState::default());
    let give_up = {
        let shutdown = shutdown.clone();
        Box::new(move || shutdown.load(Ordering::Relaxed))
    };
    let out = BufferOutput::new(
        encoder,
        std::sync::Arc::new(std::sync::Mutex::new(Appender::new(buffer.clone()))),
        metrics.clone(),
        give_up,
        cfg,
    );
    let out = KeyWitness {
        output: out,
        keys,
        noted: HashSet::new(),
        crash: crash.clone(),
    };
    let ctx = files::Context {
        metrics,
        shutdown: shutdown.clone(),
        state: state.clone(),
        kube: None,
        reloads: None,
    };
    let tailer = Tailer::new(cfg, checkpoints.clone(), Box::new(out), ctx);
    let wake = tailer.waker();
    let tailer = std::thread::spawn(move || tailer.run());
    // As on a node: the agent has looked at its files before anything else happens to them.
    while !state.ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sink = sink(crash.clone(), checkpoints.clone(), buffer.clone(), index);
    Running {
        shutdown,
        wake,
        tailer,
        committer,
        sink,
        crash,
        checkpoints,
        buffer,
    }
}

/// Takes batches from the buffer into `index` and acknowledges them, saving the checkpoints
/// and the buffer's cursor after each, until the buffer closes. Once the run has crashed, it
/// takes and acknowledges nothing more.
fn sink(
    crash: Arc<Crash>,
    checkpoints: Arc<Checkpoints>,
    buffer: Arc<Buffer>,
    index: Arc<Mutex<Index>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        while let Some(batch) = rt.block_on(buffer.next_batch(16 * 1024)) {
            if crash.crashed() {
                continue;
            }
            let mut idx = index.lock().unwrap();
            let body = String::from_utf8(batch.body().unwrap()).unwrap();
            let mut lines = body.lines();
            while let (Some(action), Some(doc)) = (lines.next(), lines.next()) {
                let a: Value = serde_json::from_str(action).unwrap();
                let id = a["create"]["_id"].as_str().unwrap().to_owned();
                let d: Value = serde_json::from_str(doc).unwrap();
                match idx.docs.entry(id) {
                    std::collections::hash_map::Entry::Occupied(_) => idx.conflicts += 1,
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(d);
                    }
                }
            }
            drop(idx);
            buffer.acknowledge(batch.seq);
            checkpoints.save().unwrap();
            buffer.save_cursor().unwrap();
        }
    })
}

impl Running {
    fn halt(self) -> (Arc<Checkpoints>, Arc<Buffer>) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.wake.wake();
        self.tailer.join().unwrap();
        self.buffer.stop_committing();
        self.committer.join().unwrap();
        self.buffer.close();
        self.sink.join().unwrap();
        (self.checkpoints, self.buffer)
    }

    pub fn stop(self) {
        let (checkpoints, buffer) = self.halt();
        checkpoints.save().unwrap();
        buffer.save_cursor().unwrap();
    }

    /// Crashes at the moment `at` chooses (or, if that does not come soon, now): see the
    /// module's doc. Returns once the data directory is as the crash left it.
    pub fn crash(self, at: CrashAt) -> Crashed {
        self.crash.arm(at);
        let deadline = Instant::now() + MOMENT_WAIT;
        while at.moment != Moment::Now && self.crash.lock().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.crash
            .strike(&mut self.crash.lock(), at.moment == Moment::Now);
        let crash = self.crash.clone();
        let data_dir = crash.data_dir.clone();
        drop(self.halt());
        let frozen = crash.lock().take().unwrap();
        let (at_moment, checkpoints) = (frozen.at_moment, frozen.checkpoints.clone());
        let cut = frozen.restore(&data_dir, at.keep);
        Crashed {
            at_moment,
            cut,
            checkpoints,
        }
    }

    /// Waits until the agent holds the file at `path` (it keeps a checkpoint for its inode).
    pub fn wait_until_seen(&self, path: &std::path::Path) {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !self
                .checkpoints
                .entries()
                .iter()
                .any(|(k, _)| (k.dev, k.ino) == (meta.dev(), meta.ino()))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
