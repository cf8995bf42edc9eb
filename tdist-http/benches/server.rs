//! Requests per second of a hyper hello-world server over loopback with a keep-alive client,
//! without and with the tdist server layer (sampling on, spans published through the reporter to
//! a no-op transport), in one criterion run.
//!
//! `cargo bench -p tdist-http --bench server`
//!
//! `hyper_hello_interleaved` measures plain and traced servers in alternating chunks of requests,
//! so both see the same machine; it is the figure to read for the throughput ratio.
//! `hyper_hello_peers` does the same with the peers' tower layers beside tdist's, each
//! publishing through its own default pipeline to an exporter that counts:
//! `fastrace-tower`, `opentelemetry-instrumentation-tower` (opentelemetry_sdk) and `tower-http`'s
//! `TraceLayer` with `tracing-opentelemetry`.
//! `hyper_hello_parallel` loads the servers from 16 connections at once, the servers on a
//! two-worker runtime of their own: requests/s under load (`wall`), and the CPU the server side
//! spends per request with the reporter's included (`server_cpu`, the server's capacity), for
//! tdist and the peers.
//!
//! Elsewhere client and server share one current-thread runtime. Two measures per variant:
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
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use rustix::time::ClockId;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tdist_core::export::NoopTransport;
use tdist_core::Tracer;
use tdist_http::ServerLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;
use tracing_subscriber::layer::SubscriberExt;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// A hello-world server: plain, with the tdist server layer, or with a peer's layer.
#[derive(Clone)]
enum Server {
    Plain,
    Tdist(Tracer),
    /// hyper's own `service_fn`, served without a tower adapter.
    PlainHyper,
    /// The tdist layer around hyper's `service_fn`, through hyper's `Service` trait (no tower
    /// adapter, so no clone of the service per request).
    TdistHyper(Tracer),
    /// `fastrace-tower`'s server layer: a root span per request (named after the method, no
    /// tags, `traceparent` only), ended when the response future completes.
    Fastrace,
    /// `opentelemetry-instrumentation-tower` (tracing on, metrics off) over opentelemetry_sdk's
    /// batch span processor: a SERVER span with the HTTP semantic-convention attributes, ended
    /// when the response future completes.
    Otel,
    /// `tower-http`'s `TraceLayer` with `tracing-opentelemetry` over opentelemetry_sdk: the
    /// stack most tower services use (no context extraction in its default form).
    TowerHttp(tracing::Dispatch),
}

/// Serves one connection with `server` until the client closes it.
async fn serve(stream: TcpStream, server: Server) {
    use tracing::instrument::WithSubscriber;
    stream.set_nodelay(true).unwrap();
    let io = TokioIo::new(stream);
    let http = hyper::server::conn::http1::Builder::new();
    let svc = tower::service_fn(hello);
    let _ = match server {
        Server::Plain => {
            http.serve_connection(io, TowerToHyperService::new(svc))
                .await
        }
        Server::Tdist(t) => {
            let svc = ServerLayer::new(t).layer(svc);
            http.serve_connection(io, TowerToHyperService::new(svc))
                .await
        }
        Server::PlainHyper => {
            http.serve_connection(io, hyper::service::service_fn(hello))
                .await
        }
        Server::TdistHyper(t) => {
            let svc = ServerLayer::new(t).layer(hyper::service::service_fn(hello));
            http.serve_connection(io, svc).await
        }
        Server::Fastrace => {
            let svc = fastrace_tower::FastraceServerLayer::default().layer(svc);
            http.serve_connection(io, TowerToHyperService::new(svc))
                .await
        }
        Server::Otel => {
            let svc = opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
                .with_metrics(false)
                .build()
                .unwrap()
                .layer(svc);
            http.serve_connection(io, TowerToHyperService::new(svc))
                .await
        }
        Server::TowerHttp(dispatch) => {
            // The subscriber is current only while this connection is polled.
            let svc = tower_http::trace::TraceLayer::new_for_http().layer(svc);
            http.serve_connection(io, TowerToHyperService::new(svc))
                .with_subscriber(dispatch)
                .await
        }
    };
}

/// A keep-alive client connection to `addr`, driven on the current runtime.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Starts `server` on the current runtime and returns a connected keep-alive client.
async fn setup(server: Server) -> Vec<SendRequest<Empty<Bytes>>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, server).await;
    });
    vec![connect(addr).await]
}

/// Starts `server` on `server_rt` (each connection a task of its own, as a service runs) and
/// opens `connections` keep-alive client connections to it on `client_rt`.
fn setup_parallel(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    server: Server,
    connections: usize,
) -> Vec<SendRequest<Empty<Bytes>>> {
    let listener = server_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    server_rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, server.clone()));
        }
    });
    client_rt.block_on(futures_util::future::join_all(
        (0..connections).map(|_| connect(addr)),
    ))
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

