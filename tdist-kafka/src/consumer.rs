//! [`Received`]: a consumed record as a CONSUMER span, with its payload unframed.

use crate::frame;
use crate::headers;
use crate::tracing::{KafkaTracing, OFFSET_TAG, PARTITION_TAG};
use rdkafka::message::Message;
use std::future::Future;
use tdist_core::{Extracted, FutureExt, Span, SpanContext, WithContext};

/// Where a consumed record's context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A trace header (`b3`, `X-B3-*` or `traceparent`).
    Headers,
    /// A payload frame.
    Frame,
}

/// A consumed record turned into a CONSUMER span, a child of the producer's context.
///
/// The payload is the user's bytes: a valid frame is split off; anything else (including
/// bytes that only look like a frame) is delivered exactly as received. Run the processing
/// inside the span with [`process`](Self::process) (sync) or
/// [`process_async`](Self::process_async); the span ends when the processing does.
#[derive(Debug)]
pub struct Received<'m> {
    span: Span,
    payload: Option<&'m [u8]>,
    parent: Extracted,
    source: Option<Source>,
}

impl KafkaTracing {
    /// Reads the context from `msg` (headers first, then a payload frame) and starts its
    /// CONSUMER span, tagged `kafka.topic`, `kafka.partition` and `kafka.offset`, with remote
    /// service `kafka`. A record without a context starts a new trace.
    pub fn receive<'m, M: Message + ?Sized>(&self, msg: &'m M) -> Received<'m> {
        let from_headers = msg.headers().map_or(Extracted::Empty, headers::extract);
        let unframed = msg.payload().map(frame::decode);
        let from_frame = unframed.and_then(|u| u.context);
        let (parent, source) = match (from_headers, from_frame) {
            (Extracted::Context(_), _) => (from_headers, Some(Source::Headers)),
            (_, Some(c)) => (Extracted::Context(c), Some(Source::Frame)),
            (other, None) => (other, None),
        };
        let mut span = self.consumer_span(msg.topic(), parent);
        if span.is_recording() {
            span.tag(PARTITION_TAG, msg.partition());
            span.tag(OFFSET_TAG, msg.offset());
        }
        Received {
            span,
            payload: unframed.map(|u| u.payload),
            parent,
            source,
        }
    }

    /// [`receive`](Self::receive) for each record of a batch: every record gets its own
    /// CONSUMER span, a child of its own producer, so a batch with several parents keeps each
    /// in its trace (Zipkin spans have one parent; a batch is several spans, not one).
    pub fn receive_batch<'m, M, I>(&self, msgs: I) -> Vec<Received<'m>>
    where
        M: Message + 'm,
        I: IntoIterator<Item = &'m M>,
    {
        msgs.into_iter().map(|m| self.receive(m)).collect()
    }
}

