//! Interop beyond the matrix: thrift's own `TServer` with and without the tracing factory, a
//! traced processor on a plain stack, a server that never answers the probe, many connections
//! to a mixed fleet.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use support::comments::*;
use support::*;
use tdist_core::export::InMemory;
use tdist_core::{Kind, Tracer};
use tdist_thrift::{
    Framing, Protocol, Server, ServerOptions, TracedProcessor, TracingInputProtocolFactory, Upgrade,
};
use thrift::protocol::{
    TBinaryInputProtocolFactory, TBinaryOutputProtocolFactory, TInputProtocolFactory,
};
use thrift::server::TServer;
use thrift::transport::{TFramedReadTransportFactory, TFramedWriteTransportFactory};

/// Runs thrift's own `TServer` (framed, binary) with `TracedProcessor` around the spam service
/// and `input` as its input protocol factory; returns its address once it listens.
fn tserver(input: impl TInputProtocolFactory + Send + 'static, t: Tracer) -> SocketAddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::thread::spawn(move || {
        let mut server = TServer::new(
            TFramedReadTransportFactory::new(),
            input,
            TFramedWriteTransportFactory::new(),
            TBinaryOutputProtocolFactory::new(),
            TracedProcessor::new(t, SpamCheckSyncProcessor::new(Spam::default())),
            2,
        );
        let _ = server.listen(("127.0.0.1", port));
    });
    let addr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "TServer never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

#[test]
fn thrift_tserver_with_tracing_factory_is_traced() {
    let sink = InMemory::new();
    let factory = TracingInputProtocolFactory::new(TBinaryInputProtocolFactory::new());
    let addr = tserver(factory, tracer(&sink, "spam"));
    let web = tracer(&sink, "web");
    let stack = (Framing::Framed, Protocol::Binary);
    let (mut c, traced) = spam_client(&connector(&web, stack, Upgrade::Negotiate), addr);
    assert!(traced);
    c.check(comment("c", "spam")).unwrap();
    sink.wait_for(2, Duration::from_secs(5));
    let spans = sink.spans();
    let cli = spans
        .iter()
        .find(|s| s.kind() == Some(Kind::Client))
        .unwrap();
    let srv = spans
        .iter()
        .find(|s| s.kind() == Some(Kind::Server))
        .unwrap();
    assert_eq!((srv.trace_id(), srv.id()), (cli.trace_id(), cli.id()));
}

/// A negotiating client against a `TracedProcessor` whose input stack cannot read the prefix:
/// the probe must be refused, the client must stay plain, and calls must work.
fn assert_plain_stack_refuses_the_probe(
    addr: SocketAddr,
    stack: (Framing, Protocol),
    sink: &InMemory,
) {
    let web = tracer(sink, "web");
    let c = connector(&web, stack, Upgrade::Negotiate);
    let (mut client, traced) = spam_client(&c, addr);
    assert!(!traced, "{stack:?}: the server cannot read prefixed calls");
    assert!(c.is_known_untraced(addr));
    let verdict = client.check(comment("c", "buy spam")).unwrap().verdict;
    assert_eq!(verdict, Some(Verdict::SPAM), "{stack:?}");
    sink.wait_for(2, Duration::from_secs(5));
    let spans = sink.spans();
    assert_eq!(spans.len(), 2, "{stack:?}: {spans:#?}");
    assert!(spans
        .iter()
        .all(|s| s.name() == "check" && s.tag("error").is_none()));
    let srv = spans.iter().find(|s| s.kind() == Some(Kind::Server));
    assert!(srv.is_some(), "the server still records its side");
}

#[test]
fn traced_processor_on_a_plain_server_stack_refuses_the_probe() {
    for stack in STACKS {
        let sink = InMemory::new();
        let srv = Server::spawn(
            listener(),
            TracedProcessor::new(
                tracer(&sink, "spam"),
                SpamCheckSyncProcessor::new(Spam::default()),
            ),
            ServerOptions::plain(stack.0, stack.1),
        )
        .unwrap();
        assert_plain_stack_refuses_the_probe(srv.local_addr(), stack, &sink);
    }
}

#[test]
fn thrift_tserver_without_tracing_factory_refuses_the_probe() {
    let sink = InMemory::new();
    let addr = tserver(TBinaryInputProtocolFactory::new(), tracer(&sink, "spam"));
    let stack = (Framing::Framed, Protocol::Binary);
    assert_plain_stack_refuses_the_probe(addr, stack, &sink);
}

#[test]
fn silent_server_times_out_the_probe_as_untraced() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        // Accept and hold two connections without answering.
        let a = silent.accept();
        let b = silent.accept();
        std::thread::sleep(Duration::from_millis(300));
        drop((a, b));
    });
    let sink = InMemory::new();
    let t = tracer(&sink, "web");
    let c = connector(
        &t,
        (Framing::Buffered, Protocol::Binary),
        Upgrade::Negotiate,
    )
    .probe_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let conn = c.connect(addr).unwrap();
    assert!(!conn.is_traced());
    assert!(c.is_known_untraced(addr));
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(conn);
    held.join().unwrap();
}

