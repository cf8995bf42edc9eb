//! Server and client layers over real sockets on 127.0.0.1, with hyper 1 (hyper-util).

mod support;

use bytes::Bytes;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::convert::Infallible;
use support::{get, one, plain_client, serve, serve_hyper, spans, tag, tracer};
use tdist_core::export::InMemory;
use tdist_core::{FutureExt, Kind, SpanId, TraceId, Tracer};
use tdist_http::{ClientLayer, ServerLayer};
use tower::{Layer, Service};

/// A traced hello-world server whose handler also does work in a spawned task.
async fn hello_server(t: &Tracer) -> std::net::SocketAddr {
    let t2 = t.clone();
    let handler = tower::service_fn(move |_req: Request<Incoming>| {
        let t = t2.clone();
        async move {
            tdist_core::spawn(async move {
                let _lookup = t.span("lookup");
                tokio::task::yield_now().await;
            })
            .await
            .unwrap();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
        }
    });
    serve(ServerLayer::new(t.clone()).layer(handler)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_server_share_trace_and_span_id() {
    let sink = InMemory::new();
    let backend = tracer(&sink, "backend");
    let frontend = backend.with_service_name("frontend");
    let addr = hello_server(&backend).await;
    let mut client = ClientLayer::new(frontend.clone()).layer(plain_client());

    let root = frontend.root_span("checkout");
    let root_id = root.context().span_id();
    let body = async {
        let req = Request::get(format!("http://{addr}/orders/7"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.call(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap().to_bytes()
    }
    .in_span(root)
    .await;
    assert_eq!(&body[..], b"hello");

    let all = spans(&sink, 4).await;
    let client_span = one(&all, Kind::Client);
    let server_span = one(&all, Kind::Server);
    let lookup = all.iter().find(|s| s.name() == "lookup").unwrap();

    assert_eq!(client_span.trace_id(), server_span.trace_id());
    assert_eq!(client_span.id(), server_span.id(), "B3 shares the span id");
    assert!(server_span.shared() && !client_span.shared());
    assert_eq!(client_span.parent_id(), Some(root_id));
    assert_eq!(server_span.parent_id(), Some(root_id));
    assert_eq!(lookup.trace_id(), server_span.trace_id());
    assert_eq!(
        lookup.parent_id(),
        Some(server_span.id()),
        "spawned work joins"
    );
    assert_eq!(server_span.local_endpoint().service_name(), Some("backend"));
    assert_eq!(
        client_span.local_endpoint().service_name(),
        Some("frontend")
    );
    for s in [&client_span, &server_span] {
        assert_eq!(tag(s, "http.method").as_deref(), Some("GET"));
        assert_eq!(tag(s, "http.path").as_deref(), Some("/orders/7"));
        assert_eq!(tag(s, "http.status_code").as_deref(), Some("200"));
        assert_eq!(tag(s, "error"), None);
    }
    let remote = client_span.remote_endpoint().unwrap();
    assert_eq!(remote.ipv4(), Some(std::net::Ipv4Addr::LOCALHOST));
    assert_eq!(remote.port(), Some(addr.port()));
    assert!(sink.orphans().is_empty(), "{:?}", sink.orphans());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_headers_starts_a_new_trace() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let addr = hello_server(&t).await;
    let (status, body) = get(addr, "/", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    let server_span = one(&spans(&sink, 2).await, Kind::Server);
    assert_eq!(server_span.parent_id(), None);
    assert!(!server_span.shared());
    assert_eq!(server_span.name().to_ascii_lowercase(), "get");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_only_caller_is_joined_as_child() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let addr = hello_server(&t).await;
    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _) = get(addr, "/", &[("TraceParent", tp)]).await;
    assert_eq!(status, StatusCode::OK);
    let s = one(&spans(&sink, 2).await, Kind::Server);
    assert_eq!(
        s.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert_eq!(
        s.parent_id(),
        Some(SpanId::from_hex("00f067aa0ba902b7").unwrap())
    );
    assert_ne!(s.id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
    assert!(!s.shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_single_and_sampling_only_callers() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let addr = hello_server(&t).await;
    let b3 = b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90";
    assert_eq!(get(addr, "/", &[("B3", b3)]).await.0, StatusCode::OK);
    let s = one(&spans(&sink, 2).await, Kind::Server);
    assert_eq!(s.id(), SpanId::from_hex("e457b5a2e4d86bd1").unwrap());
    assert_eq!(
        s.parent_id(),
        Some(SpanId::from_hex("05e3ac9a4f6e3b90").unwrap())
    );
    assert!(s.shared() && s.debug());

    // `b3: 0` (what span uploads carry): the request is served, nothing is recorded.
    sink.clear();
    assert_eq!(get(addr, "/", &[("b3", b"0")]).await.0, StatusCode::OK);
    t.flush().unwrap();
    assert!(sink.spans().is_empty(), "{:?}", sink.spans());
}

/// Every malformed form from the reference (B3 single, B3 multi, W3C): the request succeeds and
/// the server starts a new trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_headers_start_a_new_trace_and_the_request_succeeds() {
    const T: &str = "463ac35c9f6413ad";
    const S: &str = "a2fb4a1d1a96d312";
    let long = format!("{T}{T}-{S}-1-{S}-{}", "a".repeat(600));
    let cases: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![("b3", b"".to_vec())],
        vec![("b3", b"-".to_vec())],
        vec![("b3", b"x".to_vec())],
        vec![("b3", long.clone().into_bytes())],
        vec![("b3", b"463AC35C9F6413AD-A2FB4A1D1A96D312-1".to_vec())],
        vec![("b3", format!("{T}-{S}-").into_bytes())],
        vec![("b3", format!("{T}-{S}--{S}").into_bytes())],
        vec![("b3", format!("-{S}").into_bytes())],
        vec![("b3", format!("{T}-{S}-1-{S}-1").into_bytes())],
        vec![("b3", format!("{T}-{S}-x").into_bytes())],
        vec![("b3", format!("0000000000000000-{S}-1").into_bytes())],
        vec![("b3", format!("{T}-0000000000000000").into_bytes())],
        vec![("b3", format!("{T}-{S}-1-00").into_bytes())],
        vec![("b3", format!("{}-{S}", "4".repeat(17)).into_bytes())],
        vec![("b3", b"\x80\xff-caf\xe9".to_vec())],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", S.into()),
            ("x-b3-sampled", b"".to_vec()),
        ],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", S.into()),
            ("x-b3-sampled", b"d".to_vec()),
        ],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", S.into()),
            ("x-b3-sampled", b"yes".to_vec()),
        ],
        vec![
            ("x-b3-traceid", T.to_uppercase().into_bytes()),
            ("x-b3-spanid", S.into()),
        ],
        vec![
            ("x-b3-traceid", b"0000000000000000".to_vec()),
            ("x-b3-spanid", S.into()),
        ],
        vec![
            ("x-b3-traceid", "a".repeat(33).into_bytes()),
            ("x-b3-spanid", S.into()),
        ],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", b"0000000000000000".to_vec()),
        ],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", "b".repeat(17).into_bytes()),
        ],
        vec![("x-b3-traceid", T.into())],
        vec![("x-b3-spanid", S.into())],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", S.into()),
            ("x-b3-parentspanid", b"-".to_vec()),
        ],
        vec![
            ("x-b3-traceid", T.into()),
            ("x-b3-spanid", S.into()),
            ("x-b3-parentspanid", b"0000000000000000".to_vec()),
        ],
        vec![
            ("x-b3-traceid", b"g63ac35c9f6413ad".to_vec()),
            ("x-b3-spanid", S.into()),
        ],
        vec![("traceparent", format!("ff-{T}{T}-{S}-01").into_bytes())],
        vec![("traceparent", format!("00-{T}{T}-{S}-01.").into_bytes())],
        vec![(
            "traceparent",
            format!("00-{T}{T}-{S}-01-what-the-future-will-be-like").into_bytes(),
        )],
        vec![("traceparent", format!("0-{T}{T}-{S}-01").into_bytes())],
        vec![("traceparent", format!("000-{T}{T}-{S}-01").into_bytes())],
        vec![("traceparent", format!("00-{T}-{S}-01").into_bytes())],
        vec![(
            "traceparent",
            format!("00-{}-{S}-01", "0".repeat(32)).into_bytes(),
        )],
        vec![(
            "traceparent",
            format!("00-{T}{T}-0000000000000000-01").into_bytes(),
        )],
        vec![(
            "traceparent",
            format!("00-{}-{S}-01", T.repeat(2).to_uppercase()).into_bytes(),
        )],
        vec![("traceparent", format!("00-{T}{T}-{S}-1").into_bytes())],
        vec![("traceparent", format!("00-{T}{T}-{S}-0g").into_bytes())],
        vec![("traceparent", format!("01-{T}{T}-{S}").into_bytes())],
        vec![
            ("traceparent", format!("00-{T}{T}-{S}-01").into_bytes()),
            ("traceparent", format!("00-{T}{T}-{S}-01").into_bytes()),
        ],
        vec![("trace-parent", format!("00-{T}{T}-{S}-01").into_bytes())],
        vec![("traceparent", long.into_bytes())],
    ];
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let addr = hello_server(&t).await;
    for (i, case) in cases.iter().enumerate() {
        sink.clear();
        let headers: Vec<(&str, &[u8])> = case.iter().map(|(k, v)| (*k, &v[..])).collect();
        let (status, body) = get(addr, "/", &headers).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "hello"),
            "case {i}"
        );
        let s = one(&spans(&sink, 2).await, Kind::Server);
        assert_eq!(s.parent_id(), None, "case {i}: {case:?}");
        assert!(!s.shared(), "case {i}");
        let trace = s.trace_id().to_string();
        assert!(
            !trace.contains(T) && !trace.contains("aaaaaaaaaaaaaaaa"),
            "case {i}"
        );
        assert!(s.id() != SpanId::from_hex(S).unwrap(), "case {i}");
    }
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database unavailable")
    }
}
impl std::error::Error for Boom {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_errors_and_5xx_are_tagged() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let handler = tower::service_fn(|req: Request<Incoming>| async move {
        match req.uri().path() {
            "/fail" => Err(Boom),
            "/503" => Ok(Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .unwrap()),
            _ => Ok(Response::new(Full::new(Bytes::from_static(b"ok")))),
        }
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;

    // hyper aborts the connection when the service fails; the client sees an error.
    let req = Request::get(format!("http://{addr}/fail"))
        .body(Empty::new())
        .unwrap();
    assert!(plain_client().request(req).await.is_err());
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(tag(&s, "error").as_deref(), Some("database unavailable"));
    assert_eq!(tag(&s, "http.status_code"), None);

    sink.clear();
    let mut client = ClientLayer::new(t.clone()).layer(plain_client());
    let req = Request::get(format!("http://{addr}/503"))
        .body(Empty::new())
        .unwrap();
    let resp = client.call(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    drop(resp);
    let all = spans(&sink, 2).await;
    for kind in [Kind::Client, Kind::Server] {
        let s = one(&all, kind);
        assert_eq!(tag(&s, "error").as_deref(), Some("503"), "{kind:?}");
        assert_eq!(tag(&s, "http.status_code").as_deref(), Some("503"));
    }

    // A client whose connection fails: the CLIENT span carries the error.
    sink.clear();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let req = Request::get(format!("http://{closed}/"))
        .body(Empty::new())
        .unwrap();
    assert!(client.call(req).await.is_err());
    let s = one(&spans(&sink, 1).await, Kind::Client);
    assert!(tag(&s, "error").is_some_and(|e| !e.is_empty()));
}

/// A handler that panics: the runtime catches the panic and drops the request's future, and
/// the SERVER span says the service panicked instead of reading as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_span() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let handler = tower::service_fn(|req: Request<Incoming>| async move {
        if req.uri().path() == "/panic" {
            panic!("handler bug");
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;
    let req = Request::get(format!("http://{addr}/panic"))
        .body(Empty::new())
        .unwrap();
    // The connection is dropped with the task: the client sees an error.
    assert!(plain_client().request(req).await.is_err());
    let s = one(&spans(&sink, 1).await, Kind::Server);
    let error = tag(&s, "error").unwrap_or_default();
    assert_eq!(error, "the service panicked before its response");
    // A request the handler answers is not marked.
    sink.clear();
    assert_eq!(get(addr, "/ok", &[]).await.0, StatusCode::OK);
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(tag(&s, "error"), None);
}

/// A body that sends one frame and then panics.
struct PanickingBody {
    sent: bool,
}

impl http_body::Body for PanickingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.sent {
            panic!("body bug");
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"part",
        )))))
    }
}

