//! One forward connection: read a frame, hand its entries on, ack once durable, read the next.

use super::msgpack::{self, Error as MsgError};
use super::tls::{self, Transport};
use super::{Ids, Shared, entry, handshake, protocol};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read, and of the budget before it.
const READ_SIZE: usize = 64 * 1024;
const KIB: usize = 1024;
/// A connection closed because the agent is stopping, not for anything its peer did.
const STOPPING: &str = "stopping";
/// Not a refusal either: the peer left before its ack (it resends the chunk, a 409).
const LEFT: &str = "left";

/// Why a connection was closed early.
struct Refusal {
    reason: &'static str,
    why: String,
}

fn refused(e: protocol::Refused) -> Refusal {
    let reason = match e {
        protocol::Refused::TooLarge(_) => "too_large",
        _ => "invalid",
    };
    refusal(reason, e.to_string())
}

fn refusal(reason: &'static str, why: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        why: why.into(),
    }
}

/// Serves `stream` until the peer closes it, the agent stops, or the peer is refused; on a TLS
/// listener, once the TLS handshake is done.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let served = match &shared.tls {
        None => serve_on(stream, shared).await,
        Some(acceptor) => match tls::accept(acceptor, stream, shared.cfg.stall_timeout.0).await {
            Ok(Some(stream)) => serve_on(stream, shared).await,
            Ok(None) => Ok(()),
            Err(why) => Err(refusal("tls", why)),
        },
    };
    match served {
        Ok(()) => {}
        // Not the peer's doing: its frame gets no ack and comes again to the next start.
        Err(r) if r.reason == STOPPING || r.reason == LEFT => {
            tracing::debug!(%peer, why = r.why, "forward: closed")
        }
        Err(r) => shared.refused(peer, r.reason, &r.why),
    }
}

/// The secure-forward handshake when there is a shared key, then frames.
async fn serve_on<S: Transport>(stream: S, shared: &Shared) -> Result<(), Refusal> {
    let n = shared.accepted.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection {
        stream,
        buf: Vec::new(),
        held: Held { shared, kib: 0 },
        seed: shared.seed ^ u128::from(n),
        entries: 0,
    };
    if let Some(key) = &shared.key {
        conn.handshake(shared, key).await?;
    }
    conn.run(shared).await
}

struct Connection<'s, S> {
    stream: S,
    /// Bytes read and not yet taken as frames.
    buf: Vec<u8>,
    held: Held<'s>,
    seed: u128,
    /// Entries taken on this connection so far: the ids of frames without a chunk id.
    entries: u64,
}

/// Budget this connection holds, given back when it goes.
struct Held<'s> {
    shared: &'s Shared,
    kib: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.shared.budget.add_permits(self.kib);
    }
}

impl Held<'_> {
    /// Holds exactly enough for `bytes`, waiting (at most `stall_timeout`) for what it lacks.
    async fn hold(&mut self, bytes: usize) -> Result<(), Refusal> {
        let want = bytes.div_ceil(KIB);
        if want <= self.kib {
            self.shared.budget.add_permits(self.kib - want);
            self.kib = want;
            return Ok(());
        }
        let more = u32::try_from(want - self.kib).unwrap_or(u32::MAX);
        let wait = self.shared.cfg.stall_timeout.0;
        match tokio::time::timeout(wait, self.shared.budget.acquire_many(more)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                self.kib += more as usize;
                Ok(())
            }
            _ => Err(refusal(
                "stalled",
                "no room in max_bytes_in_flight within stall_timeout",
            )),
        }
    }
}

