//! Tuples per second through a bolt child process under the harness: the same relay bolt
//! untraced and traced (joining the tuple's B3 field, a CONSUMER span per tuple written as
//! JSON lines to a file, the context added to every emit). Pipelined as ShellBolt does, with
//! at most `topology.shellbolt.max.pending` (100) tuples in flight.
//!
//! `cargo bench -p tdist-storm --bench bolt`
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::time::{Duration, Instant};
use tdist_core::propagation::b3;
use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
use tdist_storm::harness::{Harness, HarnessConfig};

#[path = "../tests/support/mod.rs"]
mod support;

const BATCH: u64 = 1_000;

fn relay(traced: bool, spans: &std::path::Path) -> Harness {
    let mut cmd = support::storm_example("relay");
    cmd.env_remove("TDIST_TRANSPORT").env("TDIST_FILE", spans);
    if !traced {
        cmd.arg("--untraced");
    }
    Harness::spawn(cmd, HarnessConfig::bolt("relay")).expect("spawn relay")
}

fn run_batch(h: &Harness, b3: &str, n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let t = h.tuple("spout", vec![json!(format!("word{i}")), json!(b3)]);
        h.send_tuple(&t).unwrap();
    }
    h.wait_for(
        |r| r.acks.len() as u64 >= n,
        Duration::from_secs(60),
        "acks",
    )
    .unwrap();
    let elapsed = start.elapsed();
    let r = h.take_records();
    assert_eq!(r.emits.len() as u64, n);
    elapsed
}

fn bench(c: &mut Criterion) {
    let parent = SpanContext::new(TraceId::random_128(), SpanId::random())
        .with_sampling(SamplingState::Accept);
    let b3 = b3::format_single(&parent, false).as_str().to_owned();
    let mut g = c.benchmark_group("storm_bolt");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, traced) in [("untraced", false), ("traced", true)] {
        let spans = support::span_file(name);
        let h = relay(traced, &spans);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_batch(&h, &b3, BATCH)).sum())
        });
        h.close(Duration::from_secs(10)).unwrap();
        let _ = std::fs::remove_file(spans);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
