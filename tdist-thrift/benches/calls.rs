//! Calls per second over loopback: plain Thrift against the same call traced end to end
//! (negotiated prefix, CLIENT and SERVER spans recorded and exported), in one run.
//!
//! `cargo bench -p tdist-thrift --bench calls`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::TcpStream;
use support::comments::{SpamCheckSyncClient, TSpamCheckSyncClient};
use support::{comment, connector, spam_client, spam_server, Spam};
use tdist_core::export::NoopTransport;
use tdist_core::{Sampler, Tracer};
use tdist_thrift::{protocols, Framing, Protocol, Upgrade};

fn tracer(service: &'static str, sampler: Sampler) -> Tracer {
    Tracer::builder()
        .service_name(service)
        .sampler(sampler)
        .transport(NoopTransport)
        .build()
        .unwrap()
}

fn calls(c: &mut Criterion) {
    let stack = (Framing::Framed, Protocol::Binary);
    let mut g = c.benchmark_group("thrift_call_loopback");
    g.throughput(Throughput::Elements(1));

    let plain = spam_server(None, stack, Spam::default());
    let s = TcpStream::connect(plain.local_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    let (i, _, o) = protocols(&s, stack.0, stack.1, false).unwrap();
    let mut client = SpamCheckSyncClient::new(i, o);
    g.bench_function("plain", |b| {
        b.iter(|| client.check(comment("c1", "hello world")).unwrap())
    });

    for (name, sampler) in [
        ("traced", Sampler::always()),
        ("traced_unsampled", Sampler::never()),
    ] {
        let srv = spam_server(
            Some(tracer("spam", sampler.clone())),
            stack,
            Spam::default(),
        );
        let t = tracer("web", sampler);
        let (mut client, traced) =
            spam_client(&connector(&t, stack, Upgrade::Negotiate), srv.local_addr());
        assert!(traced);
        g.bench_function(name, |b| {
            b.iter(|| client.check(comment("c1", "hello world")).unwrap())
        });
    }
    // A plain client against the traced server (prefix detection, unprefixed replies).
    let srv = spam_server(
        Some(tracer("spam", Sampler::always())),
        stack,
        Spam::default(),
    );
    let s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    let (i, _, o) = protocols(&s, stack.0, stack.1, false).unwrap();
    let mut client = SpamCheckSyncClient::new(i, o);
    g.bench_function("plain_client_traced_server", |b| {
        b.iter(|| client.check(comment("c1", "hello world")).unwrap())
    });
    g.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
