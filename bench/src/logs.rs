//! Container log files as a node has them: what a Node.js API service writes (pino-style JSON of
//! about 300 bytes), some plain-text lines, and now and then a line long enough for the runtime
//! to split it into 16 KiB parts — in CRI or docker json-file format, named the kubelet's way.

use chrono::{DateTime, SecondsFormat, Utc};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The runtimes split longer lines into parts of this size (kubelet and dockerd both use 16 KiB).
const PART: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Cri,
    Docker,
}

/// The container's output a line was written to; the runtime keeps both in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes one container's log. Every line is one record for the agent; a split line is several
/// physical lines but one record.
pub struct Writer {
    out: BufWriter<File>,
    format: Format,
    seq: u64,
    /// Fixed per file, like a pod name.
    pod: String,
    pub bytes: u64,
    pub records: u64,
    message: String,
    line: Vec<u8>,
}

const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/users/{id}/cart",
    "/api/v1/payments",
    "/healthz",
    "/api/v1/inventory/{id}",
];
const MESSAGES: [&str; 4] = [
    "request completed",
    "order created",
    "cache miss, loaded from database",
    "payment authorised",
];

/// The kubelet's name for a container's log under /var/log/containers.
/// The name of the pod whose files have this index.
pub fn pod_name(pod_index: usize) -> String {
    format!("orders-api-7d9f8b6c5d-{pod_index:05}")
}

pub fn file_name(pod_index: usize, container: &str) -> String {
    format!(
        "{}_shop_{container}-{:064x}.log",
        pod_name(pod_index),
        pod_index as u128 * 0x9e37_79b9_7f4a_7c15 + 1
    )
}

impl Writer {
    pub fn create(
        dir: &Path,
        pod_index: usize,
        format: Format,
    ) -> anyhow::Result<(Writer, PathBuf)> {
        let path = dir.join(file_name(pod_index, "server"));
        let out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Ok((
            Writer {
                out,
                format,
                seq: 0,
                pod: pod_name(pod_index),
                bytes: 0,
                records: 0,
                message: String::with_capacity(PART * 3),
                line: Vec::with_capacity(PART * 3),
            },
            path,
        ))
    }

    /// Writes the next record, stamped `now` (the runtime's timestamp on the line).
    pub fn record(&mut self, now: DateTime<Utc>) -> std::io::Result<()> {
        self.seq += 1;
        let seq = self.seq;
        self.message.clear();
        let m = &mut self.message;
        use std::fmt::Write as _;
        if seq.is_multiple_of(1000) {
            // A long JSON line (a stack trace in a field): split by the runtime, joined by the agent.
            let _ = write!(
                m,
                r#"{{"timestamp":"{}","level":"error","message":"unhandled rejection","service":"orders-api","requestId":"{:032x}","stack":""#,
                now.to_rfc3339_opts(SecondsFormat::Millis, true),
                seq.wrapping_mul(0x2545_f491_4f6c_dd1d)
            );
            while m.len() < PART + PART / 4 {
                let _ = write!(
                    m,
                    "Error: connect ECONNREFUSED 10.0.3.{}:5432\\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\\n",
                    seq % 250
                );
            }
            m.push_str("\"}");
        } else if seq % 20 == 7 {
            let _ = write!(
                m,
                "[{}] WARN  pool exhausted, waiting for a connection (active=20 idle=0 waiting={})",
                now.format("%Y-%m-%d %H:%M:%S%.3f"),
                seq % 17
            );
        } else {
            let user = seq.wrapping_mul(2_654_435_761) % 100_000;
            let path = PATHS[(seq % 6) as usize].replace("{id}", &user.to_string());
            let status = if seq % 50 == 3 { 500 } else { 200 };
            let _ = write!(
                m,
                r#"{{"timestamp":"{}","level":"{}","message":"{}","service":"orders-api","requestId":"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}","userId":"user-{user}","method":"{}","path":"{path}","status":{status},"duration":{}.{:02},"hostname":"{}","pid":1}}"#,
                now.to_rfc3339_opts(SecondsFormat::Millis, true),
                if status == 500 { "error" } else { "info" },
                MESSAGES[(seq % 4) as usize],
                seq.wrapping_mul(0x9e37_79b9) as u32,
                (seq >> 3) as u16,
                seq % 4096,
                (seq * 7) % 4096,
                seq.wrapping_mul(0x5851_f42d_4c95_7f2d) & 0xffff_ffff_ffff,
                if seq.is_multiple_of(3) { "POST" } else { "GET" },
                seq % 250,
                seq % 100,
                self.pod,
            );
        }
        self.write_message(now, Stream::Stdout)?;
        self.records += 1;
        Ok(())
    }

