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
    accept_each(move |stream| {
        let svc = svc.clone();
        async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await
}

/// Listens on a free 127.0.0.1 port and runs `on_connection` for every connection, each in a
/// task of its own, until the runtime ends; the address.
pub async fn accept_each<F, Fut>(on_connection: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(on_connection(stream));
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
    pub at: std::time::Instant,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A Zipkin-like collector on 127.0.0.1 that records every request and answers with scripted
/// statuses (then 202); a 429 comes with `Retry-After: 1`, as a rate-limiting collector's.
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
                    at: std::time::Instant::now(),
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
                let mut answer = Response::builder().status(status);
                if status == 429 {
                    answer = answer.header("retry-after", "1");
                }
                let answer = answer.body(Full::new(Bytes::from_static(text.as_bytes())));
                Ok::<_, Infallible>(answer.unwrap())
            }
        });
        let addr = serve(svc).await;
        (c, addr)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// A tracer of service `shop` publishing through a Zipkin `transport`, exporting every 20 ms and
/// retrying a failed batch `retries` times.
pub fn tracer_to(transport: tdist_http::zipkin::ZipkinTransport, retries: u32) -> Tracer {
    Tracer::builder()
        .service_name("shop")
        .transport(transport)
        .configure_reporter(|c| {
            c.schedule_delay = Duration::from_millis(20);
            c.max_retries = retries;
            c.shutdown_timeout = Duration::from_secs(2);
        })
        .build()
        .unwrap()
}

