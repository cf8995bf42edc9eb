//! # tdist-http
//!
//! HTTP for tdist: the trace context in `http::HeaderMap` (B3 single and multi, W3C
//! `traceparent`), tower layers that trace servers ([`ServerLayer`]) and clients
//! ([`ClientLayer`]) built on hyper 1, hyper-util, axum or tonic, and a [`Transport`] that ships
//! spans to a Zipkin-compatible collector ([`zipkin::ZipkinTransport`]).
//!
//! A server span joins the caller's trace: for a B3 caller it shares the caller's span id (the
//! span is marked `shared`), for a W3C caller it is a child, and without (valid) headers it
//! starts a new trace; the request always proceeds. The inner service runs with the span's
//! context current, so everything it does, including tasks started with [`tdist_core::spawn`],
//! belongs to the trace. Server and client spans end when the response body ends.
//!
//! gRPC calls (tonic's, or any with a `content-type` of `application/grpc`) are named
//! `service/method`, and a status other than `OK` in their `grpc-status` trailer marks the span
//! as failed, although the HTTP status is 200.
//!
//! Sampling rules ([`ServerLayer::sample`] with an [`HttpRule`]) pick another sampler for some
//! requests, by path prefix and method: health checks untraced, a busy endpoint at a ratio.
//!
//! A [`TraceServer`] implements both tower's `Service` and hyper's own
//! (`hyper::service::Service`), so a plain hyper server can serve it around a
//! `hyper::service::service_fn` without `hyper_util`'s `TowerToHyperService`.
//!
//! ```
//! use http::HeaderMap;
//! use tdist_core::{export::InMemory, Tracer};
//!
//! let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
//! let call = tracer.span("get");
//! let mut headers = HeaderMap::new();
//! tdist_http::inject(&tracer, &call.context(), &mut headers);
//! let (back, _) = tdist_core::propagation::extract(&tdist_http::HeaderExtractor(&headers));
//! assert_eq!(back.context().unwrap().span_id(), call.context().span_id());
//! ```
//!
//! [`Transport`]: tdist_core::export::Transport
#![forbid(unsafe_code)]

mod carrier;
mod client;
mod future;
mod grpc;
mod names;
mod proxy;
mod server;
pub mod zipkin;

pub use carrier::{
    clear, inject, inject_current, HeaderExtractor, HeaderInjector, ScannedHeaders, MAX_VALUE_LEN,
    PROPAGATION_HEADERS,
};
pub use client::{remote_endpoint, ClientLayer, TraceClient};
pub use future::{ResponseFuture, SpanDetails, TracedBody};
pub use server::{HttpRule, Route, ServerLayer, TraceServer};
