//! A fast `_bulk` endpoint on loopback. It does the work a cluster's coordinating node does with
//! a request — gunzip, split the NDJSON, parse every action and every document in full — keeps
//! every `_id` it accepted (a second `create` of one gets the 409 Elasticsearch would give), and
//! answers with real per-item results. An item without an `_id` (Fluent Bit sends none) gets one
//! made up, as Elasticsearch does, so it is always new: a peer's resends show only as documents
//! beyond those written. It stores nothing else, so it is never the bottleneck.

use chrono::DateTime;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct State {
    /// Answer every request with 503 (a cluster outage).
    pub down: AtomicBool,
    /// Record each document's age (now − its `@timestamp`) when acknowledged.
    pub record_latency: AtomicBool,
    pub accepted: AtomicU64,
    /// Accepted items that came without an `_id` (counted in `accepted` too).
    pub without_id: AtomicU64,
    pub duplicates: AtomicU64,
    pub malformed: AtomicU64,
    pub requests: AtomicU64,
    pub refused_requests: AtomicU64,
    /// Accepted documents the agent joined from several lines (`logferry.multiline_lines`),
    /// the lines in them, those flagged `multiline_split`, and joined documents whose text (`log`)
    /// does not hold as many lines as they say.
    pub joined_documents: AtomicU64,
    pub joined_lines: AtomicU64,
    pub split_documents: AtomicU64,
    pub joined_miscounted: AtomicU64,
    ids: Mutex<HashSet<u128>>,
    pub first_ok: Mutex<Option<Instant>>,
    pub last_ack: Mutex<Option<Instant>>,
    pub latencies_us: Mutex<Vec<u64>>,
}

impl State {
    pub fn reset(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.record_latency.store(false, Ordering::SeqCst);
        for c in [
            &self.accepted,
            &self.without_id,
            &self.duplicates,
            &self.malformed,
            &self.requests,
            &self.refused_requests,
            &self.joined_documents,
            &self.joined_lines,
            &self.split_documents,
            &self.joined_miscounted,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        lock(&self.ids).clear();
        *lock(&self.first_ok) = None;
        *lock(&self.last_ack) = None;
        lock(&self.latencies_us).clear();
    }

    /// Documents accepted twice: those with an id accepted before, and, from a shipper that
    /// sends no ids (Fluent Bit), any beyond the `written` lines.
    pub fn surplus(&self, written: u64) -> u64 {
        let beyond = if self.without_id.load(Ordering::SeqCst) > 0 {
            self.accepted.load(Ordering::SeqCst).saturating_sub(written)
        } else {
            0
        };
        self.duplicates.load(Ordering::SeqCst) + beyond
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl Sink {
    pub fn start() -> anyhow::Result<Sink> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let state = Arc::new(State::default());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let st = state.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink {
            addr,
            state,
            _runtime: runtime,
        })
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bulk = req.uri().path().ends_with("/_bulk");
    // Elasticsearch's response filtering, for the form the agent uses: only status and error.
    let brief = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("filter_path=") && q.contains("items.*.status"));
    let body = req.into_body().collect().await?.to_bytes();
    if !bulk {
        return Ok(json(
            200,
            br#"{"version":{"number":"2.19.0","distribution":"opensearch"}}"#.to_vec(),
        ));
    }
    st.requests.fetch_add(1, Ordering::Relaxed);
    if st.down.load(Ordering::SeqCst) {
        st.refused_requests.fetch_add(1, Ordering::Relaxed);
        return Ok(json(
            503,
            br#"{"error":{"type":"cluster_block_exception","reason":"no master"},"status":503}"#
                .to_vec(),
        ));
    }
    let answer = tokio::task::block_in_place(|| bulk_response(&st, &body, gzip, brief));
    Ok(match answer {
        Ok(b) => json(200, b),
        Err(reason) => json(
            400,
            format!(r#"{{"error":{{"type":"parse_exception","reason":{reason:?}}},"status":400}}"#)
                .into_bytes(),
        ),
    })
}

fn json(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    create: Option<Meta<'a>>,
    #[serde(borrow)]
    index: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    _index: Cow<'a, str>,
    #[serde(borrow)]
    _id: Option<Cow<'a, str>>,
}

/// Deserializing into this checks the whole document (serde_json validates what it skips).
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp", borrow)]
    timestamp: Option<Cow<'a, str>>,
    /// A text line's text (a JSON line's keys are merged into the document instead).
    #[serde(borrow)]
    log: Option<Cow<'a, str>>,
    logferry: Option<Flags>,
}

/// What the agent says it did to a line; only the multiline part is counted here.
#[derive(Deserialize)]
struct Flags {
    #[serde(default)]
    multiline_lines: u32,
    #[serde(default)]
    multiline_split: bool,
}

/// How a document was joined, as its `logferry` object and its text tell.
#[derive(Clone, Copy, Default)]
struct Joined {
    /// `logferry.multiline_lines` (0 for a single line).
    lines: u32,
    split: bool,
    /// The text (`log`) does not hold `lines` lines.
    miscounted: bool,
}

impl Joined {
    fn of(doc: &Document) -> Joined {
        let Some(f) = &doc.logferry else {
            return Joined::default();
        };
        let held = doc.log.as_deref().map_or(0, |m| m.split('\n').count());
        Joined {
            lines: f.multiline_lines,
            split: f.multiline_split,
            miscounted: f.multiline_lines > 1 && held != f.multiline_lines as usize,
        }
    }
}

/// One item of a bulk request, as read: where it goes, its id, and whether its document parsed.
struct Item {
    index: String,
    /// Empty when the action named none.
    id: String,
    /// The id as a number, the form kept in [`State`]'s set of accepted ids; `None` without one.
    key: Option<u128>,
    ok: bool,
    joined: Joined,
}

/// The answer to one `_bulk` request: every item read, answered, and counted in `st`.
fn bulk_response(st: &State, body: &[u8], gzip: bool, brief: bool) -> Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    let body = if gzip {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .map_err(|e| format!("gzip: {e}"))?;
        &plain[..]
    } else {
        body
    };
    let record = st.record_latency.load(Ordering::Relaxed);
    let (items, ages) = read_items(body, record)?;
    let out = answer_items(st, &items, brief);
    if record {
        // Acknowledged now: the response is built.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        lock(&st.latencies_us).extend(ages.iter().map(|t| (now.saturating_sub(*t) / 1000) as u64));
    }
    Ok(out)
}

