//! TLS on a forward listener (`[input.forward.tls]`): the handshake each connection makes
//! before anything else, and the one read a connection needs of its stream beyond
//! `AsyncRead` (what is ready now, without waiting), for a plain and a TLS stream alike.
//!
//! The handshake runs in the connection's own task, after it has taken its `max_connections`
//! slot: a client that never finishes it holds one slot for at most `stall_timeout`, and the
//! accept loop never waits for it. A failed or stalled handshake (a plaintext forwarder, a
//! client certificate from another CA, a port scanner) is refused as `tls`; a peer that closes
//! without a byte (a TCP health check) is not.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A connection's byte stream: TCP, or TLS over it.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Reads what has arrived, without waiting: `WouldBlock` when nothing has. A connection
    /// reads a burst this way before it parses, so a big frame is parsed once, not per read.
    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize>;
}

impl Transport for TcpStream {
    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }
}

impl Transport for TlsStream<TcpStream> {
    fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        // One poll of a read: records already decrypted, or on the socket now, are taken;
        // `Pending` means nothing is. The read is cancel-safe, and the next real read
        // registers its own waker, so the no-op one left with the socket wakes nobody in vain.
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(self.read_buf(buf)).poll(&mut cx) {
            Poll::Ready(read) => closed_without_notify_is_closed(read),
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// A read's result, with a TLS peer that closed without `close_notify` taken as closed (a
/// read of 0), as most forwarders close. It is safe here: frames carry their own lengths, so
/// a frame cut short is seen as one and never acked.
pub(super) fn closed_without_notify_is_closed(
    read: std::io::Result<usize>,
) -> std::io::Result<usize> {
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        read => read,
    }
}

/// Runs the server side of the TLS handshake on `stream`, for at most `within`. `None` when the
/// peer closed without sending a byte: a TCP health check (a kubelet probe, a load balancer),
/// which is no refused client. The error says why it failed, for the refusal's log line.
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    within: Duration,
) -> Result<Option<TlsStream<TcpStream>>, String> {
    let handshake = async {
        match stream.peek(&mut [0u8; 1]).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("TLS handshake failed: {e}")),
        }
        match acceptor.accept(stream).await {
            Ok(tls) => Ok(Some(tls)),
            Err(e) => Err(format!("TLS handshake failed: {e}")),
        }
    };
    tokio::time::timeout(within, handshake)
        .await
        .unwrap_or_else(|_| Err("no TLS handshake within stall_timeout".into()))
}
