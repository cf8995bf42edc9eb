//! The client side: a CLIENT span per request, its context injected into the request headers.
//!
//! Wrap any `Service<http::Request<_>>`, for example hyper-util's legacy client:
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tdist_core::Tracer;
//! use tdist_http::ClientLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # async fn run(tracer: Tracer) {
//! let hyper_client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let mut client = ClientLayer::new(tracer).layer(hyper_client);
//! let req = http::Request::get("http://127.0.0.1:8080/stock").body(Empty::new()).unwrap();
//! let response = client.call(req).await.unwrap();
//! // The CLIENT span ends when `response`'s body has been read (or dropped).
//! # }
//! ```

use crate::carrier::inject;
use crate::future::ResponseFuture;
use crate::server::{describe, method_name};
use http::{Request, Response, Uri};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tdist_core::{Endpoint, Kind, Span, Tracer};
use tower_layer::Layer;
use tower_service::Service;

/// What every [`TraceClient`] made by one layer shares, behind one reference count: clients
/// are cloned per request in many tower stacks, and the clone stays one count.
#[derive(Debug, Clone)]
struct Shared {
    tracer: Tracer,
    remote_service: Option<Cow<'static, str>>,
}

/// Makes a [`TraceClient`] around a service.
#[derive(Debug, Clone)]
pub struct ClientLayer {
    shared: Arc<Shared>,
}

impl ClientLayer {
    /// Client spans from `tracer`.
    pub fn new(tracer: Tracer) -> ClientLayer {
        ClientLayer {
            shared: Arc::new(Shared {
                tracer,
                remote_service: None,
            }),
        }
    }

    /// Names the service every request goes to (Zipkin's remote service name, lower-cased),
    /// for a client that talks to one service: a tonic channel, or a client whose requests
    /// name a load balancer rather than the service. The request's address and port, when
    /// known, are still recorded beside it. Without it, a host name in the request is used
    /// as the remote service name.
    ///
    /// ```
    /// # fn demo(tracer: tdist_core::Tracer) {
    /// let layer = tdist_http::ClientLayer::new(tracer).remote_service_name("inventory");
    /// # }
    /// ```
    pub fn remote_service_name(mut self, name: impl Into<Cow<'static, str>>) -> ClientLayer {
        // Lower-cased with the endpoint it names (`Endpoint::with_service_name`).
        Arc::make_mut(&mut self.shared).remote_service = Some(name.into());
        self
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = TraceClient<S>;

    fn layer(&self, inner: S) -> TraceClient<S> {
        TraceClient {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Traces every request sent through `S`: a CLIENT span, child of the current context (or a new
/// trace), with `http.method`, `http.path`, `http.status_code` and the server as remote
/// endpoint; responses with status 400 and above and transport errors are marked as errors.
/// The span ends when the response body ends.
#[derive(Debug, Clone)]
pub struct TraceClient<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> TraceClient<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tracer: Tracer) -> TraceClient<S> {
        ClientLayer::new(tracer).layer(inner)
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
    fn start<B>(&self, req: &mut Request<B>) -> (Span, bool) {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| crate::grpc::is_grpc(v.as_bytes()));
        let method = method_name(req.method());
        let Shared {
            tracer,
            remote_service,
        } = &*self.shared;
        let mut span = tracer.span(method.clone());
        if span.is_recording() {
            describe(&mut span, Kind::Client, method, req.uri(), grpc);
            let remote = remote_endpoint(req.uri()).or_else(|| {
                // An origin-form request (`GET /path`, as hyper's connection-level client
                // sends) names its server in the `Host` header.
                let host = req.headers().get(http::header::HOST)?.as_bytes();
                let authority = http::uri::Authority::try_from(host).ok()?;
                Some(host_endpoint(authority.host(), authority.port_u16()))
            });
            let remote = match remote_service {
                // The name given replaces a host name taken from the request.
                Some(name) => Some(remote.unwrap_or_default().with_service_name(name.clone())),
                None => remote,
            };
            if let Some(remote) = remote {
                span.set_remote_endpoint(remote);
            }
        }
        inject(tracer, &span.context(), req.headers_mut());
        (span, grpc)
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for TraceClient<S>
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

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let (span, grpc) = self.start(&mut req);
        ResponseFuture::call(span, 400, grpc, || self.inner.call(req))
    }
}

/// The server a request goes to: its address when the host is an IP literal, else the host
/// name as the remote service name; the port given or the scheme's default.
pub fn remote_endpoint(uri: &Uri) -> Option<Endpoint> {
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    Some(host_endpoint(uri.host()?, port))
}

/// `host` (an IP literal, bracketed or not, or a name) and `port` as an endpoint.
fn host_endpoint(host: &str, port: Option<u16>) -> Endpoint {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let endpoint = match bare.parse::<IpAddr>() {
        Ok(ip) => Endpoint::default().with_ip(ip),
        Err(_) => Endpoint::service(bare.to_owned()),
    };
    match port {
        Some(p) => endpoint.with_port(p),
        None => endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_endpoint_from_uri() {
        let e = remote_endpoint(&"http://127.0.0.1:9411/x".parse().unwrap()).unwrap();
        assert_eq!(
            (e.ipv4().unwrap().to_string(), e.port()),
            ("127.0.0.1".into(), Some(9411))
        );
        let e = remote_endpoint(&"https://[::1]/x".parse().unwrap()).unwrap();
        assert_eq!((e.ipv6().is_some(), e.port()), (true, Some(443)));
        let e = remote_endpoint(&"http://Stock.Internal/x".parse().unwrap()).unwrap();
        assert_eq!(
            (e.service_name(), e.port()),
            (Some("stock.internal"), Some(80))
        );
        assert!(remote_endpoint(&"/relative".parse().unwrap()).is_none());
    }

    #[test]
    fn host_header_forms() {
        let from_host = |h: &str| {
            let a = http::uri::Authority::try_from(h).unwrap();
            host_endpoint(a.host(), a.port_u16())
        };
        let e = from_host("[::1]:8080");
        assert_eq!((e.ipv6().is_some(), e.port()), (true, Some(8080)));
        let e = from_host("Stock.Internal");
        assert_eq!((e.service_name(), e.port()), (Some("stock.internal"), None));
        let e = from_host("10.0.0.7:81");
        assert_eq!(
            (e.ipv4().map(|ip| ip.octets()), e.port()),
            (Some([10, 0, 0, 7]), Some(81))
        );
    }
}
