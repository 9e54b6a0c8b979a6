//! The stand-in's HTTP/1.1: keep-alive connections, `Content-Length` or chunked bodies,
//! `content-encoding: gzip` decoded (the agent's reqwest client compresses), forwarding to the
//! upstream osmem-server; and the products' answers that do not depend on a body: the `GET /`
//! banner and the injected refusals.

use super::{Flavor, Query, Request, Routed, State, route};
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;

/// A request's line and the headers the stand-in acts on.
struct Head {
    method: String,
    target: String,
    length: usize,
    gzip: bool,
    chunked: bool,
    close: bool,
    content_type: String,
}

/// Reads a request line and its headers; None when the client has closed the connection.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(None);
    }
    let mut parts = request_line.split_whitespace();
    let mut head = Head {
        method: parts.next().unwrap_or("GET").to_owned(),
        target: parts.next().unwrap_or("/").to_owned(),
        length: 0,
        gzip: false,
        chunked: false,
        close: false,
        content_type: String::from("application/json"),
    };
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name {
            "content-length" => head.length = value.parse().unwrap_or(0),
            "content-encoding" => head.gzip = value.contains("gzip"),
            "transfer-encoding" => head.chunked = value.contains("chunked"),
            "connection" => head.close = value.contains("close"),
            "content-type" => head.content_type = value.to_owned(),
            _ => {}
        }
    }
}

/// The request's body, joined if chunked and gunzipped if compressed.
fn read_body(reader: &mut impl BufRead, head: &Head) -> std::io::Result<Vec<u8>> {
    let mut body = if head.chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0u8; head.length];
        reader.read_exact(&mut body)?;
        body
    };
    if head.gzip {
        let mut plain = Vec::new();
        GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
        body = plain;
    }
    Ok(body)
}

