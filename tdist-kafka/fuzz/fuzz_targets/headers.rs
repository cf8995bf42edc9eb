//! Record headers as a consumer and a re-sending producer meet them: keys repeated, in any
//! letter case, null values, values that are not text, other applications' headers beside ours.
//!
//! Extraction is held against a model of Brave's rules written here (the last header of a key
//! decides, names match case-insensitively, `b3` then `X-B3-*` then a single `traceparent`).
//! Injection must replace, never append: one `b3` header afterwards, carrying the new context,
//! every other header kept in order. Removing context headers keeps everything else in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tdist_core::propagation::{self, Extractor};
use tdist_core::{Extracted, SpanContext, SpanId, TraceId};
use tdist_kafka::headers;

/// Keys a record's first byte picks from (low four bits); past the list, the key is the text
/// up to `:`.
const KEYS: [&str; 12] = [
    "b3",
    "B3",
    "x-b3-traceid",
    "X-B3-SpanId",
    "x-b3-parentspanid",
    "X-B3-Sampled",
    "x-b3-flags",
    "traceparent",
    "TraceState",
    "content-type",
    "user-id",
    "x-b3-",
];

type Model = Vec<(String, Option<Vec<u8>>)>;

/// The headers as plain pairs, read with Brave's rules.
struct Pairs<'a>(&'a Model);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Walk forward, remembering the latest header of the key.
        let mut latest = None;
        for (k, value) in self.0 {
            if k.to_ascii_lowercase() == key {
                latest = Some(value);
            }
        }
        std::str::from_utf8(latest?.as_deref()?).ok()
    }

    fn count(&self, key: &str) -> usize {
        self.0
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase() == key)
            .count()
    }
}

/// A B3 header, in any letter case (`b3` and the `X-B3-*` family).
fn is_trace(key: &str) -> bool {
    headers::TRACE_KEYS
        .iter()
        .any(|t| t.eq_ignore_ascii_case(key))
}

fn pairs(h: &OwnedHeaders) -> Model {
    h.iter()
        .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut model: Model = Vec::new();
    let mut h = OwnedHeaders::new();
    for record in data.split(|&b| b == b'\n') {
        let Some((&pick, rest)) = record.split_first() else {
            continue;
        };
        let (key, value) = match KEYS.get(usize::from(pick & 0x0f)) {
            Some(k) => ((*k).to_owned(), rest),
            None => {
                let at = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
                // librdkafka takes keys as C strings: one with a NUL cannot be written.
                let Ok(k) = std::str::from_utf8(&rest[..at]) else {
                    continue;
                };
                if k.contains('\0') {
                    continue;
                }
                (k.to_owned(), rest.get(at + 1..).unwrap_or_default())
            }
        };
        let value = (pick & 0x80 == 0).then_some(value);
        h = h.insert(Header { key: &key, value });
        model.push((key, value.map(<[u8]>::to_vec)));
    }
    assert_eq!(pairs(&h), model);

    let found = headers::extract(&h);
    assert_eq!(found, propagation::extract(&Pairs(&model)).0, "{model:?}");
    assert_eq!(found, propagation::extract(&headers::HeaderExtractor(&h)).0);
    assert_eq!(
        headers::has_trace_headers(&h),
        model.iter().any(|(k, _)| is_trace(k))
    );

    // Injection replaces every trace header, keeps the rest in order.
    let ctx = SpanContext::new(
        TraceId::new(7, 9).expect("non-zero"),
        SpanId::new(3).expect("non-zero"),
    )
    .with_parent(SpanId::new(1));
    let sent = pairs(&headers::inject(&ctx, Some(h.clone())));
    let others: Model = model
        .iter()
        .filter(|(k, _)| !is_trace(k))
        .cloned()
        .collect();
    assert_eq!(sent[..sent.len() - 1], others[..]);
    assert_eq!(sent.last().map(|(k, _)| k.as_str()), Some("b3"));
    let read = headers::extract(&headers::inject(&ctx, Some(h.clone())));
    assert_eq!(read, Extracted::Context(ctx.with_parent(None)));

    // Without context headers: W3C's go too, the rest stays in order.
    let kept = pairs(&headers::without_context_headers(h));
    let want: Model = model
        .into_iter()
        .filter(|(k, _)| {
            !is_trace(k)
                && !["traceparent", "tracestate"].contains(&k.to_ascii_lowercase().as_str())
        })
        .collect();
    assert_eq!(kept, want);
});
