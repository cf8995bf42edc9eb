//! Benchmarks: payload framing per message, and traced against untraced produce throughput
//! against librdkafka's in-process mock cluster, measured in the same run.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tdist_core::export::NoopTransport;
use tdist_core::{SamplingState, SpanContext, SpanId, TraceId, Tracer};
use tdist_kafka::codec::{Bytes, Deserializer, Traced, TracingDeserializer, TracingSerializer};
use tdist_kafka::{frame, Carrier, KafkaTracing, TracedProducer};

fn ctx() -> SpanContext {
    SpanContext::new(TraceId::random_128(), SpanId::random())
        .with_parent(Some(SpanId::random()))
        .with_sampling(SamplingState::Accept)
}

fn framing(c: &mut Criterion) {
    let ctx = ctx();
    let payload = vec![b'x'; 128];
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    let mut buf = Vec::with_capacity(256);
    g.bench_function(
        "encode+decode (128-bit trace, parent, 128 B payload)",
        |b| {
            b.iter(|| {
                buf.clear();
                frame::write_frame(Some(black_box(&ctx)), &mut buf);
                buf.extend_from_slice(black_box(&payload));
                let u = frame::decode(black_box(&buf));
                black_box((u.context, u.payload.len()))
            })
        },
    );
    g.bench_function("encode (write_frame into a reused buffer)", |b| {
        b.iter(|| {
            buf.clear();
            frame::write_frame(Some(black_box(&ctx)), &mut buf);
            black_box(buf.len())
        })
    });
    let framed = frame::encode(Some(&ctx), &payload);
    g.bench_function("decode framed", |b| {
        b.iter(|| black_box(frame::decode(black_box(&framed))))
    });
    g.bench_function("decode unframed (plain JSON)", |b| {
        let plain = b"{\"order\":42,\"items\":[1,2,3]}";
        b.iter(|| black_box(frame::decode(black_box(plain))))
    });
    let ser = TracingSerializer::new(Bytes);
    let de = TracingDeserializer::new(Bytes);
    g.bench_function("TracingSerializer+TracingDeserializer", |b| {
        b.iter(|| {
            buf.clear();
            ser.serialize_with(Some(&ctx), black_box(&payload[..]), &mut buf)
                .unwrap();
            let t: Traced<Vec<u8>> = de.deserialize(black_box(&buf)).unwrap();
            black_box(t)
        })
    });
    g.finish();
    println!(
        "frame overhead with a 128-bit trace id and a parent: {} bytes",
        frame::overhead(&ctx)
    );
}

const BATCH: usize = 500;

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

fn produce(c: &mut Criterion) {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("bench", 1, 1).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let plain = producer(&bootstrap);
    let tracer = Tracer::builder()
        .service_name("bench")
        .transport(NoopTransport)
        .build()
        .unwrap();
    let payload = vec![b'p'; 128];
    let mut g = c.benchmark_group("produce (mock cluster, 128 B, acked)");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(
        BenchmarkId::from_parameter("untraced FutureProducer"),
        |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let p = plain.clone();
                let payload = payload.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let sends = (0..BATCH).map(|_| {
                            p.send(
                                FutureRecord::<(), [u8]>::to("bench").payload(&payload),
                                Duration::from_secs(5),
                            )
                        });
                        for r in join_all(sends).await {
                            r.unwrap();
                        }
                    }
                    start.elapsed()
                }
            })
        },
    );
    for carrier in [Carrier::Headers, Carrier::Framing, Carrier::Both] {
        let tp = TracedProducer::new(
            plain.clone(),
            KafkaTracing::new(tracer.clone()).carrier(carrier),
        );
        g.bench_function(
            BenchmarkId::from_parameter(format!("traced {carrier:?}")),
            |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let tp = tp.clone();
                    let payload = payload.clone();
                    async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let sends = (0..BATCH).map(|_| {
                                tp.send(
                                    FutureRecord::<(), [u8]>::to("bench").payload(&payload),
                                    Duration::from_secs(5),
                                )
                            });
                            for r in join_all(sends).await {
                                r.unwrap();
                            }
                        }
                        start.elapsed()
                    }
                })
            },
        );
    }
    g.finish();
    let stats = tracer.flush().unwrap();
    println!(
        "producer spans reported: {} accepted, {} dropped",
        stats.accepted, stats.dropped
    );
    drop(cluster);
}

criterion_group!(benches, framing, produce);
criterion_main!(benches);