/// A response body that panics while streaming: the runtime drops the connection later, and
/// the SERVER span says the body panicked instead of reading as a client that went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_body_fails_its_span() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let handler = tower::service_fn(|req: Request<Incoming>| async move {
        let body = if req.uri().path() == "/panic" {
            http_body_util::Either::Left(PanickingBody { sent: false })
        } else {
            http_body_util::Either::Right(Full::new(Bytes::from_static(b"ok")))
        };
        Ok::<_, Infallible>(Response::new(body))
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;
    let req = Request::get(format!("http://{addr}/panic"))
        .body(Empty::new())
        .unwrap();
    // hyper writes the headers with the first frame, so the client sees either an error or
    // headers whose body breaks off with the connection.
    if let Ok(response) = plain_client().request(req).await {
        assert!(response.into_body().collect().await.is_err());
    }
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(
        tag(&s, "error").as_deref(),
        Some("the response body panicked")
    );
    assert_eq!(tag(&s, "http.status_code").as_deref(), Some("200"));
    // A body that ends normally is not marked.
    sink.clear();
    assert_eq!(get(addr, "/ok", &[]).await.0, StatusCode::OK);
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(tag(&s, "error"), None);
}

/// The SERVER span stays open while the response body streams, and ends with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_span_ends_when_the_body_ends() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let handler = tower::service_fn(move |_req: Request<Incoming>| {
        let release = release_rx.lock().unwrap().take();
        async move {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                tx.send_data(Bytes::from_static(b"first ")).await.unwrap();
                if let Some(r) = release {
                    let _ = r.await;
                }
                tx.send_data(Bytes::from_static(b"last")).await.unwrap();
            });
            Ok::<_, Infallible>(Response::new(body))
        }
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;
    let req = Request::get(format!("http://{addr}/stream"))
        .body(Empty::new())
        .unwrap();
    let mut body = plain_client().request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");

    // Headers and a first chunk are out, the body is not finished: no span yet.
    let flushed = tokio::task::spawn_blocking({
        let t = t.clone();
        move || t.flush()
    });
    flushed.await.unwrap().unwrap();
    assert!(
        sink.spans().is_empty(),
        "span ended before its body: {:?}",
        sink.spans()
    );

    release_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"last");
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(tag(&s, "http.status_code").as_deref(), Some("200"));
}

