//! B3, single (`b3`) and multi (`X-B3-*`), from arbitrary header values.
//!
//! Single: whatever is accepted is written back and read again to the same context. Multi:
//! held against a plain reading of the rules Brave follows (2 to 32 lower-hex characters for
//! the trace id, 2 to 16 for span ids, `X-B3-Flags: 1` for debug).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdist_core::propagation::{b3, Extractor};
use tdist_core::{Extracted, SamplingState};

/// Five optional `X-B3-*` values, in the order of `NAMES`.
struct Multi<'a>([Option<&'a str>; 5]);

const NAMES: [&str; 5] = [
    b3::TRACE_ID,
    b3::SPAN_ID,
    b3::PARENT_SPAN_ID,
    b3::SAMPLED,
    b3::FLAGS,
];

impl Extractor for Multi<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let i = NAMES.iter().position(|n| n.eq_ignore_ascii_case(key))?;
        self.0[i]
    }
}

/// The value of 2..=max lower-hex characters.
fn lenient(v: &str, max: usize) -> Result<u128, ()> {
    if !(2..=max).contains(&v.len()) {
        return Err(());
    }
    v.bytes().try_fold(0u128, |n, c| match c {
        b'0'..=b'9' => Ok(n << 4 | u128::from(c - b'0')),
        b'a'..=b'f' => Ok(n << 4 | u128::from(c - b'a' + 10)),
        _ => Err(()),
    })
}

/// What the multi form should give, read the slow way. `Err` for malformed.
fn expected_multi(m: &Multi<'_>) -> Result<Option<Extracted>, ()> {
    let [trace, span, parent, sampled, flags] = m.0;
    if m.0.iter().all(Option::is_none) {
        return Ok(None);
    }
    let sampled = match sampled.map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => return Err(()),
    };
    // Debug wins; otherwise the sampled header decides, and without it the receiver defers.
    let sampling = if flags == Some("1") {
        SamplingState::Debug
    } else {
        sampled.map_or(SamplingState::Defer, |yes| {
            [SamplingState::Deny, SamplingState::Accept][usize::from(yes)]
        })
    };
    let Some(trace) = trace else {
        // No ids: a decision alone, or nothing at all.
        return Ok(Some(if sampling == SamplingState::Defer {
            Extracted::Empty
        } else {
            Extracted::Sampling(sampling)
        }));
    };
    let t = lenient(trace, 32)?;
    let s = lenient(span.ok_or(())?, 16)?;
    let p = parent.map(|p| lenient(p, 16)).transpose()?;
    if t == 0 || s == 0 || p == Some(0) {
        return Err(());
    }
    let ctx = tdist_core::SpanContext::new(
        tdist_core::TraceId::new((t >> 64) as u64, t as u64).expect("non-zero"),
        tdist_core::SpanId::new(s as u64).expect("non-zero"),
    )
    .with_parent(p.map(|p| tdist_core::SpanId::new(p as u64).expect("non-zero")))
    .with_sampling(sampling);
    Ok(Some(Extracted::Context(ctx)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 0x80 == 0 {
        // Single form.
        match b3::parse_single(text) {
            Ok(Extracted::Context(ctx)) => {
                assert!(text.len() <= b3::MAX_SINGLE_LEN);
                let written = b3::format_single(&ctx, true);
                let again = b3::parse_single(written.as_str()).expect("own output parses");
                assert_eq!(
                    again,
                    Extracted::Context(ctx),
                    "{text:?} -> {}",
                    written.as_str()
                );
                // Without the parent, everything else is kept.
                let bare = b3::parse_single(b3::format_single(&ctx, false).as_str())
                    .expect("own output parses");
                assert_eq!(bare.context(), Some(ctx.with_parent(None)));
            }
            Ok(Extracted::Sampling(_)) => assert_eq!(text.len(), 1),
            Ok(Extracted::Empty) => panic!("parse_single never answers Empty"),
            Err(e) => assert_eq!(e.field(), "b3"),
        }
    } else {
        // Multi form: the low five bits of `mode` say which headers are present.
        let mut values = text.split('\n');
        let mut fields = [None; 5];
        for (i, f) in fields.iter_mut().enumerate() {
            if mode & (1 << i) != 0 {
                *f = Some(values.next().unwrap_or(""));
            }
        }
        let m = Multi(fields);
        let got = b3::extract_multi(&m).map_err(|_| ());
        assert_eq!(got, expected_multi(&m), "{:?}", m.0);
    }
});
