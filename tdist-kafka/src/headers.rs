//! The trace context in Kafka record headers, as Brave writes and reads it.
//!
//! Writing replaces: every trace header already on the record (`b3` and the `X-B3-*` family,
//! in any letter case) is removed, then one `b3` header is added in single format without a
//! parent (`{trace}-{span}-{sampled}`), which is what Brave's messaging instrumentation writes
//! and what every B3 reader accepts. A record that is re-sent therefore never carries two
//! contexts. Reading takes the **last** value of a key (Kafka keys may repeat), matches names
//! case-insensitively, and accepts `b3`, then `X-B3-*`, then `traceparent`.
//!
//! ```
//! use rdkafka::message::{Header, Headers, OwnedHeaders};
//! use tdist_core::{SpanContext, SpanId, TraceId};
//! use tdist_kafka::headers;
//!
//! let ctx = SpanContext::new(TraceId::random_128(), SpanId::random());
//! let stale = OwnedHeaders::new().insert(Header { key: "b3", value: Some("0") });
//! let h = headers::inject(&ctx, Some(stale));
//! assert_eq!(h.count(), 1);
//! assert_eq!(headers::extract(&h).context().map(|c| c.span_id()), Some(ctx.span_id()));
//! ```

use rdkafka::message::{Header, Headers, OwnedHeaders};
use tdist_core::propagation::{self, b3, Extractor};
use tdist_core::{Extracted, SpanContext};

/// The header names Brave treats as trace ids and removes after extracting them.
pub const TRACE_KEYS: [&str; 6] = [
    b3::B3,
    b3::TRACE_ID,
    b3::SPAN_ID,
    b3::PARENT_SPAN_ID,
    b3::SAMPLED,
    b3::FLAGS,
];

fn is_trace_key(key: &str) -> bool {
    TRACE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Header `i` of `headers`; `None` past the end, or when its key is not UTF-8. Kafka header keys
/// are bytes on the wire (Go and C producers can write any) and rdkafka panics reading such a
/// key: it is skipped here instead, so that one odd record cannot stop a consumer (the panic
/// hook still reports it).
fn header_at<H: Headers + ?Sized>(headers: &H, i: usize) -> Option<Header<'_, &[u8]>> {
    // `try_get` only reads the headers: nothing is left half-changed by its panic.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| headers.try_get(i)))
        .ok()
        .flatten()
}

/// Reads propagation fields from record headers: the last header with the key wins, names
/// match case-insensitively, null or non-UTF-8 values count as absent, headers whose key is not
/// UTF-8 are skipped.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a, H: ?Sized>(pub &'a H);

impl<H: Headers + ?Sized> Extractor for HeaderExtractor<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        last_text(
            (0..self.0.count()).filter_map(|i| header_at(self.0, i)),
            key,
        )
    }

    fn count(&self, key: &str) -> usize {
        count_key(
            (0..self.0.count()).filter_map(|i| header_at(self.0, i)),
            key,
        )
    }
}

/// The text of the last header with `key`. The last one decides, even when its value is null
/// or not text (as Brave's `lastHeader`): an earlier value is stale.
fn last_text<'a>(
    mut headers: impl DoubleEndedIterator<Item = Header<'a, &'a [u8]>>,
    key: &str,
) -> Option<&'a str> {
    let last = headers.rfind(|h| h.key.eq_ignore_ascii_case(key))?;
    std::str::from_utf8(last.value?).ok()
}

/// How many headers have `key`.
fn count_key<'a>(headers: impl Iterator<Item = Header<'a, &'a [u8]>>, key: &str) -> usize {
    headers.filter(|h| h.key.eq_ignore_ascii_case(key)).count()
}

/// The context (or sampling decision) carried by `headers`.
pub fn extract<H: Headers + ?Sized>(headers: &H) -> Extracted {
    if headers.count() == 0 {
        return Extracted::Empty;
    }
    // Read once: a header whose key cannot be read costs one caught panic here, not one for
    // every field the extraction looks up.
    let read: Vec<Header<'_, &[u8]>> = (0..headers.count())
        .filter_map(|i| header_at(headers, i))
        .collect();
    propagation::extract(&ReadHeaders(&read)).0
}

