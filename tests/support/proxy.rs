//! A fault-injecting HTTP proxy between the agent and osmem-server: it can be down (connections
//! reset), answer every request with a status (503 with Retry-After, 401, …), refuse bodies over
//! a size with 413, or fail a random share of the items in each bulk request with 429 (or
//! another status and error type) while passing the rest on — the faults a real cluster
//! produces, on demand. It can also garble bulk answers the way a broken proxy or load balancer
//! does ([`BulkAnswer`]): a canned body, too few or too many items, an item without a status,
//! a body cut short.

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the proxy does to the next requests. Change it at any time.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close every connection without answering.
    pub down: bool,
    /// Answer every request with this status (and a `Retry-After` of 1 s for 429/503).
    pub status: Option<u16>,
    /// Answer 413 to bodies larger than this (uncompressed).
    pub max_body: Option<usize>,
    /// Fail this share of the items of each bulk request with a per-item 429.
    pub reject_items: f64,
    /// The per-item status and error type of `reject_items` instead of 429
    /// `es_rejected_execution_exception`.
    pub reject_with: Option<(u16, String)>,
    /// Headers sent with a `status` answer, instead of the default `Retry-After: 1`.
    pub headers: Vec<(String, String)>,
    /// Answer bulk requests wrongly, this way.
    pub bulk_answer: Option<BulkAnswer>,
    /// Answer requests whose path starts with one of these with its status (a cluster whose
    /// role lets the agent write documents but not install templates answers 403 there).
    pub refuse_paths: Vec<(String, u16)>,
    /// Hold requests whose path starts with one of these this long before passing them on (a
    /// slow cluster for some calls).
    pub delay_paths: Vec<(String, std::time::Duration)>,
    /// Drop a request held by `delay_paths` instead of passing it on when its sender has gone
    /// away meanwhile (a killed agent), as nginx does by default when a client aborts: what
    /// was in flight at a crash never reaches the cluster.
    pub drop_abandoned: bool,
}

/// How a bulk answer is garbled.
#[derive(Debug, Clone)]
pub enum BulkAnswer {
    /// This status and body, verbatim; nothing is passed on.
    Verbatim(u16, String),
    /// Everything passed on; the answer keeps only its first item.
    Fewer,
    /// Only the first half passed on; the answer claims one more item than was sent, all
    /// created: an agent that believes it loses the second half.
    More,
    /// Everything passed on; the first item of the answer loses its status.
    WithoutStatus,
    /// Everything passed on; the answer announces its full length, sends half, and closes.
    CutShort,
}

/// What went through.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub requests: u64,
    /// Items received in bulk requests, counting every retry.
    pub items: u64,
    /// Items answered with a per-item 429.
    pub rejected_items: u64,
    pub too_large: u64,
    /// Bulk answers garbled as `bulk_answer` says.
    pub garbled: u64,
    /// Requests received whole and not yet answered (passed on, held by `delay_paths`): a
    /// request an agent sent before it was killed may still reach the cluster until this is 0.
    pub in_flight: u64,
    /// Every bulk request as it reached the proxy: when, and its body's bytes (uncompressed).
    pub bulks: Vec<(std::time::Instant, usize)>,
}

/// Counts one request in [`Seen::in_flight`] while it lives.
struct Answering<'a>(&'a Mutex<Seen>);

impl<'a> Answering<'a> {
    fn new(seen: &'a Mutex<Seen>) -> Answering<'a> {
        seen.lock().unwrap().in_flight += 1;
        Answering(seen)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.0.lock() {
            seen.in_flight -= 1;
        }
    }
}

pub struct FaultProxy {
    pub url: String,
    pub faults: Arc<Mutex<Faults>>,
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, st, up) = (
            faults.clone(),
            seen.clone(),
            stop.clone(),
            upstream.to_owned(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (f, s, up) = (f.clone(), s.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &f, &s, &up);
                });
            }
        });
        FaultProxy {
            url,
            faults,
            seen,
            stop,
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().unwrap());
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn handle(
    conn: TcpStream,
    faults: &Mutex<Faults>,
    seen: &Mutex<Seen>,
    upstream: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        // One request: head, then a Content-Length body.
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let method = request_line.split(' ').next().unwrap_or("GET").to_owned();
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
        let (mut length, mut gzip) = (0usize, false);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if h.starts_with("content-encoding:") && h.contains("gzip") {
                gzip = true;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let f = faults.lock().unwrap().clone();
        seen.lock().unwrap().requests += 1;
        let _answering = Answering::new(seen);
        if f.down {
            // Reset, as a dead node or a crashed proxy does.
            return Ok(());
        }
        if gzip {
            let mut plain = Vec::new();
            GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
            body = plain;
        }
        if path.starts_with("/_bulk") {
            let at = std::time::Instant::now();
            seen.lock().unwrap().bulks.push((at, body.len()));
        }
        if let Some((_, delay)) = f
            .delay_paths
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        {
            std::thread::sleep(*delay);
            if f.drop_abandoned && sender_gone(&conn) {
                return Ok(());
            }
        }
        let refused = f
            .refuse_paths
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, code)| *code);
        let (status, answer) = if let Some(code) = refused.filter(|c| *c == 403) {
            (
                code,
                json!({"error": {"type": "security_exception", "reason": format!("action [{method} {path}] is unauthorized for user [logferry]")}, "status": code})
                    .to_string(),
            )
        } else if let Some(code) = f.status.or(refused) {
            (
                code,
                json!({"error": {"type": "injected", "reason": "fault proxy"}, "status": code})
                    .to_string(),
            )
        } else if f.max_body.is_some_and(|m| body.len() > m) {
            seen.lock().unwrap().too_large += 1;
            (413, String::new())
        } else if let (true, Some(garble)) = (path.starts_with("/_bulk"), &f.bulk_answer) {
            seen.lock().unwrap().garbled += 1;
            let (status, answer) = garbled(garble, &body, seen, upstream);
            if matches!(garble, BulkAnswer::CutShort) {
                write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    answer.len(),
                )?;
                conn.write_all(&answer.as_bytes()[..answer.len() / 2])?;
                conn.flush()?;
                return Ok(());
            }
            (status, answer)
        } else if path.starts_with("/_bulk") {
            bulk(&body, &f, seen, upstream)
        } else {
            logferry_harness::http(
                &method,
                &format!("{upstream}{path}"),
                "application/json",
                &body,
            )
            .unwrap_or((502, String::new()))
        };
        let retry_after = if f.status.is_some() && !f.headers.is_empty() {
            f.headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect()
        } else if matches!(status, 429 | 503) {
            "Retry-After: 1\r\n".to_owned()
        } else {
            String::new()
        };
        write!(
            conn,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{retry_after}Content-Length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
        conn.flush()?;
    }
}

