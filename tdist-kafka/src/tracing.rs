//! [`KafkaTracing`]: the settings shared by the traced producer and consumer.

use crate::headers;
use crate::{frame, Carrier};
use rdkafka::message::OwnedHeaders;
use std::borrow::Cow;
use tdist_core::{current, Endpoint, Extracted, Kind, Span, SpanContext, TagValue, Tracer};

/// Tag with the record's topic.
pub const TOPIC_TAG: &str = "kafka.topic";
/// Tag with the record's key, when it is non-empty UTF-8 text.
pub const KEY_TAG: &str = "kafka.key";
/// Tag with the partition (delivery report on the producer, the record on the consumer).
pub const PARTITION_TAG: &str = "kafka.partition";
/// Tag with the offset (delivery report on the producer, the record on the consumer).
pub const OFFSET_TAG: &str = "kafka.offset";

/// How Kafka records are traced: the tracer, where producers put the context, and the names
/// used on spans. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KafkaTracing {
    tracer: Tracer,
    carrier: Carrier,
    remote_service: Cow<'static, str>,
    producer_name: Cow<'static, str>,
    consumer_name: Cow<'static, str>,
}

impl KafkaTracing {
    /// Defaults as Brave's: context in the `b3` header, remote service `kafka`, PRODUCER spans
    /// named `send`, CONSUMER spans named `poll`.
    pub fn new(tracer: Tracer) -> KafkaTracing {
        KafkaTracing {
            tracer,
            carrier: Carrier::Headers,
            remote_service: Cow::Borrowed("kafka"),
            producer_name: Cow::Borrowed("send"),
            consumer_name: Cow::Borrowed("poll"),
        }
    }

    /// Where producers put the context. Consumers always read headers first, then a frame.
    pub fn carrier(mut self, carrier: Carrier) -> KafkaTracing {
        self.carrier = carrier;
        self
    }

    /// The remote service name on PRODUCER and CONSUMER spans (`kafka` by default; a cluster
    /// name reads better in Zipkin's dependency graph when there are several).
    pub fn remote_service_name(mut self, name: impl Into<Cow<'static, str>>) -> KafkaTracing {
        self.remote_service = name.into();
        self
    }

    /// The CONSUMER span name (`poll` by default).
    pub fn consumer_span_name(mut self, name: impl Into<Cow<'static, str>>) -> KafkaTracing {
        self.consumer_name = name.into();
        self
    }

    /// The tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The configured carrier.
    pub fn get_carrier(&self) -> Carrier {
        self.carrier
    }

    /// Starts a PRODUCER span for one record: a child of the current context, or a new trace.
    /// One span (and one context) per record, never one for a whole batch.
    pub fn producer_span(&self, topic: &str, key: Option<&[u8]>) -> Span {
        self.producer_span_from(topic, key, Extracted::Empty)
    }

    /// Like [`producer_span`](Self::producer_span), with a fallback parent (the context found
    /// on the record's own headers) used when there is no current context.
    pub(crate) fn producer_span_from(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        fallback: Extracted,
    ) -> Span {
        let name = self.producer_name.clone();
        let mut span = match current() {
            Some(parent) => self.tracer.child_span(&parent, name),
            None => self.tracer.child_of_remote(fallback, name),
        };
        if span.is_recording() {
            span.set_kind(Kind::Producer);
            span.set_remote_endpoint(Endpoint::service(self.remote_service.clone()));
            span.tag(TOPIC_TAG, TagValue::text(topic));
            if let Some(k) = key.filter(|k| !k.is_empty()) {
                if let Ok(k) = std::str::from_utf8(k) {
                    span.tag(KEY_TAG, TagValue::text(k));
                }
            }
        }
        span
    }

    /// Starts a CONSUMER span, a child of `parent` (a new trace when nothing was extracted).
    pub(crate) fn consumer_span(&self, topic: &str, parent: Extracted) -> Span {
        let mut span = self
            .tracer
            .child_of_remote(parent, self.consumer_name.clone());
        if span.is_recording() {
            span.set_kind(Kind::Consumer);
            span.set_remote_endpoint(Endpoint::service(self.remote_service.clone()));
            span.tag(TOPIC_TAG, TagValue::text(topic));
        }
        span
    }

    /// What a producer writes for a record traced by `ctx`: its headers with the context
    /// (trace headers already there replaced; removed, W3C's too, when only framing is on),
    /// and the payload framed when framing is on, replacing a frame it already had (a re-send
    /// or a forwarded framed value never carries two). A `None` payload (a tombstone) is never
    /// framed.
    pub fn outgoing<'p>(
        &self,
        ctx: &SpanContext,
        headers: Option<OwnedHeaders>,
        payload: Option<&'p [u8]>,
    ) -> (Option<OwnedHeaders>, Option<Cow<'p, [u8]>>) {
        let headers = if self.carrier.headers() {
            Some(headers::inject(ctx, headers))
        } else {
            headers.map(headers::without_context_headers)
        };
        let payload = payload.map(|p| {
            if self.carrier.framing() {
                Cow::Owned(frame::encode(Some(ctx), frame::decode(p).payload))
            } else {
                Cow::Borrowed(p)
            }
        });
        (headers, payload)
    }
}
