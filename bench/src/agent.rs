//! The agent under test: the release binary with its default settings, but for where it reads,
//! where it keeps its files and where it ships. Measured from outside through /proc, which is
//! also how the peer it is compared with ([`crate::peer`]) is measured.

use anyhow::{Context, bail};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    child: Child,
    pub started: Instant,
    /// logferry's API (metrics, readiness); a peer runs without one.
    api: Option<SocketAddr>,
}

/// CPU time and memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// user + sys, seconds.
    pub cpu: f64,
    /// Peak resident set (VmHWM), bytes.
    pub peak_rss: u64,
    /// Current resident set (VmRSS), bytes.
    pub rss: u64,
}

impl Agent {
    pub fn start(bin: &Path, work: &Path, sink: SocketAddr) -> anyhow::Result<Agent> {
        Agent::start_with(bin, work, sink, "")
    }

    /// Like [`Agent::start`], with `extra` appended to the config: the sections a scenario
    /// turns on (the defaults stay as they are for everything else).
    pub fn start_with(
        bin: &Path,
        work: &Path,
        sink: SocketAddr,
        extra: &str,
    ) -> anyhow::Result<Agent> {
        let api = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?
        };
        let config = work.join("logferry.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {data:?}\nlog_level = \"warn\"\n\n[input]\ninclude = [{logs:?}]\n\n\
                 [elasticsearch]\nhosts = [\"http://{sink}\"]\n\n[api]\nlisten = \"{api}\"\n{extra}",
                data = work.join("data").display().to_string(),
                logs = work.join("containers/*.log").display().to_string(),
            ),
        )?;
        Agent::spawn(
            bin,
            &["--config".as_ref(), config.as_os_str()],
            work,
            Some(api),
        )
    }

    /// Starts `bin` with `args`, its stderr in `work`/agent.log and its data in `work`/data.
    pub fn spawn(
        bin: &Path,
        args: &[&OsStr],
        work: &Path,
        api: Option<SocketAddr>,
    ) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(work.join("data"))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("agent.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Agent {
            child,
            started: Instant::now(),
            api,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu = (ticks(11) + ticks(12)) as f64 / hz;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Usage {
            cpu,
            peak_rss: kib("VmHWM:"),
            rss: kib("VmRSS:"),
        })
    }

    /// CPU time of each live thread, nanoseconds, by thread id: the first field of
    /// `/proc/<pid>/task/<tid>/schedstat`. Unlike `usage`'s utime and stime, which come in
    /// 10 ms ticks, this resolves the few milliseconds a quiet minute costs; a thread that ends
    /// takes its time with it, so it serves windows in which no thread ends.
    pub fn thread_cpu(&self) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
        let mut times = std::collections::BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = stat.split_whitespace().next().and_then(|f| f.parse().ok()) {
                times.insert(tid, ns);
            }
        }
        Ok(times)
    }

    /// A value from the agent's /metrics (the sum over its label sets).
    pub fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = get(self.api()?, "/metrics")?;
        let mut sum = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *sum.get_or_insert(0.0) += v;
            }
        }
        sum.with_context(|| format!("{name} is not in /metrics"))
    }

    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let api = self.api()?;
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if get(api, "/ready").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the agent was not ready after {timeout:?}")
    }

    fn api(&self) -> anyhow::Result<SocketAddr> {
        self.api
            .context("this agent has no API (a peer's scenario asked for logferry's)")
    }

    pub fn exited(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the agent exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", out.lines().next().unwrap_or(""));
    }
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}
