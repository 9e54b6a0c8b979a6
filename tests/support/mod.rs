//! Shared test harness: a real osmem-server, the real agent binary, and container log files
//! laid out like a node's.

#![allow(dead_code)]

pub mod kafka;
pub mod kubeapi;
pub mod lifecycle;
pub mod proxy;
pub mod tcp_proxy;
pub mod tls;

pub use logferry_harness::{Format, LogWriter, Osmem, free_port, http_json};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A node's log directory, a data directory and a config, in a temp dir.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("var-log")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Lets an agent running as another user (see [`Agent::start_unprivileged`]) into the
    /// node's directory and its data directory.
    pub fn share_with_other_users(&self) {
        set_mode(self.dir.path(), 0o755);
        std::fs::create_dir_all(self.data()).expect("data dir");
        set_mode(&self.data(), 0o777);
    }

    pub fn writer(&self, ns: &str, pod: &str, container: &str, format: Format) -> LogWriter {
        LogWriter::create(&self.logs(), ns, pod, container, format).expect("log writer")
    }

    /// Writes `n` JSON lines for a new pod `pod` (CRI), returning what must end up in the index.
    pub fn json_lines(&self, pod: &str, n: u64) -> HashSet<(String, u64)> {
        let mut w = self.writer("shop", pod, "app", Format::Cri);
        (0..n)
            .map(|seq| {
                w.json_line(seq).unwrap();
                (pod.to_owned(), seq)
            })
            .collect()
    }

    /// [`Node::config`], with more TOML (whole tables) at its end.
    pub fn config_with(&self, es_url: &str, extra: &str) -> PathBuf {
        let path = self.config(es_url, "", "");
        let mut text = std::fs::read_to_string(&path).expect("config");
        text.push_str(extra);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// A config for this node shipping to `es_url`, with extra keys for the `[input]` and
    /// `[buffer]` sections (short rotate_wait, rescan and retry waits for quick tests).
    pub fn config(&self, es_url: &str, extra_input: &str, extra_buffer: &str) -> PathBuf {
        let text = format!(
            "data_dir = {data:?}\n\
             [input]\ninclude = [{glob:?}]\nrotate_wait = \"500ms\"\nrescan_interval = \"200ms\"\n{extra_input}\n\
             [elasticsearch]\nhosts = [{es_url:?}]\nrequest_timeout = \"5s\"\n\
             [buffer]\nretry_wait = \"100ms\"\nretry_max_interval = \"500ms\"\n{extra_buffer}\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n",
            data = self.data().display().to_string(),
            glob = self.logs().join("containers/*.log").display().to_string(),
            port = free_port(),
        );
        let path = self.dir.path().join("logferry.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }
}

impl Node {
    /// The checkpointed offset of the (single) log file, once saved.
    pub fn checkpoint_offset(&self) -> u64 {
        let text =
            std::fs::read_to_string(self.data().join("checkpoints.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        v["files"][0]["offset"].as_u64().unwrap_or(0)
    }

    /// The buffer's segment files, oldest first.
    pub fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.data().join("buffer"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "seg"));
        v.sort();
        v
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn osmem() -> Osmem {
    Osmem::start(false)
        .expect("osmem-server must be installed: run scripts/test (pip install osmem-server)")
}

/// osmem-server on a chosen port, for tests that start the cluster after the agent.
pub fn osmem_on(port: u16) -> Osmem {
    Osmem::start_on(&format!("127.0.0.1:{port}"), false).expect("osmem-server installed")
}

/// The agent binary, running.
pub struct Agent {
    pub child: Child,
    pub api: String,
    pub stderr: PathBuf,
}

impl Agent {
    pub fn start(config: &Path) -> Agent {
        Agent::start_env(config, &[])
    }

    /// Starts the agent with these environment variables set for it.
    pub fn start_env(config: &Path, env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logferry"));
        cmd.env("LOGFERRY_LOG", "info");
        cmd.envs(env.iter().copied());
        Agent::spawn(config, cmd)
    }

    /// Starts the agent with `adjust` applied to its command first (more arguments, another
    /// environment); `LOGFERRY_LOG=info` is set before, for `adjust` to remove or change.
    pub fn start_adjusted(config: &Path, adjust: impl FnOnce(&mut Command)) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logferry"));
        cmd.env("LOGFERRY_LOG", "info");
        adjust(&mut cmd);
        Agent::spawn(config, cmd)
    }

    /// Starts the agent with its open-files limit (soft and hard) set to `limit`, so that it
    /// cannot raise it, as `prlimit` would on a node.
    pub fn start_with_open_files_limit(config: &Path, limit: u64) -> Agent {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_logferry"));
        cmd.env("LOGFERRY_LOG", "info");
        Agent::spawn(config, cmd)
    }

    /// Runs the agent as `nobody` when the tests run as root, so that file permissions apply
    /// to it as they do on a node.
    pub fn start_unprivileged(config: &Path) -> Agent {
        if running_as_root() {
            // The build tree may sit where `nobody` cannot reach (under /root): run a copy from
            // the test's own directory instead.
            let bin = config.with_file_name("logferry-bin");
            std::fs::copy(env!("CARGO_BIN_EXE_logferry"), &bin).expect("copy the agent binary");
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            Agent::spawn(config, cmd)
        } else {
            Agent::start(config)
        }
    }

    fn spawn(config: &Path, mut cmd: Command) -> Agent {
        let text = std::fs::read_to_string(config).expect("config");
        let api = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .map(|s| s.trim_matches('"').to_owned())
            .expect("listen in config");
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let stderr = config.with_extension(format!("stderr.{n}"));
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start logferry");
        let mut agent = Agent { child, api, stderr };
        // Fail fast, with the agent's own words, if it does not come up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get("/ready").is_null() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("the agent exited ({status}) at start:\n{}", agent.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the agent's API never answered:\n{}",
                agent.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(self) -> ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends `sig` (TERM or INT), then waits for the exit.
    pub fn stop_with(mut self, sig: &str) -> ExitStatus {
        self.signal(sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit after SIGTERM:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Value {
        http_json("GET", &format!("http://{}{path}", self.api), None).unwrap_or(Value::Null)
    }

    /// The value of one series of `/metrics`, e.g. `logferry_buffer_bytes` or
    /// `logferry_documents_total{outcome="indexed"}`; 0 when absent.
    pub fn metric_f64(&self, series: &str) -> f64 {
        let series = series.trim_end();
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// [`Agent::metric_f64`] for counts.
    pub fn metric(&self, series: &str) -> u64 {
        self.metric_f64(series) as u64
    }

    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.api) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        // The body only.
        out.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, body)| body.to_owned())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Set to `1`, lets a run that is not root skip the tests that need root (they mount small
/// tmpfs volumes) instead of failing them.
pub const SKIP_ROOT_ENV: &str = "LOGFERRY_TESTS_SKIP_ROOT";

/// Whether a test that needs root for `why` runs: true as root. Not as root, the test fails
/// (naming [`SKIP_ROOT_ENV`]) unless that is set to `1`; then it says it was skipped and this is
/// false. A skipped run checks nothing, so it must never pass unnoticed.
pub fn needs_root(why: &str) -> bool {
    if running_as_root() {
        return true;
    }
    if std::env::var(SKIP_ROOT_ENV).is_ok_and(|v| v == "1") {
        eprintln!("skipped, as {SKIP_ROOT_ENV}=1 asks: {why} needs root");
        return false;
    }
    panic!(
        "{why} needs root, and this run is not root: run the tests as root (as CI does), or set \
         {SKIP_ROOT_ENV}=1 to skip the tests that need it knowingly"
    );
}

/// Waits until `f` holds, panicking with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, f: impl FnMut() -> bool) {
    wait_until_showing(secs, what, f, String::new);
}

/// [`wait_until`], and a timeout also shows `show()` (the agent's health and logs, say).
pub fn wait_until_showing(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> bool,
    show: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}\n{}",
            show()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the index holds `n` documents, then a little longer to catch extras.
pub fn wait_for_count(es: &Osmem, n: u64, secs: u64) -> u64 {
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        last = es.count("logs-*").unwrap_or(0);
        if last >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Anything more (a duplicate) would show up right behind.
    std::thread::sleep(Duration::from_millis(700));
    es.count("logs-*").unwrap_or(last)
}

/// How many times each `seq` appears, per pod.
pub fn seq_counts(docs: &[(String, Value)]) -> HashMap<(String, u64), usize> {
    let mut out = HashMap::new();
    for (_, d) in docs {
        let pod = d["kubernetes"]["pod_name"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let seq = d["seq"].as_u64().or_else(|| {
            d["log"]
                .as_str()
                .and_then(|l| l.split("seq=").nth(1))
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|s| s.parse().ok())
        });
        if let Some(seq) = seq {
            *out.entry((pod, seq)).or_insert(0) += 1;
        }
    }
    out
}

pub fn docs(es: &Osmem) -> Vec<(String, Value)> {
    es.all_documents("logs-*").expect("search")
}

/// The documents of `pod`.
pub fn docs_of(es: &Osmem, pod: &str) -> Vec<Value> {
    docs(es)
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kubernetes"]["pod_name"] == pod)
        .collect()
}

/// Asserts that every (pod, seq) in `expected` is indexed exactly once and nothing else is.
pub fn assert_exactly_once(es: &Osmem, expected: &HashSet<(String, u64)>) {
    let n = expected.len() as u64;
    let count = wait_for_count(es, n, 60);
    let docs = docs(es);
    let counts = seq_counts(&docs);
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .take(5)
        .collect();
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        missing.is_empty(),
        "missing records, e.g. {missing:?} (count {count} of {n})"
    );
    assert!(dups.is_empty(), "duplicated records, e.g. {dups:?}");
    assert_eq!(count, n, "document count");
    assert_eq!(ids.len() as u64, n, "distinct ids");
}
