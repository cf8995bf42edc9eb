//! The producer × consumer matrix against a real broker protocol: untraced and traced
//! producers (headers, framing, both) read by traced and untraced consumers. No message is
//! lost, payloads arrive byte for byte, and every traced pair is parent and child in one trace.

mod support;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use support::Broker;
use tdist_core::export::InMemory;
use tdist_core::{FinishedSpan, FutureExt, Kind, SpanContext, TagValue, Tracer};
use tdist_kafka::{frame, headers, Carrier, KafkaTracing, Source, TracedProducer};

fn payloads() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"{\"order\":1}".to_vec(),
        Vec::new(),
        // Starts with the frame magic and version but is no frame.
        vec![0xC1, 0xB3, 0x01, 0x00, 1, 2, 3],
        vec![
            0xC1, 0xB3, 0x01, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        vec![0xC1],
        vec![0x00, 0, 0, 0, 7, b'a'],
        b"[{\"traceId\":\"x\"}]".to_vec(),
    ];
    v.push((0..=255u8).collect());
    for (i, p) in v.iter_mut().enumerate() {
        if !p.is_empty() && p[0] != 0xC1 {
            p.extend_from_slice(format!("#{i}").as_bytes());
        }
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Untraced,
    Traced(Carrier),
}

struct Sent {
    payload: Vec<u8>,
    job: Option<SpanContext>,
}

fn tracer() -> (Tracer, InMemory) {
    let sink = InMemory::new();
    let t = Tracer::builder()
        .service_name("matrix")
        .transport(sink.clone())
        .build()
        .unwrap();
    (t, sink)
}

async fn produce(broker: &Broker, topic: &str, mode: Mode, tracer: &Tracer) -> Vec<Sent> {
    let producer = broker.producer();
    let mut sent = Vec::new();
    for (i, payload) in payloads().into_iter().enumerate() {
        let key = format!("k{i}");
        match mode {
            Mode::Untraced => {
                let rec = FutureRecord::to(topic).key(&key).payload(&payload[..]);
                producer.send(rec, Duration::from_secs(5)).await.unwrap();
                sent.push(Sent { payload, job: None });
            }
            Mode::Traced(carrier) => {
                let kt = KafkaTracing::new(tracer.clone()).carrier(carrier);
                let tp = TracedProducer::new(producer.clone(), kt);
                let job = tracer.root_span("job");
                let job_ctx = job.context();
                let rec = FutureRecord::to(topic).key(&key).payload(&payload[..]);
                tp.send(rec, Duration::from_secs(5))
                    .in_span(job)
                    .await
                    .unwrap();
                sent.push(Sent {
                    payload,
                    job: Some(job_ctx),
                });
            }
        }
    }
    sent
}

fn span_by_parent(spans: &[FinishedSpan], parent: SpanContext) -> &FinishedSpan {
    spans
        .iter()
        .find(|s| s.parent_id() == Some(parent.span_id()))
        .expect("child span")
}

fn tag<'a>(s: &'a FinishedSpan, k: &str) -> Option<&'a TagValue> {
    s.tag(k)
}

