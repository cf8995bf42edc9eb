//! A traced server's input protocol reading arbitrary requests, and a traced client's reading
//! arbitrary replies (bit 1 of the first byte), against a plain protocol that is told where the
//! prefixes are.
//!
//! The tracing protocol detects an optional prefix before each message and must then read
//! exactly what a plain protocol reads from the bytes without it: the same message headers,
//! the same arguments, the same point of failure. The reference strips each message's prefix
//! with `tdist_core::binary` and reads the rest with an unwrapped protocol; a message whose
//! first byte is the prefix magic but whose prefix is invalid must fail in both. The detected
//! context is checked too, through the prefix reader's handle. With bit 2 of the first byte
//! set, the target writes a correct checksum into a prefix at the start of the input, so the
//! fuzzer gets past it.
#![no_main]

mod common;

use common::{input, output, with_checksum};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use tdist_core::Tracer;
use tdist_core::{binary, SpanContext};
use tdist_thrift::prefix::{Detected, PrefixReader};
use tdist_thrift::{client_protocols, TracingInputProtocol};
use thrift::protocol::{
    TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

/// At most this many messages are read from one input.
const MESSAGES: usize = 8;

/// What reading one message gave: its header, then whether its arguments and end were read.
#[derive(Debug, PartialEq)]
enum Step {
    Header(TMessageIdentifier),
    Body,
    Failed,
}

/// Reads one message's header, arguments and end; false after a failure.
fn read_one(p: &mut dyn TInputProtocol, steps: &mut Vec<Step>) -> bool {
    match p.read_message_begin() {
        Ok(ident) => steps.push(Step::Header(ident)),
        Err(_) => {
            steps.push(Step::Failed);
            return false;
        }
    }
    if p.skip(TType::Struct).is_err() || p.read_message_end().is_err() {
        steps.push(Step::Failed);
        return false;
    }
    steps.push(Step::Body);
    true
}

/// The plain reading: each message's prefix stripped with `binary::decode` (an invalid one
/// fails the message), the rest read by a protocol that knows nothing of prefixes. Also gives
/// the context in front of each message.
fn reference(bytes: &[u8], compact: bool) -> (Vec<Step>, Vec<Option<SpanContext>>) {
    let mut steps = Vec::new();
    let mut contexts = Vec::new();
    let mut cursor = Cursor::new(bytes);
    for _ in 0..MESSAGES {
        let rest = &bytes[cursor.position() as usize..];
        let mut ctx = None;
        if rest.first() == Some(&binary::MAGIC[0]) {
            match binary::decode(rest) {
                Ok((c, after)) => {
                    ctx = Some(c);
                    cursor.set_position((bytes.len() - after.len()) as u64);
                }
                Err(_) => {
                    steps.push(Step::Failed);
                    break;
                }
            }
        }
        contexts.push(ctx);
        if !read_one(&mut *input(compact, &mut cursor), &mut steps) {
            break;
        }
    }
    (steps, contexts)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let compact = mode & 1 == 1;
    let bytes = with_checksum(rest, mode & 4 != 0);
    let (expected, contexts) = reference(&bytes, compact);

    let mut got = Vec::new();
    let (reader, handle) = PrefixReader::new(Cursor::new(&bytes[..]));
    if mode & 2 == 0 {
        // The tracing protocol, as a traced server reads requests.
        let mut traced = TracingInputProtocol::server(input(compact, reader), handle);
        for _ in 0..MESSAGES {
            if !read_one(&mut traced, &mut got) {
                break;
            }
        }
    } else {
        // As a traced client reads replies, each after sending a call (its span open).
        let mut sink = Vec::new();
        let out = output(compact, &mut sink);
        let (mut input, mut output) =
            client_protocols(&Tracer::noop(), input(compact, reader), handle, out, true);
        for seq in 0..MESSAGES as i32 {
            output
                .write_message_begin(&TMessageIdentifier::new("check", TMessageType::Call, seq))
                .and_then(|()| output.write_struct_begin(&TStructIdentifier::new("args")))
                .and_then(|()| output.write_field_stop())
                .and_then(|()| output.write_struct_end())
                .and_then(|()| output.write_message_end())
                .and_then(|()| output.flush())
                .expect("writing to memory");
            if !read_one(&mut input, &mut got) {
                break;
            }
        }
    }
    assert_eq!(got, expected, "mode {mode:#x}, input {bytes:02x?}");

    // The context found in front of each message, through the reader's handle.
    let (reader, handle) = PrefixReader::new(Cursor::new(&bytes[..]));
    let mut plain = input(compact, reader);
    let mut found = Vec::new();
    let mut scratch = Vec::new();
    for _ in 0..contexts.len() {
        handle.arm();
        let more = read_one(&mut *plain, &mut scratch);
        found.push(match handle.take() {
            Detected::Context(c) => Some(c),
            _ => None,
        });
        if !more {
            break;
        }
    }
    assert_eq!(found, contexts, "mode {mode:#x}, input {bytes:02x?}");
});
