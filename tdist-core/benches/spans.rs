//! Root + child span with two tags each, finished and handed to the background worker: tdist
//! against fastrace, opentelemetry_sdk (batch processor, counting exporter) and `tracing` +
//! `tracing-opentelemetry`, in one run.
//!
//! Paced: the timer stops every 1000 pairs while each tracer flushes, so the background side
//! keeps up and the figure is the hot path. Flat out: no pauses; the fraction of spans the
//! transport received is printed beside the figure (a tracer that drops looks fast here).
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tdist_core::export::{Transport, TransportError};
use tdist_core::{FinishedSpan, Sampler, Tracer};
use tracing_subscriber::prelude::*;

const CHUNK: u64 = 1000;

#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

impl Count {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Transport for Count {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        self.0.fetch_add(spans.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl fastrace::collector::Reporter for Count {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        self.0.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Default)]
struct OtelCount(Arc<AtomicU64>);

impl SpanExporter for OtelCount {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// Runs `pair` `iters` times, pausing the clock every CHUNK pairs to `flush`.
fn paced(iters: u64, mut pair: impl FnMut(), mut flush: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            pair();
        }
        total += start.elapsed();
        flush();
        left -= n;
    }
    total
}

fn tdist_pair(t: &Tracer) {
    let mut root = t.root_span("root");
    root.tag("http.method", "GET");
    root.tag("http.path", "/api");
    let mut child = t.child_span(&root.context(), "child");
    child.tag("db.system", "postgres");
    child.tag("db.op", "select");
    child.finish();
    root.finish();
}

fn fastrace_pair() {
    let root = fastrace::Span::root("root", fastrace::prelude::SpanContext::random())
        .with_properties(|| [("http.method", "GET"), ("http.path", "/api")]);
    let child = fastrace::Span::enter_with_parent("child", &root)
        .with_properties(|| [("db.system", "postgres"), ("db.op", "select")]);
    drop(black_box(child));
    drop(black_box(root));
}

fn otel_pair(tracer: &opentelemetry_sdk::trace::SdkTracer) {
    let mut root = tracer.start("root");
    root.set_attribute(KeyValue::new("http.method", "GET"));
    root.set_attribute(KeyValue::new("http.path", "/api"));
    let cx = Context::new().with_span(root);
    let mut child = tracer.start_with_context("child", &cx);
    child.set_attribute(KeyValue::new("db.system", "postgres"));
    child.set_attribute(KeyValue::new("db.op", "select"));
    child.end();
    cx.span().end();
}

fn tracing_pair() {
    let root = tracing::info_span!("root", http.method = "GET", http.path = "/api");
    let _in_root = root.enter();
    let child = tracing::info_span!("child", db.system = "postgres", db.op = "select");
    drop(black_box(child));
}

fn report(label: &str, count: u64, expected: u64) {
    if expected > 0 {
        eprintln!(
            "  {label}: transport received {count} of {expected} spans ({:.2}%)",
            100.0 * count as f64 / expected as f64
        );
    }
}

fn bench_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("root_child_pair");

    // tdist
    let count = Count::default();
    let tracer = Tracer::builder()
        .transport(count.clone())
        .configure_reporter(|r| r.schedule_delay = Duration::from_millis(50))
        .build()
        .unwrap();
    let mut made = 0;
    g.bench_function("tdist/paced", |b| {
        b.iter_custom(|iters| {
            made += 2 * iters;
            paced(
                iters,
                || tdist_pair(&tracer),
                || {
                    tracer.flush().unwrap();
                },
            )
        })
    });
    report("tdist/paced", count.get(), made);
    let before = count.get();
    let mut made = 0;
    g.bench_function("tdist/flat_out", |b| {
        b.iter(|| {
            made += 2;
            tdist_pair(&tracer)
        })
    });
    tracer.flush().unwrap();
    report("tdist/flat_out", count.get() - before, made);
    let unsampled = Tracer::builder().sampler(Sampler::never()).build().unwrap();
    g.bench_function("tdist/unsampled", |b| b.iter(|| tdist_pair(&unsampled)));

    // fastrace
    let fcount = Count::default();
    fastrace::set_reporter(fcount.clone(), fastrace::collector::Config::default());
    let mut made = 0;
    g.bench_function("fastrace/paced", |b| {
        b.iter_custom(|iters| {
            made += 2 * iters;
            paced(iters, fastrace_pair, fastrace::flush)
        })
    });
    fastrace::flush();
    report("fastrace/paced", fcount.get(), made);

    // opentelemetry_sdk
    let ocount = OtelCount::default();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(ocount.clone())
        .build();
    let otel = provider.tracer("bench");
    let mut made = 0;
    g.bench_function("opentelemetry_sdk/paced", |b| {
        b.iter_custom(|iters| {
            made += 2 * iters;
            paced(
                iters,
                || otel_pair(&otel),
                || {
                    let _ = provider.force_flush();
                },
            )
        })
    });
    report(
        "opentelemetry_sdk/paced",
        ocount.0.load(Ordering::Relaxed),
        made,
    );

    // tracing + tracing-opentelemetry
    let tcount = OtelCount::default();
    let tprovider = SdkTracerProvider::builder()
        .with_batch_exporter(tcount.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tprovider.tracer("bench")));
    let dispatch = tracing::Dispatch::new(subscriber);
    let _default = tracing::dispatcher::set_default(&dispatch);
    let mut made = 0;
    g.bench_function("tracing_opentelemetry/paced", |b| {
        b.iter_custom(|iters| {
            made += 2 * iters;
            paced(iters, tracing_pair, || {
                let _ = tprovider.force_flush();
            })
        })
    });
    report(
        "tracing_opentelemetry/paced",
        tcount.0.load(Ordering::Relaxed),
        made,
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench_pairs
}
criterion_main!(benches);
