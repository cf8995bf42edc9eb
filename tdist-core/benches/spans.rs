//! Root + child span with two tags each, finished and handed to the background worker: tdist
//! against fastrace, opentelemetry_sdk (batch processor, counting exporter) and `tracing` +
//! `tracing-opentelemetry`, in one run.
//!
//! Paced: the timer stops every 1000 pairs while each tracer flushes, so the background side
//! keeps up and the figure is the hot path. Flat out: no pauses; the fraction of spans the
//! transport received is printed beside the figure (a tracer that drops looks fast here).
//! Process CPU: flat out, then one flush, timed with the CPU clock of the whole process, so work
//! moved to background threads is counted; the spans received and the growth of the process's
//! resident memory are printed beside it.
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

/// CPU time of every thread of this process, in ns (`CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Resident memory of this process in KiB (`VmRSS` in `/proc/self/status`; 0 where absent).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whole-process CPU per pair: `iters` pairs flat out, then `flush`, on the process CPU clock.
fn process_cpu(iters: u64, mut pair: impl FnMut(), flush: impl FnOnce()) -> Duration {
    let start = process_cpu_ns();
    for _ in 0..iters {
        pair();
    }
    flush();
    Duration::from_nanos(process_cpu_ns().saturating_sub(start))
}

/// Benches `name/process_cpu` and prints what the transport received and the RSS growth.
fn bench_process_cpu(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    received: impl Fn() -> u64,
    mut pair: impl FnMut(),
    mut flush: impl FnMut(),
) {
    let (before, rss_before) = (received(), rss_kib());
    let mut made = 0;
    g.bench_function(format!("{name}/process_cpu"), |b| {
        b.iter_custom(|iters| {
            made += 2 * iters;
            process_cpu(iters, &mut pair, &mut flush)
        })
    });
    if made > 0 {
        report(&format!("{name}/process_cpu"), received() - before, made);
        eprintln!(
            "  {name}/process_cpu: resident memory {} -> {} KiB",
            rss_before,
            rss_kib()
        );
    }
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
    bench_process_cpu(
        &mut g,
        "tdist",
        || count.get(),
        || tdist_pair(&tracer),
        || {
            tracer.flush().unwrap();
        },
    );
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
    bench_process_cpu(
        &mut g,
        "fastrace",
        || fcount.get(),
        fastrace_pair,
        fastrace::flush,
    );

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
    bench_process_cpu(
        &mut g,
        "opentelemetry_sdk",
        || ocount.0.load(Ordering::Relaxed),
        || otel_pair(&otel),
        || {
            let _ = provider.force_flush();
        },
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
    bench_process_cpu(
        &mut g,
        "tracing_opentelemetry",
        || tcount.0.load(Ordering::Relaxed),
        tracing_pair,
        || {
            let _ = tprovider.force_flush();
        },
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench_pairs
}
criterion_main!(benches);