async fn run(mode: Mode) {
    let broker = Broker::start();
    let topic = broker.topic("matrix").await;
    let (tracer, sink) = tracer();
    let sent = produce(&broker, &topic, mode, &tracer).await;
    let got: Vec<OwnedMessage> = broker.consume_all(&topic, sent.len());
    assert_eq!(got.len(), sent.len(), "{mode:?}: messages lost");

    // Traced consumer.
    let kt = KafkaTracing::new(tracer.clone());
    let mut consumer_ctx = Vec::new();
    for (m, s) in got.iter().zip(&sent) {
        let r = kt.receive(m);
        assert_eq!(
            r.payload().unwrap_or_default(),
            &s.payload[..],
            "{mode:?}: payload changed"
        );
        let expected_source = match mode {
            Mode::Untraced => None,
            Mode::Traced(Carrier::Framing) => Some(Source::Frame),
            Mode::Traced(_) => Some(Source::Headers),
        };
        assert_eq!(r.source(), expected_source, "{mode:?}");
        consumer_ctx.push(r.context());
        let seen = r.process(|p| p.map(<[u8]>::len));
        assert_eq!(seen.unwrap_or(0), s.payload.len());
    }

    // Untraced consumer: raw bytes.
    for (m, s) in got.iter().zip(&sent) {
        let raw = m.payload().unwrap_or_default();
        match mode {
            Mode::Traced(Carrier::Framing | Carrier::Both) => {
                let u = frame::decode(raw);
                assert!(u.is_framed());
                assert_eq!(u.payload, &s.payload[..]);
            }
            _ => assert_eq!(raw, &s.payload[..], "{mode:?}: untraced consumer payload"),
        }
        let b3 = m
            .headers()
            .map(|h| h.iter().filter(|h| h.key == "b3").count());
        let expect = usize::from(matches!(
            mode,
            Mode::Traced(Carrier::Headers | Carrier::Both)
        ));
        assert_eq!(b3.unwrap_or(0), expect, "{mode:?}: b3 headers");
    }

    tracer.flush().unwrap();
    let spans = sink.spans();
    for (i, s) in sent.iter().enumerate() {
        let consumer = spans
            .iter()
            .find(|x| x.id() == consumer_ctx[i].span_id())
            .expect("consumer span reported");
        assert_eq!(consumer.kind(), Some(Kind::Consumer));
        assert_eq!(consumer.name(), "poll");
        assert_eq!(
            tag(consumer, "kafka.topic"),
            Some(&TagValue::from(topic.clone()))
        );
        assert_eq!(
            consumer.remote_endpoint().and_then(|e| e.service_name()),
            Some("kafka")
        );
        match s.job {
            None => assert_eq!(consumer.parent_id(), None, "untraced: new trace"),
            Some(job) => {
                let producer = span_by_parent(&spans, job);
                assert_eq!(producer.kind(), Some(Kind::Producer));
                assert_eq!(producer.name(), "send");
                assert_eq!(
                    tag(producer, "kafka.key"),
                    Some(&TagValue::from(format!("k{i}")))
                );
                assert_eq!(
                    tag(producer, "kafka.offset"),
                    Some(&TagValue::I64(got[i].offset()))
                );
                assert_eq!(tag(producer, "kafka.partition"), Some(&TagValue::I64(0)));
                assert_eq!(consumer.trace_id(), job.trace_id(), "one trace");
                assert_eq!(
                    consumer.parent_id(),
                    Some(producer.id()),
                    "parent and child"
                );
            }
        }
    }
    assert!(sink.orphans().is_empty(), "{mode:?}: orphans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraced_producer() {
    run(Mode::Untraced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_producer_headers() {
    run(Mode::Traced(Carrier::Headers)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_producer_framing() {
    run(Mode::Traced(Carrier::Framing)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_producer_both() {
    run(Mode::Traced(Carrier::Both)).await;
}

/// A record re-sent with its old trace header: the header is replaced, not appended, and the
/// consumer is a child of the new send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_replaces_trace_headers() {
    let broker = Broker::start();
    let topic = broker.topic("resend").await;
    let (tracer, sink) = tracer();
    let tp = TracedProducer::new(broker.producer(), KafkaTracing::new(tracer.clone()));
    let stale = OwnedHeaders::new()
        .insert(Header {
            key: "b3",
            value: Some("463ac35c9f6413ad-a2fb4a1d1a96d312-1"),
        })
        .insert(Header {
            key: "X-B3-SpanId",
            value: Some("a2fb4a1d1a96d312"),
        })
        .insert(Header {
            key: "app",
            value: Some("keep"),
        });
    let rec = FutureRecord::<(), [u8]>::to(&topic)
        .payload(b"again")
        .headers(stale);
    tp.send(rec, Duration::from_secs(5)).await.unwrap();
    let got = broker.consume_all(&topic, 1);
    let h = got[0].headers().unwrap();
    let keys: Vec<_> = h.iter().map(|x| x.key.to_owned()).collect();
    assert_eq!(keys, ["app", "b3"]);
    tracer.flush().unwrap();
    let producer = &sink.spans()[0];
    // No current span: Brave continues the context found on the record.
    assert_eq!(producer.trace_id().low(), 0x463ac35c9f6413ad);
    assert_eq!(
        producer.parent_id().map(|p| p.get()),
        Some(0xa2fb4a1d1a96d312)
    );
    let r = KafkaTracing::new(tracer.clone()).receive(&got[0]);
    assert_eq!(r.parent().context().unwrap().span_id(), producer.id());
    assert_eq!(
        headers::extract(h).context().unwrap().span_id(),
        producer.id()
    );
}

/// Each record of a batch has its own producer span; a batch consumed at once keeps every
/// record in its own trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_has_a_context_per_record_and_several_parents() {
    let broker = Broker::start();
    let topic = broker.topic("batch").await;
    let (tracer, sink) = tracer();
    let tp = TracedProducer::new(
        broker.producer(),
        KafkaTracing::new(tracer.clone()).carrier(Carrier::Both),
    );
    // Five records sent concurrently from one request span.
    let request = tracer.root_span("request");
    let req = request.context();
    let sends = async {
        let mut futs = Vec::new();
        for i in 0..5u8 {
            let payload = vec![i; 3];
            let tp = &tp;
            let topic = &topic;
            futs.push(async move {
                tp.send(
                    FutureRecord::<(), [u8]>::to(topic).payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .unwrap()
            });
        }
        for f in futs {
            f.await;
        }
    }
    .in_span(request);
    sends.await;
    // Three more from unrelated traces.
    for _ in 0..3 {
        let root = tracer.root_span("other");
        tp.send(
            FutureRecord::<(), [u8]>::to(&topic).payload(b"x"),
            Duration::from_secs(5),
        )
        .in_span(root)
        .await
        .unwrap();
    }
    let got = broker.consume_all(&topic, 8);
    assert_eq!(got.len(), 8);
    let kt = KafkaTracing::new(tracer.clone());
    let batch = kt.receive_batch(&got);
    let parents: std::collections::HashSet<_> = batch
        .iter()
        .map(|r| r.parent().context().unwrap().span_id())
        .collect();
    assert_eq!(parents.len(), 8, "a context per record");
    let traces: std::collections::HashSet<_> =
        batch.iter().map(|r| r.context().trace_id()).collect();
    assert_eq!(traces.len(), 4);
    for r in batch {
        r.process(|_| ());
    }
    tracer.flush().unwrap();
    let in_request = sink.trace(req.trace_id());
    assert_eq!(in_request.len(), 1 + 5 + 5);
    assert!(sink.orphans().is_empty());
}

/// A delivery that fails ends the PRODUCER span with the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_delivery_is_tagged() {
    let broker = Broker::start();
    let topic = broker.topic("fail").await;
    let (tracer, sink) = tracer();
    let producer: rdkafka::producer::FutureProducer = broker
        .producer_config()
        .set("message.timeout.ms", "1500")
        .create()
        .unwrap();
    let tp = TracedProducer::new(producer, KafkaTracing::new(tracer.clone()));
    let rec = FutureRecord::<(), [u8]>::to(&topic)
        .partition(42)
        .payload(b"lost");
    let err = tp.send(rec, Duration::from_secs(1)).await.unwrap_err();
    tracer.flush().unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].tag("error"),
        Some(&TagValue::from(err.0.to_string()))
    );
    assert_eq!(spans[0].tag("kafka.offset"), None);
}

/// Processing run asynchronously inside the CONSUMER span sees it as current across awaits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_processing_runs_inside_the_consumer_span() {
    let broker = Broker::start();
    let topic = broker.topic("async").await;
    let (tracer, sink) = tracer();
    let tp = TracedProducer::new(broker.producer(), KafkaTracing::new(tracer.clone()));
    tp.send(
        FutureRecord::<(), [u8]>::to(&topic).payload(b"work"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let got = broker.consume_all(&topic, 1);
    let r = KafkaTracing::new(tracer.clone()).receive(&got[0]);
    let consumer = r.context();
    let t = tracer.clone();
    let n = r
        .process_async(|p| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _child = t.span("process");
            p.map(<[u8]>::len)
        })
        .await;
    assert_eq!(n, Some(4));
    tracer.flush().unwrap();
    let spans = sink.trace(consumer.trace_id());
    assert_eq!(spans.len(), 3);
    let process = spans.iter().find(|s| s.name() == "process").unwrap();
    assert_eq!(process.parent_id(), Some(consumer.span_id()));
}

/// A send the caller gives up on (a timeout around it) ends its span with an error saying so,
/// instead of a span that looks like a quick successful send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_dropped_before_its_delivery_report_says_so() {
    let broker = Broker::start();
    let topic = broker.topic("dropped").await;
    let (tracer, sink) = tracer();
    // The record waits in the producer's queue (a linger of a minute), so its delivery report
    // cannot come before the timeout gives up, however long this thread is descheduled between
    // handing the record over and the first wait for the report (with the usual 1 ms linger a
    // loaded machine made that race).
    let producer: FutureProducer = broker
        .producer_config()
        .set("linger.ms", "60000")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer");
    let tp = TracedProducer::new(producer, KafkaTracing::new(tracer.clone()));
    let rec = FutureRecord::<(), [u8]>::to(&topic).payload(b"given up");
    // The first poll hands the record over; the delivery report cannot have come yet.
    let gave_up = tokio::time::timeout(Duration::from_nanos(1), tp.send(rec, Duration::ZERO));
    assert!(gave_up.await.is_err(), "the send was still waiting");
    tracer.flush().unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 1);
    let error = spans[0]
        .tag("error")
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        error.contains("dropped before the delivery report"),
        "{error:?}"
    );
}

