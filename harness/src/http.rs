//! A tiny blocking HTTP/1.1 client over a plain `TcpStream`, so the demo and the tests need no
//! second HTTP stack: one request per connection, `Connection: close`, chunked bodies joined.

use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_joined_without_its_sizes() {
        let body = "6\r\n{\"a\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(dechunk(body), "{\"a\":1}");
    }
}
