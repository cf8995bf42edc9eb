//! The prefix reader and tracing protocols in memory: detection, put-back, errors, fuzzing.

mod support;

use proptest::prelude::*;
use std::io::{Cursor, Read};
use support::comments::{SpamCheckSyncProcessor, TSpamCheckSyncClient};
use support::*;
use tdist_core::export::InMemory;
use tdist_core::{binary, Kind, SamplingState, SpanContext, SpanId, TraceId};
use tdist_thrift::prefix::{Detected, PrefixReader};
use tdist_thrift::{client_protocols, TracedProcessor, TracingInputProtocol};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};
use thrift::server::TProcessor;
use thrift::TConfiguration;

fn small() -> TConfiguration {
    TConfiguration::builder()
        .max_string_size(Some(4096))
        .max_container_size(Some(256))
        .build()
        .unwrap()
}

/// Bytes of one empty-args CALL in the given encoding.
fn message(kind: &str, name: &str, t: TMessageType) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut o: Box<dyn TOutputProtocol + '_> = match kind {
            "strict" => Box::new(TBinaryOutputProtocol::new(&mut buf, true)),
            "loose" => Box::new(TBinaryOutputProtocol::new(&mut buf, false)),
            _ => Box::new(TCompactOutputProtocol::new(&mut buf)),
        };
        o.write_message_begin(&TMessageIdentifier::new(name, t, 7))
            .unwrap();
        o.write_struct_begin(&TStructIdentifier::new("a")).unwrap();
        o.write_field_stop().unwrap();
        o.write_struct_end().unwrap();
        o.write_message_end().unwrap();
        o.flush().unwrap();
    }
    buf
}

fn server_input(bytes: Vec<u8>, kind: &str) -> Box<dyn TInputProtocol> {
    let (r, h) = PrefixReader::new(Cursor::new(bytes));
    match kind {
        "compact" => Box::new(TracingInputProtocol::server(
            TCompactInputProtocol::with_config(r, small()),
            h,
        )),
        _ => Box::new(TracingInputProtocol::server(
            TBinaryInputProtocol::with_config(r, false, small()),
            h,
        )),
    }
}

const KINDS: [&str; 3] = ["strict", "loose", "compact"];
const TYPES: [TMessageType; 4] = [
    TMessageType::Call,
    TMessageType::Reply,
    TMessageType::Exception,
    TMessageType::OneWay,
];

#[test]
fn no_plain_message_starts_with_the_prefix_byte() {
    for kind in KINDS {
        for t in TYPES {
            let m = message(kind, "check", t);
            assert_ne!(m[0], binary::MAGIC[0], "{kind} {t:?}");
            // Armed detection puts every byte back.
            let (mut r, h) = PrefixReader::new(&m[..]);
            h.arm();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, m);
            assert_eq!(h.take(), Detected::Absent);
        }
    }
    for first in [b'[', b'{', 0x00, 0x0A, 0x0F] {
        assert_ne!(first, binary::MAGIC[0]);
    }
}

#[test]
fn prefixed_messages_are_read_in_every_encoding() {
    for kind in KINDS {
        let ctx = SpanContext::new(TraceId::random_128(), SpanId::random())
            .with_parent(Some(SpanId::random()))
            .with_sampling(SamplingState::Debug);
        let mut bytes = binary::encode(&ctx).as_bytes().to_vec();
        bytes.extend(message(kind, "check", TMessageType::Call));
        bytes.extend(message(kind, "check", TMessageType::Call));
        let mut i = server_input(bytes, kind);
        for _ in 0..2 {
            let m = i.read_message_begin().unwrap();
            assert_eq!((m.name.as_str(), m.sequence_number), ("check", 7));
            i.skip(TType::Struct).unwrap();
            i.read_message_end().unwrap();
        }
        assert!(i.read_message_begin().is_err(), "end of input");
    }
}

#[test]
fn invalid_prefix_is_a_protocol_error() {
    let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
    let good = binary::encode(&ctx).as_bytes().to_vec();
    for flip in 0..good.len() {
        let mut bytes = good.clone();
        bytes[flip] ^= 0x10;
        if bytes[0] != binary::MAGIC[0] {
            continue;
        }
        bytes.extend(message("strict", "check", TMessageType::Call));
        let err = server_input(bytes, "strict")
            .read_message_begin()
            .unwrap_err();
        match err {
            thrift::Error::Protocol(e) => {
                assert_eq!(
                    e.kind,
                    thrift::ProtocolErrorKind::InvalidData,
                    "byte {flip}"
                )
            }
            // Flipping a flag bit can lengthen the frame past the input's end.
            thrift::Error::Transport(_) => {}
            other => panic!("byte {flip}: {other:?}"),
        }
    }
}

