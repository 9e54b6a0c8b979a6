//! The `forward-in` scenario: the aggregator role. A forwarder sends one-file's records (the
//! same generator, each record as a forwarder with a JSON parser sends it: the application's
//! fields as a map, or `log` for a plain line) in PackedForward frames of 1,000 entries with a
//! chunk id, one connection, each frame sent once the last one is acked, as Fluent Bit's
//! out_forward with `Require_ack_response` does. The frames are built before the clock starts;
//! the agent's CPU is what it spent from the first frame to the sink's answer to the last
//! record, so it compares with `one-file`'s per record.

use crate::agent::Agent;
use crate::logs;
use crate::row::{Row, wait_for};
use crate::sink::Sink;
use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Entries per frame.
const PER_FRAME: usize = 1000;

pub fn run(bin: &Path, sink: &Sink, work: &Path, records: u64) -> anyhow::Result<Row> {
    let frames = frames(work, records)?;
    let input_bytes: u64 = frames.iter().map(|(f, _)| f.len() as u64).sum();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let extra = format!("\n[[input.forward]]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut agent = Agent::start_with(bin, work, sink.addr, &extra)?;
    agent.wait_ready(Duration::from_secs(30))?;
    let before = agent.usage()?;
    let started = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).context("the forward listener")?;
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    for (frame, ack) in &frames {
        conn.write_all(frame)?;
        let mut got = vec![0; ack.len()];
        conn.read_exact(&mut got).context("waiting for an ack")?;
        if &got != ack {
            bail!("not the ack that was due");
        }
    }
    let done = wait_for(sink, &mut agent, records, Duration::from_secs(900))?;
    let usage = agent.usage()?;
    agent.stop()?;
    Ok(Row {
        name: "forward-in",
        records,
        input_bytes,
        seconds: (done - started).as_secs_f64(),
        cpu: usage.cpu - before.cpu,
        peak_rss: usage.peak_rss,
        note: format!("PackedForward frames of {PER_FRAME} entries, acked; one-file's records"),
        duplicates: sink.state.surplus(records),
        ..Row::default()
    })
}

/// One-file's records as frames, each with the ack it is due.
fn frames(work: &Path, records: u64) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let source = work.join("source");
    std::fs::create_dir_all(&source)?;
    logs::write_files(&source, 0, 1, records, false)?;
    let file = std::fs::read_dir(&source)?
        .next()
        .context("the generated file")??
        .path();
    let now = chrono::Utc::now().timestamp() as u32;
    let mut frames = Vec::new();
    let mut packed = Vec::new();
    let mut entries = 0;
    let mut message = String::new();
    for line in std::io::BufReader::new(std::fs::File::open(&file)?).lines() {
        let line = line?;
        // CRI: time stream P|F message; a P piece is joined with what follows, as a forwarder
        // that reads CRI files does.
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
        message.push_str(text.unwrap_or_default());
        if tag == Some("P") {
            continue;
        }
        let record = match serde_json::from_str::<Value>(&message) {
            Ok(v @ Value::Object(_)) => v,
            _ => serde_json::json!({ "log": message }),
        };
        message.clear();
        packed.extend_from_slice(&[0x92, 0xce]);
        packed.extend_from_slice(&now.to_be_bytes());
        msgpack(&record, &mut packed);
        entries += 1;
        if entries == PER_FRAME {
            frames.push(frame(&packed, frames.len()));
            packed.clear();
            entries = 0;
        }
    }
    if entries > 0 {
        frames.push(frame(&packed, frames.len()));
    }
    Ok(frames)
}

/// `["app", packed entries, {"chunk": "c<n>"}]` and `{"ack": "c<n>"}`.
fn frame(packed: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
    let chunk = format!("c{n:08}");
    let mut f = vec![0x93];
    msgpack(&Value::from("app"), &mut f);
    f.push(0xc6);
    f.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    f.extend_from_slice(packed);
    f.push(0x81);
    msgpack(&Value::from("chunk"), &mut f);
    msgpack(&Value::from(chunk.as_str()), &mut f);
    // The answer in MessagePack's shortest form, as the agent writes it: fixmap, fixstrs.
    let mut ack = vec![0x81, 0xa3, b'a', b'c', b'k', 0xa0 | chunk.len() as u8];
    ack.extend_from_slice(chunk.as_bytes());
    (f, ack)
}

/// A JSON value as MessagePack (the forwarder's side; the agent reads it with its own code).
fn msgpack(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_be_bytes());
            }
        }
        Value::String(s) => {
            out.push(0xdb);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(0xdd);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            items.iter().for_each(|i| msgpack(i, out));
        }
        Value::Object(map) => {
            out.push(0xdf);
            out.extend_from_slice(&(map.len() as u32).to_be_bytes());
            for (k, v) in map {
                msgpack(&Value::from(k.as_str()), out);
                msgpack(v, out);
            }
        }
    }
}
