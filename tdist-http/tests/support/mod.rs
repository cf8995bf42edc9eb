//! Shared pieces of the integration tests: real servers on 127.0.0.1, a recording collector.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tdist_core::export::InMemory;
use tdist_core::Tracer;
use tokio::net::TcpListener;

/// A tracer publishing into `sink` with a short export delay.
pub fn tracer(sink: &InMemory, service: &'static str) -> Tracer {
    Tracer::builder()
        .service_name(service)
        .transport(sink.clone())
        .configure_reporter(|c| c.schedule_delay = Duration::from_millis(20))
        .build()
        .unwrap()
}

/// Serves the tower service `svc` with hyper-util (HTTP/1 and HTTP/2) on 127.0.0.1 until the
/// runtime ends.
pub async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_hyper(TowerToHyperService::new(svc)).await
}

/// Serves the hyper service `svc` (hyper's own `Service` trait, no tower adapter) as
/// [`serve`] does.
pub async fn serve_hyper<S, B>(svc: S) -> SocketAddr
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A plain (untraced) hyper-util client.
pub fn plain_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET with the given headers through a plain client; returns status and body.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> (StatusCode, String) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, http::HeaderValue::from_bytes(v).unwrap());
    }
    let resp = plain_client()
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// One request a collector received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A Zipkin-like collector on 127.0.0.1 that records every request and answers with scripted
/// statuses (then 202).
#[derive(Clone, Default)]
pub struct Collector {
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Collector {
    pub async fn start(script: &[u16]) -> (Collector, SocketAddr) {
        let c = Collector::default();
        c.script.lock().unwrap().extend(script.iter().copied());
        let c2 = c.clone();
        let svc = tower::service_fn(move |req: Request<Incoming>| {
            let c = c2.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                c.received.lock().unwrap().push(Received {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                let status = c.script.lock().unwrap().pop_front().unwrap_or(202);
                let text = if status == 400 {
                    "Expected a JSON_V2 encoded list"
                } else {
                    ""
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(text.as_bytes())))
                        .unwrap(),
                )
            }
        });
        let addr = serve(svc).await;
        (c, addr)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Waits (bounded) until `f` holds; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Waits (without blocking the runtime) until `sink` holds at least `n` spans.
pub async fn spans(sink: &InMemory, n: usize) -> Vec<tdist_core::FinishedSpan> {
    let s = sink.clone();
    let got = tokio::task::spawn_blocking(move || s.wait_for(n, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        got >= n,
        "expected {n} spans, got {got}: {:?}",
        sink.spans()
    );
    sink.spans()
}

/// The one span of `kind` (panics when there is not exactly one).
pub fn one(spans: &[tdist_core::FinishedSpan], kind: tdist_core::Kind) -> tdist_core::FinishedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.kind() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "{kind:?} spans: {spans:?}");
    found[0].clone()
}

/// A tag as a string.
pub fn tag(span: &tdist_core::FinishedSpan, key: &str) -> Option<String> {
    span.tag(key).map(ToString::to_string)
}