/// Runs one request through a traced processor in memory; returns the reply bytes.
fn process(request: Vec<u8>, sink: &InMemory) -> thrift::Result<Vec<u8>> {
    let p = TracedProcessor::new(
        tracer(sink, "spam"),
        SpamCheckSyncProcessor::new(Spam::default()),
    );
    let mut i = server_input(request, "strict");
    let mut reply = Vec::new();
    let mut o = TBinaryOutputProtocol::new(&mut reply, true);
    p.process(&mut *i, &mut o)?;
    Ok(reply)
}

/// A client request written by the traced client protocols.
fn client_request(send_prefix: bool, sink: &InMemory) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let (r, h) = PrefixReader::new(Cursor::new(Vec::new()));
        let (i, o) = client_protocols(
            &tracer(sink, "web"),
            TBinaryInputProtocol::new(r, true),
            h,
            TBinaryOutputProtocol::new(&mut buf, true),
            send_prefix,
        );
        let mut c = support::comments::SpamCheckSyncClient::new(i, o);
        // No reply to read: the call fails after writing, which is all we need here.
        let _ = c.check(comment("c1", "spam"));
    }
    buf
}

#[test]
fn processor_replies_in_kind() {
    let sink = InMemory::new();
    let traced = client_request(true, &sink);
    assert_eq!(traced[0], binary::MAGIC[0]);
    let (sent, _) = binary::decode(&traced).unwrap();
    let reply = process(traced, &sink).unwrap();
    let (back, rest) = binary::decode(&reply).unwrap();
    assert_eq!(back.span_id(), sent.span_id(), "joined span");
    assert_eq!(&rest[..2], &[0x80, 0x01]);

    let plain = client_request(false, &sink);
    assert_eq!(&plain[..2], &[0x80, 0x01]);
    let reply = process(plain, &sink).unwrap();
    assert_eq!(&reply[..2], &[0x80, 0x01], "no prefix for a plain request");

    sink.wait_for(4, std::time::Duration::from_secs(5));
    let spans = sink.spans();
    let server: Vec<_> = spans
        .iter()
        .filter(|s| s.kind() == Some(Kind::Server))
        .collect();
    assert_eq!(server.len(), 2);
    assert!(server
        .iter()
        .any(|s| s.id() == sent.span_id() && s.shared()));
}

#[test]
fn probe_is_answered_and_args_drained() {
    let sink = InMemory::new();
    let mut req = message("strict", tdist_thrift::PROBE_METHOD, TMessageType::Call);
    req.extend(client_request(false, &sink));
    let p = TracedProcessor::new(
        tracer(&sink, "spam"),
        SpamCheckSyncProcessor::new(Spam::default()),
    );
    let mut i = server_input(req, "strict");
    let mut reply = Vec::new();
    let mut o = TBinaryOutputProtocol::new(&mut reply, true);
    p.process(&mut *i, &mut o).unwrap();
    p.process(&mut *i, &mut o).unwrap();
    let mut r = TBinaryInputProtocol::new(&reply[..], true);
    let m = r.read_message_begin().unwrap();
    assert_eq!(m.name, tdist_thrift::PROBE_METHOD);
    assert_eq!(m.message_type, TMessageType::Reply);
    r.skip(TType::Struct).unwrap();
    r.read_message_end().unwrap();
    let m = r.read_message_begin().unwrap();
    assert_eq!(
        (m.name.as_str(), m.message_type),
        ("check", TMessageType::Reply)
    );
}

#[test]
fn probe_read_without_prefix_detection_is_refused() {
    let sink = InMemory::new();
    let p = TracedProcessor::new(
        tracer(&sink, "spam"),
        SpamCheckSyncProcessor::new(Spam::default()),
    );
    let probe = || message("strict", tdist_thrift::PROBE_METHOD, TMessageType::Call);
    let answer = |i: &mut dyn TInputProtocol| {
        let mut reply = Vec::new();
        p.process(i, &mut TBinaryOutputProtocol::new(&mut reply, true))
            .unwrap();
        let m = TBinaryInputProtocol::new(&reply[..], true)
            .read_message_begin()
            .unwrap();
        m.message_type
    };
    assert_eq!(
        answer(&mut *server_input(probe(), "strict")),
        TMessageType::Reply
    );
    // A message read through prefix detection on this thread and not handled by a traced
    // processor must not make the plain stack's probe below look answerable.
    server_input(probe(), "strict")
        .read_message_begin()
        .unwrap();
    let mut plain = TBinaryInputProtocol::new(Cursor::new(probe()), false);
    assert_eq!(answer(&mut plain), TMessageType::Exception);
}

