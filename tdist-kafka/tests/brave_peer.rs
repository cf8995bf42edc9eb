//! Compatibility with Brave (Java), the reference Zipkin tracer, over a real Kafka broker.
//!
//! The Brave side is `peers/brave` (`tdist.peer.BravePeer`, Brave's `KafkaTracing` around the
//! Apache Kafka client). Needs `TDIST_BRAVE_CLASSPATH` (the peer's jar and its dependencies, as
//! for `java -cp`) and `TDIST_KAFKA_BOOTSTRAP_SERVERS`; run by `.ci/brave.sh`
//! (`cargo test -p tdist-kafka --test brave_peer -- --ignored`). Without them each test prints why
//! it skips.
#![cfg(feature = "rdkafka")]

mod support;

use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::Broker;
use tdist_core::export::InMemory;
use tdist_core::{Kind, SpanId, TraceId, Tracer};
use tdist_kafka::{KafkaTracing, TracedProducer};

/// The classpath and bootstrap servers, or `None` (with the reason printed) to skip.
fn peer_env() -> Option<(String, String)> {
    let cp = std::env::var("TDIST_BRAVE_CLASSPATH").unwrap_or_default();
    let bootstrap = std::env::var("TDIST_KAFKA_BOOTSTRAP_SERVERS").unwrap_or_default();
    if cp.trim().is_empty() || bootstrap.trim().is_empty() {
        let why = "needs TDIST_BRAVE_CLASSPATH (Brave peer jars) and \
                   TDIST_KAFKA_BOOTSTRAP_SERVERS (a real broker); run .ci/brave.sh";
        // CI sets this where it runs the peers: a peer it failed to provide is a failure.
        assert!(std::env::var_os("TDIST_PEERS_REQUIRED").is_none(), "{why}");
        eprintln!("skipping: {why}");
        return None;
    }
    Some((cp, bootstrap))
}

/// Runs the Brave peer and parses its JSON lines.
fn brave(cp: &str, bootstrap: &str, args: &[&str]) -> Vec<Value> {
    brave_with(cp, bootstrap, false, args)
}

/// [`brave`], with Brave starting traces with 128-bit ids when `trace_id_128`.
fn brave_with(cp: &str, bootstrap: &str, trace_id_128: bool, args: &[&str]) -> Vec<Value> {
    let java = std::env::var("TDIST_JAVA").unwrap_or_else(|_| "java".into());
    let out = Command::new(java)
        .args(["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .args(["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp])
        .arg("tdist.peer.BravePeer")
        .args(args)
        .env("TDIST_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env(
            "TDIST_BRAVE_TRACE_ID_128",
            if trace_id_128 { "1" } else { "0" },
        )
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "brave {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

fn str_field<'v>(v: &'v Value, name: &str) -> &'v str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {v}"))
}