/// `n` requests spread over `connections`, all of them sending at once.
async fn requests_on(
    connections: &mut [SendRequest<Empty<Bytes>>],
    n: u64,
    headers: &[(&str, &str)],
) {
    if let [one] = connections {
        return requests(one, n, headers).await;
    }
    let k = connections.len() as u64;
    futures_util::future::join_all(
        connections
            .iter_mut()
            .zip(0..)
            .map(|(c, i)| requests(c, n / k + u64::from(i < n % k), headers)),
    )
    .await;
}

/// A CPU clock in ns: the whole process (`ProcessCPUTime`, every thread) or the calling thread.
fn cpu_ns(clock: ClockId) -> u64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A request's extra headers.
type Headers<'a> = &'a [(&'a str, &'a str)];

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
    let variants: [(&str, Option<Tracer>, Headers<'_>); 4] = [
        ("plain", None, &[]),
        ("server_layer", Some(tracer.clone()), &[]),
        ("plain_b3_headers", None, &b3),
        ("server_layer_b3_caller", Some(tracer.clone()), &b3),
    ];
    for (name, t, headers) in variants {
        let server = t.map_or(Server::Plain, Server::Tdist);
        let mut sender = rt.block_on(setup(server));
        let sender = &mut sender[..];
        g.bench_function(format!("wall/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    requests_on(sender, iters, headers).await;
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("cpu/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = cpu_ns(ClockId::ProcessCPUTime);
                    requests_on(sender, iters, headers).await;
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

/// Counts the spans a peer's exporter receives.
#[derive(Clone, Debug, Default)]
struct Count(Arc<AtomicU64>);

impl Count {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl fastrace::collector::Reporter for Count {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        self.0.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }
}

impl SpanExporter for Count {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// The peers' pipelines, each with its default batching and an exporter that only counts.
struct Peers {
    fastrace: Count,
    otel: (Count, SdkTracerProvider),
    tower_http: (Count, SdkTracerProvider),
    dispatch: tracing::Dispatch,
}

impl Peers {
    /// The peers' pipelines, installed once for the process (their tracers are global).
    fn get() -> &'static Peers {
        static PEERS: std::sync::OnceLock<Peers> = std::sync::OnceLock::new();
        PEERS.get_or_init(Peers::install)
    }

    fn install() -> Peers {
        let fastrace = Count::default();
        fastrace::set_reporter(fastrace.clone(), fastrace::collector::Config::default());
        let otel = Count::default();
        let otel_provider = SdkTracerProvider::builder()
            .with_batch_exporter(otel.clone())
            .build();
        opentelemetry::global::set_tracer_provider(otel_provider.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tower_http = Count::default();
        let tower_provider = SdkTracerProvider::builder()
            .with_batch_exporter(tower_http.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tower_provider.tracer("bench")));
        Peers {
            fastrace,
            otel: (otel, otel_provider),
            tower_http: (tower_http, tower_provider),
            dispatch: tracing::Dispatch::new(subscriber),
        }
    }

    /// Flushes every peer pipeline and returns the spans each exporter has received so far.
    fn received(&self) -> [(&'static str, u64); 3] {
        fastrace::flush();
        let _ = self.otel.1.force_flush();
        let _ = self.tower_http.1.force_flush();
        [
            (FASTRACE, self.fastrace.get()),
            (OTEL, self.otel.0.get()),
            (TOWER_HTTP, self.tower_http.0.get()),
        ]
    }
}

const PLAIN: &str = "plain";
/// A second plain server, measured like a traced one: its figure is the measurement's own
/// error (connection, buffers and task placement differ between two servers).
const PLAIN_AGAIN: &str = "plain again";
const TDIST: &str = "tdist";
const FASTRACE: &str = "fastrace-tower";
const OTEL: &str = "opentelemetry-instrumentation-tower";
const TOWER_HTTP: &str = "tower-http+tracing-opentelemetry";

/// Plain and traced servers measured in alternation, chunk by chunk, so that all see the
/// same machine: on two shared vCPUs the speed of the guest drifts by 10–30% over seconds,
/// more than a layer costs, and separate sequential runs compare different machines.
/// `servers[0]` is the plain server the others are compared with. Criterion reports the first
/// traced server's (`servers[1]`) time per request; the other servers' chunks, run between
/// its chunks, are timed too, and the ratio of each one's total to the plain server's is
/// printed after each bench. `wall` is elapsed time;
/// `thread_cpu` the runtime thread's CPU time (background threads' work is left out there and
/// shows in the sequential `cpu/*` figures above). Returns the requests sent to each server.
fn interleaved(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    bench: &str,
    clocks: &[&str],
    chunk: u64,
    servers: &mut [(&str, Vec<SendRequest<Empty<Bytes>>>)],
    headers: &[(&str, &str)],
) -> Vec<u64> {
    let mut sent = vec![0u64; servers.len()];
    for clock in clocks {
        let now = || match *clock {
            "wall" => START.elapsed().as_nanos() as u64,
            // Every thread but this one (the client's, in the parallel bench): the server's
            // workers and tdist's reporter.
            "server_cpu" => cpu_ns(ClockId::ProcessCPUTime) - cpu_ns(ClockId::ThreadCPUTime),
            _ => cpu_ns(ClockId::ThreadCPUTime),
        };
        // Totals over every chunk of this bench: each server's ns, requests each.
        let mut server_ns = vec![0u64; servers.len()];
        let mut total = 0u64;
        g.bench_function(format!("{clock}/{bench}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut first_ns = 0u64;
                    let mut done = 0;
                    while done < iters {
                        let n = chunk.min(iters - done);
                        for (i, (_, sender)) in servers.iter_mut().enumerate() {
                            let t = now();
                            requests_on(sender, n, headers).await;
                            let ns = now() - t;
                            server_ns[i] += ns;
                            sent[i] += n;
                            if i == 1 {
                                first_ns += ns;
                            }
                        }
                        total += n;
                        done += n;
                    }
                    Duration::from_nanos(first_ns)
                })
            })
        });
        if total == 0 {
            continue; // filtered out
        }
        let per = |ns: u64| ns as f64 / total as f64 / 1000.0;
        let plain_ns = server_ns[0];
        let mut line = format!("{bench} {clock}: {} {:.2} us", servers[0].0, per(plain_ns));
        for ((name, _), ns) in servers.iter().zip(&server_ns).skip(1) {
            let change = (*ns as f64 / plain_ns as f64 - 1.0) * 100.0;
            line += &format!("; {name} {:.2} us, {change:+.1}%", per(*ns));
        }
        eprintln!("{line} per request ({total} requests each)");
    }
    sent
}

/// The tdist server layer against the plain server, without and with a B3 caller: the
/// throughput figure. Served through `hyper_util`'s `TowerToHyperService` (as tower and axum
/// services are, the service cloned per request) and, for `hyper_service*`, as hyper services
/// (`hyper::service::service_fn`, the layer through hyper's own `Service` trait).
fn server_interleaved(c: &mut Criterion) {
    let (rt, tracer) = runtime_and_tracer();
    let mut g = c.benchmark_group("hyper_hello_interleaved");
    g.throughput(Throughput::Elements(1));
    let forms: [(&str, Headers<'_>, bool); 4] = [
        ("server_layer", &[], false),
        ("server_layer_b3_caller", &B3_CALLER, false),
        ("hyper_service", &[], true),
        ("hyper_service_b3_caller", &B3_CALLER, true),
    ];
    for (bench, headers, hyper_native) in forms {
        let plain = || match hyper_native {
            true => Server::PlainHyper,
            false => Server::Plain,
        };
        let traced = match hyper_native {
            true => Server::TdistHyper(tracer.clone()),
            false => Server::Tdist(tracer.clone()),
        };
        let mut servers = [
            (PLAIN, rt.block_on(setup(plain()))),
            (TDIST, rt.block_on(setup(traced))),
            (PLAIN_AGAIN, rt.block_on(setup(plain()))),
        ];
        interleaved(
            &mut g,
            &rt,
            bench,
            &["wall", "thread_cpu"],
            CHUNK,
            &mut servers,
            headers,
        );
    }
    g.finish();
    let stats = tracer.flush().unwrap();
    eprintln!("tracer stats after the interleaved run: {stats:?}");
    assert_eq!(stats.dropped, 0, "spans dropped: {stats:?}");
}

/// tdist and the peers' layers, each against the plain server, in one interleaved run without
/// incoming headers (the peers do not read B3). Each pipeline exports to an exporter that only
/// counts; the fraction of spans received is printed at the end.
fn server_peers(c: &mut Criterion) {
    let (rt, tracer) = runtime_and_tracer();
    let peers = Peers::get();
    let before = received(&tracer);
    let mut servers = [
        (PLAIN, rt.block_on(setup(Server::Plain))),
        (TDIST, rt.block_on(setup(Server::Tdist(tracer.clone())))),
        (FASTRACE, rt.block_on(setup(Server::Fastrace))),
        (OTEL, rt.block_on(setup(Server::Otel))),
        (
            TOWER_HTTP,
            rt.block_on(setup(Server::TowerHttp(peers.dispatch.clone()))),
        ),
    ];
    let mut g = c.benchmark_group("hyper_hello_peers");
    g.throughput(Throughput::Elements(1));
    let sent = interleaved(&mut g, &rt, "tdist", &["wall"], CHUNK, &mut servers, &[]);
    g.finish();
    report_received(&tracer, before, &sent[1..]);
}

/// The spans tdist's and each peer's exporter have received so far, after a flush.
fn received(tracer: &Tracer) -> [(&'static str, u64); 4] {
    let stats = tracer.flush().unwrap();
    assert_eq!(stats.dropped, 0, "spans dropped: {stats:?}");
    let [a, b, c] = Peers::get().received();
    [(TDIST, stats.sent), a, b, c]
}

/// Prints the fraction of the spans sent to each of tdist and the peers (in the order of
/// `sent`) that its exporter received since `before`.
fn report_received(tracer: &Tracer, before: [(&'static str, u64); 4], sent: &[u64]) {
    let after = received(tracer);
    // Nothing was sent when the bench was filtered out.
    for (((name, after), (_, before)), sent) in after.iter().zip(before).zip(sent) {
        if *sent > 0 {
            let got = after - before;
            eprintln!(
                "{name}: {got} of {sent} spans received ({:.2}% lost)",
                (1.0 - got as f64 / *sent as f64) * 100.0
            );
        }
    }
}

/// Connections the parallel client keeps open to each server.
const CONNECTIONS: usize = 16;

/// Requests per chunk in the parallel measurement (~20 ms of requests): long enough that the
/// reporter, woken every 512 spans, does most of its work on a chunk's spans while the chunk
/// runs rather than during the next server's.
const PARALLEL_CHUNK: u64 = 2048;

/// Throughput under load: each server runs on a two-worker multi-thread runtime (a task per
/// connection, as a service is deployed), and a client on its own thread keeps `CONNECTIONS`
/// keep-alive connections busy at once, so the server's workers, the client and tdist's
/// reporter all compete for the machine's cores. Plain and traced servers are loaded in
/// alternating chunks as in `hyper_hello_interleaved`; `wall` per request is the inverse of
/// requests/s. On two cores the client (a hyper client, as costly per request as the server)
/// is the limit, with some slack left on the server's side, so `wall` shows what a layer's
/// CPU, its background threads' included, takes from a saturated machine; `server_cpu` (the
/// CPU of every thread but the client's, per request) is the server's capacity, what a server
/// loaded from elsewhere would lose. tdist's reporter runs on its own thread and is counted
/// there; its CPU per span is printed too.
fn server_parallel(c: &mut Criterion) {
    let (client_rt, tracer) = runtime_and_tracer();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = |server| setup_parallel(&server_rt, &client_rt, server, CONNECTIONS);
    let reporter_before = thread_cpu_ns("tdist-reporter");
    let mut g = c.benchmark_group("hyper_hello_parallel");
    g.throughput(Throughput::Elements(1));
    for (bench, headers) in [
        ("server_layer", &[][..]),
        ("server_layer_b3_caller", &B3_CALLER),
    ] {
        let mut servers = [
            (PLAIN, start(Server::Plain)),
            (TDIST, start(Server::Tdist(tracer.clone()))),
            (PLAIN_AGAIN, start(Server::Plain)),
        ];
        interleaved(
            &mut g,
            &client_rt,
            bench,
            &["wall", "server_cpu"],
            PARALLEL_CHUNK,
            &mut servers,
            headers,
        );
    }
    let stats = tracer.flush().unwrap();
    if stats.sent > 0 {
        eprintln!(
            "reporter thread: {:.0} ns of CPU per span",
            (thread_cpu_ns("tdist-reporter") - reporter_before) as f64 / stats.sent as f64
        );
    }
    // The peers' layers beside tdist's, without incoming headers (the peers do not read B3).
    let peers = Peers::get();
    let before = received(&tracer);
    let mut servers = [
        (PLAIN, start(Server::Plain)),
        (TDIST, start(Server::Tdist(tracer.clone()))),
        (FASTRACE, start(Server::Fastrace)),
        (OTEL, start(Server::Otel)),
        (TOWER_HTTP, start(Server::TowerHttp(peers.dispatch.clone()))),
        (PLAIN_AGAIN, start(Server::Plain)),
    ];
    let sent = interleaved(
        &mut g,
        &client_rt,
        "peers",
        &["wall", "server_cpu"],
        PARALLEL_CHUNK,
        &mut servers,
        &[],
    );
    g.finish();
    report_received(&tracer, before, &sent[1..5]);
}

/// The CPU time so far of this process's threads named `name`, in ns, from `/proc` (Linux;
/// 0 elsewhere).
fn thread_cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            // The first field of `schedstat` is the time spent on a CPU, in ns.
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
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

criterion_group!(
    benches,
    server,
    server_interleaved,
    server_parallel,
    server_peers,
    layer_call
);
criterion_main!(benches);