/// A framed payload sent again through a framing producer (no headers, no current span): the
/// producer continues the frame's context, as it does a header's, and the record carries one
/// frame, the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framed_payload_sent_again_continues_its_frame_and_carries_one() {
    let broker = Broker::start();
    let topic = broker.topic("reframed").await;
    let (tracer, sink) = tracer();
    let tracing = KafkaTracing::new(tracer.clone()).carrier(Carrier::Framing);
    let tp = TracedProducer::new(broker.producer(), tracing.clone());
    let upstream = tracer.root_span("upstream").context();
    let framed = frame::encode(Some(&upstream), b"order 7");
    let rec = FutureRecord::<(), [u8]>::to(&topic).payload(&framed[..]);
    tp.send(rec, Duration::from_secs(5)).await.unwrap();
    let got = broker.consume_all(&topic, 1);
    tracer.flush().unwrap();
    let producer = sink
        .spans()
        .into_iter()
        .find(|s| s.kind() == Some(Kind::Producer))
        .unwrap();
    assert_eq!(producer.trace_id(), upstream.trace_id());
    assert_eq!(producer.parent_id(), Some(upstream.span_id()));
    let r = tracing.receive(&got[0]);
    assert_eq!(r.payload(), Some(&b"order 7"[..]));
    assert_eq!(r.parent().context().unwrap().span_id(), producer.id());
}

