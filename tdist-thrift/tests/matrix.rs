//! The compatibility matrix over real TCP sockets: traced and plain clients and servers, framed
//! and buffered transports, binary and compact protocols.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::Duration;
use support::comments::*;
use support::*;
use tdist_core::export::InMemory;
use tdist_core::{FinishedSpan, Kind};
use tdist_thrift::{protocols, Framing, Protocol, Server, ServerOptions, TracedProcessor, Upgrade};
use thrift::protocol::{
    TBinaryOutputProtocol, TCompactOutputProtocol, TOutputProtocol, TSerializable,
};
use thrift::transport::{TBufferedWriteTransport, TFramedWriteTransport};

fn wait(sink: &InMemory, n: usize) -> Vec<FinishedSpan> {
    sink.wait_for(n, Duration::from_secs(10));
    sink.spans()
}

fn find<'a>(spans: &'a [FinishedSpan], service: &str, kind: Kind, name: &str) -> &'a FinishedSpan {
    spans
        .iter()
        .find(|s| {
            s.kind() == Some(kind)
                && s.name() == name
                && s.local_endpoint().service_name() == Some(service)
        })
        .unwrap_or_else(|| panic!("no {kind:?} {name} span of {service} in {spans:#?}"))
}

#[test]
fn traced_client_to_traced_server_is_one_trace_continued_downstream() {
    for stack in STACKS {
        let sink = InMemory::new();
        let spam = Spam::default();
        let spam_srv = spam_server(Some(tracer(&sink, "spam")), stack, spam.clone());

        let posts_tracer = tracer(&sink, "posts");
        let downstream = connector(&posts_tracer, stack, Upgrade::Negotiate);
        let (spam_client, traced) = spam_client(&downstream, spam_srv.local_addr());
        assert!(traced, "{stack:?}: spam server answered the probe");
        let posts = Posts {
            spam: Mutex::new(spam_client),
        };
        let posts_srv = Server::spawn(
            listener(),
            TracedProcessor::new(posts_tracer, CommentsSyncProcessor::new(posts)),
            ServerOptions::traced(stack.0, stack.1),
        )
        .unwrap();

        let web = tracer(&sink, "web");
        let conn = connector(&web, stack, Upgrade::Negotiate)
            .connect(posts_srv.local_addr())
            .unwrap();
        assert!(conn.is_traced());
        let (i, o) = conn.into_protocols();
        let mut client = CommentsSyncClient::new(i, o);
        let r = client.post(comment("c1", "nice post")).unwrap();
        assert_eq!(r.published, Some(true));
        let r = client.post(comment("c2", "buy spam")).unwrap();
        assert_eq!(r.published, Some(false));

        let spans = wait(&sink, 8);
        assert_eq!(spans.len(), 8, "{stack:?}: {spans:#?}");
        let web_post = find(&spans, "web", Kind::Client, "post");
        let trace = web_post.trace_id();
        let same: Vec<_> = spans.iter().filter(|s| s.trace_id() == trace).collect();
        assert_eq!(same.len(), 4, "{stack:?}: one trace per post: {spans:#?}");
        let srv_post = same
            .iter()
            .find(|s| s.kind() == Some(Kind::Server) && s.name() == "post")
            .unwrap();
        assert_eq!(srv_post.id(), web_post.id(), "server joins the client span");
        assert!(srv_post.shared());
        let peer = srv_post
            .remote_endpoint()
            .expect("server span has the client's address");
        assert_eq!(peer.ipv4(), Some(std::net::Ipv4Addr::LOCALHOST));
        assert!(peer.port().is_some());
        let cli_check = same
            .iter()
            .find(|s| s.kind() == Some(Kind::Client) && s.name() == "check")
            .unwrap();
        assert_eq!(
            cli_check.parent_id(),
            Some(srv_post.id()),
            "handler's call continues"
        );
        let srv_check = same
            .iter()
            .find(|s| s.kind() == Some(Kind::Server) && s.name() == "check")
            .unwrap();
        assert_eq!(srv_check.id(), cli_check.id());
        assert_eq!(srv_check.local_endpoint().service_name(), Some("spam"));
        assert!(sink.orphans().is_empty(), "{stack:?}");
        // The spam handler ran with the server span current.
        let seen = spam.seen.lock().unwrap().clone();
        assert_eq!(seen[0].map(|c| c.trace_id()), Some(trace));
        assert!(spans.iter().all(|s| s.tag("error").is_none()));
    }
}

