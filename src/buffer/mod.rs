//! The queue between reading and shipping.
//!
//! Owns [`Chunk`]s — bulk request bodies already encoded by the tailer, each with the
//! checkpoint advances that become true once every item in it is acknowledged — and the bound on
//! how many may wait. When the queue is full the tailer blocks in [`Queue::push`], which is how
//! a slow or unreachable cluster pauses reading instead of growing memory.
//!
//! The queue lives in memory: a crash loses what is queued but not acknowledged, and since
//! checkpoints only move on acknowledgement, a restart reads those lines again and their
//! deterministic ids turn the replay into 409s rather than duplicates. The durable disk buffer
//! replaces this type behind the same two calls.

use crate::tail::FileKey;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One bulk request body and what its acknowledgement makes true.
#[derive(Debug)]
pub struct Chunk {
    /// Position in the queue: acknowledgements are applied to checkpoints in this order.
    pub seq: u64,
    /// NDJSON: an action line and a document line per item.
    pub body: Vec<u8>,
    /// Where each item starts in `body`; it ends where the next starts.
    pub items: Vec<u32>,
    /// File offsets a checkpoint may move to once this chunk and all before it are acknowledged.
    pub advances: Vec<(FileKey, u64)>,
    /// When the oldest record in the chunk was read, for latency and flush timing.
    pub created: Instant,
}

impl Chunk {
    pub fn new() -> Chunk {
        Chunk {
            seq: 0,
            body: Vec::new(),
            items: Vec::new(),
            advances: Vec::new(),
            created: Instant::now(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.advances.is_empty()
    }

    /// The bytes of item `i`: its action line and its document line.
    pub fn item(&self, i: usize) -> &[u8] {
        let start = self.items[i] as usize;
        let end = self
            .items
            .get(i + 1)
            .map_or(self.body.len(), |&e| e as usize);
        &self.body[start..end]
    }

    /// Records that once this chunk is acknowledged, `key`'s checkpoint may be `offset`.
    pub fn advance(&mut self, key: FileKey, offset: u64) {
        match self.advances.iter_mut().find(|(k, _)| *k == key) {
            Some((_, o)) => *o = (*o).max(offset),
            None => self.advances.push((key, offset)),
        }
    }

    fn absorb(&mut self, other: Chunk) {
        let base = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        self.items.extend(other.items.iter().map(|s| s + base));
        self.body.extend_from_slice(&other.body);
        for (k, o) in other.advances {
            self.advance(k, o);
        }
    }
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk::new()
    }
}

struct State {
    chunks: VecDeque<Chunk>,
    next_seq: u64,
    closed: bool,
}

/// A bounded FIFO of chunks: the tailer pushes from its thread, shippers pop from tasks.
pub struct Queue {
    state: Mutex<State>,
    /// Signalled when a chunk leaves, for a tailer blocked on a full queue.
    space: Condvar,
    /// Signalled when a chunk arrives or the queue closes, for idle shippers.
    ready: tokio::sync::Notify,
    max_chunks: usize,
    chunk_limit: usize,
}

impl Queue {
    pub fn new(max_chunks: usize, chunk_limit: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                next_seq: 0,
                closed: false,
            }),
            space: Condvar::new(),
            ready: tokio::sync::Notify::new(),
            max_chunks,
            chunk_limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the data is still a
        // consistent queue, so carrying on is right.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The largest body a chunk may have.
    pub fn chunk_limit(&self) -> usize {
        self.chunk_limit
    }

    /// Hands a chunk to the shippers. A chunk that fits into the last waiting one is merged
    /// into it, so batches grow while the shippers are busy and stay small while they are idle.
    /// Blocks while the queue is full, unless `give_up` says to stop waiting (shutdown); then the
    /// chunk is returned.
    pub fn push(&self, chunk: Chunk, give_up: impl Fn() -> bool) -> Result<(), Chunk> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut st = self.lock();
        loop {
            if let Some(last) = st.chunks.back_mut()
                && last.body.len() + chunk.body.len() <= self.chunk_limit
            {
                last.absorb(chunk);
                drop(st);
                self.ready.notify_one();
                return Ok(());
            }
            if st.chunks.len() < self.max_chunks {
                let mut chunk = chunk;
                chunk.seq = st.next_seq;
                st.next_seq += 1;
                st.chunks.push_back(chunk);
                drop(st);
                self.ready.notify_one();
                return Ok(());
            }
            if give_up() {
                return Err(chunk);
            }
            st = self
                .space
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes the oldest chunk, waiting for one; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<Chunk> {
        loop {
            let notified = self.ready.notified();
            {
                let mut st = self.lock();
                if let Some(c) = st.chunks.pop_front() {
                    drop(st);
                    self.space.notify_all();
                    // Another shipper may be waiting too and there may be more.
                    self.ready.notify_one();
                    return Some(c);
                }
                if st.closed {
                    drop(st);
                    self.ready.notify_one();
                    return None;
                }
            }
            notified.await;
        }
    }

    /// No more pushes will come; shippers drain what is left and stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }

    /// Chunks waiting and their body bytes, for metrics.
    pub fn depth(&self) -> (usize, usize) {
        let st = self.lock();
        (
            st.chunks.len(),
            st.chunks.iter().map(|c| c.body.len()).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino: n,
            fingerprint: 7,
        }
    }

    fn chunk(body: &[u8], adv: u64) -> Chunk {
        let mut c = Chunk::new();
        c.items.push(0);
        c.body.extend_from_slice(body);
        c.advance(key(1), adv);
        c
    }

    #[tokio::test]
    async fn small_chunks_merge_while_waiting_and_keep_item_bounds() {
        let q = Queue::new(2, 10);
        q.push(chunk(b"aaa", 3), || false).unwrap();
        q.push(chunk(b"bbbb", 7), || false).unwrap();
        q.push(chunk(b"cccccc", 13), || false).unwrap();
        let first = q.pop().await.unwrap();
        assert_eq!((first.seq, first.items.len()), (0, 2));
        assert_eq!(first.item(1), b"bbbb");
        assert_eq!(first.advances, vec![(key(1), 7)]);
        let second = q.pop().await.unwrap();
        assert_eq!((second.seq, second.item(0)), (1, &b"cccccc"[..]));
    }

    #[tokio::test]
    async fn a_full_queue_blocks_the_pusher_until_a_chunk_leaves() {
        let q = std::sync::Arc::new(Queue::new(1, 4));
        q.push(chunk(b"1111", 1), || false).unwrap();
        // Full: a push that may give up returns its chunk.
        assert!(q.push(chunk(b"2222", 2), || true).is_err());
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || q2.push(chunk(b"3333", 3), || false).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !pusher.is_finished(),
            "push must wait while the queue is full"
        );
        assert_eq!(q.pop().await.unwrap().seq, 0);
        assert!(pusher.join().unwrap());
        assert_eq!(q.pop().await.unwrap().seq, 1);
        q.close();
        assert!(q.pop().await.is_none());
    }
}
