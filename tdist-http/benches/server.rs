//! Requests per second of a hyper hello-world server over loopback with a keep-alive client,
//! without and with the tdist server layer (sampling on, spans published through the reporter to
//! a no-op transport), in one criterion run.
//!
//! `cargo bench -p tdist-http --bench server`
//!
//! `hyper_hello_interleaved` measures plain and traced servers in alternating chunks of requests,
//! so both see the same machine; it is the figure to read for the throughput ratio.
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
use rustix::time::ClockId;
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

/// A CPU clock in ns: the whole process (`ProcessCPUTime`, every thread) or the calling thread.
fn cpu_ns(clock: ClockId) -> u64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The headers of a B3 caller that sampled the trace.
const B3_CALLER: [(&str, &str); 3] = [
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-sampled", "1"),
];

/// The runtime client and servers share, and a tracer publishing to a no-op transport.
fn runtime_and_tracer() -> (tokio::runtime::Runtime, Tracer) {
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
    (rt, tracer)
}

fn server(c: &mut Criterion) {
    let (rt, tracer) = runtime_and_tracer();
    let b3 = B3_CALLER;
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
                    let start = cpu_ns(ClockId::ProcessCPUTime);
                    requests(&mut sender, iters, headers).await;
                    // The reporter's work on these spans may land in the next sample; over
                    // many samples it is all counted (the run ends with nothing dropped).
                    Duration::from_nanos(cpu_ns(ClockId::ProcessCPUTime).saturating_sub(start))
                })
            })
        });
    }
    g.finish();
    let stats = tracer.flush().unwrap();
    eprintln!("tracer stats after the run: {stats:?}");
    assert_eq!(stats.dropped, 0, "spans dropped: {stats:?}");
}

/// Requests per chunk in the interleaved measurement (~0.3 ms of requests).
const CHUNK: u64 = 32;

/// Plain and traced servers measured in alternation, chunk by chunk, so that both see the same
/// machine: on two shared vCPUs the speed of the guest drifts by 10–30% over seconds, more than
/// the layer costs, and separate sequential runs compare different machines. Criterion reports
/// the traced server's time per request; the plain server's chunks, run between them, are timed
/// too, and the ratio of the two totals is printed after each bench. `wall/*` is elapsed time;
/// `thread_cpu/*` the runtime thread's CPU time (the reporter thread's work is left out there
/// and shows in the sequential `cpu/*` figures above).
fn server_interleaved(c: &mut Criterion) {
    let (rt, tracer) = runtime_and_tracer();
    let b3 = B3_CALLER;
    let mut plain = rt.block_on(setup(None));
    let mut traced = rt.block_on(setup(Some(tracer.clone())));
    let mut g = c.benchmark_group("hyper_hello_interleaved");
    g.throughput(Throughput::Elements(1));
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let forms: [(&str, Headers<'_>); 2] = [("", &[]), ("_b3_caller", &b3)];
    for (suffix, headers) in forms {
        for clock in ["wall", "thread_cpu"] {
            let now = || match clock {
                "wall" => START.elapsed().as_nanos() as u64,
                _ => cpu_ns(ClockId::ThreadCPUTime),
            };
            // Totals over every chunk of this bench: (plain ns, traced ns, requests each).
            let mut totals = (0u64, 0u64, 0u64);
            g.bench_function(format!("{clock}/server_layer{suffix}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut traced_ns = 0u64;
                        let mut done = 0;
                        while done < iters {
                            let n = CHUNK.min(iters - done);
                            let t = now();
                            requests(&mut plain, n, headers).await;
                            let p = now();
                            requests(&mut traced, n, headers).await;
                            let e = now();
                            traced_ns += e - p;
                            totals.0 += p - t;
                            totals.1 += e - p;
                            totals.2 += n;
                            done += n;
                        }
                        Duration::from_nanos(traced_ns)
                    })
                })
            });
            let (p, t, n) = totals;
            if n == 0 {
                continue; // filtered out
            }
            eprintln!(
                "interleaved {clock}{suffix}: plain {:.2} us, traced {:.2} us per request, \
                 layer {:+.1}% ({n} requests each)",
                p as f64 / n as f64 / 1000.0,
                t as f64 / n as f64 / 1000.0,
                (t as f64 / p as f64 - 1.0) * 100.0
            );
        }
    }
    g.finish();
    let stats = tracer.flush().unwrap();
    eprintln!("tracer stats after the interleaved run: {stats:?}");
    assert_eq!(stats.dropped, 0, "spans dropped: {stats:?}");
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// The layer alone, in memory: what `TraceServer::call` plus the body's end add to a request,
/// per inbound header form (the request is built the same way in every variant).
fn layer_call(c: &mut Criterion) {
    use std::future::Future;
    use std::task::{Context, Waker};
    use tower_service::Service;

    let tracer = Tracer::builder()
        .service_name("bench")
        .transport(NoopTransport)
        .build()
        .unwrap();
    let inner = tower::service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"Hello, World!"),
        ))))
    });
    let forms: [(&str, &[(&str, &str)]); 4] = [
        ("no_headers", &[]),
        (
            "b3_multi",
            &[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "1"),
            ],
        ),
        (
            "b3_single",
            &[("b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1")],
        ),
        (
            "traceparent",
            &[(
                "traceparent",
                "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
            )],
        ),
    ];
    let mut g = c.benchmark_group("extract_from_headers");
    for (name, headers) in forms {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("accept", "*/*"),
            ("user-agent", "bench/1.0"),
            ("host", "127.0.0.1"),
        ]
        .iter()
        .chain(headers.iter())
        {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        g.bench_function(format!("lookups/{name}"), |b| {
            b.iter(|| tdist_core::propagation::extract(&tdist_http::HeaderExtractor(&h)))
        });
        g.bench_function(format!("one_pass/{name}"), |b| {
            b.iter(|| tdist_core::propagation::extract(&tdist_http::ScannedHeaders::new(&h)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("server_layer_call");
    let mut cx = Context::from_waker(Waker::noop());
    for (name, headers) in forms {
        let request = || {
            let mut req = Request::get("/hello").body(()).unwrap();
            for (k, v) in headers {
                req.headers_mut()
                    .insert(*k, http::HeaderValue::from_static(v));
            }
            req
        };
        let mut plain = inner;
        g.bench_function(format!("plain/{name}"), |b| {
            b.iter(|| {
                let mut fut = std::pin::pin!(plain.call(request()));
                let out = fut.as_mut().poll(&mut cx);
                drop(std::hint::black_box(out));
            })
        });
        let mut traced = ServerLayer::new(tracer.clone()).layer(inner);
        g.bench_function(format!("traced/{name}"), |b| {
            b.iter(|| {
                let mut fut = std::pin::pin!(traced.call(request()));
                // Dropping the response ends the body and so the span.
                let out = fut.as_mut().poll(&mut cx);
                drop(std::hint::black_box(out));
            })
        });
    }
    g.finish();
    tracer.flush().unwrap();
}

criterion_group!(benches, server, server_interleaved, layer_call);
criterion_main!(benches);
