//! The Zipkin HTTP transport against collectors on 127.0.0.1: a recording one (valid v2 JSON,
//! headers, gzip, proto3), one that answers 503 then 202, one that answers 400, and one that
//! accepts connections and never answers.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use serde_json::Value;
use std::convert::Infallible;
use std::io::Read;
use std::time::Duration;
use support::{plain_client, serve, tracer_to, wait_until, Collector};
use tdist_core::{Endpoint, Kind};
use tdist_http::zipkin::{Encoding, ZipkinTransport};
use tdist_http::{ClientLayer, ServerLayer};
use tower::{Layer, Service};

fn endpoint(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/api/v2/spans")
}

fn is_lower_hex(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// Checks one span against the Zipkin v2 model (zipkin2-api.yaml).
fn check_span(span: &Value) {
    let o = span.as_object().expect("span is an object");
    assert!(
        is_lower_hex(o["traceId"].as_str().unwrap(), &[16, 32]),
        "{span}"
    );
    assert!(is_lower_hex(o["id"].as_str().unwrap(), &[16]), "{span}");
    if let Some(p) = o.get("parentId") {
        assert!(is_lower_hex(p.as_str().unwrap(), &[16]), "{span}");
    }
    if let Some(k) = o.get("kind") {
        assert!(["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].contains(&k.as_str().unwrap()));
    }
    assert!(
        o["timestamp"].as_u64().unwrap() > 1_500_000_000_000_000,
        "epoch µs: {span}"
    );
    assert!(o["duration"].as_u64().unwrap() >= 1, "{span}");
    let local = o["localEndpoint"]
        .as_object()
        .expect("localEndpoint present");
    assert_eq!(local["serviceName"], "shop");
    if let Some(r) = o.get("remoteEndpoint") {
        let port = r["port"].as_u64().unwrap();
        assert!((1..=65535).contains(&port));
    }
    if let Some(tags) = o.get("tags") {
        for (k, v) in tags.as_object().unwrap() {
            assert!(v.is_string(), "tag {k} is not a string: {span}");
        }
    }
    for key in o.keys() {
        let known = [
            "traceId",
            "parentId",
            "id",
            "kind",
            "name",
            "timestamp",
            "duration",
            "localEndpoint",
            "remoteEndpoint",
            "annotations",
            "tags",
            "debug",
            "shared",
        ];
        assert!(known.contains(&key.as_str()), "unknown field {key}");
    }
}

/// Real traffic through both layers, published to a recording collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_valid_zipkin_v2_json() {
    let (collector, caddr) = Collector::start(&[]).await;
    let t = tracer_to(
        ZipkinTransport::builder(endpoint(caddr)).build().unwrap(),
        3,
    );
    let handler = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;
    let mut client = ClientLayer::new(t.clone()).layer(plain_client());
    for _ in 0..3 {
        let req = Request::get(format!("http://{addr}/x"))
            .body(Empty::new())
            .unwrap();
        let resp = client.call(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
    }
    let mut local = t.root_span("Annotated Work");
    local.annotate("started");
    local.tag("items", 3);
    local.set_remote_endpoint(Endpoint::service("db").with_port(5432));
    local.finish();

    let t2 = t.clone();
    let ok = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), || {
            let _ = t2.flush();
            t2.stats().sent == 7
        })
    });
    assert!(ok.await.unwrap(), "stats: {:?}", t.stats());
    let received = collector.received.lock().unwrap().clone();
    let mut all = Vec::new();
    for r in &received {
        assert_eq!(r.path, "/api/v2/spans");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["b3"], "0", "uploads must not be traced");
        assert!(r.headers.get("x-b3-traceid").is_none() && r.headers.get("traceparent").is_none());
        let v: Value = serde_json::from_slice(&r.body).expect("valid JSON");
        all.extend(v.as_array().expect("a JSON list").iter().cloned());
    }
    assert_eq!(all.len(), 7);
    all.iter().for_each(check_span);
    let kinds = |k: &str| all.iter().filter(|s| s["kind"] == k).count();
    assert_eq!((kinds("CLIENT"), kinds("SERVER")), (3, 3));
    let server = all.iter().find(|s| s["kind"] == "SERVER").unwrap();
    assert_eq!(server["shared"], true);
    assert_eq!(server["tags"]["http.status_code"], "200");
    let annotated = all.iter().find(|s| s.get("annotations").is_some()).unwrap();
    assert_eq!(annotated["annotations"][0]["value"], "started");
    assert_eq!(annotated["tags"]["items"], "3");
    assert_eq!(annotated["remoteEndpoint"]["serviceName"], "db");
}

