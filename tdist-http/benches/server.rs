//! Requests per second of a hyper hello-world server over loopback with a keep-alive client,
//! without and with the tdist server layer (sampling on, spans published through the reporter to
//! a no-op transport), in one criterion run.
//!
//! `cargo bench -p tdist-http --bench server`
//!
//! Client and server share one current-thread runtime. Two measures per variant:
//! `wall/*` is elapsed time per request (requests/s is its inverse), and `cpu/*` is the CPU time
//! of the whole process per request (every thread, the reporter's included, kernel time
//! included; `CLOCK_PROCESS_CPUTIME_ID`), which stays meaningful when other
//! processes compete for the cores.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tdist_core::export::NoopTransport;
use tdist_core::Tracer;
use tdist_http::ServerLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// Starts a server (traced or not) and returns a connected keep-alive client.
async fn setup(tracer: Option<Tracer>) -> SendRequest<Empty<Bytes>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = TokioIo::new(stream);
        let http = hyper::server::conn::http1::Builder::new();
        let _ = match tracer {
            None => {
                let svc = TowerToHyperService::new(tower::service_fn(hello));
                http.serve_connection(io, svc).await
            }
            Some(t) => {
                let svc = ServerLayer::new(t).layer(tower::service_fn(hello));
                http.serve_connection(io, TowerToHyperService::new(svc))
                    .await
            }
        };
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn requests(sender: &mut SendRequest<Empty<Bytes>>, n: u64, headers: &[(&str, &str)]) {
    for _ in 0..n {
        sender.ready().await.unwrap();
        let mut req = Request::get("/").header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 13);
    }
}

/// CPU time of every thread of this process, in ns (`CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn server(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tracer = Tracer::builder()
        .service_name("bench")
        .transport(NoopTransport)
        .configure_reporter(|r| r.schedule_delay = Duration::from_millis(100))
        .build()
        .unwrap();
    let b3 = [
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ];
    let mut g = c.benchmark_group("hyper_hello_loopback");
    g.throughput(Throughput::Elements(1));
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let variants: [(&str, Option<Tracer>, Headers<'_>); 4] = [
        ("plain", None, &[]),
        ("server_layer", Some(tracer.clone()), &[]),
        ("plain_b3_headers", None, &b3),
        ("server_layer_b3_caller", Some(tracer.clone()), &b3),
    ];
    for (name, t, headers) in variants {
        let mut sender = rt.block_on(setup(t));
        g.bench_function(format!("wall/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    requests(&mut sender, iters, headers).await;
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("cpu/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = process_cpu_ns();
                    requests(&mut sender, iters, headers).await;
                    // The reporter's work on these spans may land in the next sample; over
                    // many samples it is all counted (the run ends with nothing dropped).
                    Duration::from_nanos(process_cpu_ns().saturating_sub(start))
                })
            })
        });
    }
    g.finish();
    let stats = tracer.flush().unwrap();
    eprintln!("tracer stats after the run: {stats:?}");
    assert_eq!(stats.dropped, 0, "spans dropped: {stats:?}");
}

criterion_group!(benches, server);
criterion_main!(benches);