/// Headers already read, with [`HeaderExtractor`]'s rules.
struct ReadHeaders<'a>(&'a [Header<'a, &'a [u8]>]);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        last_text(self.0.iter().cloned(), key)
    }

    fn count(&self, key: &str) -> usize {
        count_key(self.0.iter().cloned(), key)
    }
}

/// A copy of `headers` without trace headers (`b3`, `X-B3-*`), other headers kept in order
/// with their values (null included; a header whose key is not UTF-8 cannot be copied and is
/// left out). What Brave does after extracting, so that a stale context is not processed again
/// downstream.
pub fn without_trace_headers<H: Headers + ?Sized>(headers: &H) -> OwnedHeaders {
    keeping(headers, |key| !is_trace_key(key))
}

/// W3C's headers, which a producer that frames payloads and writes no header cannot update:
/// it removes them too, or the consumer (which reads headers before the frame) would take
/// their stale context over the frame's.
const W3C_KEYS: [&str; 2] = ["traceparent", "tracestate"];

fn is_context_key(key: &str) -> bool {
    is_trace_key(key) || W3C_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// A copy of `headers` without any header that carries a trace context (`b3`, `X-B3-*`,
/// `traceparent`, `tracestate`), or `headers` itself when it has none: what a producer that
/// only frames payloads sends.
pub fn without_context_headers(headers: OwnedHeaders) -> OwnedHeaders {
    let any = (0..headers.count())
        .filter_map(|i| header_at(&headers, i))
        .any(|h| is_context_key(h.key));
    match any {
        true => keeping(&headers, |key| !is_context_key(key)),
        false => headers,
    }
}

/// A copy of the headers whose key `keep` accepts, in order, with their values (null included);
/// a header whose key is not UTF-8 cannot be copied and is left out.
fn keeping<H: Headers + ?Sized>(headers: &H, keep: fn(&str) -> bool) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.count());
    for h in (0..headers.count()).filter_map(|i| header_at(headers, i)) {
        if keep(h.key) {
            out = out.insert(h);
        }
    }
    out
}

/// Whether `headers` hold any trace header.
pub fn has_trace_headers<H: Headers + ?Sized>(headers: &H) -> bool {
    (0..headers.count())
        .filter_map(|i| header_at(headers, i))
        .any(|h| is_trace_key(h.key))
}