#[test]
fn gzip_and_proto3_bodies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    let gz = ZipkinTransport::builder(endpoint(caddr))
        .gzip(true)
        .build()
        .unwrap();
    let t = tracer_to(gz, 3);
    let mut s = t.root_span("zipped");
    s.set_kind(Kind::Server);
    s.finish();
    t.flush().unwrap();
    let proto = ZipkinTransport::builder(endpoint(caddr))
        .encoding(Encoding::Proto3)
        .build()
        .unwrap();
    let t = tracer_to(proto, 3);
    t.root_span("proto").finish();
    t.flush().unwrap();

    let r = collector.received.lock().unwrap().clone();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].headers["content-encoding"], "gzip");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&r[0].body[..])
        .read_to_string(&mut json)
        .unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    check_span(&v[0]);
    assert_eq!(v[0]["name"], "zipped");
    assert_eq!(r[1].headers["content-type"], "application/x-protobuf");
    assert_eq!(r[1].headers["b3"], "0");
    assert_eq!(
        (r[1].body[0], r[1].body[1] != 0),
        (0x0A, true),
        "ListOfSpans"
    );
}

#[test]
fn retries_503_and_429_and_gives_up_on_400() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[503, 503]));
    let t = tracer_to(
        ZipkinTransport::builder(endpoint(caddr)).build().unwrap(),
        3,
    );
    t.root_span("retried").finish();
    let stats = t.flush().unwrap();
    assert_eq!(collector.count(), 3, "503, 503, then 202");
    assert_eq!((stats.sent, stats.failed), (1, 0));

    let (collector, caddr) = rt.block_on(Collector::start(&[400, 400, 400]));
    let t = tracer_to(
        ZipkinTransport::builder(endpoint(caddr)).build().unwrap(),
        3,
    );
    t.root_span("rejected").finish();
    let stats = t.flush().unwrap();
    assert_eq!(collector.count(), 1, "400 is not retried");
    assert_eq!((stats.sent, stats.failed), (0, 1));

    // A collector that limits the rate asks for a wait (429 with `Retry-After: 1`), and gets it
    // rather than the reporter's first backoff step of 50 ms.
    let (collector, caddr) = rt.block_on(Collector::start(&[429]));
    let t = tracer_to(
        ZipkinTransport::builder(endpoint(caddr)).build().unwrap(),
        3,
    );
    t.root_span("rate-limited").finish();
    let stats = t.flush().unwrap();
    assert_eq!((stats.sent, stats.failed), (1, 0));
    let received = collector.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "429, then 202");
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");

    // Retries are bounded: a collector that always fails gets 1 + max_retries requests.
    let (collector, caddr) = rt.block_on(Collector::start(&[500; 10]));
    let t = tracer_to(
        ZipkinTransport::builder(endpoint(caddr)).build().unwrap(),
        2,
    );
    t.root_span("failing").finish();
    let stats = t.flush().unwrap();
    assert_eq!(collector.count(), 3);
    assert_eq!(stats.failed, 1);
}

/// A collector behind credentials: the endpoint's user and password arrive as basic auth and
/// `TDIST_ZIPKIN_HEADERS` as headers, over a real socket; a 401 is not retried.
#[test]
fn credentials_and_extra_headers_reach_the_collector() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    let url = format!("http://reporter:s%3Acret@{caddr}/api/v2/spans");
    let env = |k: &str| match k {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(url.clone()),
        "TDIST_ZIPKIN_HEADERS" => Some("X-Api-Key=k%3D1,X-Scope-OrgID=shop".into()),
        _ => None,
    };
    let t = tracer_to(ZipkinTransport::from_lookup(env).unwrap().unwrap(), 0);
    t.root_span("authorized").finish();
    let stats = t.flush().unwrap();
    assert_eq!((stats.sent, stats.failed), (1, 0));
    let received = collector.received.lock().unwrap();
    let headers = &received[0].headers;
    // base64("reporter:s:cret")
    assert_eq!(headers["authorization"], "Basic cmVwb3J0ZXI6czpjcmV0");
    assert_eq!(headers["x-api-key"], "k=1");
    assert_eq!(headers["x-scope-orgid"], "shop");
    assert_eq!(headers["b3"], "0");
    assert_eq!(received[0].path, "/api/v2/spans");
    drop(received);

    // Wrong credentials: 401 is the collector's final word, not retried, and counted.
    let (collector, caddr) = rt.block_on(Collector::start(&[401, 401]));
    let transport = ZipkinTransport::builder(endpoint(caddr))
        .header("Authorization", "Bearer expired")
        .build()
        .unwrap();
    let t = tracer_to(transport, 3);
    t.root_span("refused").finish();
    let stats = t.flush().unwrap();
    assert_eq!(collector.count(), 1, "401 is not retried");
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

