//! The server side: a SERVER span per request, joined to the caller's trace.
//!
//! ```
//! use http::{Request, Response};
//! use std::convert::Infallible;
//! use tdist_core::export::InMemory;
//! use tdist_core::{Kind, Tracer};
//! use tdist_http::ServerLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let sink = InMemory::new();
//! let tracer = Tracer::builder().service_name("api").transport(sink.clone()).build().unwrap();
//! let hello = tower_service_fn(|_req: Request<String>| async {
//!     // The SERVER span is current here, and in everything spawned with tdist_core::spawn.
//!     assert!(tdist_core::current().is_some());
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! });
//! let mut svc = ServerLayer::new(tracer.clone()).layer(hello);
//! let req = Request::get("/hello")
//!     .header("X-B3-TraceId", "463ac35c9f6413ad")
//!     .header("X-B3-SpanId", "a2fb4a1d1a96d312")
//!     .body(String::new())
//!     .unwrap();
//! let response = svc.call(req).await.unwrap();
//! drop(response); // the span ends with the response body
//! tracer.flush().unwrap();
//! let span = &sink.spans()[0];
//! assert_eq!((span.kind(), span.shared()), (Some(Kind::Server), true));
//! assert_eq!(span.id().to_string(), "a2fb4a1d1a96d312");
//! # }
//! # fn tower_service_fn<F, Fut>(f: F) -> Fn_<F> where F: FnMut(Request<String>) -> Fut { Fn_(f) }
//! # struct Fn_<F>(F);
//! # impl<F, Fut> Service<Request<String>> for Fn_<F>
//! # where F: FnMut(Request<String>) -> Fut, Fut: std::future::Future<Output = Result<Response<String>, Infallible>> {
//! #     type Response = Response<String>; type Error = Infallible; type Future = Fut;
//! #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> { std::task::Poll::Ready(Ok(())) }
//! #     fn call(&mut self, r: Request<String>) -> Fut { (self.0)(r) }
//! # }
//! ```

use crate::carrier::ScannedHeaders;
use crate::future::ResponseFuture;
use http::{Method, Request, Response, Uri};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tdist_core::propagation::{extract, Source};
use tdist_core::{Extracted, Kind, Sampler, Span, TagValue, Tracer};
use tower_layer::Layer;
use tower_service::Service;

/// The route a request matched (such as `/users/{id}`), for span names. Routers that know it
/// can insert it into the request's extensions before the [`TraceServer`] sees the request;
/// with the `axum` feature, axum's `MatchedPath` is used as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route(pub Cow<'static, str>);

/// Which requests a sampling rule of [`ServerLayer::sample`] applies to: those whose path
/// starts with a prefix (a plain string prefix, as Brave's `pathStartsWith`: `/health` also
/// matches `/healthz`), and optionally only those with a given method.
///
/// ```
/// use http::{Method, Request};
/// use tdist_http::HttpRule;
///
/// let rule = HttpRule::path_prefix("/api/").method(Method::POST);
/// assert!(rule.matches(&Request::post("/api/orders").body(()).unwrap()));
/// assert!(!rule.matches(&Request::get("/api/orders").body(()).unwrap()));
/// assert!(!rule.matches(&Request::post("/health").body(()).unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    method: Option<Method>,
    path_prefix: Cow<'static, str>,
}

impl HttpRule {
    /// Requests whose path starts with `prefix` (`"/"` matches every request).
    pub fn path_prefix(prefix: impl Into<Cow<'static, str>>) -> HttpRule {
        HttpRule {
            method: None,
            path_prefix: prefix.into(),
        }
    }

    /// Only requests with `method`.
    pub fn method(mut self, method: Method) -> HttpRule {
        self.method = Some(method);
        self
    }

    /// Whether `req` is one of these requests.
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
        self.method.as_ref().is_none_or(|m| m == req.method())
            && req.uri().path().starts_with(&*self.path_prefix)
    }
}

/// What every [`TraceServer`] made by one layer shares, behind one reference count: a tower
/// server clones its service for every request, and a second field (the rules beside the
/// tracer) cost that clone measurably.
#[derive(Debug, Clone)]
struct Shared {
    tracer: Tracer,
    /// Sampling rules, tried in order.
    rules: Vec<(HttpRule, Sampler)>,
}

/// Makes a [`TraceServer`] around a service.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    shared: Arc<Shared>,
}

impl ServerLayer {
    /// Server spans from `tracer`.
    pub fn new(tracer: Tracer) -> ServerLayer {
        ServerLayer {
            shared: Arc::new(Shared {
                tracer,
                rules: Vec::new(),
            }),
        }
    }