#[test]
fn zero_timeouts_mean_no_limit() {
    // A zero probe timeout once made every probe fail locally (`set_read_timeout(Some(0))` is an
    // error), so every server was remembered as untraced.
    let stack = (Framing::Framed, Protocol::Binary);
    let sink = InMemory::new();
    let traced = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
    let plain = spam_server(None, stack, Spam::default());
    let web = tracer(&sink, "web");
    let probe_only = connector(&web, stack, Upgrade::Negotiate).probe_timeout(Duration::ZERO);
    let both = probe_only.clone().read_timeout(Some(Duration::ZERO));
    for c in [probe_only, both] {
        for (srv, want) in [(&traced, true), (&plain, false)] {
            let (mut client, is) = spam_client(&c, srv.local_addr());
            assert_eq!(is, want);
            assert_eq!(c.is_known_untraced(srv.local_addr()), !want);
            client.check(comment("c", "x")).unwrap();
        }
    }
}

#[test]
fn one_connector_many_servers_mixed_fleet() {
    for stack in STACKS {
        let sink = InMemory::new();
        let traced = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
        let plain = spam_server(None, stack, Spam::default());
        let web = tracer(&sink, "web");
        let c = connector(&web, stack, Upgrade::Negotiate);
        for round in 0..3 {
            for (srv, want) in [(&traced, true), (&plain, false)] {
                let (mut client, is) = spam_client(&c, srv.local_addr());
                assert_eq!(is, want, "{stack:?} round {round}");
                for n in 0..3 {
                    client
                        .check(comment(&format!("r{round}c{n}"), "x"))
                        .unwrap();
                }
            }
        }
        // 18 CLIENT spans; 9 SERVER spans from the traced server, all joined.
        sink.wait_for(27, Duration::from_secs(5));
        let spans = sink.spans();
        assert_eq!(spans.len(), 27);
        let servers: Vec<_> = spans
            .iter()
            .filter(|s| s.kind() == Some(Kind::Server))
            .collect();
        assert_eq!(servers.len(), 9);
        assert!(servers.iter().all(|s| s.shared()));
        assert!(sink.orphans().is_empty());
    }
}

#[test]
fn multiplexed_services_under_one_traced_processor() {
    use thrift::protocol::TMultiplexedOutputProtocol;
    use thrift::server::TMultiplexedProcessor;
    for stack in STACKS {
        let sink = InMemory::new();
        let mut mux = TMultiplexedProcessor::new();
        mux.register(
            "SpamCheck",
            Box::new(SpamCheckSyncProcessor::new(Spam::default())),
            false,
        )
        .unwrap();
        let srv = Server::spawn(
            listener(),
            TracedProcessor::new(tracer(&sink, "spam"), mux),
            ServerOptions::traced(stack.0, stack.1),
        )
        .unwrap();
        let web = tracer(&sink, "web");
        let conn = connector(&web, stack, Upgrade::Negotiate)
            .connect(srv.local_addr())
            .unwrap();
        assert!(conn.is_traced());
        let (i, o) = conn.into_protocols();
        let mut c = SpamCheckSyncClient::new(i, TMultiplexedOutputProtocol::new("SpamCheck", o));
        assert_eq!(
            c.check(comment("c", "spam")).unwrap().verdict,
            Some(Verdict::SPAM)
        );
        sink.wait_for(2, Duration::from_secs(5));
        let spans = sink.spans();
        assert_eq!(spans.len(), 2);
        assert!(spans.iter().all(|s| s.name() == "SpamCheck:check"));
        assert_eq!(spans[0].id(), spans[1].id());
    }
}

#[test]
fn always_mode_against_a_plain_server_fails_loudly_not_silently() {
    for stack in STACKS {
        let sink = InMemory::new();
        let plain = spam_server(None, stack, Spam::default());
        let web = tracer(&sink, "web");
        let (mut c, traced) =
            spam_client(&connector(&web, stack, Upgrade::Always), plain.local_addr());
        assert!(traced);
        assert!(
            c.check(comment("c", "x")).is_err(),
            "{stack:?}: a plain server must reject the prefix"
        );
        sink.wait_for(1, Duration::from_secs(5));
        let spans = sink.spans();
        assert_eq!(spans.len(), 1);
        assert!(spans[0].tag("error").is_some());
    }
}

#[test]
fn extreme_durations_neither_panic_nor_misclassify() {
    // `remember_untraced_for(Duration::MAX)` ("remember forever") once overflowed
    // `Instant::now() + period` and panicked the caller of `connect`.
    let stack = (Framing::Framed, Protocol::Binary);
    let sink = InMemory::new();
    let traced = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
    let plain = spam_server(None, stack, Spam::default());
    let web = tracer(&sink, "web");
    let c = connector(&web, stack, Upgrade::Negotiate)
        .probe_timeout(Duration::MAX)
        .read_timeout(Some(Duration::MAX))
        .remember_untraced_for(Duration::MAX);
    for _ in 0..2 {
        for (srv, want) in [(&traced, true), (&plain, false)] {
            let (mut client, is) = spam_client(&c, srv.local_addr());
            assert_eq!(is, want);
            assert_eq!(c.is_known_untraced(srv.local_addr()), !want);
            client.check(comment("c", "x")).unwrap();
        }
    }
}
