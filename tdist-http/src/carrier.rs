//! `http::HeaderMap` as a propagation carrier, and injection for clients that are not tower
//! services.
//!
//! Reading is case-insensitive (a `HeaderMap` stores names lower-case), takes the first value of
//! a repeated header, and ignores values that are not visible ASCII or longer than
//! [`MAX_VALUE_LEN`]: such a header counts as malformed and the next form is tried, so a hostile
//! caller can never make the server parse an unbounded value. Writing replaces every tracing
//! header a request already had, so a stale `b3` (which would win over fresh `X-B3-*`) never
//! survives.
//!
//! Any client can carry the trace, for example reqwest (whose `RequestBuilder::headers` takes a
//! `HeaderMap`; `tests/layers.rs` sends such a request to a traced server):
//!
//! ```
//! use http::HeaderMap;
//! use tdist_core::export::InMemory;
//! use tdist_core::{Kind, Tracer};
//!
//! let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
//! let mut call = tracer.span("get /stock");
//! call.set_kind(Kind::Client);
//! let mut headers = HeaderMap::new();
//! tdist_http::inject(&tracer, &call.context(), &mut headers);
//! // reqwest::Client::new().get(url).headers(headers).send().await
//! assert_eq!(headers["x-b3-spanid"], call.context().span_id().to_string());
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tdist_core::propagation::{Extractor, Injector};
use tdist_core::{SpanContext, Tracer};

/// The longest header value read from an untrusted caller. The longest valid value of any
/// supported form is far shorter (`b3` is at most 68 characters, `traceparent` 55 for version
/// `00`); a future `traceparent` version may be longer, so some room is left.
pub const MAX_VALUE_LEN: usize = 512;

/// Every header tdist writes; all are removed before injecting.
pub const PROPAGATION_HEADERS: [&str; 7] = [
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "traceparent",
];

/// Reads propagation fields from request headers.
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        readable(self.0.get(key)?)
    }

    fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        Some(bounded(self.0.get(key)?)?.as_bytes())
    }

    fn count(&self, key: &str) -> usize {
        self.0.get_all(key).iter().count()
    }
}

/// The tracing headers of a request, found in one pass over the map.
///
/// Reads like [`HeaderExtractor`], but trying every form (`b3`, five `X-B3-*` names,
/// `traceparent`) then costs one walk over the headers instead of seven hashed lookups; the
/// server layer uses it.
#[derive(Debug, Clone, Copy)]
pub struct ScannedHeaders<'a> {
    /// The first value of each header, when it is at most [`MAX_VALUE_LEN`] long. Whether it
    /// is text is checked only when it is read as text: extraction reads every form as bytes
    /// ([`Extractor::get_bytes`]), since each parser checks every byte it accepts.
    values: [Option<&'a HeaderValue>; 7],
    /// Which headers are present at all, readable or not (bit `i` for slot `i`).
    present: u8,
    traceparents: usize,
    /// Whether the `content-type` is gRPC's.
    grpc: bool,
}

