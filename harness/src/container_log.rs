//! Container log files laid out the way the kubelet writes them: [`LogWriter`] writes one
//! container's file (CRI or docker json-file, whole or split lines, rotation) with its
//! `/var/log/containers` symlink; [`generate`] writes the demo's realistic mix of four pods,
//! [`crash`] a fifth whose process crashes, and [`payments`] a sixth with audit events and
//! personal data.

use chrono::{DateTime, Duration as Delta, SecondsFormat, Utc};
use serde_json::json;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// Stamp lines with the time they are written, as a runtime does (see
    /// [`LogWriter::stamped_when_written`]).
    real_time: bool,
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
            real_time: false,
        })
    }

    /// Lines get the time they are written at, as a container runtime stamps them, instead of
    /// a clock that moves a millisecond a line: for tests where pauses in writing must show in
    /// the lines' times (multiline's `flush_timeout` is judged by them on a re-read).
    #[must_use]
    pub fn stamped_when_written(mut self) -> LogWriter {
        self.real_time = true;
        self
    }

    fn tick(&mut self) -> String {
        self.clock = if self.real_time {
            Utc::now().max(self.clock + Delta::nanoseconds(1))
        } else {
            self.clock + Delta::milliseconds(1)
        };
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
        self.rotate_slowly(suffix, std::time::Duration::ZERO)
    }

    /// [`LogWriter::rotate`], with `pause` between the rename and the new file: a runtime
    /// that reopens its log a while after the kubelet moved it. Meanwhile the container's
    /// link leads nowhere.
    pub fn rotate_slowly(
        &mut self,
        suffix: &str,
        pause: std::time::Duration,
    ) -> anyhow::Result<PathBuf> {
        self.file.flush()?;
        let rotated = self.path.with_file_name(format!("0.log.{suffix}"));
        fs::rename(&self.path, &rotated)?;
        std::thread::sleep(pause);
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

/// What Node 20 writes to stderr when a request handler throws and nothing catches it: ten
/// lines that the agent's `node` multiline rule ships as one document.
pub const NODE_CRASH: &[&str] = &[
    "/app/src/routes/checkout.js:57",
    "    throw new Error(`payment provider answered ${res.status}`);",
    "    ^",
    "",
    "Error: payment provider answered 502",
    "    at chargeCard (/app/src/routes/checkout.js:57:11)",
    "    at async checkout (/app/src/routes/checkout.js:31:5)",
    "    at async Server.handle (/app/src/server.js:42:7)",
    "",
    "Node.js v20.20.2",
];

/// A fifth pod whose process crashes once: JSON lines around a Node stack trace on stderr.
/// Returns the records it wrote (the trace is one).
pub fn crash(root: &Path) -> anyhow::Result<u64> {
    let mut w = LogWriter::create(
        root,
        "shop",
        "checkout-web-6c9d8f7b4-q2w3e",
        "web",
        Format::Cri,
    )?;
    const BEFORE: u64 = 3;
    for seq in 0..BEFORE {
        w.json_line(seq)?;
    }
    for line in NODE_CRASH {
        w.write_pieces("stderr", &[line])?;
    }
    w.line("checkout-web listening on :8080")?;
    // The lines before, the trace as one, the line after.
    Ok(BEFORE + 1 + 1)
}

/// The customer's e-mail address in [`PAYMENTS`]' line with personal data: with the demo's
/// `[redact]` it must be in no indexed document.
pub const CUSTOMER_EMAIL: &str = "jane.doe@example.com";

/// What a payments service writes around a refund: JSON lines, three of them audit events
/// (`"log_type":"audit"`, which the demo's route sends to the monthly audit index) and one whose
/// fields carry an e-mail address, an SSN and a card number (which the demo's `[redact]` masks).
pub const PAYMENTS: &[&str] = &[
    r#"{"level":"info","msg":"refunds worker ready","service":"refunds"}"#,
    r#"{"log_type":"audit","event":"refund.approved","actor":"user-311","refund_id":"rf-20418","amount_cents":12900,"msg":"refund rf-20418 approved"}"#,
    r#"{"level":"warn","msg":"refund rf-20418: card declined, notifying jane.doe@example.com","refund_id":"rf-20418","customer":{"email":"jane.doe@example.com","ssn":"123-45-6789","card":"4111 1111 1111 1111"}}"#,
    r#"{"log_type":"audit","event":"refund.retried","actor":"svc-refunds","refund_id":"rf-20418","attempt":2,"msg":"refund rf-20418 retried"}"#,
    r#"{"log_type":"audit","event":"refund.settled","actor":"svc-refunds","refund_id":"rf-20418","amount_cents":12900,"msg":"refund rf-20418 settled"}"#,
    r#"{"level":"info","msg":"refund rf-20418 done in 1840 ms","service":"refunds"}"#,
];

/// A sixth pod, a refunds worker in the `billing` namespace (which no route names: its audit
/// events are told by their field), writing [`PAYMENTS`] (CRI). Returns the records it wrote:
/// one per line.
pub fn payments(root: &Path) -> anyhow::Result<u64> {
    let mut w = LogWriter::create(
        root,
        "billing",
        "refunds-58c7d9f6b-m4n2p",
        "worker",
        Format::Cri,
    )?;
    for line in PAYMENTS {
        w.line(line)?;
    }
    Ok(PAYMENTS.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_mix_is_four_linked_container_logs_of_the_lines_asked_for() {
        let root = tempfile::tempdir().expect("tempdir");
        let generated = generate(root.path(), 20).expect("generate");
        assert_eq!((generated.records, generated.files), (80, 4));
        let links: Vec<_> = fs::read_dir(root.path().join("containers"))
            .expect("containers dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(links.len(), 4);
        for link in links {
            let text = fs::read_to_string(&link).expect("the symlink resolves to the log");
            // 20 records, two of them (seq 7 and 17) split into three physical lines.
            assert_eq!(text.lines().count(), 24, "{}", link.display());
        }
    }

    #[test]
    fn a_cri_line_split_in_pieces_marks_all_but_the_last_partial() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::create(root.path(), "ns", "pod", "c", Format::Cri).expect("create");
        w.write_pieces("stderr", &["a", "b", "c"]).expect("write");
        let text = fs::read_to_string(&w.path).expect("read");
        let tags: Vec<&str> = text
            .lines()
            .map(|l| l.split(' ').nth(2).unwrap_or(""))
            .collect();
        assert_eq!(tags, ["P", "P", "F"]);
    }
}
