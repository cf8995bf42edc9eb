//! A traced HTTP service on hyper 1: every request gets a SERVER span (joined to the caller's
//! trace when it sent B3 or W3C headers); with `--downstream URL` each request also calls that
//! URL through the client layer, so two instances chained together make one trace.
//!
//! ```text
//! http_service --listen 127.0.0.1:8081
//! http_service --listen 127.0.0.1:8080 --downstream http://127.0.0.1:8081/stock
//! curl -H 'X-B3-TraceId: 463ac35c9f6413ad' -H 'X-B3-SpanId: a2fb4a1d1a96d312' http://127.0.0.1:8080/
//! ```
//!
//! `GET /health` answers `ok` and is not traced unless the caller sampled it (a sampling rule);
//! a request that called the downstream service tags its span with the downstream's status, or
//! marks it failed when the call failed (`SpanDetails` in the response).
//!
//! Spans are reported as the environment says (`OTEL_SERVICE_NAME`, `OTEL_PROPAGATORS`,
//! `OTEL_EXPORTER_ZIPKIN_ENDPOINT` for a Zipkin collector, `TDIST_TRANSPORT=stdout`,
//! `TDIST_FILE=...`). `--requests N` stops after N requests and flushes, for scripted runs; Ctrl-C
//! or SIGTERM stops it and flushes too.

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tdist_core::{Sampler, Tracer};
use tdist_http::zipkin::ZipkinTransport;
use tdist_http::{ClientLayer, HttpRule, ServerLayer, SpanDetails, TraceClient};
use tower_layer::Layer;
use tower_service::Service;

type Downstream = TraceClient<Client<HttpConnector, Empty<Bytes>>>;

struct Args {
    listen: String,
    downstream: Option<Uri>,
    requests: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8080".into(),
        downstream: None,
        requests: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--downstream" => {
                let v = value()?;
                args.downstream = Some(v.parse().map_err(|e| format!("--downstream {v}: {e}"))?)
            }
            "--requests" => {
                let v = value()?;
                args.requests = Some(v.parse().map_err(|e| format!("--requests {v}: {e}"))?)
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(args)
}

fn usage() -> String {
    "usage: http_service [--listen ADDR] [--downstream URL] [--requests N]".into()
}

/// The application: answers, after calling the downstream service when there is one.
#[derive(Clone)]
struct App {
    tracer: Tracer,
    downstream: Option<(Uri, Downstream)>,
}

impl Service<Request<Incoming>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move {
            if req.uri().path() == "/health" {
                return Ok(Response::new(Full::new(Bytes::from_static(b"ok\n"))));
            }
            let trace_id = tdist_core::current().map(|c| c.trace_id().to_string());
            let mut text = format!("{} {}\n", req.method(), req.uri().path());
            // What only the handler knows goes onto its request's span with the response.
            let mut details = SpanDetails::new();
            if let Some((uri, mut client)) = app.downstream {
                text.push_str(&match call(&mut client, uri).await {
                    Ok((status, body)) => {
                        details = details.tag("downstream.status", status.as_u16());
                        format!("downstream {status}: {body}")
                    }
                    Err(e) => {
                        details = details.error(format!("downstream: {e}"));
                        format!("downstream failed: {e}\n")
                    }
                });
            }
            // Work handed to another task stays in the trace.
            let t = app.tracer.clone();
            let rendered = tdist_core::spawn(async move {
                let _render = t.span("render");
                text
            });
            let text = rendered.await.unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.extensions_mut().insert(details);
            if let Some(id) = trace_id.and_then(|id| id.parse().ok()) {
                response.headers_mut().insert("x-trace-id", id);
            }
            Ok(response)
        })
    }
}

async fn call(client: &mut Downstream, uri: Uri) -> Result<(StatusCode, String), String> {
    poll_fn(|cx| client.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    let req = Request::get(uri)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = client.call(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

async fn run(args: Args) -> Result<(), String> {
    let builder = Tracer::from_env().map_err(|e| e.to_string())?;
    let builder = ZipkinTransport::configure(builder).map_err(|e| e.to_string())?;
    let guard = builder.install().map_err(|e| e.to_string())?;
    let tracer = guard.tracer().clone();

    let downstream = args.downstream.map(|uri| {
        let client = Client::builder(TokioExecutor::new()).build_http();
        (uri, ClientLayer::new(tracer.clone()).layer(client))
    });
    let app = App {
        tracer: tracer.clone(),
        downstream,
    };
    // Health checks are not traced unless the caller sampled the trace.
    let service = ServerLayer::new(tracer.clone())
        .sample(HttpRule::path_prefix("/health"), Sampler::never())
        .layer(app);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("http_service listening on http://{addr}");

    let served = Arc::new(AtomicU64::new(0));
    let tick = std::time::Duration::from_millis(100);
    let mut stop = std::pin::pin!(tdist_examples::stop_signal());
    while args
        .requests
        .is_none_or(|n| served.load(Ordering::Relaxed) < n)
    {
        // Wake now and then to notice that `--requests` was reached.
        let accepted = tokio::select! {
            _ = &mut stop => {
                eprintln!("http_service: stopping");
                break;
            }
            accepted = tokio::time::timeout(tick, listener.accept()) => accepted,
        };
        let Ok(accepted) = accepted else {
            continue;
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: it passes; the server carries on.
                eprintln!("http_service: accept: {e}");
                tokio::time::sleep(tick).await;
                continue;
            }
        };
        let svc = CountRequests {
            inner: service.clone(),
            served: served.clone(),
        };
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await;
        });
    }
    // Let the last response finish its body (and so its span) before flushing.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stats = tokio::task::spawn_blocking(move || tracer.flush())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "served {} requests; spans: {stats:?}",
        served.load(Ordering::Relaxed)
    );
    drop(guard);
    Ok(())
}

/// Counts requests, for `--requests`.
#[derive(Clone)]
struct CountRequests<S> {
    inner: S,
    served: Arc<AtomicU64>,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for CountRequests<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> S::Future {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.inner.call(req)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match parse() {
        Ok(args) => match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http_service: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