impl<S: Transport> Connection<'_, S> {
    /// Reads until the socket has nothing more for now, then takes the whole frames read:
    /// a frame is parsed once per burst, not once per read (a 16 MiB frame in 64 KiB reads
    /// would otherwise be walked 256 times).
    async fn run(&mut self, shared: &Shared) -> Result<(), Refusal> {
        let limit = shared.cfg.chunk_size_limit.as_usize();
        let mut drained = true;
        loop {
            if drained {
                self.take_frames(shared, limit).await?;
            }
            if self.buf.len() >= limit {
                return Err(refusal(
                    "too_large",
                    format!("a frame is larger than chunk_size_limit ({limit} bytes)"),
                ));
            }
            // Room for one more read in the middle of a frame; an idle connection holds
            // nothing until bytes come (at most one read's worth beyond the budget).
            if !self.buf.is_empty() {
                self.held.hold(self.buf.len() + READ_SIZE).await?;
            }
            self.buf.reserve(READ_SIZE);
            let n = if drained {
                self.wait_for_bytes(shared).await?
            } else {
                match self.stream.try_read_buf(&mut self.buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        drained = true;
                        continue;
                    }
                    Err(e) => return Err(refusal("invalid", format!("read failed: {e}"))),
                }
            };
            self.held.hold(self.buf.len()).await?;
            if n == 0 {
                // The peer closed: what it sent whole is taken (a client may send and close);
                // a frame it left half-sent was never acked, so it is sent again.
                return self.take_frames(shared, limit).await;
            }
            drained = false;
        }
    }

    /// HELO, a PING with the right digest, PONG; anything else closes the connection before
    /// a frame is read.
    async fn handshake(&mut self, shared: &Shared, key: &handshake::Key) -> Result<(), Refusal> {
        let nonce =
            handshake::nonce().map_err(|e| refusal(STOPPING, format!("no random nonce: {e}")))?;
        let io = |e: std::io::Error| refusal("invalid", format!("handshake: {e}"));
        self.send(&handshake::helo(&nonce)).await.map_err(io)?;
        let used = loop {
            match msgpack::value_len(&self.buf) {
                Ok(used) => break used,
                Err(MsgError::Invalid(why)) => return Err(refusal("unauthorized", why)),
                Err(MsgError::Incomplete) if self.buf.len() >= READ_SIZE => {
                    return Err(refusal("unauthorized", "a PING larger than 64 KiB"));
                }
                Err(MsgError::Incomplete) => {}
            }
            self.buf.reserve(READ_SIZE);
            let read = self.stream.read_buf(&mut self.buf);
            match tokio::time::timeout(shared.cfg.stall_timeout.0, read).await {
                Ok(Ok(0)) => return Err(refusal("unauthorized", "closed before its PING")),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(io(e)),
                Err(_) => return Err(refusal("unauthorized", "no PING within stall_timeout")),
            }
        };
        let (ping, _) =
            msgpack::read(&self.buf[..used]).map_err(|_| refusal("unauthorized", "not a PING"))?;
        let (pong, ok) = handshake::pong(&ping, &nonce, key);
        self.send(&pong).await.map_err(io)?;
        self.buf.drain(..used);
        if ok {
            Ok(())
        } else {
            Err(refusal(
                "unauthorized",
                "the PING's shared_key digest is wrong",
            ))
        }
    }

    /// Waits for the next bytes; in the middle of a frame, at most `stall_timeout`.
    async fn wait_for_bytes(&mut self, shared: &Shared) -> Result<usize, Refusal> {
        let mid_frame = !self.buf.is_empty();
        let read = self.stream.read_buf(&mut self.buf);
        let n = if mid_frame {
            tokio::time::timeout(shared.cfg.stall_timeout.0, read)
                .await
                .map_err(|_| {
                    refusal(
                        "stalled",
                        "stopped in the middle of a frame for stall_timeout",
                    )
                })?
        } else {
            read.await
        };
        tls::closed_without_notify_is_closed(n)
            .map_err(|e| refusal("invalid", format!("read failed: {e}")))
    }

    /// Takes every whole frame at the start of the buffer.
    async fn take_frames(&mut self, shared: &Shared, limit: usize) -> Result<(), Refusal> {
        let mut start = 0;
        while start < self.buf.len() {
            let used = match msgpack::value_len(&self.buf[start..]) {
                Ok(used) => used,
                Err(MsgError::Incomplete) => break,
                Err(MsgError::Invalid(why)) => return Err(refusal("invalid", why)),
            };
            let mut unpacked = Vec::new();
            let bytes = &self.buf[start..start + used];
            let frame = protocol::frame(bytes, &mut unpacked, limit).map_err(refused)?;
            let chunk = frame.chunk.map(<[u8]>::to_vec);
            let ids = match &chunk {
                Some(c) => Ids::Chunk(c),
                None => Ids::Connection {
                    seed: self.seed,
                    entry: self.entries,
                },
            };
            let entries = entry::entries(frame, ids, &shared.cfg.tag_key).map_err(refused)?;
            start += used;
            self.entries += entries.len() as u64;
            self.hand_on(shared, entries, chunk).await?;
        }
        self.buf.drain(..start);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_SIZE {
            // A big frame's memory is not kept by an idle connection (the budget was given
            // back with its bytes; this is the allocation).
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Hands `entries` to the buffer; with a chunk id, acks once they are durable.
    async fn hand_on(
        &mut self,
        shared: &Shared,
        entries: Vec<entry::Entry>,
        chunk: Option<Vec<u8>>,
    ) -> Result<(), Refusal> {
        let count = entries.len() as u64;
        let out = shared.out.clone();
        let durable = tokio::task::spawn_blocking(move || out.deliver(entries, Vec::new()))
            .await
            .ok()
            .and_then(Result::ok);
        // Stopping: no ack, so the forwarder keeps the chunk and sends it to the next start.
        let Some(durable) = durable else {
            return Err(refusal(STOPPING, "the agent is stopping"));
        };
        shared.metrics.forward_entries.inc_by(count);
        let Some(chunk) = chunk else {
            return Ok(());
        };
        if durable.await.is_err() {
            return Err(refusal(STOPPING, "the entries did not become durable"));
        }
        self.send(&protocol::ack(&chunk))
            .await
            .map_err(|e| refusal(LEFT, format!("cannot send the ack: {e}")))
    }

    /// Writes `bytes` and flushes them: TLS holds written bytes in its records until flushed,
    /// and an ack or a PONG the peer waits for must not sit there.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}
