//! Inject and extract for each propagation codec, and the binary frame.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tdist_core::propagation::{b3, extract, w3c, Extractor, Injector};
use tdist_core::{binary, SamplingState, SpanContext, SpanId, TraceId};

/// A small header list, as an HTTP map or Kafka headers would hold.
#[derive(Default)]
struct Headers(Vec<(&'static str, String)>);

impl Injector for Headers {
    fn set(&mut self, key: &'static str, value: &str) {
        self.0.push((key, value.to_owned()));
    }
}

impl Extractor for Headers {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

fn ctx() -> SpanContext {
    SpanContext::new(TraceId::random_128(), SpanId::random())
        .with_parent(Some(SpanId::random()))
        .with_sampling(SamplingState::Accept)
}

fn bench(c: &mut Criterion) {
    let ctx = ctx();
    let mut g = c.benchmark_group("codecs");
    g.bench_function("b3_single/format", |b| {
        b.iter(|| b3::format_single(black_box(&ctx), true))
    });
    let single = b3::format_single(&ctx, true).as_str().to_owned();
    g.bench_function("b3_single/parse", |b| {
        b.iter(|| b3::parse_single(black_box(&single)))
    });
    g.bench_function("b3_multi/inject", |b| {
        b.iter(|| {
            let mut h = Headers::default();
            b3::inject_multi(black_box(&ctx), &mut h);
            h
        })
    });
    let mut multi = Headers::default();
    b3::inject_multi(&ctx, &mut multi);
    g.bench_function("b3_multi/extract", |b| {
        b.iter(|| extract(black_box(&multi)))
    });
    g.bench_function("traceparent/format", |b| {
        b.iter(|| w3c::format_traceparent(black_box(&ctx)))
    });
    let tp = w3c::format_traceparent(&ctx).as_str().to_owned();
    g.bench_function("traceparent/parse", |b| {
        b.iter(|| w3c::parse_traceparent(black_box(&tp)))
    });
    g.bench_function("binary/encode", |b| {
        b.iter(|| binary::encode(black_box(&ctx)))
    });
    let frame = binary::encode(&ctx);
    g.bench_function("binary/decode", |b| {
        b.iter(|| binary::decode(black_box(frame.as_bytes())))
    });
    let plain = br#"{"comment":"not framed"}"#;
    g.bench_function("binary/decode_unframed", |b| {
        b.iter(|| binary::split(black_box(plain)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
