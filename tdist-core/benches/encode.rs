//! Zipkin v2 encoding throughput on realistic spans (server spans with endpoints and tags).
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tdist_core::export::InMemory;
use tdist_core::{encode, Endpoint, Kind, Tracer};

fn spans(n: usize) -> Vec<tdist_core::FinishedSpan> {
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name("frontend")
        .local_address("10.0.0.7".parse().unwrap(), 8080)
        .transport(sink.clone())
        .build()
        .unwrap();
    for i in 0..n {
        let root = tracer.root_span("get /api/comments");
        let mut s = tracer.child_span(&root.context(), "post /comments");
        s.set_kind(Kind::Client);
        s.tag("http.method", "POST");
        s.tag("http.path", "/api/comments/12345");
        s.tag("http.status_code", 202);
        s.set_remote_endpoint(
            Endpoint::addr("10.0.0.9:9411".parse().unwrap()).with_service_name("backend"),
        );
        if i % 4 == 0 {
            s.annotate("retry");
        }
        s.finish();
        root.abandon();
    }
    tracer.flush().unwrap();
    sink.spans()
}

fn bench(c: &mut Criterion) {
    let spans = spans(1000);
    let bytes = encode::json_list(&spans).len();
    eprintln!(
        "  1000 spans encode to {bytes} bytes of JSON ({} per span)",
        bytes / 1000
    );
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(spans.len() as u64));
    let mut buf = Vec::with_capacity(bytes);
    g.bench_function("json_1000_spans", |b| {
        b.iter(|| {
            buf.clear();
            encode::write_json_list(black_box(&spans), &mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("proto3_1000_spans", |b| {
        b.iter(|| encode::proto3_list(black_box(&spans)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