    /// Requests that match `rule` are sampled by `sampler` instead of the tracer's sampler,
    /// when the caller sent no decision: health checks and metrics scrapes need not be traced,
    /// or a costly endpoint can be traced at a lower rate (Brave's `HttpRuleSampler`). Rules
    /// are tried in the order they were added and the first that matches decides; requests no
    /// rule matches use the tracer's sampler. A parent-based `sampler` (as `Sampler::never()`
    /// and the others are unless told otherwise) keeps a caller's decision: a sampled caller's
    /// health check is still traced, so its trace has no hole.
    ///
    /// ```
    /// use tdist_core::{export::InMemory, Sampler, Tracer};
    /// use tdist_http::{HttpRule, ServerLayer};
    ///
    /// let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
    /// let layer = ServerLayer::new(tracer)
    ///     .sample(HttpRule::path_prefix("/health"), Sampler::never())
    ///     .sample(HttpRule::path_prefix("/search"), Sampler::ratio(0.1));
    /// ```
    pub fn sample(mut self, rule: HttpRule, sampler: Sampler) -> ServerLayer {
        Arc::make_mut(&mut self.shared).rules.push((rule, sampler));
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = TraceServer<S>;

    fn layer(&self, inner: S) -> TraceServer<S> {
        TraceServer {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Traces every request `S` handles: extracts the caller's context (`b3`, `X-B3-*`, then
/// `traceparent`), starts a SERVER span (sharing the caller's span id for B3 callers, a child
/// for W3C callers, a new trace otherwise), runs `S` inside it and ends it with the response
/// body.
#[derive(Debug, Clone)]
pub struct TraceServer<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> TraceServer<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tracer: Tracer) -> TraceServer<S> {
        ServerLayer::new(tracer).layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The request's span, and whether the request is a gRPC call.
    fn start<B>(&self, req: &Request<B>) -> (Span, bool) {
        let scanned = ScannedHeaders::new(req.headers());
        let (extracted, source) = if scanned.is_empty() {
            // Most callers of an edge service do not trace: no need to ask for each form.
            (Extracted::Empty, None)
        } else {
            extract(&scanned)
        };
        let method = method_name(req.method());
        let Shared { tracer, rules } = &*self.shared;
        let mut span = match (rules.is_empty(), source) {
            (true, Some(s)) if s.shares_span_id() => tracer.join_span(extracted, method.clone()),
            (true, _) => tracer.child_of_remote(extracted, method.clone()),
            (false, source) => self.start_ruled(req, rules, extracted, source, method.clone()),
        };
        if span.is_recording() {
            if let Some(route) = route(req) {
                span.set_name(crate::names::route_name(req.method(), route));
            }
            describe(
                &mut span,
                Kind::Server,
                method,
                req.uri(),
                scanned.is_grpc(),
            );
            if let Some(peer) = peer(req) {
                span.set_remote_endpoint(tdist_core::Endpoint::addr(peer));
            }
        }
        (span, scanned.is_grpc())
    }

    /// The span of a request when sampling rules are set: the first rule that matches picks
    /// the sampler, else the tracer's. Kept out of line, off the path of services without rules.
    #[inline(never)]
    fn start_ruled<B>(
        &self,
        req: &Request<B>,
        rules: &[(HttpRule, Sampler)],
        extracted: Extracted,
        source: Option<Source>,
        method: Cow<'static, str>,
    ) -> Span {
        let t = &self.shared.tracer;
        let sampler = rules
            .iter()
            .find(|(rule, _)| rule.matches(req))
            .map_or(t.sampler(), |(_, sampler)| sampler);
        match source.is_some_and(|s| s.shares_span_id()) {
            true => t.join_span_sampled(extracted, method, sampler),
            false => t.child_of_remote_sampled(extracted, method, sampler),
        }
    }
}

/// What the server and client layers record of every request on a recording span: its kind,
/// `http.method` and `http.path`, and for a gRPC call its `service/method` name and `rpc.*` tags
/// (over any route name).
#[inline]
pub(crate) fn describe(
    span: &mut Span,
    kind: Kind,
    method: Cow<'static, str>,
    uri: &Uri,
    grpc: bool,
) {
    span.set_kind(kind);
    span.tag("http.method", method);
    span.tag("http.path", TagValue::text(uri.path()));
    if grpc {
        crate::grpc::name_span(span, uri.path());
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for TraceServer<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: fmt::Display,
{
    type Response = Response<crate::TracedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (span, grpc) = self.start(&req);
        ResponseFuture::call(span, 500, grpc, || self.inner.call(req))
    }
}

/// hyper's own service trait, whose `call` takes `&self`: a hyper server serves a
/// `TraceServer` around a hyper service (such as `hyper::service::service_fn`) directly.
/// Through `hyper_util`'s `TowerToHyperService` instead, the whole service (and so the tracer
/// handle, a reference count) is cloned for every request.
impl<S, ReqB, ResB> hyper::service::Service<Request<ReqB>> for TraceServer<S>
where
    S: hyper::service::Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: fmt::Display,
{
    type Response = Response<crate::TracedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, req: Request<ReqB>) -> Self::Future {
        let (span, grpc) = self.start(&req);
        ResponseFuture::call(span, 500, grpc, || self.inner.call(req))
    }
}

/// The method as a `'static` string for the common methods (no allocation), else owned.
#[inline]
pub(crate) fn method_name(m: &Method) -> Cow<'static, str> {
    match crate::names::standard_method(m) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(m.as_str().to_owned()),
    }
}

fn route<B>(req: &Request<B>) -> Option<&str> {
    if let Some(Route(r)) = req.extensions().get::<Route>() {
        return Some(r);
    }
    #[cfg(feature = "axum")]
    if let Some(m) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(m.as_str());
    }
    None
}

fn peer<B>(req: &Request<B>) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(c) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(c.0);
    }
    req.extensions().get::<std::net::SocketAddr>().copied()
}
