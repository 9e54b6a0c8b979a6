//! One look at an agent: `GET /metrics` and `GET /health` over plain HTTP/1.1, and the
//! Prometheus classic text format read back into samples.
//!
//! Blocking `std` sockets on purpose: `top` asks one agent for two small documents a second,
//! so a runtime would only add weight. Every wait is bounded (connect, read, write: 3 s each)
//! and so is every answer (16 MiB), so a wrong `--url` or a wedged port-forward shows up as an
//! error on the screen, never as a hung terminal or a process that grows.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long one connect, read or write may wait. A healthy agent answers in milliseconds, even
/// over `kubectl port-forward`.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read. The agent's `/metrics` is tens of KiB; anything near this is not
/// an agent.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: only http:// URLs are supported (the agent's API speaks plain HTTP)")]
    Scheme { url: String },
    #[error("{url}: no host:port in the URL")]
    Address { url: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {path}: the answer is larger than {MAX_ANSWER} bytes: not a logferry agent?")]
    TooLarge { path: String },
    #[error("GET {path}: {why}")]
    Http { path: String, why: String },
    #[error("/metrics line {line}: {why}: not the Prometheus text format")]
    Metrics { line: usize, why: &'static str },
    #[error("/health: {0}")]
    Health(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the agent's API is: `http://host:port`, with an optional path prefix (a proxy's).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `host:port` as given, for the connection and the `Host` header.
    authority: String,
    /// Put before `/metrics` and `/health`; empty, or a prefix without a trailing slash.
    prefix: String,
}

impl Endpoint {
    /// `http://127.0.0.1:2020`, `127.0.0.1:2020/`, `http://[::1]:2020/agent`.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(Error::Scheme { url: url.into() }),
            None => url,
        };
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port {
            return Err(Error::Address { url: url.into() });
        }
        let prefix = prefix.trim_end_matches('/');
        Ok(Endpoint {
            authority: authority.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
        })
    }

    /// `GET path`: the status code and the body. Any status is returned: `/health` answers 503
    /// with its report when the agent is unhealthy, and that report is what a person needs.
    fn get(&self, path: &str) -> Result<(u16, String)> {
        let path = format!("{}{path}", self.prefix);
        let mut stream = self.connect()?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: logferry-top\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
            self.authority
        )
        .map_err(io)?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut answer)
            .map_err(io)?;
        if answer.len() as u64 > MAX_ANSWER {
            return Err(Error::TooLarge { path });
        }
        response(&answer).map_err(|why| Error::Http { path, why })
    }

    fn connect(&self) -> Result<TcpStream> {
        let fail = |source| Error::Connect {
            addr: self.authority.clone(),
            source,
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in self.authority.to_socket_addrs().map_err(fail)? {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }
}

/// Splits an HTTP/1.1 answer into its status and its body (with `Content-Length`, chunked, or
/// read to the close).
fn response(answer: &[u8]) -> std::result::Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer has no end of headers")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("not an HTTP answer")?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body).ok_or("a chunked body cut short")?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.get(..len).ok_or("a body cut short")?.to_owned()
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// One sample of `/metrics`: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one `/metrics` answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The samples of `name`, in the order the agent wrote them.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The value of `name` whose labels include `labels`; the first when several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series(name)
            .find(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
    }
}

/// Reads the classic text format (0.0.4): comments and blank lines skipped, label values with
/// their escapes (`\\`, `\"`, `\n`), `+Inf`/`-Inf`/`NaN` values, an optional timestamp.
pub fn parse_metrics(text: &str) -> Result<Exposition> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(sample(line).map_err(|why| Error::Metrics { line: i + 1, why })?);
    }
    Ok(Exposition { samples })
}

fn sample(line: &str) -> std::result::Result<Sample, &'static str> {
    let end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("a name without a value")?;
    let name = &line[..end];
    let valid_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if name.is_empty() || !name.chars().all(valid_name) {
        return Err("not a metric name");
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = label_set(inner, &mut labels)?;
    }
    let value = rest.split_ascii_whitespace().next().ok_or("no value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: number(value).ok_or("a value that is not a number")?,
    })
}

/// Reads `k="v",…}` into `labels`; returns what follows the `}`.
fn label_set<'a>(
    mut s: &'a str,
    labels: &mut Vec<(String, String)>,
) -> std::result::Result<&'a str, &'static str> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let (key, rest) = s.split_once('=').ok_or("a label without a value")?;
        let mut chars = rest
            .strip_prefix('"')
            .ok_or("an unquoted label value")?
            .char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("an unterminated label value")?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        s = rest[1 + close + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// `/health`: the overall status and each check the agent has, in its order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub status: String,
    /// (check, status, detail).
    pub checks: Vec<(String, String, String)>,
}

