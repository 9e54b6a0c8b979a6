//! The embedded default: everything `logferry demo` needs to run the agent end to end on a
//! machine with nothing set up, and what the integration tests use to do the same.
//!
//! [`Osmem`] finds (installing it from PyPI if need be) and starts `osmem-server`, a real
//! in-memory OpenSearch-compatible server; [`LogWriter`] writes container log files the way the
//! kubelet lays them out, in CRI or docker format, with JSON, plain and split lines.

use anyhow::{Context, bail};
use chrono::{DateTime, Duration as Delta, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running osmem-server, stopped when dropped.
pub struct Osmem {
    child: Child,
    pub url: String,
}

impl Osmem {
    /// The server binary: `$OSMEM_SERVER_BIN`, or the one the `osmem-server` PyPI package
    /// bundles. With `install`, runs `pip install osmem-server` when it is missing.
    pub fn binary(install: bool) -> anyhow::Result<PathBuf> {
        if let Ok(p) = std::env::var("OSMEM_SERVER_BIN") {
            return Ok(PathBuf::from(p));
        }
        let find = || -> Option<PathBuf> {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import osmem_server; print(osmem_server.resolve_binary())",
                ])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let p = String::from_utf8(out.stdout).ok()?;
            let p = PathBuf::from(p.trim());
            (out.status.success() && p.is_file()).then_some(p)
        };
        if let Some(p) = find() {
            return Ok(p);
        }
        if !install {
            bail!(
                "osmem-server is not installed: run `python3 -m pip install osmem-server` (or set OSMEM_SERVER_BIN)"
            );
        }
        eprintln!("installing osmem-server from PyPI (python3 -m pip install osmem-server)...");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "osmem-server"])
            .status()
            .context("cannot run python3 -m pip; install python3 and pip first (Debian: apt-get install python3-pip)")?;
        if !status.success() {
            // Debian's system Python refuses plain pip installs (PEP 668).
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--break-system-packages",
                    "osmem-server",
                ])
                .status()
                .context("cannot run pip")?;
        }
        find().context("osmem-server is still not importable after pip install")
    }

    /// Starts a fresh server on a free loopback port.
    pub fn start(install: bool) -> anyhow::Result<Osmem> {
        Osmem::start_on("127.0.0.1:0", install)
    }

    /// Starts a fresh server listening on `addr` (port 0 picks a free one).
    pub fn start_on(addr: &str, install: bool) -> anyhow::Result<Osmem> {
        let bin = Osmem::binary(install)?;
        let mut child = Command::new(&bin)
            .args(["-addr", addr, "-no-stdin-watch", "-parent-pid"])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout from osmem-server")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("osmem-server did not say where it listens")?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("unexpected first line from osmem-server: {line:?}"))?;
        let url = v["url"]
            .as_str()
            .context("osmem-server gave no url")?
            .to_owned();
        Ok(Osmem { child, url })
    }

    /// GET `path` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        http_json("GET", &format!("{}{path}", self.url), None)
    }

    /// Documents in indices matching `pattern`, after a refresh.
    pub fn count(&self, pattern: &str) -> anyhow::Result<u64> {
        let _ = http_json("POST", &format!("{}/{pattern}/_refresh", self.url), None);
        let v = self.get(&format!("/{pattern}/_count"))?;
        Ok(v["count"].as_u64().unwrap_or(0))
    }

    /// Every document's `_source` with its `_id`, from indices matching `pattern`.
    pub fn all_documents(&self, pattern: &str) -> anyhow::Result<Vec<(String, Value)>> {
        let total = self.count(pattern)?;
        let mut out = Vec::new();
        let page = 5000;
        let mut from = 0;
        while from < total {
            let body = json!({"from": from, "size": page, "sort": ["_doc"]});
            let v = http_json(
                "POST",
                &format!("{}/{pattern}/_search", self.url),
                Some(&body),
            )?;
            let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for h in hits {
                out.push((
                    h["_id"].as_str().unwrap_or("").to_owned(),
                    h["_source"].clone(),
                ));
            }
            from += page;
        }
        Ok(out)
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP/1.1 client for the demo and tests, so they need no second HTTP stack.
pub fn http_json(method: &str, url: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let (_, body) = http(method, url, "application/json", payload.as_bytes())?;
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).with_context(|| format!("{method} {url}: not JSON: {body:.200}"))
}

