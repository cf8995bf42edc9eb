//! [`TracedProducer`]: a `FutureProducer` whose sends are PRODUCER spans.

use crate::frame;
use crate::headers;
use crate::tracing::{KafkaTracing, OFFSET_TAG, PARTITION_TAG};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::{AsyncRuntime, DefaultRuntime, Timeout};
use tdist_core::{Extracted, Span};

/// A [`FutureProducer`] that traces each record it sends.
///
/// Every [`send`](TracedProducer::send) starts its own PRODUCER span named `send` (a child of
/// the current context, else of a context already on the record's headers or, when framing,
/// in a frame already on its payload, else a new trace),
/// tagged `kafka.topic` and `kafka.key` (when the key is text), with remote service `kafka`.
/// The record carries that span's context (header, frame or both, per [`crate::Carrier`]);
/// trace headers (and a frame) already on the record are replaced, so a re-send never carries
/// two. The span ends when the broker acknowledges the record, tagged with the partition and
/// offset, or with the error when delivery fails; a send dropped before that (a timeout or
/// `select!` around it) ends its span with an error saying so.
pub struct TracedProducer<C = DefaultClientContext, R = DefaultRuntime>
where
    C: ClientContext + 'static,
{
    inner: FutureProducer<C, R>,
    tracing: KafkaTracing,
}

impl<C: ClientContext + 'static, R> Clone for TracedProducer<C, R> {
    fn clone(&self) -> Self {
        TracedProducer {
            inner: self.inner.clone(),
            tracing: self.tracing.clone(),
        }
    }
}

impl<C: ClientContext + 'static, R> std::fmt::Debug for TracedProducer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedProducer")
            .field("tracing", &self.tracing)
            .finish_non_exhaustive()
    }
}

impl<C: ClientContext + 'static, R: AsyncRuntime> TracedProducer<C, R> {
    /// Wraps `inner`.
    pub fn new(inner: FutureProducer<C, R>, tracing: KafkaTracing) -> TracedProducer<C, R> {
        TracedProducer { inner, tracing }
    }

    /// The wrapped producer (its own sends are not traced).
    pub fn inner(&self) -> &FutureProducer<C, R> {
        &self.inner
    }

    /// The tracing settings.
    pub fn tracing(&self) -> &KafkaTracing {
        &self.tracing
    }

    /// Sends `record` inside a new PRODUCER span and resolves when the broker acknowledges it
    /// (see [`FutureProducer::send`]). On failure the returned message is the one put on the
    /// wire, with the context in its headers and, when framing, in its payload.
    pub async fn send<K, P, T>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        T: Into<Timeout>,
    {
        let payload = record.payload.map(ToBytes::to_bytes);
        let found = match &record.headers {
            Some(h) => headers::extract(h),
            None => Extracted::Empty,
        };
        let found = match (found, payload) {
            (Extracted::Empty, Some(p)) if self.tracing.get_carrier().framing() => frame::decode(p)
                .context
                .map_or(Extracted::Empty, Extracted::Context),
            (found, _) => found,
        };
        let span =
            self.tracing
                .producer_span_from(record.topic, record.key.map(ToBytes::to_bytes), found);
        let ctx = span.context();
        let mut span = Unacknowledged(Some(span));
        let (headers, payload) = self.tracing.outgoing(&ctx, record.headers.take(), payload);
        let wire: FutureRecord<'_, K, [u8]> = FutureRecord {
            topic: record.topic,
            partition: record.partition,
            payload: payload.as_deref(),
            key: record.key,
            timestamp: record.timestamp,
            headers,
        };
        let result = self.inner.send(wire, queue_timeout).await;
        if let Some(mut span) = span.0.take() {
            match &result {
                Ok(d) => {
                    span.tag(PARTITION_TAG, d.partition);
                    span.tag(OFFSET_TAG, d.offset);
                }
                Err((e, _)) => span.set_error(e.to_string()),
            }
            span.finish();
        }
        result
    }
}

/// A PRODUCER span whose delivery report has not come: if the send is dropped before it (the
/// caller gave up), the span ends with an error saying so, rather than look like a quick
/// successful send.
struct Unacknowledged(Option<Span>);

impl Drop for Unacknowledged {
    fn drop(&mut self) {
        if let Some(mut span) = self.0.take() {
            span.set_error(
                "send dropped before the delivery report (the record may still be delivered)",
            );
            span.finish();
        }
    }
}
