//! A real osmem-server for the demo and the tests: found (or installed from PyPI when asked),
//! started on a loopback port, queried over [`crate::http`], and stopped when dropped.
//!
//! Installing with pip is why this lives in a dev-only crate: the shipped agent cannot do it.

use crate::http::http_json;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

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

    /// Every document's `_source` with its `_id`, from indices matching `pattern`, read with the
    /// scroll API: a search's `from` + `size` stops at the 10,000-hit result window, past which
    /// pages used to come back as an error read as "no more documents". An error answer fails.
    pub fn all_documents(&self, pattern: &str) -> anyhow::Result<Vec<(String, Value)>> {
        if self.count(pattern)? == 0 {
            return Ok(Vec::new());
        }
        let mut page = http_json(
            "POST",
            &format!("{}/{pattern}/_search?scroll=1m", self.url),
            Some(&json!({"size": 5000, "sort": ["_doc"]})),
        )?;
        let mut out = Vec::new();
        loop {
            if let Some(error) = page.get("error") {
                bail!("reading every document of {pattern}: {error}");
            }
            let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for h in hits {
                out.push((
                    h["_id"].as_str().unwrap_or("").to_owned(),
                    h["_source"].clone(),
                ));
            }
            let scroll_id = page["_scroll_id"]
                .as_str()
                .context("a scrolled search answered without a _scroll_id")?
                .to_owned();
            page = http_json(
                "POST",
                &format!("{}/_search/scroll", self.url),
                Some(&json!({"scroll": "1m", "scroll_id": scroll_id})),
            )?;
        }
        if let Some(scroll_id) = page["_scroll_id"].as_str() {
            let _ = http_json(
                "DELETE",
                &format!("{}/_search/scroll", self.url),
                Some(&json!({"scroll_id": scroll_id})),
            );
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