/// Writes `ctx` as the `b3` header (single format, no parent), replacing every trace header
/// already in `headers`.
pub fn inject(ctx: &SpanContext, headers: Option<OwnedHeaders>) -> OwnedHeaders {
    let base = match headers {
        Some(h) if has_trace_headers(&h) => without_trace_headers(&h),
        Some(h) => h,
        None => OwnedHeaders::new_with_capacity(1),
    };
    let value = b3::format_single(ctx, false);
    base.insert(Header {
        key: b3::B3,
        value: Some(value.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdist_core::{SamplingState, SpanId, TraceId};

    fn h(pairs: &[(&str, Option<&str>)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |acc, (k, v)| {
            acc.insert(Header { key: k, value: *v })
        })
    }

    fn pairs(h: &OwnedHeaders) -> Vec<(String, Option<Vec<u8>>)> {
        h.iter()
            .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
            .collect()
    }

    /// The last header with the key decides even when its value is null: the `b3` before it
    /// is stale (Brave's `lastHeader`).
    #[test]
    fn a_null_last_header_hides_an_earlier_value() {
        let ctx = "463ac35c9f6413ad-a2fb4a1d1a96d312-1";
        let stale = h(&[("b3", Some(ctx)), ("B3", None)]);
        assert_eq!(HeaderExtractor(&stale).get("b3"), None);
        assert_eq!(extract(&stale), Extracted::Empty);
        let fresh = h(&[("b3", None), ("b3", Some(ctx))]);
        assert_eq!(HeaderExtractor(&fresh).get("b3"), Some(ctx));
    }

    #[test]
    fn writes_brave_single_without_parent() {
        let ctx = SpanContext::new(
            TraceId::from_hex("463ac35c9f6413ad48485a3953bb6124").unwrap(),
            SpanId::from_hex("a2fb4a1d1a96d312").unwrap(),
        )
        .with_parent(Some(SpanId::random()))
        .with_sampling(SamplingState::Accept);
        let out = inject(&ctx, None);
        assert_eq!(
            pairs(&out),
            vec![(
                "b3".to_owned(),
                Some(b"463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1".to_vec())
            )]
        );
    }

    #[test]
    fn inject_replaces_every_trace_header_and_keeps_others_in_order() {
        let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
        let before = h(&[
            ("b3", Some("463ac35c9f6413ad-a2fb4a1d1a96d312-1")),
            ("app", Some("1")),
            ("X-B3-TraceId", Some("463ac35c9f6413ad")),
            ("x-b3-spanid", Some("a2fb4a1d1a96d312")),
            ("nil", None),
            ("B3", Some("0")),
            ("app", Some("2")),
        ]);
        let out = inject(&ctx, Some(before));
        let p = pairs(&out);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], ("app".to_owned(), Some(b"1".to_vec())));
        assert_eq!(p[1], ("nil".to_owned(), None));
        assert_eq!(p[2], ("app".to_owned(), Some(b"2".to_vec())));
        assert_eq!(p[3].0, "b3");
        assert_eq!(extract(&out).context().unwrap().span_id(), ctx.span_id());
        // Re-sending the same record (inject again) still leaves one b3.
        let again = inject(&ctx, Some(out));
        assert_eq!(pairs(&again).iter().filter(|(k, _)| k == "b3").count(), 1);
    }

    #[test]
    fn last_value_wins() {
        let out = h(&[
            ("b3", Some("463ac35c9f6413ad-a2fb4a1d1a96d312-1")),
            ("b3", Some("0000000000000001-0000000000000002-0")),
        ]);
        let e = extract(&out).context().unwrap();
        assert_eq!(e.span_id().get(), 2);
        assert_eq!(e.sampling(), SamplingState::Deny);
    }

    #[test]
    fn multi_headers_any_case_and_bad_values_are_ignored() {
        let out = h(&[
            ("X-B3-TraceId", Some("463ac35c9f6413ad")),
            ("X-B3-SpanId", Some("a2fb4a1d1a96d312")),
            ("X-B3-Sampled", Some("1")),
        ]);
        let e = extract(&out).context().unwrap();
        assert_eq!(e.trace_id().low(), 0x463ac35c9f6413ad);
        // A null b3, a non-UTF-8 b3 and garbage: nothing extracted, nothing panics.
        assert!(extract(&h(&[("b3", None)])).is_empty());
        let bad = OwnedHeaders::new().insert(Header {
            key: "b3",
            value: Some(&[0xffu8, 0xfe][..]),
        });
        assert!(extract(&bad).is_empty());
        assert!(extract(&h(&[("b3", Some("zzz"))])).is_empty());
        assert!(extract(&OwnedHeaders::new()).is_empty());
    }

    #[test]
    fn sampling_only_is_kept() {
        assert_eq!(
            extract(&h(&[("b3", Some("0"))])),
            Extracted::Sampling(SamplingState::Deny)
        );
    }

    #[test]
    fn strip_removes_only_trace_keys() {
        let out = h(&[
            ("b3", Some("1")),
            ("X-B3-Flags", Some("1")),
            ("k", Some("v")),
        ]);
        let s = without_trace_headers(&out);
        assert_eq!(pairs(&s), vec![("k".to_owned(), Some(b"v".to_vec()))]);
        assert!(!has_trace_headers(&s));
    }
}