/// Answers the requests of one connection until the client closes it.
pub(super) fn serve(
    conn: TcpStream,
    state: &Mutex<State>,
    upstream: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    while let Some(head) = read_head(&mut reader)? {
        let body = read_body(&mut reader, &head)?;
        let Head {
            method,
            target,
            close,
            content_type,
            ..
        } = head;
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let flavor = state.lock().unwrap().flavor;
        let routed = route(
            &mut state.lock().unwrap(),
            &method,
            path,
            &Query::parse(query),
            &body,
        );
        let (status, answer) = match routed {
            Routed::Forward => forward(&method, &target, &content_type, &body, upstream),
            Routed::Answer {
                status,
                body: answer,
                problem,
            } => {
                let mut s = state.lock().unwrap();
                // An injected refusal is the test's doing, not a fault of the agent's body.
                if let Some(p) = problem.as_ref().filter(|p| p.kind != "injected") {
                    s.problems.push(format!("{method} {target}: {}", p.reason));
                }
                let problem = problem.map(|p| p.reason);
                s.requests.push(Request {
                    method: method.clone(),
                    path: target.clone(),
                    body: serde_json::from_slice(&body).ok(),
                    status,
                    problem,
                });
                (status, answer.to_string())
            }
        };
        let product = if flavor.is_elasticsearch() {
            "X-Elastic-Product: Elasticsearch\r\n"
        } else {
            ""
        };
        let challenge = if status == 401 {
            "WWW-Authenticate: Basic realm=\"security\" charset=\"UTF-8\"\r\n"
        } else {
            ""
        };
        write!(
            conn,
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=UTF-8\r\n{product}{challenge}Content-Length: {}\r\n\r\n",
            reason_phrase(status),
            answer.len()
        )?;
        if method != "HEAD" {
            conn.write_all(answer.as_bytes())?;
        }
        conn.flush()?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            // The trailer section ends with an empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
}

/// Passes a request it does not own to osmem-server: same method, path, query and body.
fn forward(
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
    upstream: Option<&str>,
) -> (u16, String) {
    let Some(upstream) = upstream else {
        return (
            404,
            json!({"error": format!("the lifecycle stand-in has no upstream for [{method} {target}]")})
                .to_string(),
        );
    };
    crate::http(method, &format!("{upstream}{target}"), content_type, body).unwrap_or_else(|e| {
        (
            502,
            json!({"error": format!("upstream: {e:#}")}).to_string(),
        )
    })
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `GET /` as each product answers it (the shapes of Elasticsearch 8.x/9.x and OpenSearch
/// 2.x/3.x root responses: `build_flavor` only on Elasticsearch, `distribution` only on
/// OpenSearch, and each one's tagline).
pub(super) fn banner(flavor: Flavor) -> Value {
    let (number, lucene, wire, index) = match flavor {
        Flavor::Elasticsearch8 => ("8.19.3", "9.12.2", "7.17.0", "7.0.0"),
        Flavor::Elasticsearch9 => ("9.1.3", "10.2.2", "8.19.0", "8.0.0"),
        Flavor::OpenSearch2 => ("2.19.3", "9.12.2", "7.10.0", "7.0.0"),
        Flavor::OpenSearch3 => ("3.2.0", "10.2.2", "2.19.0", "2.0.0"),
    };
    let mut version = json!({
        "number": number,
        "build_type": "docker",
        "build_hash": "0123456789abcdef0123456789abcdef01234567",
        "build_date": "2025-08-01T00:00:00.000000000Z",
        "build_snapshot": false,
        "lucene_version": lucene,
        "minimum_wire_compatibility_version": wire,
        "minimum_index_compatibility_version": index,
    });
    let tagline = if flavor.is_elasticsearch() {
        version["build_flavor"] = json!("default");
        "You Know, for Search"
    } else {
        version["distribution"] = json!("opensearch");
        "The OpenSearch Project: https://opensearch.org/"
    };
    json!({
        "name": "standin-node-1",
        "cluster_name": "logferry-standin",
        "cluster_uuid": "c1u5t3r-uuid-0000-0000",
        "version": version,
        "tagline": tagline,
    })
}

/// The body of an injected refusal. 403 names the action and the missing privilege the way
/// each product's security layer does (Elasticsearch: "action [...] is unauthorized for user
/// [...]"; the OpenSearch security plugin: "no permissions for [...] and User [...]"); 401 is
/// a missing-credentials answer; other statuses get a generic error of that status.
pub(super) fn refusal(flavor: Flavor, status: u16, method: &str, segments: &[&str]) -> Value {
    let write = !matches!(method, "GET" | "HEAD");
    let (action, privilege) = match (segments.first().copied(), write, method) {
        (Some("_index_template"), true, "DELETE") => (
            "indices:admin/index_template/delete",
            "manage_index_templates",
        ),
        (Some("_index_template"), true, _) => {
            ("indices:admin/index_template/put", "manage_index_templates")
        }
        (Some("_index_template"), false, _) => {
            ("indices:admin/index_template/get", "manage_index_templates")
        }
        (Some("_ilm"), true, "DELETE") => ("cluster:admin/ilm/delete", "manage_ilm"),
        (Some("_ilm"), true, _) => ("cluster:admin/ilm/put", "manage_ilm"),
        (Some("_ilm"), false, _) => ("cluster:admin/ilm/get", "read_ilm"),
        (_, true, "DELETE") => (
            "cluster:admin/opendistro/ism/policy/delete",
            "ism_full_access",
        ),
        (_, true, _) => (
            "cluster:admin/opendistro/ism/policy/write",
            "ism_full_access",
        ),
        (_, false, _) => ("cluster:admin/opendistro/ism/policy/get", "ism_read_access"),
    };
    let (kind, reason) = match status {
        403 if flavor.is_elasticsearch() => (
            "security_exception",
            format!(
                "action [{action}] is unauthorized for user [logferry] with effective roles [logferry_writer], this action is granted by the cluster privileges [{privilege},manage,all]"
            ),
        ),
        403 => (
            "security_exception",
            format!(
                "no permissions for [{action}] and User [name=logferry, backend_roles=[], requestedTenant=null]"
            ),
        ),
        401 => (
            "security_exception",
            format!(
                "missing authentication credentials for REST request [/{}]",
                segments.join("/")
            ),
        ),
        429 => (
            "es_rejected_execution_exception",
            "rejected execution (injected by the test)".to_owned(),
        ),
        503 => (
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];".to_owned(),
        ),
        _ => (
            "exception",
            format!("injected by the test with status {status}"),
        ),
    };
    json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
           "status": status})
}
