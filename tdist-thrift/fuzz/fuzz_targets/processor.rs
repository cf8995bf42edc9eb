//! A traced processor serving arbitrary requests, against the plain generated processor.
//!
//! Services are upgraded one by one, so a traced server must answer a plain request with exactly
//! the bytes a plain server sends, and a prefixed request with a prefix followed by exactly
//! those bytes; whether each request succeeds must not change either. The reference strips each
//! request's prefix itself and runs the generated processor (from the demo's IDL, compiled by
//! Debian's thrift-compiler) on a plain protocol. The upgrade probes, which the traced
//! processor answers itself, are left out of the comparison but still served. With bit 2 of
//! the first byte set, the target writes a correct checksum into a prefix at the start of the
//! input.
#![no_main]

#[path = "../../../examples/src/thrift_gen/comments.rs"]
#[allow(clippy::all, rust_2018_idioms, dead_code)]
mod comments;

use comments::{
    Comment, InvalidComment, SpamCheckSyncHandler, SpamCheckSyncProcessor, SpamScore, Verdict,
};
mod common;

use common::{input, output, with_checksum};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::io::{Cursor, Read};
use std::rc::Rc;
use tdist_core::{binary, Tracer};
use tdist_thrift::prefix::PrefixReader;
use tdist_thrift::{TracedProcessor, TracingInputProtocol, PROBE_METHOD};
use thrift::server::TProcessor;
use thrift::{ApplicationError, ApplicationErrorKind, OrderedFloat};

/// At most this many requests are served from one input.
const REQUESTS: usize = 4;

/// A deterministic handler that also fails in both ways a handler can.
struct Spam;

impl SpamCheckSyncHandler for Spam {
    fn handle_check(&self, comment: Comment) -> thrift::Result<SpamScore> {
        match comment.text.as_deref() {
            Some("") => Err(InvalidComment::new("empty comment".to_owned()).into()),
            Some(t) if t.starts_with('!') => Err(ApplicationError::new(
                ApplicationErrorKind::InternalError,
                "handler failed",
            )
            .into()),
            text => Ok(SpamScore {
                score: Some(OrderedFloat(text.map_or(0, str::len) as f64)),
                verdict: Some(Verdict(1)),
                reason: comment.author,
            }),
        }
    }

    fn handle_report(&self, _: String, verdict: Verdict) -> thrift::Result<()> {
        if verdict.0 < 0 {
            return Err(ApplicationError::new(ApplicationErrorKind::Unknown, "bad verdict").into());
        }
        Ok(())
    }
}

/// A cursor the reference can move (past a prefix) while its protocol reads from it.
#[derive(Clone)]
struct Shared<'a>(Rc<RefCell<Cursor<&'a [u8]>>>);

impl Read for Shared<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Whether a request is one of the upgrade probes the traced processor answers itself.
fn is_probe(request: &[u8], compact: bool) -> bool {
    let mut i = input(compact, request);
    i.read_message_begin()
        .is_ok_and(|m| m.name == PROBE_METHOD || m.name == "__can__finagle__trace__v3__")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let compact = mode & 1 == 1;
    let bytes = with_checksum(rest, mode & 4 != 0);

    let traced = TracedProcessor::new(Tracer::noop(), SpamCheckSyncProcessor::new(Spam));
    let plain = SpamCheckSyncProcessor::new(Spam);
    let (reader, handle) = PrefixReader::new(Cursor::new(&bytes[..]));
    let mut traced_in = TracingInputProtocol::server(input(compact, reader), handle);
    // One plain protocol for the whole input, as a plain server keeps one per connection (the
    // compact protocol carries state from one message to the next).
    let cursor = Shared(Rc::new(RefCell::new(Cursor::new(&bytes[..]))));
    let mut plain_in = input(compact, cursor.clone());
    for _ in 0..REQUESTS {
        // The reference: this request's prefix stripped (an invalid one fails the request).
        let at = cursor.0.borrow().position() as usize;
        let rest = &bytes[at..];
        let (prefixed, body) = match binary::decode(rest) {
            Ok((_, after)) => (true, after),
            Err(_) if rest.first() == Some(&binary::MAGIC[0]) => {
                let mut reply = Vec::new();
                let res = traced.process(&mut traced_in, &mut *output(compact, &mut reply));
                assert!(res.is_err(), "an invalid prefix was accepted");
                return;
            }
            Err(_) => (false, rest),
        };
        cursor
            .0
            .borrow_mut()
            .set_position((bytes.len() - body.len()) as u64);
        let probe = is_probe(body, compact);
        let mut plain_reply = Vec::new();
        let plain_res = plain.process(&mut *plain_in, &mut *output(compact, &mut plain_reply));

        let mut traced_reply = Vec::new();
        let traced_res = traced.process(&mut traced_in, &mut *output(compact, &mut traced_reply));
        if probe {
            return;
        }
        assert_eq!(
            traced_res.is_ok(),
            plain_res.is_ok(),
            "{traced_res:?} / {plain_res:?}"
        );
        if prefixed && !traced_reply.is_empty() {
            let (_, after) =
                binary::decode(&traced_reply).expect("a prefixed request's reply is prefixed");
            assert_eq!(after, &plain_reply[..]);
        } else {
            assert_eq!(traced_reply, plain_reply);
        }
        if plain_res.is_err() {
            return;
        }
    }
});