#[test]
fn connection_refused_is_retryable_and_counted() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let transport = ZipkinTransport::builder(endpoint(closed)).build().unwrap();
    let t = tracer_to(transport, 1);
    t.root_span("lost").finish();
    let stats = t.flush().unwrap();
    assert_eq!((stats.sent, stats.failed), (0, 1));
}

/// A collector that accepts connections and never answers: requests to the traced application
/// all complete while the transport is stuck, and the spans show as pending, then failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_does_not_delay_requests() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let caddr = silent.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            h2.lock().unwrap().push(conn); // keep it open, never answer
        }
    });
    let transport = ZipkinTransport::builder(endpoint(caddr))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let t = tracer_to(transport, 0);
    let handler = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let addr = serve(ServerLayer::new(t.clone()).layer(handler)).await;

    // Make the transport block on the silent collector first.
    t.root_span("first").finish();
    let h3 = held.clone();
    let stuck = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(5), || !h3.lock().unwrap().is_empty())
    });
    assert!(stuck.await.unwrap(), "the transport never connected");

    let client = plain_client();
    for i in 0..50 {
        let req = Request::get(format!("http://{addr}/r/{i}"))
            .body(Empty::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    // All 50 requests were served while the collector held the transport's only request.
    let stats = t.stats();
    assert_eq!(stats.sent, 0);
    assert!(
        stats.accepted >= 51 && stats.pending() + stats.failed >= 51,
        "{stats:?}"
    );

    // The request timeout ends the stuck export; failures are counted, never silent.
    let t2 = t.clone();
    let failed = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), || t2.stats().failed >= 1)
    });
    assert!(failed.await.unwrap(), "{:?}", t.stats());
    assert_eq!(t.stats().sent, 0);
}

/// Reads one request (head and `Content-Length` body) from `tcp`.
async fn read_request(tcp: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request ended early");
        got.extend_from_slice(&chunk[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (at + 4, length);
        }
    };
    while got.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request body ended early");
        got.extend_from_slice(&chunk[..n]);
    }
}

/// The collector's explanation of a rejection is kept (its beginning) even when the body is
/// longer than the transport reads: a gateway's error page, a collector quoting the input.
#[test]
fn a_long_rejection_keeps_its_explanation() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let svc = tower::service_fn(|req: Request<Incoming>| async move {
        req.into_body().collect().await.unwrap();
        let text = format!("Expected a JSON_V2 encoded list {}", "x".repeat(4000));
        let answer = http::Response::builder()
            .status(400)
            .body(Full::new(Bytes::from(text)))
            .unwrap();
        Ok::<_, Infallible>(answer)
    });
    let caddr = rt.block_on(serve(svc));
    let transport = ZipkinTransport::builder(endpoint(caddr)).build().unwrap();
    let e = support::send_directly(&transport).unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("Expected a JSON_V2"), "{e}");
}

/// A collector that answers and then never finishes the answer's body: the status decides (the
/// spans were accepted, or refused), not the request timeout, which would make the reporter
/// send accepted spans again, or retry a refusal.
#[test]
fn an_answer_whose_body_never_ends_counts_by_its_status() {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (head, accepted) in [
        ("HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\n", true),
        (
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\nExpected a JSON_V2",
            false,
        ),
    ] {
        let caddr = rt.block_on(support::accept_each(move |mut tcp| async move {
            read_request(&mut tcp).await;
            tcp.write_all(head.as_bytes()).await.unwrap();
            // The rest of the body never comes; the connection stays open until the test ends.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tcp);
        }));
        let transport = ZipkinTransport::builder(endpoint(caddr))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let sent = support::send_directly(&transport);
        match accepted {
            true => assert!(sent.is_ok(), "{sent:?}"),
            false => {
                let e = sent.unwrap_err();
                assert!(!e.is_retryable(), "{e}");
                assert!(e.to_string().contains("Expected a JSON_V2"), "{e}");
            }
        }
    }
}
