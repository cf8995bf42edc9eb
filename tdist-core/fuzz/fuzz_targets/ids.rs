//! Span and trace ids from text, checked against a plain digit-by-digit reading.
//!
//! The parser classifies eight characters at once; this target holds it to the rule it
//! implements: exactly 16 (span) or 16 or 32 (trace) lower-hex characters, not all zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdist_core::{SpanId, TraceId};

/// The value of `s` when every character is a lower-hex digit (and there is at least one).
fn lower_hex(s: &[u8]) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    s.iter().try_fold(0u128, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(d))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let reference = lower_hex(data);

    let span = SpanId::from_hex(s);
    match (data.len(), reference) {
        (16, Some(v)) if v != 0 => {
            let id = span.expect("16 lower-hex characters, not all zero, are a span id");
            assert_eq!(u128::from(id.get()), v);
            assert_eq!(id.to_string(), s);
        }
        _ => assert!(span.is_err(), "accepted {s:?} as a span id"),
    }

    let trace = TraceId::from_hex(s);
    match (data.len(), reference) {
        (16 | 32, Some(v)) if v != 0 => {
            let id = trace.expect("16 or 32 lower-hex characters, not all zero, are a trace id");
            assert_eq!(u128::from(id.high()) << 64 | u128::from(id.low()), v);
            // Written back: 32 characters when the high half is set, else 16.
            let again = TraceId::from_hex(&id.to_string()).expect("own output parses");
            assert_eq!(again, id);
            if id.high() != 0 {
                assert_eq!(id.to_string(), s);
            }
        }
        _ => assert!(trace.is_err(), "accepted {s:?} as a trace id"),
    }
});
