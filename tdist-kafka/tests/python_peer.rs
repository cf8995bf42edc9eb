//! Compatibility with a peer in another language: Python `confluent-kafka`.
//!
//! Needs `TDIST_KAFKA_PYTHON`, a Python interpreter with `confluent-kafka` installed; run by
//! `.ci/kafka.sh` (`cargo test -p tdist-kafka --test python_peer -- --ignored`).

mod support;

use rdkafka::producer::FutureRecord;
use std::process::Command;
use std::time::Duration;
use support::Broker;
use tdist_core::export::InMemory;
use tdist_core::{Kind, SamplingState, SpanId, TraceId, Tracer};
use tdist_kafka::{frame, Carrier, KafkaTracing, TracedProducer};

fn python(args: &[&str]) -> serde_json::Value {
    let py = std::env::var("TDIST_KAFKA_PYTHON")
        .expect("TDIST_KAFKA_PYTHON must name a python with confluent-kafka (see .ci/kafka.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/confluent_peer.py");
    let out = Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python confluent-kafka; run by .ci/kafka.sh"]
async fn traced_consumer_delivers_python_messages_byte_for_byte() {
    let broker = Broker::start();
    let topic = broker.topic("from-python").await;
    let sent = python(&[
        "produce",
        "--bootstrap",
        &broker.bootstrap(),
        "--topic",
        &topic,
    ]);
    let sent: Vec<Vec<u8>> = sent["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| unhex(p.as_str().unwrap()))
        .collect();
    assert!(sent.len() >= 8);
    assert!(sent.iter().filter(|p| p.starts_with(&[0xC1, 0xB3])).count() >= 5);

    let got = broker.consume_all(&topic, sent.len());
    assert_eq!(got.len(), sent.len(), "messages lost");
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name("rust-consumer")
        .transport(sink.clone())
        .build()
        .unwrap();
    let kt = KafkaTracing::new(tracer.clone());
    for (m, want) in got.iter().zip(&sent) {
        let r = kt.receive(m);
        assert_eq!(
            r.payload().unwrap_or_default(),
            &want[..],
            "payload changed"
        );
        assert_eq!(r.source(), None);
        assert!(r.parent().is_empty());
        r.process(|_| ());
    }
    tracer.flush().unwrap();
    assert_eq!(sink.spans().len(), sent.len());
    assert!(sink
        .spans()
        .iter()
        .all(|s| s.kind() == Some(Kind::Consumer) && s.parent_id().is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python confluent-kafka; run by .ci/kafka.sh"]
async fn python_consumer_finds_brave_style_b3_on_our_messages() {
    let broker = Broker::start();
    let topic = broker.topic("to-python").await;
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name("rust-producer")
        .transport(sink.clone())
        .build()
        .unwrap();
    let producer = broker.producer();
    let mut payloads = Vec::new();
    for (i, carrier) in [
        Carrier::Headers,
        Carrier::Headers,
        Carrier::Both,
        Carrier::Both,
    ]
    .into_iter()
    .enumerate()
    {
        let tp = TracedProducer::new(
            producer.clone(),
            KafkaTracing::new(tracer.clone()).carrier(carrier),
        );
        let payload = format!("message {i}").into_bytes();
        tp.send(
            FutureRecord::<str, [u8]>::to(&topic)
                .key("k")
                .payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        payloads.push((carrier, payload));
    }
    tracer.flush().unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 4);

    let seen = python(&[
        "consume",
        "--bootstrap",
        &broker.bootstrap(),
        "--topic",
        &topic,
        "--count",
        "4",
    ]);
    let msgs = seen["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    for (i, m) in msgs.iter().enumerate() {
        let b3 = m["b3"].as_str().unwrap();
        let parts: Vec<&str> = b3.split('-').collect();
        assert_eq!(parts.len(), 3, "trace-span-sampled, no parent: {b3}");
        let trace = TraceId::from_hex(parts[0]).unwrap();
        let span = SpanId::from_hex(parts[1]).unwrap();
        assert_eq!(parts[2], "1");
        let producer = &spans[i];
        assert_eq!((producer.trace_id(), producer.id()), (trace, span));
        assert_eq!(producer.context().sampling(), SamplingState::Accept);
        let raw = unhex(m["payload"].as_str().unwrap());
        let (carrier, want) = &payloads[i];
        if *carrier == Carrier::Headers {
            assert_eq!(raw, *want, "headers only: the payload is untouched");
        } else {
            let u = frame::decode(&raw);
            assert_eq!(u.payload, &want[..]);
            assert_eq!(u.context.unwrap().span_id(), span, "frame and header agree");
        }
    }
}
