//! Calls per second over loopback: plain Thrift against the same call traced end to end
//! (negotiated prefix, CLIENT and SERVER spans recorded and exported), in one run.
//!
//! `cargo bench -p tdist-thrift --bench calls`

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use support::comments::SpamCheckSyncProcessor;
use support::comments::{SpamCheckSyncClient, TSpamCheckSyncClient};
use support::{comment, connector, spam_client, spam_server, Spam};
use tdist_core::export::NoopTransport;
use tdist_core::{Sampler, Tracer};
use tdist_thrift::prefix::PrefixReader;
use tdist_thrift::{client_protocols, TracedProcessor, TracingInputProtocol};
use tdist_thrift::{protocols, Framing, Protocol, Upgrade};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TInputProtocol, TOutputProtocol,
};
use thrift::server::TProcessor;

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

/// A byte queue between the two sides of an in-process call.
#[derive(Clone, Default)]
struct Pipe(Rc<RefCell<VecDeque<u8>>>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut q = self.0.borrow_mut();
        let n = buf.len().min(q.len());
        for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Side = (
    Box<dyn TInputProtocol>,
    Box<dyn TOutputProtocol>,
    Box<dyn TProcessor>,
);

/// The client's read side: when the reply queue is empty, the server handles one request.
struct ServeOnRead {
    reply: Pipe,
    server: Rc<RefCell<Side>>,
}

impl Read for ServeOnRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reply.0.borrow().is_empty() {
            let mut side = self.server.borrow_mut();
            let (i, o, p) = &mut *side;
            p.process(&mut **i, &mut **o)
                .map_err(std::io::Error::other)?;
        }
        self.reply.read(buf)
    }
}

/// CPU cost of one call without sockets: client encode, server decode + handler + reply,
/// client decode, each side traced or plain.
fn in_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("thrift_call_in_process");
    g.throughput(Throughput::Elements(1));
    for traced in [false, true] {
        let (req, rep) = (Pipe::default(), Pipe::default());
        let srv_tracer = tracer("spam", Sampler::always());
        let processor = SpamCheckSyncProcessor::new(Spam::default());
        let side: Side = if traced {
            let (r, h) = PrefixReader::new(req.clone());
            (
                Box::new(TracingInputProtocol::server(
                    TBinaryInputProtocol::new(r, false),
                    h,
                )),
                Box::new(TBinaryOutputProtocol::new(rep.clone(), true)),
                Box::new(TracedProcessor::new(srv_tracer, processor)),
            )
        } else {
            (
                Box::new(TBinaryInputProtocol::new(req.clone(), false)),
                Box::new(TBinaryOutputProtocol::new(rep.clone(), true)),
                Box::new(processor),
            )
        };
        let read = ServeOnRead {
            reply: rep,
            server: Rc::new(RefCell::new(side)),
        };
        let name = if traced { "traced" } else { "plain" };
        if traced {
            let (r, h) = PrefixReader::new(read);
            let t = tracer("web", Sampler::always());
            let (i, o) = client_protocols(
                &t,
                TBinaryInputProtocol::new(r, true),
                h,
                TBinaryOutputProtocol::new(req, true),
                true,
            );
            let mut client = SpamCheckSyncClient::new(i, o);
            g.bench_function(name, |b| {
                b.iter(|| client.check(comment("c1", "hello world")).unwrap())
            });
        } else {
            let mut client = SpamCheckSyncClient::new(
                TBinaryInputProtocol::new(read, true),
                TBinaryOutputProtocol::new(req, true),
            );
            g.bench_function(name, |b| {
                b.iter(|| client.check(comment("c1", "hello world")).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, calls, in_process);
criterion_main!(benches);
