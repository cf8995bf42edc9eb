//! Carrier-agnostic propagation: `Injector`/`Extractor` traits and the B3 and W3C codecs.
//!
//! Extraction tries `b3`, then `X-B3-*`, then `traceparent`; a malformed value in one form falls
//! through to the next, and when nothing valid is found the result is [`Extracted::Empty`] (the
//! receiver starts a new trace). Injection writes the formats a [`Propagation`] was configured
//! with (B3 multi by default, as zipkin-js reads only that form).
//!
//! ```
//! use std::collections::HashMap;
//! use tdist_core::propagation::{Extractor, Format, Injector, Propagation};
//! use tdist_core::{SpanContext, SpanId, TraceId};
//!
//! let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
//! let mut headers: HashMap<String, String> = HashMap::new();
//! Propagation::new([Format::B3Multi, Format::TraceContext]).inject(&ctx, &mut headers);
//! assert!(headers.contains_key("x-b3-traceid") && headers.contains_key("traceparent"));
//! let back = Propagation::default().extract(&headers).context().unwrap();
//! assert_eq!(back.span_id(), ctx.span_id());
//! ```

pub mod b3;
pub mod w3c;

use crate::context::{Extracted, SpanContext};
use crate::id::IdError;
use std::collections::HashMap;

/// Writes propagation fields into a carrier (HTTP headers, Kafka headers, a tuple field map...).
pub trait Injector {
    /// Sets `key` (always lower-case) to `value`, replacing any previous value.
    fn set(&mut self, key: &'static str, value: &str);
}

/// Reads propagation fields from a carrier.
pub trait Extractor {
    /// The value for `key` (given lower-case; carriers with case-insensitive names, such as
    /// HTTP, must match case-insensitively). When the key repeats, the carrier's own rule picks
    /// one: the first for HTTP, the last for Kafka.
    fn get(&self, key: &str) -> Option<&str>;

    /// The value for `key` as bytes, for codecs that check every byte they accept themselves
    /// (the B3 and `traceparent` parsers): a carrier whose [`get`](Extractor::get) has to check
    /// that a value is text may skip that check here. Whenever `get` has a value, this must be
    /// its bytes; where `get` refuses a value as unreadable (not visible ASCII), this may return
    /// it anyway, and the codec then reads it as absent, as `get` does. The default is `get`'s.
    #[inline]
    fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.get(key).map(str::as_bytes)
    }

    /// How many values `key` has; W3C rejects a repeated `traceparent`. The default assumes at
    /// most one.
    fn count(&self, key: &str) -> usize {
        usize::from(self.get(key).is_some())
    }
}

impl<S: std::hash::BuildHasher> Injector for HashMap<String, String, S> {
    fn set(&mut self, key: &'static str, value: &str) {
        self.insert(key.to_owned(), value.to_owned());
    }
}

impl<S: std::hash::BuildHasher> Extractor for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        self.get(key)
            .or_else(|| {
                self.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
            .map(String::as_str)
    }
}

/// Why a propagation field was rejected. The value itself is never echoed (it is untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {field}: {reason}")]
pub struct MalformedError {
    field: &'static str,
    reason: &'static str,
}

impl MalformedError {
    pub(crate) const fn new(field: &'static str, reason: &'static str) -> MalformedError {
        MalformedError { field, reason }
    }

    pub(crate) fn id(field: &'static str, which: &'static str, e: IdError) -> MalformedError {
        let reason = match e {
            IdError::Length(..) => "id has the wrong length",
            IdError::NotLowerHex => "id is not lower-case hex",
            IdError::AllZeros => "id is all zeros",
        };
        let _ = which;
        MalformedError { field, reason }
    }

    /// The header or field that was rejected.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// A wire format for injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The single `b3` header, with parent.
    B3Single,
    /// The `X-B3-*` headers.
    B3Multi,
    /// W3C `traceparent`.
    TraceContext,
}

impl Format {
    /// Parses one `OTEL_PROPAGATORS` entry: `b3`, `b3multi` or `tracecontext`.
    pub fn from_otel_name(name: &str) -> Option<Format> {
        match name.trim() {
            "b3" => Some(Format::B3Single),
            "b3multi" => Some(Format::B3Multi),
            "tracecontext" => Some(Format::TraceContext),
            _ => None,
        }
    }
}

/// Which form an extracted context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `b3` header.
    B3Single,
    /// The `X-B3-*` headers.
    B3Multi,
    /// `traceparent`.
    TraceContext,
}

impl Source {
    /// Whether an RPC server should share the caller's span id (B3) rather than make a child (W3C).
    pub const fn shares_span_id(self) -> bool {
        matches!(self, Source::B3Single | Source::B3Multi)
    }
}

/// The propagation formats to inject; extraction always accepts every form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    inject: [Option<Format>; 3],
}

impl Default for Propagation {
    /// B3 multi headers.
    fn default() -> Propagation {
        Propagation::new([Format::B3Multi])
    }
}

impl Propagation {
    /// Injects each format given, in order (duplicates ignored).
    pub fn new(formats: impl IntoIterator<Item = Format>) -> Propagation {
        let mut inject = [None; 3];
        let mut n = 0;
        for f in formats {
            if n < 3 && !inject.contains(&Some(f)) {
                inject[n] = Some(f);
                n += 1;
            }
        }
        Propagation { inject }
    }