/// HTTP/2 callers (the transport gRPC and tonic use) are traced the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_callers_are_joined() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let addr = hello_server(&t).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{addr}/pkg.Service/Method"))
        .header("b3", "463ac35c9f6413ad-a2fb4a1d1a96d312-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    resp.into_body().collect().await.unwrap();
    let s = one(&spans(&sink, 2).await, Kind::Server);
    assert_eq!(s.id(), SpanId::from_hex("a2fb4a1d1a96d312").unwrap());
    assert!(s.shared());
    assert_eq!(tag(&s, "http.method").as_deref(), Some("POST"));
}

/// A hyper server serves the layer around a hyper `service_fn` directly, through hyper's own
/// `Service` trait (no tower adapter): the caller is joined, the handler runs in the span, and
/// the span is tagged and ends with the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_services_are_served_without_a_tower_adapter() {
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let handler = hyper::service::service_fn(|_req: Request<Incoming>| async {
        let current = tdist_core::current().map(|c| c.span_id().to_string());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
            current.unwrap_or_default(),
        ))))
    });
    let addr = serve_hyper(ServerLayer::new(t.clone()).layer(handler)).await;

    let headers: [(&str, &[u8]); 3] = [
        ("X-B3-TraceId", b"463ac35c9f6413ad48485a3953bb6124"),
        ("X-B3-SpanId", b"a2fb4a1d1a96d312"),
        ("X-B3-Sampled", b"1"),
    ];
    let (status, body) = get(addr, "/orders/7", &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body, "a2fb4a1d1a96d312",
        "the handler ran in the joined span"
    );
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(
        s.trace_id(),
        TraceId::from_hex("463ac35c9f6413ad48485a3953bb6124").unwrap()
    );
    assert_eq!(s.id(), SpanId::from_hex("a2fb4a1d1a96d312").unwrap());
    assert!(s.shared());
    assert_eq!(s.name(), "GET");
    assert_eq!(tag(&s, "http.path").as_deref(), Some("/orders/7"));
    assert_eq!(tag(&s, "http.status_code").as_deref(), Some("200"));

    // Without headers: a new trace, same handling.
    sink.clear();
    assert_eq!(get(addr, "/", &[]).await.0, StatusCode::OK);
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(s.parent_id(), None);
    assert!(!s.shared());
}

