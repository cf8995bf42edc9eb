//! The server layer's cost per request in instructions, which unlike time does not depend on
//! what else the machine is doing. Requests are built and handled in memory (no sockets) and
//! the response body is read to its end, so each traced request starts, fills and finishes a
//! span and hands it to the reporter (a no-op transport).
//!
//! ```text
//! cargo bench -p tdist-http --bench layer_instructions --no-run
//! valgrind --tool=callgrind --toggle-collect=layer_instructions::run \
//!     target/release/deps/layer_instructions-HASH traced 20000
//! ```
//!
//! The instructions per request are callgrind's total divided by the count given. Variants:
//! `plain` (no layer), `traced`, `unsampled` (`Sampler::never()`), each with `-route` for a
//! request whose route a router matched (a `Route` extension, as axum's `MatchedPath`) and
//! `-b3` for a B3 caller (`X-B3-TraceId`, `X-B3-SpanId`, and `X-B3-Sampled: 1`, or `0` for
//! `unsampled`) or `-w3c` for a W3C caller (`traceparent`, flags `01`, or `00` for `unsampled`).
//! Run by `cargo bench` without a variant, it times each variant briefly instead.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tdist_core::export::NoopTransport;
use tdist_core::{Sampler, Tracer};
use tdist_http::{Route, ServerLayer};
use tower::Layer;
use tower_service::Service;

/// A request's extra headers.
type Headers = &'static [(&'static str, &'static str)];

const B3_CALLER: [Headers; 2] = [
    &[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ],
    &[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "0"),
    ],
];

const W3C_CALLER: [Headers; 2] = [
    &[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )],
    &[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )],
];

fn hello(_req: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    )))))
}

/// `n` requests through `svc`, each answered and its body read to the end; `headers` are the
/// caller's tracing headers; `route`, whether a router matched a route (as axum's
/// `MatchedPath` or a `Route` extension tells the layer).
#[inline(never)]
fn run<S, B>(svc: &mut S, n: u64, headers: Headers, route: bool)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let mut req = Request::get("/hello").header("host", "127.0.0.1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        if route {
            req.extensions_mut()
                .insert(Route(Cow::Borrowed("/users/{id}")));
        }
        let mut fut = pin!(svc.call(req));
        let Poll::Ready(Ok(response)) = fut.as_mut().poll(&mut cx) else {
            panic!("the hello service answers at once");
        };
        let mut body = pin!(response.into_body());
        while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
            drop(std::hint::black_box(frame));
        }
    }
}

/// Requests between two flushes of the reporter in `variant`.
const CHUNK: u64 = 256;

/// Runs `n` requests of variant `name` in chunks, flushing the reporter after each (outside
/// `run`, so not counted): under valgrind the reporter thread may otherwise not get to run
/// during the whole measurement, and the steady state of a service, where the worker drains
/// the thread's ring and gives the emptied record boxes back, would not be what is measured.
fn variant(name: &str, n: u64) {
    let unsampled = name.starts_with("unsampled");
    let headers = match name.rsplit('-').next() {
        Some("b3") => B3_CALLER[usize::from(unsampled)],
        Some("w3c") => W3C_CALLER[usize::from(unsampled)],
        _ => &[],
    };
    let route = name.ends_with("-route");
    let sampler = if unsampled {
        Sampler::never()
    } else {
        Sampler::always()
    };
    let tracer = Tracer::builder()
        .service_name("bench")
        .transport(NoopTransport)
        .sampler(sampler)
        .configure_reporter(|r| r.schedule_delay = Duration::from_millis(100))
        .build()
        .unwrap();
    let mut plain = tower::service_fn(hello);
    let mut traced = ServerLayer::new(tracer.clone()).layer(tower::service_fn(hello));
    let mut done = 0;
    while done < n {
        let chunk = CHUNK.min(n - done);
        if name.starts_with("plain") {
            run(&mut plain, chunk, headers, route);
        } else {
            run(&mut traced, chunk, headers, route);
        }
        tracer.flush().unwrap();
        done += chunk;
    }
    let stats = tracer.flush().unwrap();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [name, n] if !name.starts_with('-') => variant(name, n.parse().expect("a request count")),
        _ => {
            // `cargo bench` passes `--bench`: a short timing of every variant.
            let names = ["plain", "traced", "unsampled"];
            for name in names
                .iter()
                .flat_map(|n| ["", "-b3", "-w3c", "-route"].map(|v| format!("{n}{v}")))
            {
                let n = 200_000;
                let start = Instant::now();
                variant(&name, n);
                let per = start.elapsed().as_nanos() as f64 / n as f64;
                println!("layer_instructions/{name}: {per:.0} ns per request (in memory)");
            }
        }
    }
}