/// The items of an NDJSON bulk body, and (when `record`) each parsed document's `@timestamp`
/// in nanoseconds since the epoch.
fn read_items(body: &[u8], record: bool) -> Result<(Vec<Item>, Vec<u128>), String> {
    let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut items = Vec::new();
    let mut ages = Vec::new();
    while let Some(action) = lines.next() {
        let action: Action =
            serde_json::from_slice(action).map_err(|e| format!("action line: {e}"))?;
        let meta = action
            .create
            .or(action.index)
            .ok_or("action is neither create nor index")?;
        let doc = lines.next().ok_or("action without a document")?;
        let mut joined = Joined::default();
        let ok = match serde_json::from_slice::<Document>(doc) {
            Ok(d) => {
                joined = Joined::of(&d);
                if record
                    && let Some(t) = d
                        .timestamp
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                {
                    ages.push(t.timestamp_nanos_opt().unwrap_or(0) as u128);
                }
                true
            }
            Err(_) => false,
        };
        let id = meta._id.as_deref().unwrap_or("");
        items.push(Item {
            index: meta._index.into_owned(),
            id: id.to_owned(),
            key: meta._id.as_deref().map(id_key),
            ok,
            joined,
        });
    }
    Ok((items, ages))
}

/// An `_id` as the number the accepted set keeps: the agent's ids are hex.
fn id_key(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or_else(|_| {
        // Not one of the agent's hex ids: any stable hash does.
        id.bytes().fold(0xcbf2_9ce4_8422_2325u128, |h, b| {
            (h ^ b as u128).wrapping_mul(0x1000_0000_01b3)
        })
    })
}

/// The response body for `items`: 201 for a new id or none, 409 for one accepted before, 400 for
/// a document that did not parse; each counted in `st` under one hold of its id set.
fn answer_items(st: &State, items: &[Item], brief: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 200);
    let mut errors = false;
    let mut accepted = 0;
    let mut ids = lock(&st.ids);
    out.extend_from_slice(b"{\"took\":1,\"errors\":ERRORS,\"items\":[");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let seq = ids.len();
        let mut made_up = None;
        let (status, error) = if !item.ok {
            st.malformed.fetch_add(1, Ordering::Relaxed);
            (
                400,
                r#"{"type":"mapper_parsing_exception","reason":"failed to parse"}"#.to_owned(),
            )
        } else if item.key.is_none_or(|k| ids.insert(k)) {
            accepted += 1;
            if item.key.is_none() {
                made_up = Some(st.without_id.fetch_add(1, Ordering::Relaxed));
            }
            count_joined(st, item.joined);
            (201, String::new())
        } else {
            st.duplicates.fetch_add(1, Ordering::Relaxed);
            let (id, index) = (&item.id, &item.index);
            (
                409,
                format!(
                    r#"{{"type":"version_conflict_engine_exception","reason":"[{id}]: version conflict, document already exists (current version [1])","index":"{index}"}}"#
                ),
            )
        };
        errors |= status != 201;
        let id = match made_up {
            Some(n) => Cow::Owned(format!("auto-{n}")),
            None => Cow::Borrowed(item.id.as_str()),
        };
        write_item(&mut out, &item.index, &id, status, &error, seq, brief);
    }
    out.extend_from_slice(b"]}");
    let now = Instant::now();
    if accepted > 0 {
        lock(&st.first_ok).get_or_insert(now);
    }
    *lock(&st.last_ack) = Some(now);
    st.accepted.fetch_add(accepted, Ordering::SeqCst);
    drop(ids);
    let flag: &[u8] = if errors { b"true  " } else { b"false " };
    out[19..25].copy_from_slice(flag);
    out
}

