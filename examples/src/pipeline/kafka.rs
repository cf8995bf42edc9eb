//! The pipeline's Kafka: librdkafka's in-process mock cluster, or the broker named by
//! `TDIST_KAFKA_BOOTSTRAP_SERVERS`; the comments API's traced producer; and the consumer loop
//! that turns each record into a CONSUMER span and a tuple for the topology.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use std::time::Duration;
use tdist_core::propagation::b3;
use tdist_kafka::{Carrier, KafkaTracing, TracedProducer};

/// The environment variable naming a real broker (else the mock cluster is used).
pub const BOOTSTRAP_VAR: &str = "TDIST_KAFKA_BOOTSTRAP_SERVERS";

/// A Kafka cluster to talk to: the mock one lives as long as this value.
pub struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    bootstrap: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("mock", &self.mock.is_some())
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl Broker {
    /// The broker in `TDIST_KAFKA_BOOTSTRAP_SERVERS` (`topic` must exist or be auto-created),
    /// else a one-broker mock cluster with `topic` created.
    pub fn from_env(topic: &str) -> Result<Broker, String> {
        match std::env::var(BOOTSTRAP_VAR) {
            Ok(b) if !b.trim().is_empty() => Ok(Broker {
                mock: None,
                bootstrap: b.trim().to_owned(),
            }),
            _ => {
                let mock = MockCluster::new(1).map_err(|e| format!("mock cluster: {e}"))?;
                mock.create_topic(topic, 1, 1)
                    .map_err(|e| format!("mock topic {topic}: {e}"))?;
                let bootstrap = mock.bootstrap_servers();
                Ok(Broker {
                    mock: Some(mock),
                    bootstrap,
                })
            }
        }
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Whether this is librdkafka's mock cluster.
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Creates `topic` (one partition) on a real broker unless it exists; the mock cluster has
    /// it already.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), String> {
        if self.is_mock() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .map_err(|e| format!("admin client: {e}"))?;
        let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| format!("creating {topic}: {e}"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(format!("creating {t}: {code}")),
            }
        }
        Ok(())
    }

    /// A traced producer: each record's context in the `b3` header and in a payload frame.
    pub fn producer(&self, tracing: KafkaTracing) -> Result<TracedProducer, String> {
        Ok(TracedProducer::new(
            self.plain_producer()?,
            tracing.carrier(Carrier::Both),
        ))
    }

    /// rdkafka's producer, with the same settings as [`Broker::producer`] and no tracing.
    pub fn plain_producer(&self) -> Result<FutureProducer, String> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("message.timeout.ms", "15000")
            .set("linger.ms", "2")
            .create()
            .map_err(|e| format!("producer: {e}"))
    }

    /// A consumer assigned to every partition of `topic` at its current end, so it reads only
    /// what this run produces (the mock cluster does not support group subscriptions).
    pub fn consumer(&self, topic: &str) -> Result<BaseConsumer, String> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "tdist-comment-pipeline")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| format!("consumer: {e}"))?;
        let t = Duration::from_secs(10);
        let md = c
            .fetch_metadata(Some(topic), t)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("topic {topic} has no partitions (does it exist?)"));
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = c
                .fetch_watermarks(topic, p, t)
                .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
        c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
        Ok(c)
    }
}

/// Polls `consumer` until `stop` returns true; each record becomes a CONSUMER span (the
/// producer's child) inside which `deliver` gets the tuple values `[payload, b3]`, the B3 value
/// being the CONSUMER span's context (what the traced bolt continues from). Returns how many
/// records were delivered; the first error from `deliver` ends the loop. Without `tracing`
/// there is no span and the tuple is `[payload]`.
pub fn consume_loop<E>(
    consumer: &BaseConsumer,
    tracing: Option<&KafkaTracing>,
    stop: impl Fn() -> bool,
    mut deliver: impl FnMut(Vec<Value>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut n = 0;
    while !stop() {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let Some(tracing) = tracing else {
            let text = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
            deliver(vec![Value::from(text)])?;
            n += 1;
            continue;
        };
        let received = tracing.receive(&msg);
        let result = received.process(|payload| {
            let text = String::from_utf8_lossy(payload.unwrap_or_default()).into_owned();
            let mut values = vec![Value::from(text)];
            if let Some(ctx) = tdist_core::current() {
                values.push(Value::from(b3::format_single(&ctx, false).as_str()));
            }
            deliver(values)
        });
        result?;
        n += 1;
    }
    Ok(n)
}
