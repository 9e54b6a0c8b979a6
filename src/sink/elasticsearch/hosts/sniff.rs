//! Sniffing: learning the cluster's HTTP nodes from `GET _nodes/http` and making them the
//! pool's members. A learned host keeps the scheme and path prefix of the host that named it;
//! dedicated master nodes are skipped; a failed sniff keeps the current set.

use super::{Error, Host, HostPool, MAX_NODES_BODY, Result};
use crate::sink::elasticsearch::client::Connector;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

impl HostPool {
    /// Learns the cluster's HTTP nodes now and every `every` after, until the process ends. A
    /// failure keeps the current set, is counted, and is logged once until sniffing works again.
    pub async fn sniff_every(self: Arc<Self>, connector: Arc<Connector>, every: Duration) {
        let mut failing = false;
        loop {
            match self.sniff(&connector).await {
                Ok(hosts) => {
                    if failing {
                        tracing::info!("sniffing works again");
                        failing = false;
                    }
                    self.replace(hosts);
                }
                Err(e) => {
                    self.metrics.elasticsearch_sniff_failures.inc();
                    if !failing {
                        tracing::warn!(error = %e, "sniffing the cluster's nodes failed; shipping goes on to the hosts known so far");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The cluster's HTTP nodes, asked of the hosts in [`HostPool::sniff_order`]; the first
    /// answer counts.
    async fn sniff(&self, connector: &Connector) -> Result<Vec<Host>> {
        let mut last = Error::NoHosts;
        for host in self.sniff_order() {
            match nodes_of(connector, &host).await {
                Ok(found) => return Ok(found),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// `GET <host>/_nodes/http`, read into hosts with `host`'s scheme and path prefix.
async fn nodes_of(connector: &Connector, host: &Host) -> Result<Vec<Host>> {
    let name = host.name();
    let url = host.url("_nodes/http").ok_or(Error::NoHosts)?;
    let request = |source| Error::Request {
        host: name.clone(),
        source,
    };
    let mut resp = connector.get(url).send().await.map_err(request)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Error::Status { host: name, status });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request)? {
        if body.len() + chunk.len() > MAX_NODES_BODY {
            return Err(Error::TooLarge { host: name });
        }
        body.extend_from_slice(&chunk);
    }
    let found = learned_hosts(&body, host).map_err(|source| Error::Body {
        host: name.clone(),
        source,
    })?;
    if found.is_empty() {
        return Err(Error::NoNodes { host: name });
    }
    Ok(found)
}

#[derive(Deserialize)]
struct NodesInfo {
    nodes: HashMap<String, NodeInfo>,
}

#[derive(Deserialize)]
struct NodeInfo {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    http: Option<NodeHttp>,
}

#[derive(Deserialize)]
struct NodeHttp {
    publish_address: String,
}

/// The hosts a `_nodes/http` answer names, in `like`'s scheme and path prefix, sorted (the
/// answer is a map: its order means nothing) and without dedicated master nodes, which do not
/// take bulk requests well (the official clients skip them too).
pub(super) fn learned_hosts(body: &[u8], like: &Host) -> Result<Vec<Host>, serde_json::Error> {
    let info: NodesInfo = serde_json::from_slice(body)?;
    let mut out: Vec<Host> = info
        .nodes
        .into_values()
        .filter(|n| {
            !n.roles.as_ref().is_some_and(|r| {
                !r.is_empty()
                    && r.iter()
                        .all(|r| matches!(r.as_str(), "master" | "cluster_manager" | "voting_only"))
            })
        })
        .filter_map(|n| n.http)
        .filter_map(|h| with_address(like, &h.publish_address))
        .collect();
    out.sort_by(|a, b| a.base.as_str().cmp(b.base.as_str()));
    out.dedup();
    Ok(out)
}

/// `like` with the host and port of a `publish_address`: `10.0.0.5:9200`, `[::1]:9200`, or
/// `es-1.example/10.0.0.5:9200` — Elasticsearch's `host/ip:port` form when the node was given
/// a name, whose name is used so an https certificate for it still matches.
fn with_address(like: &Host, publish_address: &str) -> Option<Host> {
    let (name, address) = match publish_address.split_once('/') {
        Some((name, address)) => (Some(name).filter(|n| !n.is_empty()), address),
        None => (None, publish_address),
    };
    let (ip, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let mut url = (*like.base).clone();
    url.set_host(Some(name.unwrap_or(ip))).ok()?;
    url.set_port(Some(port)).ok()?;
    Host::from_base(url)
}