/// An accepted document's multiline flags, counted in `st`.
fn count_joined(st: &State, j: Joined) {
    if j.lines > 1 {
        st.joined_documents.fetch_add(1, Ordering::Relaxed);
        st.joined_lines
            .fetch_add(u64::from(j.lines), Ordering::Relaxed);
    }
    if j.split {
        st.split_documents.fetch_add(1, Ordering::Relaxed);
    }
    if j.miscounted {
        st.joined_miscounted.fetch_add(1, Ordering::Relaxed);
    }
}

/// One item's result; with `brief` only its status and error, as `filter_path` asks.
fn write_item(
    out: &mut Vec<u8>,
    index: &str,
    id: &str,
    status: u16,
    error: &str,
    seq: usize,
    brief: bool,
) {
    let _ = match (brief, error.is_empty()) {
        (true, true) => write!(out, r#"{{"create":{{"status":{status}}}}}"#),
        (true, false) => write!(out, r#"{{"create":{{"status":{status},"error":{error}}}}}"#),
        (false, true) => write!(
            out,
            r#"{{"create":{{"_index":"{index}","_id":"{id}","_version":1,"result":"created","_shards":{{"total":1,"successful":1,"failed":0}},"_seq_no":{seq},"_primary_term":1,"status":201}}}}"#
        ),
        (false, false) => write!(
            out,
            r#"{{"create":{{"_index":"{index}","_id":"{id}","status":{status},"error":{error}}}}}"#
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(body: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn answers_each_item_as_elasticsearch_does_and_counts_only_new_ids() {
        let st = State::default();
        let body = concat!(
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"0a\"}}\n{\"@timestamp\":\"2026-11-26T23:00:00.5Z\",\"m\":[1,{\"x\":\"y\"}]}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"0a\"}}\n{\"m\":2}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"0b\"}}\n{\"m\":\n",
        );
        let out = bulk_response(&st, &gzip(body.as_bytes()), true, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["errors"], true);
        let status: Vec<u64> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["create"]["status"].as_u64().unwrap())
            .collect();
        assert_eq!(status, [201, 409, 400]);
        assert_eq!(v["items"][0]["create"]["_id"], "0a");
        assert_eq!(st.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(st.duplicates.load(Ordering::SeqCst), 1);
        assert_eq!(st.malformed.load(Ordering::SeqCst), 1);

        // filter_path: only status (and error) per item; a clean request says errors false.
        let out = bulk_response(
            &st,
            b"{\"index\":{\"_index\":\"logs\",\"_id\":\"0c\"}}\n{}\n",
            false,
            true,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["errors"], false);
        assert_eq!(
            v["items"][0],
            serde_json::json!({"create": {"status": 201}})
        );
        assert!(bulk_response(&st, b"not json\n{}\n", false, true).is_err());
    }

    #[test]
    fn accepts_every_item_without_an_id_as_fluent_bit_sends_them() {
        let st = State::default();
        // Fluent Bit's es output: `create` (its default Write_Operation) with no `_id`, and the
        // same document twice is two documents, as Elasticsearch makes up an id for each.
        let item = "{\"create\":{\"_index\":\"logstash-2026.12.06\"}}\n{\"@timestamp\":\"2026-12-06T15:00:00.123Z\",\"stream\":\"stdout\"}\n";
        for _ in 0..2 {
            let out = bulk_response(&st, &gzip(item.repeat(2).as_bytes()), true, false).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["errors"], false);
            assert_eq!(v["items"][1]["create"]["status"], 201);
        }
        let out = bulk_response(&st, item.as_bytes(), false, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["items"][0]["create"]["_id"], "auto-4");
        assert_eq!(st.accepted.load(Ordering::SeqCst), 5);
        assert_eq!(st.without_id.load(Ordering::SeqCst), 5);
        assert_eq!(st.duplicates.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn counts_each_accepted_joined_document_once_and_flags_a_text_short_of_its_lines() {
        let st = State::default();
        let body = concat!(
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"1a\"}}\n",
            "{\"log\":\"Error: x\\n    at a (/app/a.js:1:1)\\n    at b (/app/b.js:2:2)\",\"logferry\":{\"multiline_lines\":3}}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"1a\"}}\n",
            "{\"log\":\"Error: x\\n    at a (/app/a.js:1:1)\\n    at b (/app/b.js:2:2)\",\"logferry\":{\"multiline_lines\":3}}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"1b\"}}\n",
            "{\"log\":\"    at c (/app/c.js:3:3)\",\"logferry\":{\"multiline_lines\":2,\"multiline_split\":true}}\n",
            "{\"create\":{\"_index\":\"logs\",\"_id\":\"1c\"}}\n",
            "{\"log\":\"plain\",\"logferry\":{\"time_inferred\":true}}\n",
        );
        bulk_response(&st, body.as_bytes(), false, true).unwrap();
        assert_eq!(st.accepted.load(Ordering::SeqCst), 3);
        assert_eq!(st.joined_documents.load(Ordering::SeqCst), 2);
        assert_eq!(st.joined_lines.load(Ordering::SeqCst), 5);
        assert_eq!(st.split_documents.load(Ordering::SeqCst), 1);
        assert_eq!(st.joined_miscounted.load(Ordering::SeqCst), 1);
    }
}