/// One HTTP/1.1 request; returns the status and the body.
pub fn http(
    method: &str,
    url: &str,
    content_type: &str,
    payload: &[u8],
) -> anyhow::Result<(u16, String)> {
    use std::io::Read;
    use std::net::TcpStream;
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )?;
    s.write_all(payload)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The container runtime's log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cri,
    Docker,
}

/// Writes one container's log file where the kubelet would, with the `/var/log/containers`
/// symlink next to it.
pub struct LogWriter {
    pub path: PathBuf,
    pub link: PathBuf,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    format: Format,
    file: File,
    /// Time of the next line; every line advances it by a millisecond.
    clock: DateTime<Utc>,
}

impl LogWriter {
    /// Creates `<root>/pods/<ns>_<pod>_<uid>/<container>/0.log` and the symlink
    /// `<root>/containers/<pod>_<ns>_<container>-<id>.log`.
    pub fn create(
        root: &Path,
        namespace: &str,
        pod: &str,
        container: &str,
        format: Format,
    ) -> anyhow::Result<LogWriter> {
        let uid = format!(
            "{:08x}-uid",
            xxhash_rust::xxh3::xxh3_64(pod.as_bytes()) as u32
        );
        let dir = root
            .join("pods")
            .join(format!("{namespace}_{pod}_{uid}"))
            .join(container);
        fs::create_dir_all(&dir)?;
        fs::create_dir_all(root.join("containers"))?;
        let path = dir.join("0.log");
        let id = format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(format!("{pod}/{container}").as_bytes())
        )
        .repeat(4);
        let link = root
            .join("containers")
            .join(format!("{pod}_{namespace}_{container}-{id}.log"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link)?;
        Ok(LogWriter {
            path,
            link,
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
            format,
            file,
            clock: DateTime::parse_from_rfc3339("2026-11-26T17:00:00Z")
                .map(|t| t.to_utc())
                .unwrap_or_default(),
        })
    }

    fn tick(&mut self) -> String {
        self.clock += Delta::milliseconds(1);
        self.clock.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }

    /// Writes one physical line per piece; all but the last are marked partial.
    pub fn write_pieces(&mut self, stream: &str, pieces: &[&str]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let time = self.tick();
            match self.format {
                Format::Cri => {
                    let tag = if last { "F" } else { "P" };
                    writeln!(out, "{time} {stream} {tag} {piece}")?;
                }
                Format::Docker => {
                    let log = if last {
                        format!("{piece}\n")
                    } else {
                        (*piece).to_owned()
                    };
                    writeln!(
                        out,
                        "{}",
                        json!({"log": log, "stream": stream, "time": time})
                    )?;
                }
            }
        }
        self.file.write_all(&out)
    }

    /// A whole message on stdout.
    pub fn line(&mut self, message: &str) -> std::io::Result<()> {
        self.write_pieces("stdout", &[message])
    }

    /// A structured application log line, like a Node.js API's, carrying `seq`.
    pub fn json_line(&mut self, seq: u64) -> std::io::Result<()> {
        let levels = ["info", "info", "info", "warn", "error", "debug"];
        let msg = json!({
            "level": levels[(seq % 6) as usize],
            "msg": format!("GET /api/v1/orders/{} completed", seq * 7919 % 100_000),
            "service": "orders-api",
            "requestId": format!("req-{:016x}", xxhash_rust::xxh3::xxh3_64(&seq.to_le_bytes())),
            "userId": format!("user-{}", seq % 977),
            "durationMs": (seq * 37 % 1000) as f64 / 10.0,
            "status": 200,
            "seq": seq,
        });
        self.line(&msg.to_string())
    }

    /// Renames the file the way the kubelet rotates it and starts a new one at the same path.
    pub fn rotate(&mut self, suffix: &str) -> anyhow::Result<PathBuf> {
        self.file.flush()?;
        let rotated = self.path.with_file_name(format!("0.log.{suffix}"));
        fs::rename(&self.path, &rotated)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(rotated)
    }
}

/// What [`generate`] wrote.
pub struct Generated {
    /// Logical records (each becomes one document).
    pub records: u64,
    pub files: usize,
}