    /// Parses an `OTEL_PROPAGATORS` value such as `b3multi,tracecontext`. `none` injects nothing.
    /// Other OpenTelemetry names (`baggage`, `jaeger`, ...) are rejected with the offending name.
    pub fn from_otel_list(list: &str) -> Result<Propagation, String> {
        let mut formats = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // Case-insensitive, as the OpenTelemetry specification reads enum values.
            let lowered = name.to_ascii_lowercase();
            if lowered == "none" {
                continue;
            }
            formats.push(Format::from_otel_name(&lowered).ok_or_else(|| name.to_owned())?);
        }
        Ok(Propagation::new(formats))
    }

    /// The formats injected.
    pub fn formats(&self) -> impl Iterator<Item = Format> + '_ {
        self.inject.iter().flatten().copied()
    }

    /// Writes `ctx` in every configured format.
    pub fn inject(&self, ctx: &SpanContext, carrier: &mut dyn Injector) {
        for f in self.formats() {
            match f {
                Format::B3Single => carrier.set(b3::B3, &b3::format_single(ctx, true)),
                Format::B3Multi => b3::inject_multi(ctx, carrier),
                Format::TraceContext => {
                    carrier.set(w3c::TRACEPARENT, &w3c::format_traceparent(ctx))
                }
            }
        }
    }

    /// Reads the caller's context: `b3`, then `X-B3-*`, then `traceparent`.
    pub fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        extract(carrier).0
    }
}

/// Reads the caller's context and says which form it came from. Order: `b3` (malformed falls
/// through, as in Brave), `X-B3-*`, then `traceparent` (rejected when repeated).
///
/// Generic over the carrier so that a carrier whose fields are known in advance (such as the
/// HTTP crate's one-pass header scan) is read without dynamic calls; `&dyn Extractor` works too.
#[inline]
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> (Extracted, Option<Source>) {
    // Each form is read as bytes (see `Extractor::get_bytes`): its parser checks every byte it
    // accepts, and a value it rejects falls through whether or not it was text.
    if let Some(v) = carrier.get_bytes(b3::B3) {
        if let Ok(e) = b3::parse_single_bytes(v) {
            return (e, Some(Source::B3Single));
        }
    }
    match b3::extract_multi(carrier) {
        Ok(Some(e)) if !e.is_empty() => return (e, Some(Source::B3Multi)),
        _ => {}
    }
    if carrier.count(w3c::TRACEPARENT) == 1 {
        if let Some(v) = carrier.get_bytes(w3c::TRACEPARENT) {
            if let Ok(ctx) = w3c::parse_traceparent_bytes(v) {
                // Past 55 bytes come blanks or a later version's fields, which the parser does
                // not read: the value must still be one the carrier reads as text.
                if v.len() == w3c::TRACEPARENT_LEN || carrier.get(w3c::TRACEPARENT).is_some() {
                    return (Extracted::Context(ctx), Some(Source::TraceContext));
                }
            }
        }
    }
    (Extracted::Empty, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SamplingState;

    fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn b3_single_wins_over_multi_and_w3c() {
        let c = carrier(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ]);
        let (e, src) = extract(&c);
        assert_eq!(src, Some(Source::B3Single));
        assert_eq!(e.context().unwrap().span_id().get(), 0xe457b5a2e4d86bd1);
    }

    #[test]
    fn malformed_single_falls_through_to_multi() {
        let c = carrier(&[
            ("b3", "garbage"),
            ("X-B3-TraceId", "463ac35c9f6413ad"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312"),
        ]);
        let (e, src) = extract(&c);
        assert_eq!(src, Some(Source::B3Multi));
        assert_eq!(e.context().unwrap().sampling(), SamplingState::Defer);
    }

    #[test]
    fn w3c_only_caller_is_joined() {
        let c = carrier(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let (e, src) = extract(&c);
        assert_eq!(src, Some(Source::TraceContext));
        assert!(!src.unwrap().shares_span_id());
        assert!(e.context().unwrap().is_sampled());
    }

    #[test]
    fn everything_malformed_is_empty() {
        let c = carrier(&[
            ("b3", "1-2-3"),
            ("x-b3-traceid", "xyz"),
            ("traceparent", "00-zz"),
        ]);
        assert_eq!(extract(&c), (Extracted::Empty, None));
    }

    #[test]
    fn repeated_traceparent_is_rejected() {
        struct Twice;
        impl Extractor for Twice {
            fn get(&self, key: &str) -> Option<&str> {
                (key == "traceparent")
                    .then_some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            }
            fn count(&self, key: &str) -> usize {
                if key == "traceparent" {
                    2
                } else {
                    0
                }
            }
        }
        assert_eq!(extract(&Twice).0, Extracted::Empty);
    }

    #[test]
    fn otel_propagators_parse() {
        let p = Propagation::from_otel_list("b3, tracecontext").unwrap();
        assert_eq!(
            p.formats().collect::<Vec<_>>(),
            vec![Format::B3Single, Format::TraceContext]
        );
        assert_eq!(
            Propagation::from_otel_list("b3,jaeger").unwrap_err(),
            "jaeger"
        );
        assert_eq!(
            Propagation::from_otel_list("none")
                .unwrap()
                .formats()
                .count(),
            0
        );
    }

    #[test]
    fn round_trip_every_format_and_state() {
        use crate::id::{SpanId, TraceId};
        for trace in [TraceId::random_64(), TraceId::random_128()] {
            for s in [
                SamplingState::Defer,
                SamplingState::Deny,
                SamplingState::Accept,
                SamplingState::Debug,
            ] {
                let ctx = SpanContext::new(trace, SpanId::random())
                    .with_parent(Some(SpanId::random()))
                    .with_sampling(s);
                for f in [Format::B3Single, Format::B3Multi] {
                    let mut c = HashMap::new();
                    Propagation::new([f]).inject(&ctx, &mut c);
                    assert_eq!(extract(&c).0, Extracted::Context(ctx), "{f:?} {s:?}");
                }
            }
        }
    }
}
