//! # tdist-core
//!
//! The crate every tdist adapter stands on: trace and span ids, the span context and its
//! propagation codecs (B3 single and multi, W3C Trace Context, a binary frame for carriers
//! without headers), the current context (task-local for async code, thread-local for sync
//! code), spans, sampling, and the asynchronous, bounded, counted pipeline that publishes
//! finished spans as Zipkin v2.
//!
//! ```
//! use tdist_core::export::InMemory;
//! use tdist_core::{FutureExt, Kind, Tracer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let sink = InMemory::new();
//! let tracer = Tracer::builder().service_name("api").transport(sink.clone()).build().unwrap();
//!
//! let mut request = tracer.root_span("get /orders");
//! request.set_kind(Kind::Server);
//! let trace_id = request.context().trace_id();
//! let t = tracer.clone();
//! async move {
//!     // Inside the future the request span is current, across every .await.
//!     tokio::task::yield_now().await;
//!     let _db = t.span("select orders");
//! }
//! .in_span(request)
//! .await;
//!
//! tracer.flush().unwrap();
//! assert_eq!(sink.trace(trace_id).len(), 2);
//! assert!(sink.orphans().is_empty());
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod binary;
mod clock;
pub mod config;
mod context;
mod current;
pub mod encode;
pub mod export;
mod id;
pub mod log;
#[cfg(feature = "opentelemetry")]
pub mod otel;
pub mod propagation;
mod record;
mod sampler;
mod span;
mod tracer;

pub use clock::now_us;
pub use config::{ConfigError, EnvReader, TracerBuilder};
pub use context::{Extracted, SamplingState, SpanContext};
pub use current::{
    current, set_current, spawn, spawn_blocking, spawn_thread, wrap, wrap_fn, ContextGuard,
    FutureExt, TaskScope, TaskSlot, WithContext,
};
pub use id::{random_u64, HexId, IdError, SpanId, TraceId};
pub use record::{Annotation, Endpoint, FinishedSpan, InlineStr, Kind, TagValue};
pub use sampler::Sampler;
pub use span::Span;
pub use tracer::{Tracer, TracerGuard};
