//! A TCP proxy that can be cut: between the agent and a Kafka broker (which must advertise the
//! proxy's address, or clients would go around it). While down, open connections are closed
//! and new ones are accepted and closed at once, as a broker behind a failed network looks.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct TcpProxy {
    pub port: u16,
    down: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Listens on a free loopback port, passing connections on to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        TcpProxy::serve(listener, upstream)
    }

    /// Listens on `listener`, passing connections on to `upstream`.
    pub fn serve(listener: TcpListener, upstream: &str) -> TcpProxy {
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let (d, up) = (down.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&up) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let d = d.clone();
                    std::thread::spawn(move || pump(from, to, &d));
                }
            }
        });
        TcpProxy { port, down }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones (`true`), or lets them through again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends or the proxy goes down.
fn pump(mut from: TcpStream, mut to: TcpStream, down: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if down.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            // Read while the proxy went down: dropped, as a cut network would. A read blocks
            // for up to 50 ms, long enough for a produce or a fetch answer made after the cut.
            Ok(_) if down.load(Ordering::SeqCst) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