#[test]
fn child_span_mode_makes_server_span_a_child() {
    let sink = InMemory::new();
    let stack = (Framing::Framed, Protocol::Binary);
    let srv = Server::spawn(
        listener(),
        TracedProcessor::new(
            tracer(&sink, "spam"),
            SpamCheckSyncProcessor::new(Spam::default()),
        )
        .child_spans(true),
        ServerOptions::traced(stack.0, stack.1),
    )
    .unwrap();
    let t = tracer(&sink, "web");
    let (mut c, traced) = spam_client(&connector(&t, stack, Upgrade::Always), srv.local_addr());
    assert!(traced);
    c.check(comment("c", "hi")).unwrap();
    let spans = wait(&sink, 2);
    let cli = find(&spans, "web", Kind::Client, "check");
    let srv_span = find(&spans, "spam", Kind::Server, "check");
    assert_eq!(srv_span.parent_id(), Some(cli.id()));
    assert_eq!(srv_span.trace_id(), cli.trace_id());
    assert!(!srv_span.shared());
}

/// The bytes a plain client writes for `check(comment)`, seq 1.
fn plain_request(stack: (Framing, Protocol), text: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut o: Box<dyn TOutputProtocol + '_> = match stack {
            (Framing::Framed, Protocol::Binary) => Box::new(TBinaryOutputProtocol::new(
                TFramedWriteTransport::new(&mut buf),
                true,
            )),
            (Framing::Framed, Protocol::Compact) => Box::new(TCompactOutputProtocol::new(
                TFramedWriteTransport::new(&mut buf),
            )),
            (Framing::Buffered, Protocol::Binary) => Box::new(TBinaryOutputProtocol::new(
                TBufferedWriteTransport::new(&mut buf),
                true,
            )),
            (Framing::Buffered, Protocol::Compact) => Box::new(TCompactOutputProtocol::new(
                TBufferedWriteTransport::new(&mut buf),
            )),
        };
        use thrift::protocol::{TFieldIdentifier, TMessageIdentifier, TMessageType};
        use thrift::protocol::{TStructIdentifier, TType};
        o.write_message_begin(&TMessageIdentifier::new("check", TMessageType::Call, 1))
            .unwrap();
        o.write_struct_begin(&TStructIdentifier::new("args"))
            .unwrap();
        o.write_field_begin(&TFieldIdentifier::new("comment", TType::Struct, 1))
            .unwrap();
        comment("c1", text).write_to_out_protocol(&mut *o).unwrap();
        o.write_field_end().unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_message_end().unwrap();
        o.flush().unwrap();
    }
    buf
}

fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    reply
}

#[test]
fn untraced_client_to_traced_server_gets_byte_identical_replies() {
    for stack in STACKS {
        let sink = InMemory::new();
        let traced = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
        let plain = spam_server(None, stack, Spam::default());
        for text in ["hello", "spam spam", "", "boom"] {
            let req = plain_request(stack, text);
            let a = raw_exchange(traced.local_addr(), &req);
            let b = raw_exchange(plain.local_addr(), &req);
            assert!(!a.is_empty(), "{stack:?} {text:?}");
            assert_eq!(
                a, b,
                "{stack:?} {text:?}: reply differs from a plain server's"
            );
            assert!(!has_prefix(&a));
        }
        let spans = wait(&sink, 4);
        assert_eq!(spans.len(), 4);
        assert!(spans
            .iter()
            .all(|s| s.kind() == Some(Kind::Server) && s.parent_id().is_none() && !s.shared()));
        // Declared and application exceptions are tagged as errors.
        let errors: Vec<_> = spans.iter().filter_map(|s| s.tag("error")).collect();
        assert_eq!(errors.len(), 2, "{spans:#?}");
    }
}

#[test]
fn generated_plain_client_calls_traced_server() {
    for stack in STACKS {
        let sink = InMemory::new();
        let srv = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
        let s = TcpStream::connect(srv.local_addr()).unwrap();
        s.set_nodelay(true).unwrap();
        let (i, _, o) = protocols(&s, stack.0, stack.1, false).unwrap();
        let mut client = SpamCheckSyncClient::new(i, o);
        for n in 0..5 {
            let r = client.check(comment(&format!("c{n}"), "spam")).unwrap();
            assert_eq!(r.verdict, Some(Verdict::SPAM));
        }
        client.report("c1".into(), Verdict::HAM).unwrap();
        let err = client.check(comment("c9", "")).unwrap_err();
        assert!(
            matches!(err, thrift::Error::User(ref e) if e.downcast_ref::<InvalidComment>().is_some())
        );
        wait(&sink, 7);
    }
}