/// Whether the other end of `conn` has closed it (it reads as at its end) or reset it.
fn sender_gone(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = conn.peek(&mut [0u8; 1]);
    let _ = conn.set_nonblocking(false);
    match peeked {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Passes (some of) a bulk request on and garbles the answer as `how` says.
fn garbled(how: &BulkAnswer, body: &[u8], seen: &Mutex<Seen>, upstream: &str) -> (u16, String) {
    let text = String::from_utf8_lossy(body);
    let pairs = pairs(&text);
    let sent = pairs.len();
    let forward = match how {
        BulkAnswer::Verbatim(status, answer) => return (*status, answer.clone()),
        BulkAnswer::More => &pairs[..sent / 2],
        _ => &pairs[..],
    };
    seen.lock().unwrap().items += forward.len() as u64;
    let mut items = match upstream_bulk(forward, upstream) {
        Ok(items) => items,
        Err(answer) => return answer,
    };
    match how {
        BulkAnswer::Fewer => items.truncate(1),
        BulkAnswer::More => items.resize(sent + 1, json!({"create": {"status": 201}})),
        BulkAnswer::WithoutStatus => {
            if let Some(first) = items.first_mut() {
                first["create"].as_object_mut().map(|o| o.remove("status"));
            }
        }
        BulkAnswer::Verbatim(..) | BulkAnswer::CutShort => {}
    }
    (
        200,
        json!({"took": 1, "errors": false, "items": items}).to_string(),
    )
}

/// The (action, document) pairs of an NDJSON bulk body.
fn pairs(text: &str) -> Vec<(&str, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or("")))
        .collect()
}

/// Sends these pairs to the upstream's `_bulk`: its items, or the answer to pass back as is.
fn upstream_bulk(pairs: &[(&str, &str)], upstream: &str) -> Result<Vec<Value>, (u16, String)> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut forward = String::new();
    for (action, doc) in pairs {
        forward.push_str(action);
        forward.push('\n');
        forward.push_str(doc);
        forward.push('\n');
    }
    match logferry_harness::http(
        "POST",
        &format!("{upstream}/_bulk"),
        "application/x-ndjson",
        forward.as_bytes(),
    ) {
        Ok((200, answer)) => {
            let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
            Ok(v["items"].as_array().cloned().unwrap_or_default())
        }
        Ok(answer) => Err(answer),
        Err(_) => Err((502, String::new())),
    }
}

/// Passes a bulk request on, failing `f.reject_items` of its items with a per-item 429 (or
/// `f.reject_with`).
fn bulk(body: &[u8], f: &Faults, seen: &Mutex<Seen>, upstream: &str) -> (u16, String) {
    let reject = f.reject_items;
    let (reject_status, reject_type) = f
        .reject_with
        .clone()
        .unwrap_or((429, "es_rejected_execution_exception".into()));
    let text = String::from_utf8_lossy(body);
    let pairs = pairs(&text);
    let mut rng = xorshift(pairs.len() as u64 ^ 0x9e37_79b9);
    let rejected: Vec<bool> = pairs
        .iter()
        .map(|_| (rng() % 1000) as f64 / 1000.0 < reject)
        .collect();
    {
        let mut s = seen.lock().unwrap();
        s.items += pairs.len() as u64;
        s.rejected_items += rejected.iter().filter(|r| **r).count() as u64;
    }
    let forward: Vec<(&str, &str)> = pairs
        .iter()
        .zip(&rejected)
        .filter(|(_, r)| !**r)
        .map(|(p, _)| *p)
        .collect();
    let mut upstream_items = match upstream_bulk(&forward, upstream) {
        Ok(items) => items.into_iter(),
        Err(answer) => return answer,
    };
    let items: Vec<Value> = rejected
        .iter()
        .map(|r| {
            if *r {
                json!({"create": {"status": reject_status, "error": {"type": reject_type, "reason": "injected"}}})
            } else {
                upstream_items.next().unwrap_or(Value::Null)
            }
        })
        .collect();
    (
        200,
        json!({"took": 1, "errors": true, "items": items}).to_string(),
    )
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let mut x = RandomState::new().hash_one(seed) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
