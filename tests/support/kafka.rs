//! The Kafka tier's test parts, shared by `kafka_out` (the node's output alone) and
//! `kafka_in` (node → Kafka → aggregator): Tansu with the topic made, Tansu behind a proxy that
//! can be cut, and a node agent's config shipping to Kafka instead of Elasticsearch.

use super::tcp_proxy::TcpProxy;
use super::{Node, free_port};
use logferry_harness::tansu::Tansu;
use std::path::PathBuf;

/// The topic the node agents produce to and the aggregators consume.
pub const TOPIC: &str = "logs";

/// A fresh Tansu with [`TOPIC`] made, in 3 partitions.
pub fn tansu() -> Tansu {
    let t = Tansu::start().expect("Tansu must be installed: run scripts/install-deps");
    t.create_topic(TOPIC, 3).expect("create the topic");
    t
}

/// Tansu behind a proxy that can be cut, [`TOPIC`] made. The broker advertises the proxy, so
/// every connection of a client (the bootstrap one and those the metadata names) goes through
/// it, and `t.addr` is the proxy's.
pub fn tansu_behind_proxy() -> (Tansu, TcpProxy) {
    let listen = free_port();
    let proxy_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let proxy_port = proxy_listener.local_addr().expect("addr").port();
    let t = Tansu::start_advertising(listen, proxy_port)
        .expect("Tansu must be installed: run scripts/install-deps");
    let proxy = TcpProxy::serve(proxy_listener, &format!("127.0.0.1:{listen}"));
    t.create_topic(TOPIC, 3).expect("create the topic");
    (t, proxy)
}

/// A node's config shipping its container logs to [`TOPIC`] at `brokers`, with no
/// Elasticsearch hosts at all, short waits for quick tests, and `extra_kafka` (whole lines)
/// in its `[kafka]` section.
pub fn node_config(node: &Node, brokers: &str, extra_kafka: &str) -> PathBuf {
    let text = format!(
        "data_dir = {data:?}\n\
         [input]\ninclude = [{glob:?}]\nrotate_wait = \"500ms\"\nrescan_interval = \"200ms\"\n\
         [elasticsearch]\nhosts = []\n\
         [kafka]\nbrokers = [{brokers:?}]\ntopic = \"{TOPIC}\"\n{extra_kafka}\n\
         [buffer]\nretry_wait = \"100ms\"\nretry_max_interval = \"500ms\"\nflush_interval = \"50ms\"\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n",
        data = node.data().display().to_string(),
        glob = node.logs().join("containers/*.log").display().to_string(),
        port = free_port(),
    );
    let path = node.dir.path().join("logferry.toml");
    std::fs::write(&path, text).expect("write config");
    path
}
