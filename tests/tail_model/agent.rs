//! The agent the models drive: the real tailer writing into the real disk buffer, a committer,
//! and an in-process sink thread standing in for Elasticsearch. A run can stop gracefully or
//! crash; what it delivered (the index) and the file keys its tailer handed records on with
//! outlive it, so that the next run adds to them.

use logferry::agent::BufferOutput;
use logferry::buffer::{self, Appender, Buffer};
use logferry::config::Config;
use logferry::config::OverflowAction;
use logferry::encode::ItemEncoder;
use logferry::metrics::Metrics;
use logferry::parse::DocumentWriter;
use logferry::tail::{self, Checkpoints, Output, Tailer, TailerState};
use logferry::vocab::FileMeta;
use logferry::vocab::{FileKey, Record};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The in-process stand-in for Elasticsearch: id → document, first write wins.
#[derive(Default)]
pub struct Index {
    pub docs: HashMap<String, Value>,
}

/// The keys (with the id basis their checkpoints settled) the tailer handed records on with,
/// by pod name and inode: what a document's id must be computed from.
pub type Keys = Arc<Mutex<HashMap<(String, u64), FileKey>>>;

/// One running tailer with its buffer, committer, and a sink thread acknowledging batches.
pub struct Running {
    shutdown: Arc<AtomicBool>,
    tailer: JoinHandle<()>,
    committer: JoinHandle<()>,
    sink: JoinHandle<()>,
    /// Tells the sink to stop acknowledging and drop what it holds (a crash).
    crashed: Arc<AtomicBool>,
    checkpoints: Arc<Checkpoints>,
    buffer: Arc<Buffer>,
}

/// The tailer's output as the agent wires it, noting each file's key on the way.
struct KeyWitness {
    output: BufferOutput,
    keys: Keys,
    /// Keys already noted by this run: the shared map is locked once per file, not per record.
    noted: HashSet<FileKey>,
}

impl Output for KeyWitness {
    fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        if self.noted.insert(*key)
            && let Some(pod) = pod_name(&meta.fields)
        {
            self.keys.lock().unwrap().insert((pod, key.ino), *key);
        }
        self.output.emit(key, rec, meta, before);
    }

    fn advance(&mut self, key: FileKey, offset: u64) {
        self.output.advance(key, offset);
    }

    fn block_done(&mut self, key: FileKey, offset: u64) {
        self.output.block_done(key, offset);
    }

    fn flush(&mut self) {
        self.output.flush();
    }

    fn reconfigure(&mut self, cfg: &logferry::config::Config) {
        self.output.reconfigure(cfg);
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
    let committer = {
        let (buffer, checkpoints) = (buffer.clone(), checkpoints.clone());
        std::thread::spawn(move || buffer.commit_loop(|durable| checkpoints.advance(durable)))
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
        Appender::new(buffer.clone()),
        metrics.clone(),
        give_up,
        cfg,
    );
    let out = KeyWitness {
        output: out,
        keys,
        noted: HashSet::new(),
    };
    let ctx = tail::Context {
        metrics,
        shutdown: shutdown.clone(),
        state: state.clone(),
        kube: None,
        reloads: None,
    };
    let tailer = Tailer::new(cfg, checkpoints.clone(), Box::new(out), ctx);
    let tailer = std::thread::spawn(move || tailer.run());
    // As on a node: the agent has looked at its files before anything else happens to them.
    while !state.ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let crashed = Arc::new(AtomicBool::new(false));
    let sink = sink(crashed.clone(), checkpoints.clone(), buffer.clone(), index);
    Running {
        shutdown,
        tailer,
        committer,
        sink,
        crashed,
        checkpoints,
        buffer,
    }
}

/// Takes batches from the buffer into `index` and acknowledges them, saving the checkpoints
/// and the buffer's cursor after each, until the buffer closes. Once `crashed`, it takes and
/// acknowledges nothing more.
fn sink(
    crashed: Arc<AtomicBool>,
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
            if crashed.load(Ordering::Relaxed) {
                continue;
            }
            let mut idx = index.lock().unwrap();
            let body = String::from_utf8(batch.body().unwrap()).unwrap();
            let mut lines = body.lines();
            while let (Some(action), Some(doc)) = (lines.next(), lines.next()) {
                let a: Value = serde_json::from_str(action).unwrap();
                let id = a["create"]["_id"].as_str().unwrap().to_owned();
                let d: Value = serde_json::from_str(doc).unwrap();
                idx.docs.entry(id).or_insert(d);
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

    /// Stops without saving anything more and without acknowledging what the sink holds:
    /// those records must be sent again.
    pub fn crash(self) {
        self.crashed.store(true, Ordering::Relaxed);
        self.halt();
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
