//! Where the tailer hands what it reads: an [`Output`] it is given. The tailer decodes lines
//! into records and knows which pod a file belongs to; what becomes of a record next (encoding,
//! buffering) is the output's business, so this stage knows neither the encoder nor the buffer.

use super::TailerState;
use crate::kube::cache::Cache;
use crate::metrics::Metrics;
use crate::vocab::FileMeta;
use crate::vocab::{FileKey, Record};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The tailer's way out. Offsets are the file's *safe* offsets: the checkpoint may move there
/// once everything handed on before is durable, never past a line still held (half a record).
pub trait Output: Send {
    /// One record of file `key`, with its pod's metadata. `before` is the file's safe offset
    /// before this record.
    fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64);
    /// Once what was handed on so far is durable, `key`'s checkpoint may be `offset`.
    fn advance(&mut self, key: FileKey, offset: u64);
    /// A block of `key` was read and handled up to `offset` (an [`Output::advance`]): where a
    /// long pass may hand its records on.
    fn block_done(&mut self, key: FileKey, offset: u64);
    /// The end of a read pass, and of the tailer: hand on whatever is held. May block while
    /// there is no room (the backpressure that pauses reading).
    fn flush(&mut self);
    /// A config reload, between two read passes: what is held was made under the old config
    /// and stays as it is; what comes next follows `cfg`, which has been validated.
    fn reconfigure(&mut self, cfg: &crate::config::Config);
}

/// What the tailer works with besides its files.
pub struct Context {
    pub metrics: Arc<Metrics>,
    /// Set once at shutdown: stop reading, hand on what is held.
    pub shutdown: Arc<AtomicBool>,
    /// What the endpoints read about the tailer.
    pub state: Arc<TailerState>,
    /// Pod metadata from the API server, when `[kubernetes]` is enabled.
    pub kube: Option<Arc<Cache>>,
    /// Configs accepted by a reload; `None` when the agent does not reload.
    pub reloads: Option<super::Reloads>,
}

/// The output with what reading needs alongside it, in one place the reading code borrows.
pub(super) struct Outlet {
    output: Box<dyn Output>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) state: Arc<TailerState>,
    pub(super) kube: Option<Arc<Cache>>,
    /// How long lines of a pod the cache does not know wait for it.
    pub(super) wait_for_metadata: Duration,
    /// A physical line longer than this is cut before decoding
    /// ([`crate::config::Input::max_physical_line`]).
    pub(super) max_physical_line: usize,
    /// `[throttle]`, when configured.
    pub(super) throttle: Option<super::throttle::Throttle>,
    /// Handed to the tailer and discovery when they are built.
    pub(super) reloads: Option<super::Reloads>,
}

impl Outlet {
    pub(super) fn new(output: Box<dyn Output>, ctx: Context, cfg: &crate::config::Config) -> Self {
        Outlet {
            output,
            throttle: super::throttle::Throttle::new(&cfg.throttle, ctx.metrics.clone()),
            metrics: ctx.metrics,
            shutdown: ctx.shutdown,
            state: ctx.state,
            kube: ctx.kube,
            reloads: ctx.reloads,
            wait_for_metadata: cfg.kubernetes.wait_for_metadata.0,
            max_physical_line: cfg.input.max_physical_line(),
        }
    }

    /// The throttle bucket a file of `pod` draws from, if it is throttled.
    pub(super) fn throttle_key(&self, pod: Option<&crate::kube::PodRef>) -> Option<Arc<str>> {
        self.throttle.as_ref()?.key_for(pod)
    }

    /// Drop mode: whether a line of a file drawing from `key` may go on (counted if not).
    pub(super) fn admit(&mut self, key: Option<&Arc<str>>) -> bool {
        match (&mut self.throttle, key) {
            (Some(th), Some(key)) if th.action == crate::config::ThrottleAction::Drop => {
                th.admit(key, std::time::Instant::now())
            }
            _ => true,
        }
    }

    pub(super) fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        self.output.emit(key, rec, meta, before);
    }

    pub(super) fn advance(&mut self, key: FileKey, offset: u64) {
        self.output.advance(key, offset);
    }

    pub(super) fn block_done(&mut self, key: FileKey, offset: u64) {
        self.output.block_done(key, offset);
    }

    pub(super) fn reconfigure(&mut self, cfg: &crate::config::Config) {
        self.output.reconfigure(cfg);
    }

    pub(super) fn seal(&mut self) {
        self.output.flush();
    }
}