/// One finished span handed straight to `transport`, outside any tracer: the outcome as the
/// reporter sees it (its error's retryability and message).
pub fn send_directly(
    transport: &dyn tdist_core::export::Transport,
) -> Result<(), tdist_core::export::TransportError> {
    let sink = InMemory::new();
    let local = tracer(&sink, "shop");
    local.root_span("sent directly").finish();
    local.flush().unwrap();
    transport.send(&sink.spans())
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

/// One request an HTTP proxy received: its method, its target as sent (absolute form, or
/// `host:port` for `CONNECT`) and its `Proxy-Authorization`.
#[derive(Debug, Clone)]
pub struct Proxied {
    pub method: String,
    pub target: String,
    pub auth: Option<String>,
}

/// An HTTP forward proxy on 127.0.0.1, as squid or an egress gateway would be: forwards
/// absolute-form requests and opens `CONNECT` tunnels, in both cases to `upstream` whatever host
/// they name (so endpoints may use names that do not resolve here: only the proxy could reach
/// them). With `basic` set, requests without that `Proxy-Authorization` get 407.
#[derive(Clone, Default)]
pub struct ForwardProxy {
    pub seen: Arc<Mutex<Vec<Proxied>>>,
}

impl ForwardProxy {
    pub async fn start(
        upstream: SocketAddr,
        basic: Option<&'static str>,
    ) -> (ForwardProxy, SocketAddr) {
        let proxy = ForwardProxy::default();
        let p = proxy.clone();
        let addr = accept_each(move |tcp| {
            let p = p.clone();
            async move {
                let svc =
                    hyper::service::service_fn(move |req| p.clone().handle(req, upstream, basic));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            }
        })
        .await;
        (proxy, addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    async fn handle(
        self,
        req: Request<Incoming>,
        upstream: SocketAddr,
        basic: Option<&'static str>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let auth = req
            .headers()
            .get("proxy-authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(Proxied {
            method: req.method().to_string(),
            target: req.uri().to_string(),
            auth: auth.clone(),
        });
        if basic.is_some() && auth.as_deref() != basic {
            let refused = Response::builder()
                .status(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
                .header("proxy-authenticate", "Basic realm=\"egress\"")
                .body(Full::default());
            return Ok(refused.unwrap());
        }
        if req.method() == http::Method::CONNECT {
            tokio::spawn(async move {
                let Ok(upgraded) = hyper::upgrade::on(req).await else {
                    return;
                };
                let Ok(mut tcp) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut tcp).await;
            });
            return Ok(Response::new(Full::default()));
        }
        let (mut parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{upstream}{path}").parse().unwrap();
        parts.headers.remove("proxy-authorization");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let answer = match client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
        {
            Ok(answer) => answer,
            Err(_) => {
                let mut bad = Response::new(Full::default());
                *bad.status_mut() = StatusCode::BAD_GATEWAY;
                return Ok(bad);
            }
        };
        let (parts, body) = answer.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

/// One tunnel a SOCKS5 proxy opened: the destination as the client named it (a domain name or
/// an address, and the port) and the user it authenticated as.
#[derive(Debug, Clone)]
pub struct Tunneled {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
}

/// A SOCKS5 proxy on 127.0.0.1 (RFC 1928, `CONNECT` only), with user/password authentication
/// (RFC 1929) when `credentials` are given: every tunnel goes to `upstream` whatever it names.
#[derive(Clone, Default)]
pub struct Socks5Proxy {
    pub tunnels: Arc<Mutex<Vec<Tunneled>>>,
    /// Connections that began a handshake.
    pub sessions: Arc<std::sync::atomic::AtomicUsize>,
}

impl Socks5Proxy {
    pub async fn start(
        upstream: SocketAddr,
        credentials: Option<(&'static str, &'static str)>,
    ) -> (Socks5Proxy, SocketAddr) {
        Socks5Proxy::replying(upstream, credentials, 0).await
    }

    /// A proxy that answers every `CONNECT` with `reply` (0 opens the tunnel; RFC 1928's codes
    /// refuse it, as 2 "not allowed by ruleset" or 5 "connection refused").
    pub async fn replying(
        upstream: SocketAddr,
        credentials: Option<(&'static str, &'static str)>,
        reply: u8,
    ) -> (Socks5Proxy, SocketAddr) {
        let proxy = Socks5Proxy::default();
        let (tunnels, sessions) = (proxy.tunnels.clone(), proxy.sessions.clone());
        let addr = accept_each(move |tcp| {
            let tunnels = tunnels.clone();
            sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let _ = socks5_session(tcp, upstream, credentials, reply, tunnels).await;
            }
        })
        .await;
        (proxy, addr)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.tunnels.lock().unwrap().len()
    }
}

async fn socks5_session(
    mut tcp: tokio::net::TcpStream,
    upstream: SocketAddr,
    credentials: Option<(&'static str, &'static str)>,
    reply: u8,
    tunnels: Arc<Mutex<Vec<Tunneled>>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn bytes(tcp: &mut tokio::net::TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        tcp.read_exact(&mut buf).await?;
        Ok(buf)
    }
    // Greeting: version 5, the methods the client offers.
    let head = bytes(&mut tcp, 2).await?;
    assert_eq!(head[0], 5, "SOCKS version");
    let methods = bytes(&mut tcp, usize::from(head[1])).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        return tcp.write_all(&[5, 0xff]).await;
    }
    tcp.write_all(&[5, wanted]).await?;
    let mut user = None;
    if let Some((want_user, want_password)) = credentials {
        let head = bytes(&mut tcp, 2).await?;
        let name = bytes(&mut tcp, usize::from(head[1])).await?;
        let len = bytes(&mut tcp, 1).await?;
        let password = bytes(&mut tcp, usize::from(len[0])).await?;
        let ok = name == want_user.as_bytes() && password == want_password.as_bytes();
        tcp.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            return Ok(());
        }
        user = Some(String::from_utf8_lossy(&name).into_owned());
    }
    // Request: version, CONNECT, reserved, then the address.
    let head = bytes(&mut tcp, 4).await?;
    assert_eq!(&head[..3], &[5, 1, 0], "a CONNECT request");
    let host = match head[3] {
        1 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes(&mut tcp, 4).await?).unwrap())
            .to_string(),
        4 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes(&mut tcp, 16).await?).unwrap())
            .to_string(),
        3 => {
            let len = bytes(&mut tcp, 1).await?;
            String::from_utf8_lossy(&bytes(&mut tcp, usize::from(len[0])).await?).into_owned()
        }
        other => panic!("address type {other}"),
    };
    let port = bytes(&mut tcp, 2).await?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    if reply != 0 {
        return tcp.write_all(&[5, reply, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    tunnels.lock().unwrap().push(Tunneled { host, port, user });
    let mut upstream = tokio::net::TcpStream::connect(upstream).await?;
    tcp.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await?;
    Ok(())
}
