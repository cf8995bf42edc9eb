//! W3C `traceparent` and `tracestate` from arbitrary header values.
//!
//! `traceparent`: held against a plain reading of the version-00 layout (and the rule for
//! higher versions), and written back to the same context. `tracestate`: what is accepted is
//! written back and read again to the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdist_core::propagation::w3c::{self, TraceState};
use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};

fn hex(b: &[u8]) -> Option<u128> {
    b.iter().try_fold(0u128, |n, &c| match c {
        b'0'..=b'9' => Some(n << 4 | u128::from(c - b'0')),
        b'a'..=b'f' => Some(n << 4 | u128::from(c - b'a' + 10)),
        _ => None,
    })
}

/// `traceparent` read field by field: `vv-{32}-{16}-ff`, version 00 exactly 55 characters,
/// later versions followed by `-` and anything, version ff refused.
fn expected(value: &str) -> Option<SpanContext> {
    let v = value.trim_matches([' ', '\t']).as_bytes();
    if v.len() < 55 {
        return None;
    }
    let version = hex(&v[0..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace = hex(&v[3..35])?;
    let span = hex(&v[36..52])?;
    let flags = hex(&v[53..55])?;
    let ctx = SpanContext::new(
        TraceId::new((trace >> 64) as u64, trace as u64)?,
        SpanId::new(span as u64)?,
    );
    Some(ctx.with_sampling(if flags & 1 == 1 {
        SamplingState::Accept
    } else {
        SamplingState::Deny
    }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        let got = w3c::parse_traceparent(text).ok();
        assert_eq!(got, expected(text), "{text:?}");
        if let Some(ctx) = got {
            let written = w3c::format_traceparent(&ctx);
            assert_eq!(w3c::parse_traceparent(written.as_str()), Ok(ctx));
        }
    } else {
        // One or more header values, one per line.
        if let Ok(state) = TraceState::parse(text.split('\n')) {
            let written = state.header_value();
            let again = TraceState::parse([written.as_str()]).expect("own output parses");
            assert_eq!(again, state, "{text:?} -> {written:?}");
            assert!(written.split(',').count() <= 32 || state.is_empty());
        }
    }
});
