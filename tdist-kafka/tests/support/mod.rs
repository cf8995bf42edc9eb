//! The broker the integration tests talk to: `TDIST_KAFKA_BOOTSTRAP_SERVERS` when set (tansu
//! in CI), else librdkafka's in-process mock cluster (the real protocol over TCP).
#![allow(dead_code, unreachable_pub)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    External(String),
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Broker {
    pub fn start() -> Broker {
        match std::env::var("TDIST_KAFKA_BOOTSTRAP_SERVERS") {
            Ok(s) if !s.trim().is_empty() => Broker::External(s.trim().to_owned()),
            _ => Broker::Mock(MockCluster::new(1).expect("mock cluster")),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::External(s) => s.clone(),
        }
    }

    /// A new topic with a unique name and one partition.
    pub async fn topic(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            tdist_core::random_u64() % 1_000_000
        );
        match self {
            Broker::Mock(m) => m.create_topic(&name, 1, 1).expect("create topic"),
            Broker::External(s) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", s)
                    .create()
                    .expect("admin client");
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                let res = admin
                    .create_topics(
                        &[NewTopic::new(&name, 1, TopicReplication::Fixed(1))],
                        &opts,
                    )
                    .await
                    .expect("create topics");
                for r in res {
                    r.expect("topic created");
                }
            }
        }
        name
    }

    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap())
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "1");
        c
    }

    pub fn producer(&self) -> FutureProducer {
        self.producer_config().create().expect("producer")
    }

    /// A consumer assigned to partition 0 of `topic` from the beginning (no group join).
    pub fn consumer(&self, topic: &str) -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set(
                "group.id",
                format!("tdist-test-{}", tdist_core::random_u64()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).expect("assign");
        c
    }

    /// Reads `n` messages from `topic` (fewer if `timeout` passes first).
    pub fn consume(&self, topic: &str, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
        let c = self.consumer(topic);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => out.push(m.detach()),
                Some(Err(e)) => eprintln!("consume error: {e}"),
                None => {}
            }
        }
        out
    }

    /// Like [`consume`], with the messages sorted by offset and checked to be contiguous.
    pub fn consume_all(&self, topic: &str, n: usize) -> Vec<OwnedMessage> {
        let mut v = self.consume(topic, n, Duration::from_secs(30));
        v.sort_by_key(|m| m.offset());
        v
    }
}