    /// Writes `text` as one line on `stream` (a line of a stack trace on stderr, say).
    pub fn line(&mut self, now: DateTime<Utc>, stream: Stream, text: &str) -> std::io::Result<()> {
        self.message.clear();
        self.message.push_str(text);
        self.write_message(now, stream)?;
        self.records += 1;
        Ok(())
    }

    /// Writes one wide record: a JSON object with `keys` top-level fields of about 11 bytes
    /// each (20,000 keys make a line of ~215 KiB, split by the runtime into 16 KiB parts), as an
    /// application that dumps a whole map into one log call writes it.
    pub fn wide_record(&mut self, now: DateTime<Utc>, keys: usize) -> std::io::Result<()> {
        self.seq += 1;
        self.message.clear();
        let m = &mut self.message;
        use std::fmt::Write as _;
        let _ = write!(
            m,
            r#"{{"timestamp":"{}","level":"info","message":"feature flags""#,
            now.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        for k in 0..keys {
            let _ = write!(m, r#","k{k:05}":{}"#, (k as u64 + self.seq) % 10);
        }
        m.push('}');
        self.write_message(now, Stream::Stdout)?;
        self.records += 1;
        Ok(())
    }

    fn write_message(&mut self, now: DateTime<Utc>, stream: Stream) -> std::io::Result<()> {
        let time = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let bytes = self.message.as_bytes();
        let mut parts = bytes.chunks(PART).peekable();
        self.line.clear();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            match self.format {
                Format::Cri => {
                    self.line.extend_from_slice(time.as_bytes());
                    self.line.push(b' ');
                    self.line.extend_from_slice(stream.name().as_bytes());
                    self.line
                        .extend_from_slice(if last { b" F " } else { b" P " });
                    self.line.extend_from_slice(part);
                    self.line.push(b'\n');
                }
                Format::Docker => {
                    let mut log = String::from_utf8_lossy(part).into_owned();
                    if last {
                        log.push('\n');
                    }
                    self.line.extend_from_slice(b"{\"log\":");
                    serde_json::to_writer(&mut self.line, &log)?;
                    self.line.extend_from_slice(b",\"stream\":\"");
                    self.line.extend_from_slice(stream.name().as_bytes());
                    self.line.extend_from_slice(b"\",\"time\":\"");
                    self.line.extend_from_slice(time.as_bytes());
                    self.line.extend_from_slice(b"\"}\n");
                }
            }
        }
        self.bytes += self.line.len() as u64;
        self.out.write_all(&self.line)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes one CRI file of `records` wide records (see [`Writer::wide_record`]) into `dir`.
/// Returns the bytes written.
pub fn write_wide_file(dir: &Path, records: u64, keys: usize) -> anyhow::Result<u64> {
    let start = Utc::now() - chrono::Duration::microseconds(records as i64);
    let (mut w, _) = Writer::create(dir, 0, Format::Cri)?;
    for n in 0..records {
        w.wide_record(start + chrono::Duration::microseconds(n as i64), keys)?;
    }
    w.flush()?;
    Ok(w.bytes)
}

/// Writes `files` files of `records` records each into `dir`, alternating formats when
/// `mixed`, timestamps a microsecond apart ending now. Returns the bytes written.
pub fn write_files(
    dir: &Path,
    first: usize,
    files: usize,
    records: u64,
    mixed: bool,
) -> anyhow::Result<u64> {
    let mut bytes = 0;
    let start = Utc::now() - chrono::Duration::microseconds(records as i64);
    for i in first..first + files {
        let format = if mixed && i % 2 == 1 {
            Format::Docker
        } else {
            Format::Cri
        };
        let (mut w, _) = Writer::create(dir, i, format)?;
        for n in 0..records {
            w.record(start + chrono::Duration::microseconds(n as i64))?;
        }
        w.flush()?;
        bytes += w.bytes;
    }
    Ok(bytes)
}

/// The log files a scenario starts with.
#[derive(Clone)]
pub(crate) struct Files {
    pub(crate) count: usize,
    pub(crate) per_file: u64,
    /// Every other file docker json-file rather than CRI.
    pub(crate) mixed: bool,
}

impl Files {
    pub(crate) fn cri(count: usize, per_file: u64) -> Files {
        Files {
            count,
            per_file,
            mixed: false,
        }
    }

    pub(crate) fn mixed(count: usize, per_file: u64) -> Files {
        Files {
            count,
            per_file,
            mixed: true,
        }
    }
}
