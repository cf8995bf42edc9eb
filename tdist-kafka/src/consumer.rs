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
