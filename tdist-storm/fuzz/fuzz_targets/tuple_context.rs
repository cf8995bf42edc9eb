//! The traced bolt reading a tuple's trace context from arbitrary tuple values.
//!
//! The rule it must keep: a tuple loses nothing unless it carried a context. With the default
//! trace field (the last value), a value is removed only when it is a full B3 or `traceparent`
//! context, and that context is what the bolt joins. With a Kafka payload (bytes as a JSON array
//! of numbers, or base64 text), a frame is removed only when it is valid, and the payload that
//! remains is exactly the bytes after it, in the same encoding. The input is JSON for the
//! tuple's values; with bit 0 of the first byte set, the target first puts a correct checksum
//! into a frame at the start of the payload.
#![no_main]

use base64::Engine as _;
#[path = "../../../tdist-core/fuzz/fuzz_targets/checksum.rs"]
mod checksum;

use checksum::fix_checksum;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tdist_core::propagation::{b3, w3c};
use tdist_core::{binary, Extracted, Tracer};
use tdist_storm::bolt::{Bolt, BoltError, Collector};
use tdist_storm::protocol::Tuple;
use tdist_storm::traced::{TraceField, TracedBolt};

struct Nothing;

impl Bolt for Nothing {
    fn execute(&mut self, _: Tuple, _: &mut dyn Collector) -> Result<(), BoltError> {
        Ok(())
    }
}

/// A payload value's bytes and whether it is base64 text.
fn payload(v: &Value) -> Option<(Vec<u8>, bool)> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(|b| (b, false)),
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .ok()
            .map(|b| (b, true)),
        _ => None,
    }
}

fn set_payload(v: &mut Value, bytes: &[u8], base64: bool) {
    *v = if base64 {
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Value::Array(bytes.iter().map(|&b| Value::from(b)).collect())
    };
}

/// A full context in a value, as the default trace field reads it.
fn context_in(v: &Value) -> Option<tdist_core::SpanContext> {
    let s = v.as_str()?;
    match b3::parse_single(s) {
        Ok(Extracted::Context(c)) => Some(c),
        Ok(_) => None,
        Err(_) if s.len() == w3c::TRACEPARENT_LEN => w3c::parse_traceparent(s).ok(),
        Err(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut values) = serde_json::from_slice::<Vec<Value>>(rest) else {
        return;
    };
    let tracer = Tracer::noop();
    if mode & 2 == 0 {
        // The default trace field: the last value.
        let bolt = TracedBolt::new(Nothing, tracer);
        let before = values.clone();
        let mut tuple = Tuple::new("1", "spout", values);
        let found = bolt.extract(&mut tuple);
        match before.last().and_then(context_in) {
            Some(ctx) => {
                assert_eq!(found, Extracted::Context(ctx));
                assert_eq!(tuple.values[..], before[..before.len() - 1]);
            }
            None => {
                assert_eq!(found, Extracted::Empty);
                assert_eq!(tuple.values, before);
            }
        }
    } else {
        // A Kafka payload in the first value; no trace field (a named field the topology does
        // not declare).
        if mode & 1 == 1 {
            if let Some((mut bytes, base64)) = values.first().and_then(payload) {
                if fix_checksum(&mut bytes) {
                    set_payload(&mut values[0], &bytes, base64);
                }
            }
        }
        let bolt = TracedBolt::new(Nothing, tracer)
            .with_field(TraceField::Named("trace".into()))
            .with_kafka_payload(0);
        let before = values.clone();
        let mut tuple = Tuple::new("1", "spout", values);
        let found = bolt.extract(&mut tuple);
        let framed = before
            .first()
            .and_then(payload)
            .and_then(|(bytes, base64)| {
                let (ctx, after) = binary::decode(&bytes).ok()?;
                Some((ctx, after.to_vec(), base64))
            });
        match framed {
            Some((ctx, after, base64)) => {
                assert_eq!(found, Extracted::Context(ctx));
                let mut want = before.clone();
                set_payload(&mut want[0], &after, base64);
                assert_eq!(tuple.values, want);
            }
            None => {
                assert_eq!(found, Extracted::Empty, "{before:?}");
                assert_eq!(tuple.values, before);
            }
        }
    }
});
