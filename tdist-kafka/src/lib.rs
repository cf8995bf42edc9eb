//! # tdist-kafka
//!
//! Kafka for tdist: how a trace context crosses a topic, and how spans can be shipped over one.
//!
//! - [`frame`]: the context as a short prefix of the payload (pure, no rdkafka needed), for
//!   pipelines that lose headers (mirror tools, a Storm spout that emits only the value).
//! - [`codec`]: [`Serializer`](codec::Serializer)/[`Deserializer`](codec::Deserializer) traits
//!   and the wrappers that frame and unframe around the user's own.
//! - [`headers`] (feature `rdkafka`): the `b3` record header, as Brave writes it.
//! - [`KafkaTracing`], [`TracedProducer`], [`Received`] (feature `rdkafka`): PRODUCER spans that
//!   end on the broker's acknowledgement, CONSUMER spans that are children of the producer.
//! - [`KafkaTransport`] (feature `rdkafka`): publishes finished spans to the topic Zipkin's
//!   Kafka collector reads.
//!
//! Consumers are upgraded before producers: a traced consumer reads headers first, then a
//! payload frame, and delivers anything else exactly as it arrived.
#![cfg_attr(
    feature = "rdkafka",
    doc = r#"
```
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use tdist_core::export::InMemory;
use tdist_core::{Kind, Tracer};
use tdist_kafka::{Carrier, KafkaTracing};

let sink = InMemory::new();
let tracer = Tracer::builder().service_name("shop").transport(sink.clone()).build().unwrap();
let kafka = KafkaTracing::new(tracer.clone()).carrier(Carrier::Both);

// What a traced producer puts on the wire for one record.
let producer_span = kafka.producer_span("orders", Some(b"42"));
let (headers, payload) = kafka.outgoing(&producer_span.context(), None, Some(b"order 42"));
let ctx = producer_span.context();
producer_span.finish();

// What a traced consumer makes of it.
let msg = OwnedMessage::new(payload.map(|p| p.into_owned()), None, "orders".into(), Timestamp::NotAvailable, 0, 7, headers);
let received = kafka.receive(&msg);
assert_eq!(received.payload(), Some(&b"order 42"[..]));
assert_eq!(received.context().parent_id(), Some(ctx.span_id()));
received.process(|_payload| { /* the work, inside the CONSUMER span */ });

tracer.flush().unwrap();
assert_eq!(sink.trace(ctx.trace_id()).len(), 2);
```
"#
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod frame;

#[cfg(feature = "rdkafka")]
mod consumer;
#[cfg(feature = "rdkafka")]
pub mod headers;
#[cfg(feature = "rdkafka")]
mod producer;
#[cfg(feature = "rdkafka")]
mod tracing;
#[cfg(feature = "rdkafka")]
pub mod transport;

#[cfg(feature = "rdkafka")]
pub use consumer::{Received, Source};
#[cfg(feature = "rdkafka")]
pub use producer::TracedProducer;
#[cfg(feature = "rdkafka")]
pub use tracing::{KafkaTracing, KEY_TAG, OFFSET_TAG, PARTITION_TAG, TOPIC_TAG};
#[cfg(feature = "rdkafka")]
pub use transport::{Encoding, KafkaTransport, KafkaTransportBuilder};

/// Where a traced producer puts the context of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Carrier {
    /// The `b3` record header (Kafka 0.11+), as Brave does. The payload is untouched.
    #[default]
    Headers,
    /// A frame before the payload, for pipelines that lose headers. Every consumer must be
    /// upgraded (or use [`codec::TracingDeserializer`]) before a producer turns this on.
    Framing,
    /// Both: header-aware consumers use the header, the frame survives header loss.
    Both,
}

impl Carrier {
    /// Whether the `b3` header is written.
    pub const fn headers(self) -> bool {
        matches!(self, Carrier::Headers | Carrier::Both)
    }

    /// Whether the payload is framed.
    pub const fn framing(self) -> bool {
        matches!(self, Carrier::Framing | Carrier::Both)
    }
}
