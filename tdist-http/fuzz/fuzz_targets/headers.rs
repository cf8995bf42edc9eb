//! A request's tracing headers, built from arbitrary names and values, read two ways.
//!
//! The server layer reads headers with `ScannedHeaders`, one pass over the map with each value
//! read once; `HeaderExtractor` is the plain reading, one lookup per name. Both must find the
//! same context from the same form, for any headers a caller can send: repeated, oversized,
//! not visible ASCII, in any order. Extraction reads every form as bytes, so each is also held
//! against a carrier that reads only text (the trait's default `get_bytes`). A context found is
//! then written as each form and read back unchanged.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tdist_core::propagation::{b3, extract, w3c, Extractor, Injector};
use tdist_core::{Extracted, SamplingState};
use tdist_http::{HeaderExtractor, HeaderInjector, ScannedHeaders, PROPAGATION_HEADERS};

#[path = "../../tests/support/text_only.rs"]
mod text_only;
use text_only::TextOnly;

/// Names a record's first byte picks beside the seven tracing headers; a byte past both lists
/// picks its own name from the record.
const OTHER_NAMES: [&str; 3] = ["content-type", "host", "tracestate"];

/// Records separated by `\n`: a name selector byte, then the value (or `name:value`).
fn headers(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for record in data.split(|&b| b == b'\n') {
        let Some((&pick, rest)) = record.split_first() else {
            continue;
        };
        let known = PROPAGATION_HEADERS
            .iter()
            .chain(&OTHER_NAMES)
            .nth(usize::from(pick));
        let (name, value) = match known {
            Some(n) => (HeaderName::from_static(n), rest),
            None => {
                let Some(at) = rest.iter().position(|&b| b == b':') else {
                    continue;
                };
                match HeaderName::from_bytes(&rest[..at]) {
                    Ok(n) => (n, &rest[at + 1..]),
                    Err(_) => continue,
                }
            }
        };
        // Values up to the limit and past it: a long record repeats its value.
        let value = if pick & 0x80 != 0 && !value.is_empty() {
            value.repeat(tdist_http::MAX_VALUE_LEN / value.len() + 1)
        } else {
            value.to_vec()
        };
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            map.append(name, v);
        }
    }
    map
}

struct Map(HeaderMap);

impl Injector for Map {
    fn set(&mut self, key: &'static str, value: &str) {
        HeaderInjector(&mut self.0).set(key, value);
    }
}

fuzz_target!(|data: &[u8]| {
    let map = headers(data);
    let scanned = ScannedHeaders::new(&map);
    let fast = extract(&scanned);
    let plain = extract(&HeaderExtractor(&map));
    assert_eq!(fast, plain, "{map:?}");
    let text = extract(&TextOnly(&HeaderExtractor(&map)));
    assert_eq!(plain, text, "{map:?}");
    assert_eq!(extract(&TextOnly(&scanned)), text, "{map:?}");
    for name in PROPAGATION_HEADERS {
        if let Some(v) = scanned.get(name) {
            assert_eq!(scanned.get_bytes(name), Some(v.as_bytes()), "{map:?}");
        }
        if let Some(v) = HeaderExtractor(&map).get(name) {
            assert_eq!(HeaderExtractor(&map).get_bytes(name), Some(v.as_bytes()));
        }
    }
    assert_eq!(
        scanned.is_empty(),
        PROPAGATION_HEADERS.iter().all(|n| !map.contains_key(*n)),
        "{map:?}"
    );

    let Extracted::Context(ctx) = fast.0 else {
        return;
    };
    // B3 single, with the parent.
    let mut out = Map(HeaderMap::new());
    out.set(b3::B3, b3::format_single(&ctx, true).as_str());
    assert_eq!(extract(&ScannedHeaders::new(&out.0)).0, fast.0);
    // B3 multi.
    let mut out = Map(HeaderMap::new());
    b3::inject_multi(&ctx, &mut out);
    assert_eq!(extract(&ScannedHeaders::new(&out.0)).0, fast.0);
    // W3C keeps no parent and a yes/no decision.
    if ctx.sampling() != SamplingState::Defer {
        let mut out = Map(HeaderMap::new());
        out.set(w3c::TRACEPARENT, w3c::format_traceparent(&ctx).as_str());
        let back = extract(&ScannedHeaders::new(&out.0)).0.context();
        let want = ctx.with_parent(None).with_sampling(if ctx.is_sampled() {
            SamplingState::Accept
        } else {
            SamplingState::Deny
        });
        assert_eq!(back, Some(want));
    }
});