impl<'m> Received<'m> {
    /// The user's bytes, frame removed; `None` for a tombstone.
    pub fn payload(&self) -> Option<&'m [u8]> {
        self.payload
    }

    /// What was extracted: the producer's context, a sampling decision, or nothing.
    pub fn parent(&self) -> Extracted {
        self.parent
    }

    /// Where the context came from; `None` for an untraced record.
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// The CONSUMER span's context (to make children of, or to inject when forwarding).
    pub fn context(&self) -> SpanContext {
        self.span.context()
    }

    /// The CONSUMER span, to tag or annotate.
    pub fn span_mut(&mut self) -> &mut Span {
        &mut self.span
    }

    /// Runs `f` on the payload with the CONSUMER span current, then finishes the span.
    pub fn process<T>(self, f: impl FnOnce(Option<&'m [u8]>) -> T) -> T {
        let out = {
            let _current = self.span.enter();
            f(self.payload)
        };
        self.span.finish();
        out
    }

    /// The future `f` makes from the payload, run with the CONSUMER span current on every
    /// poll; the span finishes when it completes (or is dropped).
    pub fn process_async<F: Future>(self, f: impl FnOnce(Option<&'m [u8]>) -> F) -> WithContext<F> {
        let fut = {
            let _current = self.span.enter();
            f(self.payload)
        };
        fut.in_span(self.span)
    }

    /// The span, to finish later yourself.
    pub fn into_span(self) -> Span {
        self.span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Carrier;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
    use tdist_core::export::InMemory;
    use tdist_core::{SamplingState, SpanId, TraceId, Tracer};

    fn kt() -> (KafkaTracing, InMemory) {
        let sink = InMemory::new();
        let t = Tracer::builder().transport(sink.clone()).build().unwrap();
        (KafkaTracing::new(t), sink)
    }

    fn msg(payload: Option<Vec<u8>>, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            payload,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    fn ctx(s: SamplingState) -> SpanContext {
        SpanContext::new(TraceId::random_128(), SpanId::random()).with_sampling(s)
    }

    #[test]
    fn headers_win_over_the_frame_and_the_frame_is_still_stripped() {
        let (kt, _) = kt();
        let (h, f) = (ctx(SamplingState::Accept), ctx(SamplingState::Accept));
        let m = msg(
            Some(frame::encode(Some(&f), b"body")),
            Some(crate::headers::inject(&h, None)),
        );
        let r = kt.receive(&m);
        assert_eq!(r.source(), Some(Source::Headers));
        assert_eq!(r.parent().context().unwrap().span_id(), h.span_id());
        assert_eq!(r.payload(), Some(&b"body"[..]));
    }

    #[test]
    fn malformed_header_falls_back_to_the_frame() {
        let (kt, _) = kt();
        let f = ctx(SamplingState::Accept);
        let bad = OwnedHeaders::new().insert(Header {
            key: "b3",
            value: Some("nonsense"),
        });
        let m = msg(Some(frame::encode(Some(&f), b"x")), Some(bad));
        let r = kt.receive(&m);
        assert_eq!(r.source(), Some(Source::Frame));
        assert_eq!(r.context().parent_id(), Some(f.span_id()));
        assert_eq!(r.context().trace_id(), f.trace_id());
    }

    #[test]
    fn a_deny_decision_travels_and_nothing_is_reported() {
        let (kt, sink) = kt();
        let denied = ctx(SamplingState::Deny);
        let m = msg(
            Some(b"x".to_vec()),
            Some(crate::headers::inject(&denied, None)),
        );
        let r = kt.receive(&m);
        assert!(!r.context().is_sampled());
        r.process(|_| ());
        kt.tracer().flush().unwrap();
        assert!(sink.spans().is_empty());
        // A sampling-only header (`b3: 0`) also starts an unsampled trace.
        let zero = OwnedHeaders::new().insert(Header {
            key: "b3",
            value: Some("0"),
        });
        let m = msg(None, Some(zero));
        let r = kt.receive(&m);
        assert_eq!(r.parent(), Extracted::Sampling(SamplingState::Deny));
        assert!(!r.context().is_sampled());
    }

    #[test]
    fn tombstones_stay_null_and_are_never_framed() {
        let (kt, _) = kt();
        let kt = kt.carrier(Carrier::Framing);
        let c = ctx(SamplingState::Accept);
        let (headers, payload) = kt.outgoing(&c, None, None);
        assert!(payload.is_none());
        assert!(headers.is_none());
        let m = msg(None, None);
        let r = kt.receive(&m);
        assert_eq!(r.payload(), None);
        assert_eq!(r.source(), None);
    }

    #[test]
    fn framing_only_removes_stale_trace_headers() {
        let (kt, _) = kt();
        let kt = kt.carrier(Carrier::Framing);
        let stale = OwnedHeaders::new()
            .insert(Header {
                key: "b3",
                value: Some("1"),
            })
            .insert(Header {
                key: "k",
                value: Some("v"),
            });
        let c = ctx(SamplingState::Accept);
        let (headers, payload) = kt.outgoing(&c, Some(stale), Some(b"p"));
        let m = msg(payload.map(|p| p.into_owned()), headers);
        assert!(!crate::headers::has_trace_headers(m.headers().unwrap()));
        assert_eq!(kt.receive(&m).parent().context(), Some(c));
    }

    /// A record forwarded from a W3C-instrumented upstream keeps its `traceparent`; a producer
    /// that only frames cannot update it, so it removes it: the consumer, which reads headers
    /// first, would otherwise take the upstream's context over the frame's.
    #[test]
    fn framing_only_removes_a_stale_traceparent_too() {
        let (kt, _) = kt();
        let kt = kt.carrier(Carrier::Framing);
        let stale = OwnedHeaders::new()
            .insert(Header {
                key: "traceparent",
                value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            })
            .insert(Header {
                key: "tracestate",
                value: Some("congo=t61rcWkgMzE"),
            })
            .insert(Header {
                key: "k",
                value: Some("v"),
            });
        let c = ctx(SamplingState::Accept);
        let (headers, payload) = kt.outgoing(&c, Some(stale), Some(b"p"));
        let h = headers.as_ref().unwrap();
        let keys: Vec<String> = (0..rdkafka::message::Headers::count(h))
            .map(|i| rdkafka::message::Headers::get(h, i).key.to_owned())
            .collect();
        assert_eq!(keys, ["k"]);
        let m = msg(payload.map(|p| p.into_owned()), headers);
        let r = kt.receive(&m);
        assert_eq!(r.parent().context(), Some(c));
        assert_eq!(r.payload(), Some(&b"p"[..]));
    }

    /// Framing a payload that already carries a frame (a failed send's message sent again, or a
    /// framed value forwarded as it was read) replaces the frame: the consumer gets the user's
    /// bytes, not a frame followed by them.
    #[test]
    fn a_framed_payload_is_framed_once() {
        let (kt, _) = kt();
        for carrier in [Carrier::Framing, Carrier::Both] {
            let kt = kt.clone().carrier(carrier);
            let first = ctx(SamplingState::Accept);
            let (_, once) = kt.outgoing(&first, None, Some(b"order"));
            let once = once.unwrap().into_owned();
            let second = ctx(SamplingState::Accept);
            let (headers, twice) = kt.outgoing(&second, None, Some(&once));
            let twice = twice.unwrap().into_owned();
            assert_eq!(twice.len(), once.len(), "{carrier:?}");
            let m = msg(Some(twice), headers);
            let r = kt.receive(&m);
            assert_eq!(r.payload(), Some(&b"order"[..]), "{carrier:?}");
            assert_eq!(r.parent().context(), Some(second), "{carrier:?}");
        }
    }
}