pub fn parse_health(body: &str) -> Result<Health> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| Error::Health(format!("not JSON: {e}")))?;
    let status = json["status"]
        .as_str()
        .ok_or_else(|| Error::Health("no status".into()))?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let checks = json["checks"]
        .as_object()
        .map(|checks| {
            checks
                .iter()
                .map(|(name, c)| (name.clone(), text(&c["status"]), text(&c["detail"])))
                .collect()
        })
        .unwrap_or_default();
    Ok(Health {
        status: status.to_owned(),
        checks,
    })
}

/// One look at the agent, and when it was taken (rates are per second of this clock).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub metrics: Exposition,
    /// `/health`, or why it could not be read: the metrics are worth showing without it.
    pub health: Result<Health, String>,
}

/// Takes one [`Snapshot`]: `/metrics` must answer; `/health` may fail on its own.
pub fn snapshot(endpoint: &Endpoint) -> Result<Snapshot> {
    let (code, body) = endpoint.get("/metrics")?;
    if code != 200 {
        return Err(Error::Http {
            path: "/metrics".into(),
            why: format!("HTTP {code}"),
        });
    }
    let at = Instant::now();
    let metrics = parse_metrics(&body)?;
    let health = endpoint
        .get("/health")
        .and_then(|(_, body)| parse_health(&body))
        .map_err(|e| e.to_string());
    Ok(Snapshot {
        at,
        metrics,
        health,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_reads_escaped_labels_infinities_and_timestamps() {
        let text = "# HELP x_total A counter\n# TYPE x_total counter\n\
                    x_total 3\n\
                    y{route=\"a \\\"quoted\\\" \\\\ name\\n\",b=\"2\"} 1.5e3 1700000000000\n\
                    h_bucket{le=\"+Inf\"} 7\n\
                    g NaN\n\
                    n -Inf\n\
                    \n";
        let e = parse_metrics(text).unwrap();
        assert_eq!(e.value("x_total", &[]), Some(3.0));
        assert_eq!(
            e.value("y", &[("route", "a \"quoted\" \\ name\n")]),
            Some(1500.0)
        );
        assert_eq!(e.value("y", &[("b", "2")]), Some(1500.0));
        assert_eq!(
            e.series("h_bucket").next().unwrap().label("le"),
            Some("+Inf")
        );
        assert!(e.value("g", &[]).unwrap().is_nan());
        assert_eq!(e.value("n", &[]), Some(f64::NEG_INFINITY));
        assert_eq!(e.samples.len(), 5);
    }

    #[test]
    fn a_page_that_is_not_metrics_is_refused_with_its_line() {
        for (text, line) in [
            ("ok 1\n<html>\n", 2),
            ("a{b=c} 1\n", 1),
            ("a{b=\"c} 1\n", 1),
            ("a one\n", 1),
            ("a\n", 1),
        ] {
            match parse_metrics(text) {
                Err(Error::Metrics { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn urls_name_the_agent_with_or_without_a_scheme_or_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:2020").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("127.0.0.1:2020", "")
        );
        let e = Endpoint::parse("[::1]:2020/agent/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("[::1]:2020", "/agent")
        );
        assert!(matches!(
            Endpoint::parse("https://x:1"),
            Err(Error::Scheme { .. })
        ));
        assert!(matches!(
            Endpoint::parse("http://localhost"),
            Err(Error::Address { .. })
        ));
    }

    #[test]
    fn answers_with_length_chunks_or_close_give_their_body() {
        let r = |s: &str| response(s.as_bytes());
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"),
            Ok((200, "abc".into()))
        );
        assert_eq!(
            r(
                "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            ),
            Ok((503, "abcde".into()))
        );
        assert_eq!(r("HTTP/1.0 200 OK\r\n\r\nall"), Ok((200, "all".into())));
        assert!(r("SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(r("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
    }

    #[test]
    fn health_lists_every_check_the_agent_reports() {
        let h = parse_health(
            r#"{"status":"degraded","checks":{"buffer":{"status":"healthy","detail":"3 records"},"config":{"status":"degraded","detail":"reload failed"}}}"#,
        )
        .unwrap();
        assert_eq!(h.status, "degraded");
        assert_eq!(
            h.checks,
            [
                ("buffer".into(), "healthy".into(), "3 records".into()),
                ("config".into(), "degraded".into(), "reload failed".into())
            ]
        );
        assert!(parse_health("<html>").is_err());
    }
}
