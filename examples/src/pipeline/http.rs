//! The comments API: `POST /comments` on hyper 1. Each request is a SERVER span from
//! tdist-http's tower layer (joining the caller's trace when it sent B3 or W3C headers, else
//! starting one); inside it the comment is
//! produced to Kafka by a traced producer (a PRODUCER span that ends on the broker's ack), and
//! the answer is `202 Accepted` with the comment's id. Also the load clients that post comments.

use super::comments::Comment;
use super::Timings;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tdist_core::Tracer;
use tdist_http::{Route, ServerLayer};
use tdist_kafka::TracedProducer;
use tokio::net::{TcpListener, TcpStream};
use tower_layer::Layer;
use tower_service::Service as _;

/// The API's producer: traced, or rdkafka's own (the benchmark's uninstrumented mode).
enum Producer {
    Traced(TracedProducer),
    Plain(FutureProducer),
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Producer::Traced(_) => "Producer::Traced",
            Producer::Plain(_) => "Producer::Plain",
        })
    }
}

/// What the API needs per request.
#[derive(Debug)]
pub struct Api {
    /// `None`: no tracing at all (no [`ServerLayer`]).
    tracer: Option<Tracer>,
    producer: Producer,
    topic: String,
    next_id: AtomicU64,
    timings: Option<Arc<Timings>>,
}

/// When each request arrived at the API, as `Instant` in the request's extensions.
#[derive(Debug, Clone, Copy)]
struct Arrived(Instant);

impl Api {
    /// An API producing to `topic` through `producer`, SERVER spans from `tracer`.
    pub fn new(tracer: Tracer, producer: TracedProducer, topic: impl Into<String>) -> Api {
        Api {
            tracer: Some(tracer),
            producer: Producer::Traced(producer),
            topic: topic.into(),
            next_id: AtomicU64::new(1),
            timings: None,
        }
    }

    /// An API without any tracing: served without [`ServerLayer`], producing with a plain
    /// rdkafka producer.
    pub fn plain(producer: FutureProducer, topic: impl Into<String>) -> Api {
        Api {
            tracer: None,
            producer: Producer::Plain(producer),
            topic: topic.into(),
            next_id: AtomicU64::new(1),
            timings: None,
        }
    }

    /// Records when each accepted comment arrived (by its id) in `timings`.
    pub fn with_timings(mut self, timings: Arc<Timings>) -> Api {
        self.timings = Some(timings);
        self
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn post_comment(api: &Api, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrived = req.extensions().get::<Arrived>().map(|a| a.0);
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
    };
    let text = String::from_utf8_lossy(&body);
    let mut comment = match Comment::from_json(&text) {
        Ok(c) => c,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    comment.id = format!("c{}", api.next_id.fetch_add(1, Ordering::Relaxed));
    let payload = comment.to_json();
    let record = FutureRecord::to(&api.topic)
        .key(comment.id.as_str())
        .payload(payload.as_str());
    if let (Some(t), Some(at)) = (&api.timings, arrived) {
        t.arrived(&comment.id, at);
    }
    let sent = match &api.producer {
        Producer::Traced(p) => p.send(record, Duration::from_secs(10)).await,
        Producer::Plain(p) => p.send(record, Duration::from_secs(10)).await,
    };
    match sent {
        Ok(_) => reply(
            StatusCode::ACCEPTED,
            format!("{{\"id\":\"{}\"}}\n", comment.id),
        ),
        Err((e, _)) => reply(StatusCode::SERVICE_UNAVAILABLE, format!("kafka: {e}\n")),
    }
}

async fn route(api: Arc<Api>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let routed = (req.method(), req.uri().path()) == (&http::Method::POST, "/comments");
    Ok(if routed {
        post_comment(&api, req).await
    } else {
        reply(StatusCode::NOT_FOUND, "try POST /comments\n".into())
    })
}

/// The API as a tower service (always ready), for tdist-http's [`ServerLayer`].
#[derive(Debug, Clone)]
pub struct ApiService(pub Arc<Api>);

impl tower_service::Service<Request<Incoming>> for ApiService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(route(self.0.clone(), req))
    }
}

/// Serves the API on `listener` until the task is dropped or aborted: each request goes
/// through tdist-http's [`ServerLayer`] (a SERVER span, named after the route, with the
/// caller's address), then to [`ApiService`]; without a tracer ([`Api::plain`]) straight to
/// [`ApiService`].
pub async fn serve(listener: TcpListener, api: Arc<Api>) {
    let traced = api
        .tracer
        .clone()
        .map(|t| ServerLayer::new(t).layer(ApiService(api.clone())));
    let plain = ApiService(api);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let traced = traced.clone();
        let plain = plain.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Arrived(Instant::now()));
                if req.uri().path() == "/comments" {
                    req.extensions_mut().insert(Route("/comments".into()));
                }
                req.extensions_mut().insert(peer);
                // ApiService is always ready, so TraceServer is too.
                let traced = traced.clone();
                let mut plain = plain.clone();
                async move {
                    match traced {
                        Some(mut t) => t.call(req).await.map(|r| r.map(Either::Left)),
                        None => plain.call(req).await.map(|r| r.map(Either::Right)),
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Why a post failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Connecting or talking HTTP failed.
    #[error("http: {0}")]
    Http(String),
    /// The API answered with something other than 202.
    #[error("status {0}: {1}")]
    Status(u16, String),
}

/// One load client: a keep-alive HTTP/1.1 connection to the API.
#[derive(Debug)]
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    /// Connects to the API at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Client, PostError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| PostError::Http(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PostError::Http(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Client { sender })
    }

    /// Posts `comment`; returns the id the API assigned.
    pub async fn post(&mut self, comment: &Comment) -> Result<String, PostError> {
        let req = Request::post("/comments")
            .header(http::header::HOST, "127.0.0.1")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(comment.to_json())))
            .map_err(|e| PostError::Http(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| PostError::Http(e.to_string()))?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| PostError::Http(e.to_string()))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| PostError::Http(e.to_string()))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::ACCEPTED {
            return Err(PostError::Status(status.as_u16(), body));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| PostError::Http(e.to_string()))?;
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }
}