impl<'a> ScannedHeaders<'a> {
    /// Finds the first value of each propagation header in `headers`.
    #[inline]
    pub fn new(headers: &'a HeaderMap) -> ScannedHeaders<'a> {
        let mut scanned = ScannedHeaders {
            values: [None; 7],
            present: 0,
            traceparents: 0,
            grpc: false,
        };
        for (name, value) in headers {
            let name = name.as_str();
            if let Some(i) = slot(name) {
                if i == 6 {
                    scanned.traceparents += 1;
                }
                if scanned.present & (1 << i) == 0 {
                    scanned.present |= 1 << i;
                    scanned.values[i] = bounded(value);
                }
            } else if name == "content-type" {
                scanned.grpc = crate::grpc::is_grpc(value.as_bytes());
            }
        }
        scanned
    }

    /// Whether the request is a gRPC call (its `content-type` is `application/grpc` or a
    /// variant such as `application/grpc+proto`), found in the same pass.
    #[inline]
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// Whether the headers hold none of the propagation headers (a caller that does not trace).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }
}

#[inline(always)]
fn slot(name: &str) -> Option<usize> {
    // Names in a HeaderMap are lower-case; the index follows PROPAGATION_HEADERS. Every name
    // but `b3` starts with `x-b3-` or is `traceparent`: most headers are told apart by their
    // length and first byte before any comparison.
    let b = name.as_bytes();
    Some(match (b.len(), b.first()) {
        (2, Some(b'b')) if b == b"b3" => 0,
        (12, Some(b'x')) if b == b"x-b3-traceid" => 1,
        (11, Some(b'x')) if b == b"x-b3-spanid" => 2,
        (17, Some(b'x')) if b == b"x-b3-parentspanid" => 3,
        (12, Some(b'x')) if b == b"x-b3-sampled" => 4,
        (10, Some(b'x')) if b == b"x-b3-flags" => 5,
        (11, Some(b't')) if b == b"traceparent" => 6,
        _ => return None,
    })
}

/// `value`, if it is not longer than [`MAX_VALUE_LEN`]: longer values are never read.
#[inline(always)]
fn bounded(value: &HeaderValue) -> Option<&HeaderValue> {
    (value.len() <= MAX_VALUE_LEN).then_some(value)
}

/// `value` as text, if it is bounded and visible ASCII (tabs allowed, as `to_str` reads it).
fn readable(value: &HeaderValue) -> Option<&str> {
    bounded(value)?.to_str().ok()
}

impl<'a> ScannedHeaders<'a> {
    /// The first value of header `key`, if not longer than [`MAX_VALUE_LEN`].
    #[inline(always)]
    fn value(&self, key: &str) -> Option<&'a HeaderValue> {
        let i = match slot(key) {
            Some(i) => i,
            None => slot(&key.to_ascii_lowercase())?,
        };
        self.values[i]
    }
}

impl Extractor for ScannedHeaders<'_> {
    // Always inlined: `extract` asks for constant keys, so `slot` folds away.
    #[inline(always)]
    fn get(&self, key: &str) -> Option<&str> {
        readable(self.value(key)?)
    }

    #[inline(always)]
    fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        Some(self.value(key)?.as_bytes())
    }

    fn count(&self, key: &str) -> usize {
        match slot(key) {
            Some(6) => self.traceparents,
            Some(i) => usize::from(self.present & (1 << i) != 0),
            None => 0,
        }
    }
}

/// Writes propagation fields into request headers, replacing what was there.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &'static str, value: &str) {
        // Values produced by the codecs are lower-hex and `-`; they are always valid.
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.insert(HeaderName::from_static(key), v);
        }
    }
}

/// Removes every B3 and W3C `traceparent` header.
pub fn clear(headers: &mut HeaderMap) {
    for name in PROPAGATION_HEADERS {
        headers.remove(name);
    }
}

/// Writes `ctx` into `headers` in the formats `tracer` injects (`OTEL_PROPAGATORS`; B3 multi by
/// default), after removing any tracing headers already present.
pub fn inject(tracer: &Tracer, ctx: &SpanContext, headers: &mut HeaderMap) {
    clear(headers);
    tracer
        .propagation()
        .inject(ctx, &mut HeaderInjector(headers));
}

/// Writes the current context (see [`tdist_core::current`]) into `headers`; leaves them
/// untouched when there is none.
pub fn inject_current(tracer: &Tracer, headers: &mut HeaderMap) {
    if let Some(ctx) = tdist_core::current() {
        inject(tracer, &ctx, headers);
    }
}

#[cfg(test)]
#[path = "../tests/support/text_only.rs"]
mod text_only;

#[cfg(test)]
mod tests {
    use super::text_only::TextOnly;
    use super::*;
    use tdist_core::propagation::{extract, Format, Propagation, Source};
    use tdist_core::{Extracted, SamplingState, SpanId, TraceId};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn names_are_case_insensitive_on_read() {
        let h = headers(&[
            ("X-B3-TraceId", "463ac35c9f6413ad"),
            ("X-B3-SPANID", "a2fb4a1d1a96d312"),
            ("X-B3-Sampled", "1"),
        ]);
        let (e, src) = extract(&HeaderExtractor(&h));
        assert_eq!(src, Some(Source::B3Multi));
        let ctx = e.context().unwrap();
        assert_eq!(ctx.span_id().get(), 0xa2fb4a1d1a96d312);
        assert_eq!(ctx.sampling(), SamplingState::Accept);
    }