/// CRC-32C (Castagnoli), the checksum of a Kafka record batch.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Writes one record with `headers` (raw key bytes) to partition 0 of `topic` with a
/// hand-made Produce v3 request, as a client that writes header keys as bytes (Go's sarama,
/// librdkafka's C API) can; rdkafka's own API only writes UTF-8 keys.
fn produce_raw(bootstrap: &str, topic: &str, payload: &[u8], headers: &[(&[u8], &[u8])]) {
    use std::io::{Read, Write};
    let mut record = vec![0u8]; // attributes
    varint(&mut record, 0); // timestamp delta
    varint(&mut record, 0); // offset delta
    varint(&mut record, -1); // null key
    varint(&mut record, payload.len() as i64);
    record.extend_from_slice(payload);
    varint(&mut record, headers.len() as i64);
    for (k, v) in headers {
        varint(&mut record, k.len() as i64);
        record.extend_from_slice(k);
        varint(&mut record, v.len() as i64);
        record.extend_from_slice(v);
    }
    let mut framed_record = Vec::new();
    varint(&mut framed_record, record.len() as i64);
    framed_record.extend_from_slice(&record);
    // From the attributes to the end: what the CRC covers.
    let mut tail = Vec::new();
    tail.extend_from_slice(&0i16.to_be_bytes()); // attributes
    tail.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tail.extend_from_slice(&now.to_be_bytes());
    tail.extend_from_slice(&now.to_be_bytes());
    tail.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    tail.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    tail.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    tail.extend_from_slice(&1i32.to_be_bytes()); // one record
    tail.extend_from_slice(&framed_record);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_len = 4 + 1 + 4 + tail.len();
    batch.extend_from_slice(&(batch_len as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);

    let mut req = Vec::new();
    req.extend_from_slice(&0i16.to_be_bytes()); // Produce
    req.extend_from_slice(&3i16.to_be_bytes()); // v3
    req.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    req.extend_from_slice(&3i16.to_be_bytes());
    req.extend_from_slice(b"raw");
    req.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    req.extend_from_slice(&1i16.to_be_bytes()); // acks
    req.extend_from_slice(&5000i32.to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes()); // one topic
    req.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    req.extend_from_slice(topic.as_bytes());
    req.extend_from_slice(&1i32.to_be_bytes()); // one partition
    req.extend_from_slice(&0i32.to_be_bytes());
    req.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    req.extend_from_slice(&batch);

    let addr = bootstrap.split(',').next().unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    conn.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut resp).unwrap();
    // correlation id, topics (1), name, partitions (1), partition, error code
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    let code = i16::from_be_bytes([resp[at], resp[at + 1]]);
    assert_eq!(code, 0, "produce error {code}");
}