#[test]
fn negotiating_client_to_untraced_server_sends_no_prefix_after_probe() {
    for stack in STACKS {
        for close_on_probe in [false, true] {
            let sink = InMemory::new();
            let spam = Spam::default();
            let plain = spam_server(None, stack, spam.clone());
            let proxy = Proxy::spawn(plain.local_addr(), close_on_probe);
            let t = tracer(&sink, "web");
            let c = connector(&t, stack, Upgrade::Negotiate);

            let (mut client, traced) = spam_client(&c, proxy.addr);
            assert!(!traced, "{stack:?} close={close_on_probe}");
            assert!(c.is_known_untraced(proxy.addr));
            for n in 0..3 {
                let r = client.check(comment(&format!("c{n}"), "hello")).unwrap();
                assert_eq!(r.verdict, Some(Verdict::HAM));
            }
            client.report("c0".into(), Verdict::HAM).unwrap();
            let err = client.check(comment("bad", "")).unwrap_err();
            assert!(matches!(err, thrift::Error::User(_)));
            // A second connection reuses the remembered answer: no probe.
            let (mut again, traced) = spam_client(&c, proxy.addr);
            assert!(!traced);
            again.check(comment("c9", "spam")).unwrap();
            drop((client, again));

            let conns = proxy.connections();
            assert_eq!(conns.len(), 3, "probe, then two plain connections");
            assert!(contains(&conns[0], tdist_thrift::PROBE_METHOD.as_bytes()));
            for later in &conns[1..] {
                assert!(
                    !has_prefix(later),
                    "{stack:?}: prefix sent to a plain server"
                );
                assert!(!contains(later, tdist_thrift::PROBE_METHOD.as_bytes()));
            }
            // CLIENT spans are still recorded; the oneway report too.
            let spans = wait(&sink, 6);
            assert_eq!(spans.len(), 6, "{spans:#?}");
            assert!(spans.iter().all(|s| s.kind() == Some(Kind::Client)));
            let errs = spans.iter().filter(|s| s.tag("error").is_some()).count();
            assert_eq!(errs, 1, "the declared exception is an error");
            assert_eq!(spam.reports.lock().unwrap().len(), 1);
        }
    }
}

#[test]
fn traced_client_through_proxy_to_traced_server_sends_prefixes() {
    let stack = (Framing::Buffered, Protocol::Compact);
    let sink = InMemory::new();
    let srv = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
    let proxy = Proxy::spawn(srv.local_addr(), false);
    let t = tracer(&sink, "web");
    let (mut client, traced) = spam_client(&connector(&t, stack, Upgrade::Negotiate), proxy.addr);
    assert!(traced);
    client.check(comment("c", "x")).unwrap();
    client.report("c".into(), Verdict::HAM).unwrap();
    client.check(comment("d", "x")).unwrap();
    let spans = wait(&sink, 6);
    drop(client);
    let conns = proxy.connections();
    assert_eq!(conns.len(), 1, "probe and calls share the connection");
    assert_eq!(
        conns[0]
            .windows(3)
            .filter(|w| *w == [0xC1, 0xB3, 0x01])
            .count(),
        3
    );
    let report = find(&spans, "spam", Kind::Server, "report");
    assert_eq!(
        report.id(),
        find(&spans, "web", Kind::Client, "report").id()
    );
}

#[test]
fn untraced_client_to_untraced_server() {
    for stack in STACKS {
        let plain = spam_server(None, stack, Spam::default());
        let s = TcpStream::connect(plain.local_addr()).unwrap();
        let (i, _, o) = protocols(&s, stack.0, stack.1, false).unwrap();
        let mut client = SpamCheckSyncClient::new(i, o);
        assert_eq!(
            client.check(comment("c", "spam")).unwrap().verdict,
            Some(Verdict::SPAM)
        );
        // And a connector that never upgrades talks to it the same way.
        let sink = InMemory::new();
        let t = tracer(&sink, "web");
        let (mut c, traced) =
            spam_client(&connector(&t, stack, Upgrade::Never), plain.local_addr());
        assert!(!traced);
        assert_eq!(
            c.check(comment("c", "ok")).unwrap().verdict,
            Some(Verdict::HAM)
        );
    }
}

#[test]
fn garbage_prefix_closes_only_that_connection() {
    for stack in STACKS {
        let sink = InMemory::new();
        let srv = spam_server(Some(tracer(&sink, "spam")), stack, Spam::default());
        let mut junk = match stack.0 {
            Framing::Framed => vec![0, 0, 0, 8],
            Framing::Buffered => vec![],
        };
        junk.extend_from_slice(&[0xC1, 0xB3, 0x01, 0x00, 1, 2, 3, 4]);
        let reply = raw_exchange(srv.local_addr(), &junk);
        assert!(reply.is_empty(), "no reply to garbage");
        let t = tracer(&sink, "web");
        let (mut c, _) = spam_client(&connector(&t, stack, Upgrade::Negotiate), srv.local_addr());
        c.check(comment("c", "ok")).unwrap();
    }
}