/// A client that is not a tower service (reqwest) carries the trace with `tdist_http::inject`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_carries_the_trace_through_inject() {
    let sink = InMemory::new();
    let backend = tracer(&sink, "backend");
    let frontend = backend.with_service_name("frontend");
    let addr = hello_server(&backend).await;

    let mut call = frontend.span("GET");
    call.set_kind(Kind::Client);
    let mut headers = http::HeaderMap::new();
    tdist_http::inject(&frontend, &call.context(), &mut headers);
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/stock"))
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "hello");
    call.finish();

    let all = spans(&sink, 3).await;
    let (c, s) = (one(&all, Kind::Client), one(&all, Kind::Server));
    assert_eq!((s.trace_id(), s.id()), (c.trace_id(), c.id()));
    assert!(s.shared());
    assert_eq!(tag(&s, "http.path").as_deref(), Some("/stock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_form_clients_name_the_server_from_host_or_as_configured() {
    let sink = InMemory::new();
    let backend = tracer(&sink, "backend");
    let frontend = backend.with_service_name("frontend");
    let addr = hello_server(&backend).await;
    // hyper's connection-level client sends `GET /path` with a `Host` header: the URI the
    // layer sees has no authority.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
    let connection = tower::service_fn(move |req: Request<Empty<Bytes>>| {
        let sender = sender.clone();
        async move { sender.lock().await.send_request(req).await }
    });
    let send = |layer: ClientLayer| {
        let mut client = layer.layer(connection.clone());
        async move {
            let req = Request::get("/stock")
                .header("host", addr.to_string())
                .body(Empty::new())
                .unwrap();
            let resp = client.call(req).await.unwrap();
            resp.into_body().collect().await.unwrap();
        }
    };

    send(ClientLayer::new(frontend.clone())).await;
    let c = one(&spans(&sink, 3).await, Kind::Client);
    let remote = c.remote_endpoint().expect("a remote endpoint from Host");
    assert_eq!(remote.ipv4(), Some(std::net::Ipv4Addr::LOCALHOST));
    assert_eq!(remote.port(), Some(addr.port()));
    assert_eq!(remote.service_name(), None);
    assert_eq!(tag(&c, "http.path").as_deref(), Some("/stock"));

    // A configured name goes beside the address from the request (lower-cased, as Zipkin
    // stores service names).
    sink.clear();
    send(ClientLayer::new(frontend.clone()).remote_service_name("Inventory")).await;
    let c = one(&spans(&sink, 3).await, Kind::Client);
    let remote = c.remote_endpoint().unwrap();
    assert_eq!(remote.service_name(), Some("inventory"));
    assert_eq!(remote.port(), Some(addr.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_rules_pick_requests_by_path_and_method() {
    use tdist_core::{Sampler, SamplingState};
    use tdist_http::HttpRule;

    // The handler reports the decision its request runs under.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        tower::service_fn(move |_req: Request<Incoming>| {
            let sampling = tdist_core::current().map(|c| c.sampling());
            seen.lock().unwrap().push(sampling);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        })
    };
    let decisions = |sink: &InMemory, t: &Tracer| {
        t.flush().unwrap();
        let names: Vec<String> = sink
            .spans()
            .iter()
            .map(|s| tag(s, "http.path").unwrap())
            .collect();
        sink.clear();
        (names, std::mem::take(&mut *seen.lock().unwrap()))
    };

    // Everything traced but health checks, unless the caller sampled the trace.
    let sink = InMemory::new();
    let t = tracer(&sink, "backend");
    let layer =
        ServerLayer::new(t.clone()).sample(HttpRule::path_prefix("/health"), Sampler::never());
    let addr = serve(layer.layer(handler.clone())).await;
    assert_eq!(get(addr, "/health", &[]).await.0, StatusCode::OK);
    assert_eq!(get(addr, "/healthz/ready", &[]).await.0, StatusCode::OK);
    assert_eq!(get(addr, "/orders", &[]).await.0, StatusCode::OK);
    let sampled_caller: &[(&str, &[u8])] = &[
        ("x-b3-traceid", b"463ac35c9f6413ad"),
        ("x-b3-spanid", b"a2fb4a1d1a96d312"),
        ("x-b3-sampled", b"1"),
    ];
    assert_eq!(get(addr, "/health", sampled_caller).await.0, StatusCode::OK);
    let (paths, seen_here) = decisions(&sink, &t);
    assert_eq!(paths, ["/orders", "/health"]);
    let deny = Some(SamplingState::Deny);
    let accept = Some(SamplingState::Accept);
    // Unsampled requests still run inside a (not recorded) context that propagates.
    assert_eq!(seen_here, [deny, deny, accept, accept]);

    // Nothing traced but writes to the API: the first rule that matches decides.
    let sink = InMemory::new();
    let t = Tracer::builder()
        .service_name("backend")
        .transport(sink.clone())
        .sampler(Sampler::never())
        .build()
        .unwrap();
    let layer = ServerLayer::new(t.clone())
        .sample(HttpRule::path_prefix("/api/internal"), Sampler::never())
        .sample(
            HttpRule::path_prefix("/api/").method(http::Method::POST),
            Sampler::always(),
        );
    let addr = serve(layer.layer(handler)).await;
    for (method, path) in [
        ("POST", "/api/orders"),
        ("GET", "/api/orders"),
        ("POST", "/api/internal/sync"),
        ("POST", "/other"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = plain_client().request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    let (paths, seen_here) = decisions(&sink, &t);
    assert_eq!(paths, ["/api/orders"]);
    assert_eq!(seen_here, [accept, deny, deny, deny]);
}
