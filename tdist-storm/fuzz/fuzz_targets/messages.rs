//! The multilang pipe: arbitrary bytes, delivered in arbitrary pieces, read as messages and
//! classified as Storm's and a component's messages.
//!
//! Framing is held against a plain reading of the rule (lines end at `\n`, `\r\n` or a lone
//! `\r`, as Java's `readLine` has it; a message is its lines up to a line `end`): the same
//! messages, and an error or a clean end at the same point, whatever the pieces. Every message
//! that is JSON is then read as each kind of message; what reads as a tuple or an emit is
//! written back and reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::io::Read;
use tdist_storm::protocol::{
    Handshake, MessageReader, ShellMsg, StormMessage, TopologyContext, Tuple,
};

/// The reader's size limit here: small, so that the limit is reached too.
const MAX: usize = 300;

/// Hands out the input in pieces of the given sizes, in turn.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: [usize; 4],
    turn: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sizes[self.turn % 4]
            .min(buf.len())
            .min(self.data.len());
        self.turn += 1;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Lines as Java's `readLine` returns them.
fn lines(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                out.push(&b[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&b[start..i]);
                i += 1;
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push(&b[start..]);
    }
    out
}

/// The messages of `b`, then `Ok(())` for a clean end or `Err(())` where reading must fail.
fn expected(b: &[u8]) -> (Vec<String>, Result<(), ()>) {
    let mut messages = Vec::new();
    let mut message: Vec<u8> = Vec::new();
    let mut count = 0;
    for line in lines(b) {
        if line == b"end" {
            if count > 0 {
                message.pop();
            }
            match String::from_utf8(std::mem::take(&mut message)) {
                Ok(m) => messages.push(m),
                Err(_) => return (messages, Err(())),
            }
            count = 0;
            continue;
        }
        message.extend_from_slice(line);
        message.push(b'\n');
        count += 1;
        if message.len() > MAX {
            return (messages, Err(()));
        }
    }
    (messages, if count == 0 { Ok(()) } else { Err(()) })
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fn classify(text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let _ = Handshake::from_json(&v);
    let _ = TopologyContext::from_json(&v);
    if let Ok(StormMessage::Tuple(t)) = StormMessage::from_json(v.clone()) {
        if !has_float(&Value::Array(t.values.clone())) {
            let Value::Object(m) = t.to_json() else {
                panic!("a tuple is written as an object");
            };
            assert_eq!(Tuple::from_json(m).expect("own tuple reads"), t);
        }
    }
    if let Ok(ShellMsg::Emit(e)) = ShellMsg::from_json(v) {
        let written = e.to_json_string();
        let back: Value = serde_json::from_str(&written).expect("own emit is JSON");
        if !has_float(&back) {
            assert_eq!(
                ShellMsg::from_json(back).expect("own emit reads"),
                ShellMsg::Emit(e)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (head, body) = data.split_at(2);
    // Piece sizes 1 to 16, or everything at once.
    let size = |b: u8| {
        if b & 0x10 != 0 {
            usize::MAX
        } else {
            usize::from(b & 0x0f) + 1
        }
    };
    let sizes = [
        size(head[0]),
        size(head[0] >> 4),
        size(head[1]),
        size(head[1] >> 4),
    ];
    let mut reader = MessageReader::with_limit(
        Pieces {
            data: body,
            sizes,
            turn: 0,
        },
        MAX,
    );
    let (want, end) = expected(body);
    let mut got = Vec::new();
    let outcome = loop {
        match reader.read_message() {
            Ok(Some(m)) => {
                classify(&m);
                got.push(m);
                if got.len() > want.len() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(_) => break Err(()),
        }
    };
    assert_eq!(got, want);
    assert_eq!(outcome, end);
});