fn drain(mut i: Box<dyn TInputProtocol>) {
    for _ in 0..8 {
        if i.read_message_begin().is_err() {
            return;
        }
        if i.skip(TType::Struct).is_err() || i.read_message_end().is_err() {
            return;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), kind in 0..3usize) {
        drain(server_input(bytes, KINDS[kind]));
    }

    #[test]
    fn prefix_like_noise_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..96), flags in any::<u8>()) {
        let mut bytes = vec![0xC1, 0xB3, 0x01, flags];
        bytes.extend(tail);
        drain(server_input(bytes, "strict"));
    }

    #[test]
    fn corrupted_valid_prefix_never_panics(at in 0..40usize, xor in 1..=255u8, t128 in any::<bool>()) {
        let trace = if t128 { TraceId::random_128() } else { TraceId::random_64() };
        let ctx = SpanContext::new(trace, SpanId::random()).with_parent(Some(SpanId::random()));
        let mut bytes = binary::encode(&ctx).as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] ^= xor;
        bytes.extend(message("strict", "check", TMessageType::Call));
        drain(server_input(bytes, "strict"));
    }

    #[test]
    fn processor_never_panics_on_arbitrary_requests(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let sink = InMemory::new();
        let _ = process(bytes, &sink);
    }

    #[test]
    fn every_context_round_trips(hi in any::<u64>(), lo in 1..=u64::MAX, span in 1..=u64::MAX, parent in any::<u64>(), s in 0..4u8, kind in 0..3usize) {
        let sampling = [SamplingState::Defer, SamplingState::Deny, SamplingState::Accept, SamplingState::Debug][s as usize];
        let ctx = SpanContext::new(TraceId::new(hi, lo).unwrap(), SpanId::new(span).unwrap())
            .with_parent(SpanId::new(parent))
            .with_sampling(sampling);
        let mut bytes = binary::encode(&ctx).as_bytes().to_vec();
        bytes.extend(message(KINDS[kind], "m", TMessageType::Call));
        let (mut r, h) = PrefixReader::new(&bytes[..]);
        h.arm();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        prop_assert_eq!(h.take(), Detected::Context(ctx));
        prop_assert_eq!(out, message(KINDS[kind], "m", TMessageType::Call));
    }
}

#[test]
fn finagle_probe_is_refused_with_args_drained() {
    let sink = InMemory::new();
    let mut req = message("strict", "__can__finagle__trace__v3__", TMessageType::Call);
    req.extend(client_request(false, &sink));
    let p = TracedProcessor::new(
        tracer(&sink, "spam"),
        SpamCheckSyncProcessor::new(Spam::default()),
    );
    let mut i = server_input(req, "strict");
    let mut reply = Vec::new();
    let mut o = TBinaryOutputProtocol::new(&mut reply, true);
    p.process(&mut *i, &mut o).unwrap();
    p.process(&mut *i, &mut o).unwrap();
    let mut r = TBinaryInputProtocol::new(&reply[..], true);
    let m = r.read_message_begin().unwrap();
    assert_eq!(m.message_type, TMessageType::Exception);
    let e = thrift::Error::read_application_error_from_in_protocol(&mut r).unwrap();
    assert_eq!(e.kind, thrift::ApplicationErrorKind::UnknownMethod);
    r.read_message_end().unwrap();
    let m = r.read_message_begin().unwrap();
    assert_eq!(
        (m.name.as_str(), m.message_type),
        ("check", TMessageType::Reply)
    );
}

/// Why the refusal above drains: the generated Rust processor leaves an unknown method's
/// arguments unread, so the next request on the connection is misread (reference 5.4).
#[test]
fn generated_rust_processor_leaves_unknown_args_unread() {
    let sink = InMemory::new();
    let mut req = message("strict", "__can__finagle__trace__v3__", TMessageType::Call);
    req.extend(client_request(false, &sink));
    let p = SpamCheckSyncProcessor::new(Spam::default());
    let mut i = TBinaryInputProtocol::new(&req[..], false);
    let mut reply = Vec::new();
    let mut o = TBinaryOutputProtocol::new(&mut reply, true);
    p.process(&mut i, &mut o).unwrap();
    assert!(p.process(&mut i, &mut o).is_err(), "second request misread");
}