    #[test]
    fn first_value_wins_and_repeated_traceparent_is_rejected() {
        let h = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-traceid", "0000000000000001"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ]);
        let ctx = extract(&HeaderExtractor(&h)).0.context().unwrap();
        assert_eq!(ctx.trace_id().to_string(), "463ac35c9f6413ad");

        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = headers(&[("traceparent", tp), ("traceparent", tp)]);
        assert_eq!(extract(&HeaderExtractor(&h)), (Extracted::Empty, None));
    }

    #[test]
    fn scanned_headers_agree_with_lookups() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sets = [
            headers(&[
                ("X-B3-TraceId", "463ac35c9f6413ad"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ]),
            headers(&[
                ("b3", "bad"),
                ("x-b3-traceid", "463ac35c9f6413ad"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ]),
            headers(&[("traceparent", tp), ("accept", "*/*")]),
            headers(&[("traceparent", tp), ("traceparent", tp)]),
            headers(&[
                ("x-b3-traceid", "463ac35c9f6413ad"),
                ("x-b3-traceid", "1"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "0"),
            ]),
            headers(&[("b3", &"a".repeat(MAX_VALUE_LEN + 1))]),
            headers(&[]),
            headers(&[("accept", "*/*"), ("x-b3", "1"), ("b3x", "1")]),
        ];
        for (i, h) in sets.iter().enumerate() {
            let scanned = ScannedHeaders::new(h);
            assert_eq!(extract(&scanned), extract(&HeaderExtractor(h)), "{h:?}");
            // The server layer skips extraction for these: only sets without any propagation
            // header may say so.
            assert_eq!(scanned.is_empty(), i >= 6, "{h:?}");
        }
        assert_eq!(ScannedHeaders::new(&sets[3]).count("traceparent"), 2);
        assert_eq!(
            ScannedHeaders::new(&sets[0]).get("X-B3-SpanId"),
            Some("a2fb4a1d1a96d312")
        );
    }

    #[test]
    fn every_propagation_header_has_its_slot_and_nothing_else_does() {
        for (i, name) in PROPAGATION_HEADERS.iter().enumerate() {
            assert_eq!(slot(name), Some(i), "{name}");
            let h = headers(&[(name, "v")]);
            let scanned = ScannedHeaders::new(&h);
            assert_eq!(scanned.get(name), Some("v"));
            assert_eq!(scanned.get(&name.to_ascii_uppercase()), Some("v"));
            assert_eq!(scanned.count(name), 1);
        }
        for other in [
            "",
            "b",
            "b4",
            "x-b3-traceie",
            "y-b3-spanid",
            "traceparenT",
            "tracestate",
        ] {
            assert_eq!(slot(other), None, "{other}");
        }
    }

    #[test]
    fn oversized_and_non_ascii_values_are_ignored() {
        let long = format!("{}-a2fb4a1d1a96d312", "4".repeat(MAX_VALUE_LEN));
        let mut h = headers(&[("b3", &long)]);
        h.insert(
            "x-b3-traceid",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        h.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        assert_eq!(extract(&HeaderExtractor(&h)), (Extracted::Empty, None));
        assert_eq!(extract(&ScannedHeaders::new(&h)), (Extracted::Empty, None));
        // Tabs and non-ASCII text can reach a HeaderMap; either way the value is malformed.
        let odd = [
            ("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312\t-1"),
            ("b3", "463ac35c9f6413ad-a2fb4a1d1a96d31é"),
            ("x-b3-traceid", "463ac35c9f6413a\t"),
            ("x-b3-traceid", "463ac35c9f6413aé"),
            ("x-b3-sampled", "1\t"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
            ),
        ];
        for (name, value) in odd {
            let mut h = match name {
                "x-b3-traceid" => headers(&[("x-b3-spanid", "a2fb4a1d1a96d312")]),
                "x-b3-sampled" => headers(&[
                    ("x-b3-traceid", "463ac35c9f6413ad"),
                    ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ]),
                _ => HeaderMap::new(),
            };
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
            let scanned = extract(&ScannedHeaders::new(&h));
            assert_eq!(scanned, extract(&HeaderExtractor(&h)), "{name}: {value:?}");
            if name != "x-b3-sampled" {
                assert_eq!(scanned.0.context(), None, "{name}: {value:?}");
            }
        }
    }

    #[test]
    fn reading_fields_as_bytes_changes_no_outcome() {
        let long = "4".repeat(MAX_VALUE_LEN + 1);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let later = format!("{}{}", tp.replacen("00", "01", 1), "-");
        let values: Vec<Vec<u8>> = [
            &b"463ac35c9f6413ad"[..],
            b"463ac35c9f6413ad48485a3953bb6124",
            b"0000000000000000",
            b"1",
            b"0",
            b"d",
            b"TRUE",
            b"zz",
            b"1\t",
            b"463ac35c9f6413a\xe9",
            b"\xff",
            b"",
            long.as_bytes(),
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-\xe9",
            tp.as_bytes(),
            b"\t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        ]
        .iter()
        .map(|v| v.to_vec())
        .chain([
            // A later version's fields after the 55 characters it shares with version 00.
            format!("{later}future").into_bytes(),
            [later.as_bytes(), b"\xe9"].concat(),
            [later.as_bytes(), b"\t"].concat(),
        ])
        .collect();
        let bases: [&[(&str, &str)]; 3] = [
            &[],
            &[
                ("x-b3-traceid", "463ac35c9f6413ad"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                ("x-b3-sampled", "1"),
                ("x-b3-flags", "1"),
            ],
            &[("traceparent", tp)],
        ];
        let mut found = [0usize; 3];
        for base in bases {
            for name in PROPAGATION_HEADERS {
                for value in &values {
                    let mut h = headers(base);
                    h.insert(
                        HeaderName::from_static(name),
                        HeaderValue::from_bytes(value).unwrap(),
                    );
                    let scanned = ScannedHeaders::new(&h);
                    let text = extract(&TextOnly(&HeaderExtractor(&h)));
                    let case = format!("{name}: {value:?} over {base:?}");
                    assert_eq!(extract(&scanned), text, "{case}");
                    assert_eq!(extract(&TextOnly(&scanned)), text, "{case}");
                    assert_eq!(extract(&HeaderExtractor(&h)), text, "{case}");
                    if let Some(v) = scanned.get(name) {
                        assert_eq!(scanned.get_bytes(name), Some(v.as_bytes()), "{case}");
                    }
                    match text.1 {
                        Some(Source::B3Single) => found[0] += 1,
                        Some(Source::B3Multi) => found[1] += 1,
                        Some(Source::TraceContext) => found[2] += 1,
                        None => {}
                    }
                }
            }
        }
        // Every form is found from some of these headers, so each path is compared.
        assert!(found.iter().all(|&n| n > 0), "{found:?}");
    }

    #[test]
    fn inject_replaces_stale_headers() {
        let tracer = Tracer::builder()
            .propagation(Propagation::new([Format::B3Multi, Format::TraceContext]))
            .build()
            .unwrap();
        let mut h = headers(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("accept", "*/*"),
        ]);
        let ctx = SpanContext::new(TraceId::random_128(), SpanId::random())
            .with_sampling(SamplingState::Accept);
        inject(&tracer, &ctx, &mut h);
        assert!(h.get("b3").is_none() && h.get("x-b3-parentspanid").is_none());
        assert_eq!(h["accept"], "*/*");
        assert!(h.contains_key("traceparent"));
        let (back, src) = extract(&HeaderExtractor(&h));
        assert_eq!(src, Some(Source::B3Multi));
        assert_eq!(back, Extracted::Context(ctx));
    }
}