/// Writes a realistic mix of container logs under `root`: four pods, CRI and docker, JSON and
/// plain lines, and lines split into partial pieces.
pub fn generate(root: &Path, lines_per_file: u64) -> anyhow::Result<Generated> {
    let pods = [
        ("shop", "orders-api-7d9f8b6c5-x2bqz", "api", Format::Cri),
        ("shop", "payments-5f6d7c8b9-k8s7p", "worker", Format::Cri),
        (
            "kube-system",
            "coredns-66bc5c9577-qzq4d",
            "coredns",
            Format::Docker,
        ),
        ("monitoring", "alert-relay-0", "relay", Format::Docker),
    ];
    let mut records = 0;
    for (ns, pod, container, format) in pods {
        let mut w = LogWriter::create(root, ns, pod, container, format)?;
        for seq in 0..lines_per_file {
            match seq % 10 {
                // A long stack trace the runtime split into three pieces.
                7 => w.write_pieces(
                    "stderr",
                    &[
                        &format!("Error: upstream timeout seq={seq} "),
                        &"at processTicksAndRejections (node:internal/process/task_queues:95:5) "
                            .repeat(3),
                        "at async Server.handle (/app/server.js:42:7)",
                    ],
                )?,
                3 => w.line(&format!("plain text line seq={seq} from {container}"))?,
                _ => w.json_line(seq)?,
            }
            records += 1;
        }
    }
    Ok(Generated {
        records,
        files: pods.len(),
    })
}

/// `logferry demo`: starts osmem-server, generates logs, runs the agent until every record is
/// indexed, and prints what got there.
pub async fn run(lines_per_file: u64) -> anyhow::Result<()> {
    let es = Osmem::start(true)?;
    let dir = tempfile_dir()?;
    let logs = dir.join("var-log");
    let generated = generate(&logs, lines_per_file)?;
    let config_path = dir.join("logferry.toml");
    let config_text = format!(
        "data_dir = {:?}\n[input]\ninclude = [{:?}]\n[elasticsearch]\nhosts = [{:?}]\n[api]\nlisten = \"127.0.0.1:0\"\n",
        dir.join("data").display().to_string(),
        logs.join("containers/*.log").display().to_string(),
        es.url,
    );
    fs::write(&config_path, &config_text)?;
    println!("osmem-server (OpenSearch-compatible) at {}", es.url);
    println!(
        "wrote {} records in {} container log files under {}",
        generated.records,
        generated.files,
        logs.display()
    );
    println!("config: {}\n", config_path.display());
    let cfg = crate::config::Config::load(&config_path)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(crate::agent::run(cfg, async {
        let _ = rx.await;
    }));
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        count = es.count("logs-*")?;
        if count >= generated.records {
            break;
        }
    }
    let _ = tx.send(());
    agent.await??;
    let elapsed = started.elapsed();
    println!(
        "\nindexed {count} of {} records in {:.2}s",
        generated.records,
        elapsed.as_secs_f64()
    );
    let indices = es.get("/_cat/indices?format=json")?;
    for i in indices.as_array().into_iter().flatten() {
        println!(
            "  index {}: {} documents",
            i["index"].as_str().unwrap_or("?"),
            i["docs.count"].as_str().unwrap_or("?")
        );
    }
    let sample = http_json(
        "POST",
        &format!("{}/logs-*/_search", es.url),
        Some(&json!({"size": 1, "query": {"term": {"seq": 42}}})),
    )?;
    if let Some(hit) = sample["hits"]["hits"].get(0) {
        println!(
            "\na sample document (_id {}):\n{}",
            hit["_id"],
            serde_json::to_string_pretty(&hit["_source"])?
        );
    }
    let joined = http_json(
        "POST",
        &format!("{}/logs-*/_search", es.url),
        Some(&json!({"size": 1, "query": {"match": {"log": "Server.handle"}}})),
    )?;
    if let Some(hit) = joined["hits"]["hits"].get(0) {
        println!(
            "\na record joined from three partial lines:\n{}",
            serde_json::to_string_pretty(&hit["_source"])?
        );
    }
    if count != generated.records {
        bail!("expected {} documents, found {count}", generated.records);
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("logferry-demo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
