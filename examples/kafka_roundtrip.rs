//! A traced Kafka round trip: a `checkout` service produces orders inside its request span,
//! a `fulfillment` service consumes them and packs each one inside a CONSUMER span that is the
//! producer's child. A legacy (untraced) producer's message passes through untouched. Spans go
//! to the topic `zipkin`, in the format Zipkin's Kafka collector reads, and are read back.
//!
//! Uses the broker in `TDIST_KAFKA_BOOTSTRAP_SERVERS` when set (topics `orders` and `zipkin`
//! must exist), else librdkafka's in-process mock cluster.
//!
//! ```text
//! cargo run -p tdist-examples --example kafka_roundtrip
//! ```

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tdist_core::export::{Fanout, Transport, TransportError};
use tdist_core::{FinishedSpan, FutureExt, Tracer};
use tdist_kafka::{Carrier, KafkaTracing, KafkaTransport, TracedProducer};

/// Keeps a copy of every reported span, to print the trace at the end.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<FinishedSpan>>>);

impl Transport for Keep {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        self.0.lock().unwrap().extend_from_slice(spans);
        Ok(())
    }
}

fn consume(bootstrap: &str, topic: &str, want: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-roundtrip")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
    out
}

fn print_tree(spans: &[FinishedSpan], parent: Option<tdist_core::SpanId>, depth: usize) {
    for s in spans.iter().filter(|s| s.parent_id() == parent) {
        let kind = s.kind().map_or("LOCAL", |k| k.as_str());
        let service = s.local_endpoint().service_name().unwrap_or("?");
        println!(
            "{:indent$}{service}: {} [{kind}]",
            "",
            s.name(),
            indent = depth * 2
        );
        print_tree(spans, Some(s.id()), depth + 1);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock;
    let bootstrap = match std::env::var("TDIST_KAFKA_BOOTSTRAP_SERVERS") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            mock = MockCluster::new(1)?;
            mock.create_topic("orders", 1, 1)?;
            mock.create_topic("zipkin", 1, 1)?;
            mock.bootstrap_servers()
        }
    };

    let keep = Keep::default();
    let to_kafka = KafkaTransport::builder(&bootstrap)
        .topic("zipkin")
        .build()?;
    let tracer = Tracer::builder()
        .service_name("checkout")
        .transport(Fanout::new().with(keep.clone()).with(to_kafka))
        .build()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "10000")
        .create()?;

    // checkout: one request, three orders, one PRODUCER span (and one context) per record.
    let traced = TracedProducer::new(
        producer.clone(),
        KafkaTracing::new(tracer.clone()).carrier(Carrier::Both),
    );
    let request = tracer.root_span("post /checkout");
    let trace_id = request.context().trace_id();
    async {
        for order in ["order-1", "order-2", "order-3"] {
            let record = FutureRecord::to("orders")
                .key(order)
                .payload(order.as_bytes());
            traced
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(e, _)| e)?;
        }
        Ok::<_, rdkafka::error::KafkaError>(())
    }
    .in_span(request)
    .await?;

    // A service that is not upgraded yet, writing bytes that merely start like a frame.
    let legacy = [0xC1, 0xB3, 0x01, 0x00, b'l', b'e', b'g', b'a', b'c', b'y'];
    producer
        .send(
            FutureRecord::<(), [u8]>::to("orders").payload(&legacy[..]),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;

    // fulfillment: each record in its own CONSUMER span, processing inside it.
    let fulfillment = KafkaTracing::new(tracer.with_service_name("fulfillment"));
    let messages = consume(&bootstrap, "orders", 4);
    assert_eq!(messages.len(), 4, "every message arrives");
    for m in &messages {
        let received = fulfillment.receive(m);
        let from = received.source();
        let t = fulfillment.tracer().clone();
        let payload = received
            .process_async(|p| async move {
                let _pack = t.span("pack");
                tokio::time::sleep(Duration::from_millis(2)).await;
                p.unwrap_or_default().to_vec()
            })
            .await;
        println!(
            "consumed {:?} (context from {from:?})",
            String::from_utf8_lossy(&payload)
        );
        if from.is_none() {
            assert_eq!(payload, legacy, "untraced payloads arrive byte for byte");
        }
    }

    tracer.flush()?;
    let spans = keep.0.lock().unwrap().clone();
    let trace: Vec<FinishedSpan> = spans
        .into_iter()
        .filter(|s| s.trace_id() == trace_id)
        .collect();
    println!("\ntrace {}:", trace_id.to_hex().as_str());
    print_tree(&trace, None, 1);
    // request + 3 × (send + poll + pack)
    assert_eq!(trace.len(), 10, "one trace from checkout to fulfillment");

    let on_topic: usize = consume(&bootstrap, "zipkin", usize::MAX)
        .iter()
        .filter_map(|m| {
            m.payload()
                .map(|p| p.windows(10).filter(|w| w == b"\"traceId\":").count())
        })
        .sum();
    println!("\nspans read back from topic zipkin: {on_topic}");
    // The trace's 10 spans, plus the legacy message's poll and pack.
    assert_eq!(on_topic, 12, "every span was published to Kafka");
    Ok(())
}