/// A record whose header key is not UTF-8 (Kafka header keys are bytes on the wire; Go and C
/// producers can write any) is read by a traced consumer like any other: its context comes
/// from the `b3` header and its payload is whole. rdkafka panics when asked for such a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_that_is_not_utf8_is_skipped_not_a_panic() {
    let broker = Broker::start();
    if !matches!(broker, Broker::Mock(_)) {
        eprintln!("skipped: writes its own Produce request to the mock cluster");
        return;
    }
    let topic = broker.topic("raw-keys").await;
    let b3 = b"463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1";
    let traced: [(&[u8], &[u8]); 3] = [(b"app", b"1"), (b"b3", b3), (b"caf\xe9", b"x")];
    produce_raw(&broker.bootstrap(), &topic, b"order 9", &traced);
    let untraced: [(&[u8], &[u8]); 1] = [(b"\xff", b"y")];
    produce_raw(&broker.bootstrap(), &topic, b"order 10", &untraced);
    let got = broker.consume_all(&topic, 2);
    assert_eq!(got.len(), 2);
    let (tracer, _) = tracer();
    let kt = KafkaTracing::new(tracer.clone());
    let r = kt.receive(&got[0]);
    assert_eq!(r.payload(), Some(&b"order 9"[..]));
    assert_eq!(r.source(), Some(Source::Headers));
    assert_eq!(
        r.parent().context().unwrap().span_id().to_string(),
        "a2fb4a1d1a96d312"
    );
    let plain = kt.receive(&got[1]);
    assert_eq!(plain.payload(), Some(&b"order 10"[..]));
    assert_eq!(plain.source(), None);
    // Filtering and re-injecting (forwarding the record) do not panic either.
    let h = got[0].headers().unwrap();
    let kept = headers::without_trace_headers(h);
    assert!(!headers::has_trace_headers(&kept));
    assert_eq!(kept.get(0).key, "app");
    let forwarded = headers::inject(&r.context(), Some(h.clone()));
    assert_eq!(
        headers::extract(&forwarded).context().unwrap().span_id(),
        r.context().span_id()
    );
    let framing_only = headers::without_context_headers(got[1].headers().unwrap().clone());
    assert!(!headers::has_trace_headers(&framing_only));
}