const N: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Brave peer and a real broker; run by .ci/brave.sh"]
async fn brave_consumer_continues_our_producer_spans() {
    let Some((cp, bootstrap)) = peer_env() else {
        return;
    };
    let broker = Broker::start();
    assert_eq!(broker.bootstrap(), bootstrap.trim());
    let topic = broker.topic("to-brave").await;
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name("rust-producer")
        .transport(sink.clone())
        .build()
        .unwrap();
    let producer = TracedProducer::new(broker.producer(), KafkaTracing::new(tracer.clone()));
    for i in 0..N {
        let payload = format!("from tdist {i}");
        producer
            .send(
                FutureRecord::<str, str>::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
    tracer.flush().unwrap();
    let ours = sink.spans();
    assert_eq!(ours.len(), N);
    assert!(ours.iter().all(|s| s.kind() == Some(Kind::Producer)));

    let seen = brave(&cp, &bootstrap, &["consume", &topic, &N.to_string()]);
    assert_eq!(seen.len(), N, "Brave read every record: {seen:?}");
    for (i, (rec, producer_span)) in seen.iter().zip(&ours).enumerate() {
        assert_eq!(str_field(rec, "consumer_kind"), "CONSUMER", "{rec}");
        assert_eq!(str_field(rec, "consumer_name"), "poll");
        let trace = TraceId::from_hex(str_field(rec, "consumer_trace_id")).unwrap();
        let parent = SpanId::from_hex(str_field(rec, "consumer_parent_id")).unwrap();
        let consumer = SpanId::from_hex(str_field(rec, "consumer_span_id")).unwrap();
        assert_eq!(
            trace,
            producer_span.trace_id(),
            "Brave joined our trace: {rec}"
        );
        assert_eq!(
            parent,
            producer_span.id(),
            "Brave's CONSUMER span is a child of our PRODUCER span: {rec}"
        );
        assert_ne!(
            consumer,
            producer_span.id(),
            "messaging spans never share ids"
        );
        // The processing span continues from Brave's consumer span, in the same trace.
        assert_eq!(
            TraceId::from_hex(str_field(rec, "process_trace_id")).unwrap(),
            trace
        );
        assert_eq!(
            SpanId::from_hex(str_field(rec, "process_parent_id")).unwrap(),
            consumer
        );
        assert_eq!(str_field(rec, "value"), format!("from tdist {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Brave peer and a real broker; run by .ci/brave.sh"]
async fn our_consumer_continues_brave_producer_spans() {
    let Some((cp, bootstrap)) = peer_env() else {
        return;
    };
    // Brave's default 64-bit trace ids, then 128-bit ones.
    for trace_id_128 in [false, true] {
        consume_from_brave(&cp, &bootstrap, trace_id_128).await;
    }
}

async fn consume_from_brave(cp: &str, bootstrap: &str, trace_id_128: bool) {
    let broker = Broker::start();
    let topic = broker.topic("from-brave").await;
    let sent = brave_with(
        cp,
        bootstrap,
        trace_id_128,
        &["produce", &topic, &N.to_string()],
    );
    assert_eq!(sent.len(), N, "{sent:?}");

    let got = broker.consume_all(&topic, N);
    assert_eq!(got.len(), N, "records lost");
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name("rust-consumer")
        .transport(sink.clone())
        .build()
        .unwrap();
    let kt = KafkaTracing::new(tracer.clone());
    for (m, rec) in got.iter().zip(&sent) {
        let r = kt.receive(m);
        assert_eq!(
            r.payload().unwrap_or_default(),
            str_field(rec, "value").as_bytes()
        );
        r.process(|_| ());
    }
    tracer.flush().unwrap();
    let ours = sink.spans();
    assert_eq!(ours.len(), N);
    for (span, rec) in ours.iter().zip(&sent) {
        assert_eq!(str_field(rec, "producer_kind"), "PRODUCER", "{rec}");
        assert_eq!(str_field(rec, "producer_name"), "send");
        let b3 = str_field(rec, "b3");
        assert_eq!(
            b3.split('-').count(),
            3,
            "Brave's producer b3 has no parent: {b3}"
        );
        let trace_hex = str_field(rec, "producer_trace_id");
        assert_eq!(trace_hex.len(), if trace_id_128 { 32 } else { 16 });
        let trace = TraceId::from_hex(trace_hex).unwrap();
        let brave_span = SpanId::from_hex(str_field(rec, "producer_span_id")).unwrap();
        assert!(b3.starts_with(&format!("{trace}-{brave_span}-")), "{b3}");
        assert_eq!(span.kind(), Some(Kind::Consumer));
        assert_eq!(span.trace_id(), trace, "we joined Brave's trace: {rec}");
        assert_eq!(
            span.trace_id().to_string(),
            trace_hex,
            "the id's width is kept"
        );
        assert_eq!(
            span.parent_id(),
            Some(brave_span),
            "our CONSUMER span is a child of Brave's PRODUCER span: {rec}"
        );
        assert_ne!(span.id(), brave_span);
    }
}
