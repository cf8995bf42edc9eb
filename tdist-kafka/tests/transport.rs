//! The Kafka span transport against a real broker protocol: what lands on the topic is what
//! Zipkin's Kafka collector reads.

mod support;

use rdkafka::message::Message;
use std::time::Duration;
use support::Broker;
use tdist_core::{Kind, Tracer};
use tdist_kafka::transport::split_messages;
use tdist_kafka::{Encoding, KafkaTransport};

fn make_spans(tracer: &Tracer, n: usize) {
    for i in 0..n {
        let mut root = tracer.root_span("job");
        root.tag("i", i as i64);
        let mut child = tracer.child_span(&root.context(), "step");
        child.set_kind(Kind::Client);
        child.tag("payload", "x".repeat(200));
        child.finish();
        root.finish();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lists_split_by_size_and_every_span_has_local_endpoint() {
    let broker = Broker::start();
    let topic = broker.topic("zipkin").await;
    let max = 4096;
    let transport = KafkaTransport::builder(broker.bootstrap())
        .topic(&topic)
        .max_message_bytes(max)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tracer = Tracer::builder()
        .service_name("reporter-test")
        .transport(transport)
        .build()
        .unwrap();
    make_spans(&tracer, 50);
    let stats = tracer.flush().unwrap();
    assert_eq!(stats.sent, 100);
    assert_eq!(stats.failed, 0);

    let got = broker.consume(&topic, usize::MAX, Duration::from_secs(3));
    assert!(
        got.len() >= 100 * 300 / max,
        "batches were split: {} messages",
        got.len()
    );
    let mut total = 0;
    for m in &got {
        let bytes = m.payload().unwrap();
        assert!(bytes.len() <= max, "message of {} bytes", bytes.len());
        assert_eq!(bytes[0], b'[');
        assert!(m.key().is_none());
        assert!(m.headers().is_none(), "the transport writes no headers");
        let list: Vec<serde_json::Value> = serde_json::from_slice(bytes).unwrap();
        for s in &list {
            assert_eq!(s["localEndpoint"]["serviceName"], "reporter-test");
        }
        total += list.len();
    }
    assert_eq!(total, 100, "every span delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proto3_lists() {
    let broker = Broker::start();
    let topic = broker.topic("zipkin-proto").await;
    let transport = KafkaTransport::builder(broker.bootstrap())
        .topic(&topic)
        .encoding(Encoding::Proto3)
        .build()
        .unwrap();
    let tracer = Tracer::builder()
        .service_name("p")
        .transport(transport)
        .build()
        .unwrap();
    make_spans(&tracer, 3);
    assert_eq!(tracer.flush().unwrap().sent, 6);
    let got = broker.consume(&topic, 1, Duration::from_secs(10));
    let bytes = got[0].payload().unwrap();
    // ListOfSpans: field 1, length-delimited; the collector's detector wants byte1 != 0.
    assert_eq!(bytes[0], 0x0A);
    assert_ne!(bytes[1], 0);
}

#[test]
fn an_unreachable_broker_is_a_retryable_failure_within_the_timeout() {
    use tdist_core::export::Transport;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = KafkaTransport::builder(format!("127.0.0.1:{port}"))
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let spans = finished(|tracer| tracer.root_span("x").finish());
    let start = std::time::Instant::now();
    let err = t.send(&spans).unwrap_err();
    assert!(err.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(t.in_flight(), 0, "a failed batch is purged, not kept");
    // A second failing batch behaves the same (no leftovers from the first).
    assert!(t.send(&spans).is_err());
    assert_eq!(t.in_flight(), 0);
}

#[test]
fn split_keeps_every_span_and_drops_only_the_oversized() {
    let spans = finished(|tracer| {
        make_spans(tracer, 20);
        let mut huge = tracer.root_span("huge");
        huge.tag("blob", "y".repeat(5000));
        huge.finish();
    });
    for enc in [Encoding::Json, Encoding::Proto3] {
        let (msgs, dropped) = split_messages(&spans, enc, 2000);
        assert_eq!(dropped, 1);
        assert!(msgs.iter().all(|m| m.len() <= 2000 && !m.is_empty()));
        if enc == Encoding::Json {
            let n: usize = msgs
                .iter()
                .map(|m| {
                    serde_json::from_slice::<Vec<serde_json::Value>>(m)
                        .unwrap()
                        .len()
                })
                .sum();
            assert_eq!(n, 40);
        }
        let (one, dropped) = split_messages(&spans, enc, 1 << 20);
        assert_eq!((one.len(), dropped), (1, 0));
    }
}

#[test]
fn environment_selects_the_transport() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(KafkaTransport::builder_from_lookup(env(&[]))
        .unwrap()
        .is_none());
    let b = KafkaTransport::from_lookup(env(&[
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("TDIST_KAFKA_TOPIC", "spans"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(b.topic(), "spans");
    let err = KafkaTransport::builder_from_lookup(env(&[
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", "h:1"),
        ("TDIST_KAFKA_ENCODING", "xml"),
    ]))
    .unwrap_err();
    assert_eq!(err.variable(), "TDIST_KAFKA_ENCODING");
    let err =
        KafkaTransport::configure_with(Tracer::builder(), env(&[("TDIST_TRANSPORT", "kafka")]))
            .unwrap_err();
    assert_eq!(err.variable(), "TDIST_KAFKA_BOOTSTRAP_SERVERS");
    let b = KafkaTransport::configure_with(
        Tracer::builder(),
        env(&[("TDIST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")]),
    )
    .unwrap();
    assert!(b.has_transport());
    // A timeout shorter than librdkafka's default linger still makes a transport.
    const SHORT: &[(&str, &str)] = &[
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("TDIST_KAFKA_TIMEOUT", "3"),
    ];
    assert!(KafkaTransport::from_lookup(env(SHORT)).unwrap().is_some());
    // TDIST_TRANSPORT decides between adapters, whichever is asked first.
    use tdist_core::config::TracerBuilder;
    const FOR_ZIPKIN: &[(&str, &str)] = &[
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("TDIST_TRANSPORT", "zipkin"),
    ];
    const FOR_KAFKA: &[(&str, &str)] = &[
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("TDIST_TRANSPORT", "kafka"),
    ];
    let zipkin = TracerBuilder::from_lookup(env(FOR_ZIPKIN)).unwrap();
    let b = KafkaTransport::configure_with(zipkin, env(FOR_ZIPKIN)).unwrap();
    assert!(!b.has_transport());
    assert_eq!(b.pending_transport(), Some("zipkin"));
    let kafka = TracerBuilder::from_lookup(env(FOR_KAFKA)).unwrap();
    let b = KafkaTransport::configure_with(kafka, env(FOR_KAFKA)).unwrap();
    assert!(b.has_transport() && b.pending_transport().is_none());
}

/// A broker that goes away and comes back: the failed batch is reported (the reporter
/// retries it), nothing is left queued, and the next batch is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_the_broker_comes_back() {
    use tdist_core::export::Transport;
    let broker = Broker::start();
    let support::Broker::Mock(cluster) = &broker else {
        eprintln!("skipped: needs the mock cluster's fault injection");
        return;
    };
    let topic = broker.topic("zipkin-down").await;
    let t = KafkaTransport::builder(broker.bootstrap())
        .topic(&topic)
        .timeout(Duration::from_millis(1500))
        .set("reconnect.backoff.max.ms", "200")
        .build()
        .unwrap();
    let spans = finished(|tracer| make_spans(tracer, 2));
    t.send(&spans).unwrap();
    cluster.broker_down(1).unwrap();
    let err = t.send(&spans).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(t.in_flight(), 0);
    cluster.broker_up(1).unwrap();
    let mut ok = false;
    for _ in 0..10 {
        if t.send(&spans).is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "delivered again once the broker is back");
    let got = broker.consume(&topic, usize::MAX, Duration::from_secs(3));
    assert_eq!(
        got.len(),
        2,
        "the first and the last batch, nothing purged resurfaced"
    );
}

/// The span ids in the JSON lists `got` holds, in order, duplicates kept.
fn span_ids(got: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    let mut ids = Vec::new();
    for m in got {
        let list: Vec<serde_json::Value> = serde_json::from_slice(m.payload().unwrap()).unwrap();
        ids.extend(list.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
    }
    ids
}

/// A transport to `topic` splitting batches at `max` bytes, acknowledged within 5 s.
fn to_topic(broker: &Broker, topic: &str, max: usize) -> tdist_kafka::KafkaTransportBuilder {
    KafkaTransport::builder(broker.bootstrap())
        .topic(topic)
        .max_message_bytes(max)
        .timeout(Duration::from_secs(5))
}

/// The spans `make` finishes, as a transport would be given them.
fn finished(make: impl FnOnce(&Tracer)) -> Vec<tdist_core::FinishedSpan> {
    let sink = tdist_core::export::InMemory::new();
    let tracer = Tracer::builder()
        .service_name("s")
        .transport(sink.clone())
        .build()
        .unwrap();
    make(&tracer);
    tracer.flush().unwrap();
    sink.spans()
}

/// A span too large for any message is dropped alone: the rest of its batch is delivered and
/// counted as sent, and only that span as failed (it used to fail the whole batch's count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_span_fails_alone() {
    let broker = Broker::start();
    let topic = broker.topic("zipkin-big").await;
    let transport = KafkaTransport::builder(broker.bootstrap())
        .topic(&topic)
        .max_message_bytes(2048)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tracer = Tracer::builder()
        .service_name("big")
        .transport(transport)
        .build()
        .unwrap();
    make_spans(&tracer, 6);
    let mut big = tracer.root_span("big");
    big.tag("blob", "x".repeat(5000));
    big.finish();
    let stats = tracer.flush().unwrap();
    assert_eq!((stats.sent, stats.failed), (12, 1), "{stats:?}");
    let ids = span_ids(&broker.consume(&topic, usize::MAX, Duration::from_secs(3)));
    assert_eq!(ids.len(), 12);
}

/// A message of a batch refused for good (here the broker calls it too large) loses its own
/// spans only. Before, the transport reported the whole batch as retryable and the reporter
/// sent every message again: the messages that had been written were duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_loses_its_spans_only_and_nothing_is_written_twice() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let broker = Broker::start();
    let support::Broker::Mock(cluster) = &broker else {
        eprintln!("skipped: needs the mock cluster's fault injection");
        return;
    };
    let topic = broker.topic("zipkin-refused").await;
    let transport = to_topic(&broker, &topic, 1024).build().unwrap();
    let tracer = Tracer::builder()
        .service_name("refused")
        .transport(transport)
        .build()
        .unwrap();
    // Metadata and connection first, so that the error hits the batch below.
    tracer.root_span("warm").finish();
    tracer.flush().unwrap();
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    cluster.request_errors(RDKafkaApiKey::Produce, &[too_large]);
    make_spans(&tracer, 6);
    let stats = tracer.flush().unwrap();
    assert_eq!(stats.sent + stats.failed, 13, "{stats:?}");
    assert!(stats.failed > 0, "the refusal was counted: {stats:?}");
    let mut ids = span_ids(&broker.consume(&topic, usize::MAX, Duration::from_secs(3)));
    assert_eq!(
        ids.len() as u64,
        stats.sent,
        "what was counted as sent is on the topic"
    );
    ids.sort();
    let written = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), written, "no span written twice");
}

/// What a retryable failure left is sent alone by `resend`: the acknowledged messages are not
/// written again, and every span is on the topic once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_writes_only_what_was_not_acknowledged() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use tdist_core::export::Transport;
    let broker = Broker::start();
    let support::Broker::Mock(cluster) = &broker else {
        eprintln!("skipped: needs the mock cluster's fault injection");
        return;
    };
    let topic = broker.topic("zipkin-resend").await;
    let t = to_topic(&broker, &topic, 1024).build().unwrap();
    let spans = finished(|tracer| make_spans(tracer, 7));
    t.send(&spans[..1]).unwrap();
    // The broker answers the next produce request with an error librdkafka does not retry
    // itself and the transport does: only that request's messages are left.
    let unknown = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN;
    cluster.request_errors(RDKafkaApiKey::Produce, &[unknown]);
    let batch = &spans[1..];
    let err = t.send(batch).unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let left = err.undelivered(batch.len());
    assert!(
        left > 0 && left < batch.len(),
        "some messages got through: {left} left"
    );
    t.resend(batch, &err).unwrap();
    let ids = span_ids(&broker.consume(&topic, usize::MAX, Duration::from_secs(3)));
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!((ids.len(), distinct.len()), (spans.len(), spans.len()));
}

/// A message librdkafka refuses for good when it is handed over (here: larger than the
/// producer's own `message.max.bytes`) loses its own spans only; the messages after it were never
/// handed over and are sent by the retry (they were once counted as refused too, and lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_when_handed_over_does_not_take_the_next_ones_with_it() {
    use tdist_core::export::Transport;
    let broker = Broker::start();
    let topic = broker.topic("zipkin-local-refusal").await;
    let t = to_topic(&broker, &topic, 4096)
        .set("message.max.bytes", "1500")
        .build()
        .unwrap();
    let spans = finished(|tracer| {
        for _ in 0..2 {
            let mut big = tracer.root_span("big");
            big.tag("blob", "x".repeat(1800));
            big.finish();
        }
        tracer.root_span("small").finish();
    });
    // The batch splits into one message of the two large spans (over 1500 bytes) and one of
    // the small span alone.
    let (messages, _) = split_messages(&spans, Encoding::Json, 4096);
    assert_eq!(messages.len(), 2);
    assert!(messages[0].len() > 1500 && messages[1].len() < 1500);
    let err = t.send(&spans).unwrap_err();
    assert!(
        err.is_retryable(),
        "the small message may still get through: {err}"
    );
    let mut last = err;
    for _ in 0..3 {
        match t.resend(&spans, &last) {
            Ok(()) => panic!("the large spans cannot have been delivered"),
            Err(e) if !e.is_retryable() => {
                last = e;
                break;
            }
            Err(e) => last = e,
        }
    }
    assert!(!last.is_retryable(), "{last}");
    assert_eq!(last.undelivered(spans.len()), 2, "{last}");
    let ids = span_ids(&broker.consume(&topic, usize::MAX, Duration::from_secs(3)));
    let small = spans.iter().find(|s| s.name() == "small").unwrap();
    assert_eq!(ids, [small.id().to_string()]);
}

/// A timeout too long for the clock (`Duration::MAX`, "wait as long as it takes") is the
/// longest librdkafka takes, not a panic computing the batch's deadline in every send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_timeout_still_delivers() {
    use tdist_core::export::Transport;
    let broker = Broker::start();
    let topic = broker.topic("zipkin-endless").await;
    let t = to_topic(&broker, &topic, 4096)
        .timeout(Duration::MAX)
        .build()
        .unwrap();
    let spans = finished(|tracer| make_spans(tracer, 2));
    t.send(&spans).unwrap();
    let ids = span_ids(&broker.consume(&topic, usize::MAX, Duration::from_secs(3)));
    assert_eq!(ids.len(), 4);
}

/// A largest message beyond what librdkafka accepts is a configuration error, also at the very
/// top of the range (adding the request overhead overflowed there: a panic, or in release a
/// wrap to a tiny limit that refused every message).
#[test]
fn a_huge_max_message_size_is_an_error_not_an_overflow() {
    let built = KafkaTransport::builder("127.0.0.1:1")
        .max_message_bytes(usize::MAX)
        .build();
    assert!(built.is_err());
    let from_env = KafkaTransport::from_lookup(|k| match k {
        "TDIST_KAFKA_BOOTSTRAP_SERVERS" => Some("127.0.0.1:1".to_owned()),
        "TDIST_KAFKA_MAX_MESSAGE_BYTES" => Some(usize::MAX.to_string()),
        _ => None,
    });
    assert!(from_env.is_err());
}
