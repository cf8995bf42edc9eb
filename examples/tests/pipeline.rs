//! The comment pipeline end to end, smaller load: the demo's own bolt processes (the
//! `comment_pipeline` example run with `--bolt NAME`), the mock Kafka cluster, real sockets on
//! 127.0.0.1. Every comment must be one complete trace across every process.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tdist_examples::pipeline::comments::Comment;
use tdist_examples::pipeline::{self, Config};
use tdist_examples::report::{stats, Report};
use tdist_storm::harness::{Harness, HarnessConfig};

const COMMENTS: usize = 12;

/// The demo's binary (which is also every bolt), built once per test process.
fn example_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    assert_eq!(name, "comment_pipeline");
    BUILT.get_or_init(|| support::build_example(name)).clone()
}

fn config(out: PathBuf, zipkin_endpoint: Option<String>) -> Config {
    let exe = example_binary("comment_pipeline");
    Config {
        comments: COMMENTS,
        clients: 3,
        // Unique, so that the tests can share a real broker.
        topic: format!(
            "comments-{}-{}",
            std::process::id(),
            tdist_core::random_u64()
        ),
        out,
        bolt_command: Box::new(move |name| {
            let mut c = Command::new(&exe);
            c.args(["--bolt", name]).env_remove("TDIST_TRANSPORT");
            c
        }),
        progress: false,
        settle_timeout: Duration::from_secs(120),
        zipkin_endpoint,
    }
}

#[derive(Debug)]
struct S {
    service: String,
    name: String,
    kind: Option<String>,
    id: String,
    parent: Option<String>,
    shared: bool,
}

fn read(path: &Path) -> HashMap<String, Vec<S>> {
    let text = std::fs::read_to_string(path).expect("span file");
    let mut traces: HashMap<String, Vec<S>> = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let s = S {
            service: v["localEndpoint"]["serviceName"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            name: v["name"].as_str().unwrap_or("").to_owned(),
            kind: v["kind"].as_str().map(str::to_owned),
            id: v["id"].as_str().expect("id").to_owned(),
            parent: v["parentId"].as_str().map(str::to_owned),
            shared: v["shared"].as_bool().unwrap_or(false),
        };
        let trace = v["traceId"].as_str().expect("traceId").to_owned();
        traces.entry(trace).or_default().push(s);
    }
    traces
}

fn has(trace: &[S], service: &str, name: &str, kind: Option<&str>) -> bool {
    trace
        .iter()
        .any(|s| s.service == service && s.name == name && s.kind.as_deref() == kind)
}

/// The spans every comment's trace must contain: (service, name, kind).
const EXPECTED: &[(&str, &str, Option<&str>)] = &[
    ("comments-api", "post /comments", Some("SERVER")),
    ("comments-api", "send", Some("PRODUCER")),
    ("moderation", "poll", Some("CONSUMER")),
    ("spam-filter", "spam", Some("CONSUMER")),
    ("spam-filter", "check", Some("CLIENT")),
    ("spam-check", "check", Some("SERVER")),
    ("notifier", "notify", Some("CONSUMER")),
    ("search-indexer", "index", Some("CONSUMER")),
    ("comment-store", "store", Some("CONSUMER")),
    ("comment-store", "db.insert", Some("CLIENT")),
    ("statistics", "statistics", Some("CONSUMER")),
    ("statistics", "db.increment", None),
];

#[test]
fn every_comment_is_one_complete_trace_across_all_processes() {
    let out =
        std::env::temp_dir().join(format!("tdist-pipeline-test-{}.jsonl", std::process::id()));
    let outcome = pipeline::run(&config(out.clone(), None)).expect("pipeline runs");
    assert_eq!(outcome.posted, COMMENTS as u64);
    assert_eq!(outcome.consumed, COMMENTS as u64);
    assert_eq!(outcome.failed, 0);
    assert!(outcome.mock_kafka || std::env::var("TDIST_KAFKA_BOOTSTRAP_SERVERS").is_ok());

    let traces = read(&out);
    assert_eq!(
        traces.len(),
        COMMENTS,
        "one trace per comment, nothing else"
    );
    let mut spam = 0;
    for (id, trace) in &traces {
        for (service, name, kind) in EXPECTED {
            assert!(
                has(trace, service, name, *kind),
                "trace {id} lacks {service}: {name} [{kind:?}]: {trace:#?}"
            );
        }
        let roots: Vec<&S> = trace.iter().filter(|s| s.parent.is_none()).collect();
        assert_eq!(roots.len(), 1, "trace {id} has one root: {roots:#?}");
        assert_eq!(
            (roots[0].name.as_str(), roots[0].kind.as_deref()),
            ("post /comments", Some("SERVER"))
        );
        let ids: HashSet<&str> = trace.iter().map(|s| s.id.as_str()).collect();
        for s in trace {
            if let Some(p) = &s.parent {
                assert!(
                    ids.contains(p.as_str()),
                    "trace {id}: parent of {s:?} missing"
                );
            }
        }
        // The Thrift SERVER span shares the CLIENT's span id (B3 RPC).
        let client = trace
            .iter()
            .find(|s| s.kind.as_deref() == Some("CLIENT") && s.name == "check");
        let server = trace
            .iter()
            .find(|s| s.kind.as_deref() == Some("SERVER") && s.name == "check");
        let (client, server) = (client.unwrap(), server.unwrap());
        assert_eq!(client.id, server.id);
        assert!(server.shared && !client.shared);
        // Each bolt is a child of the one before it: spam under the CONSUMER, the others under spam.
        let by_name = |n: &str| {
            trace
                .iter()
                .find(|s| s.name == n && s.kind.as_deref() == Some("CONSUMER"))
                .unwrap()
        };
        assert_eq!(
            by_name("spam").parent.as_deref(),
            Some(by_name("poll").id.as_str())
        );
        for b in ["notify", "index", "store", "statistics"] {
            assert_eq!(
                by_name(b).parent.as_deref(),
                Some(by_name("spam").id.as_str()),
                "{b}"
            );
        }
        if !has(trace, "notifier", "render notification", None) {
            spam += 1;
        }
    }
    assert_eq!(
        spam,
        (0..COMMENTS)
            .filter(|&n| pipeline::comments::is_spam_sample(n))
            .count(),
        "spam comments notify nobody"
    );

    // The report library reads the merged file: no orphans, and the chatty statistics bolt is
    // flagged as a repeated call in every trace.
    let report = Report::from_path(&out).unwrap();
    assert_eq!(report.traces.len(), COMMENTS);
    let repeated = stats::repeated_calls(&report.traces, 5);
    assert_eq!(repeated.len(), COMMENTS, "{repeated:#?}");
    for r in &repeated {
        assert_eq!(r.op.to_string(), "statistics db.increment");
        assert_eq!(r.parent.to_string(), "statistics statistics");
    }
    let _ = std::fs::remove_file(&out);
}

/// A Zipkin collector on 127.0.0.1: records every span POSTed to `/api/v2/spans`.
fn collector(rt: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = got.clone();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let ok = req.uri().path() == "/api/v2/spans";
                        let body = req.into_body().collect().await?.to_bytes();
                        let spans: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                        let status = if ok && !spans.is_empty() { 202 } else { 400 };
                        sink.lock().unwrap().extend(spans);
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/api/v2/spans"), got)
}

fn key(v: &Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    (s("traceId"), s("id"), s("kind"))
}

#[test]
fn every_process_also_sends_its_spans_to_a_zipkin_collector() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (endpoint, got) = collector(&rt);
    let out = std::env::temp_dir().join(format!(
        "tdist-pipeline-zipkin-test-{}.jsonl",
        std::process::id()
    ));
    let mut cfg = config(out.clone(), Some(endpoint));
    cfg.comments = 4;
    let outcome = pipeline::run(&cfg).expect("pipeline runs");
    let in_file: HashSet<_> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| key(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(in_file.len(), outcome.spans, "no duplicates in the file");
    let services: HashSet<String> = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans = got.lock().unwrap().clone();
            let received: HashSet<_> = spans.iter().map(key).collect();
            if received == in_file || std::time::Instant::now() > deadline {
                assert_eq!(
                    received, in_file,
                    "the collector got exactly the file's spans"
                );
                break spans
                    .iter()
                    .filter_map(|s| s["localEndpoint"]["serviceName"].as_str())
                    .map(str::to_owned)
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // From the demo process and from every bolt process.
    for s in [
        "comments-api",
        "moderation",
        "spam-check",
        "spam-filter",
        "notifier",
        "search-indexer",
        "comment-store",
        "statistics",
    ] {
        assert!(services.contains(s), "{s} missing from {services:?}");
    }
    let _ = std::fs::remove_file(&out);
}

/// A bolt of the demo as a child process under the harness, spans into `spans`.
fn bolt(name: &str, spans: &Path, spam_addr: &str) -> Harness {
    let mut cmd = Command::new(example_binary("comment_pipeline"));
    cmd.args(["--bolt", name])
        .env("TDIST_FILE", spans)
        .env("PIPELINE_SPAM_CHECK_ADDR", spam_addr)
        .env_remove("TDIST_TRANSPORT")
        .env_remove("OTEL_EXPORTER_ZIPKIN_ENDPOINT");
    Harness::spawn(cmd, HarnessConfig::bolt(name)).expect("spawn bolt")
}

#[test]
fn bolts_fail_bad_tuples_and_keep_running() {
    let spans =
        std::env::temp_dir().join(format!("tdist-pipeline-bolt-{}.jsonl", std::process::id()));
    let h = bolt("store", &spans, "127.0.0.1:1");
    let t = Duration::from_secs(60);
    for values in [
        vec![],
        vec![json!(7)],
        vec![json!("{not json")],
        vec![json!("{\"author\":\"a\",\"text\":\"  \"}")],
    ] {
        let bad = h.tuple("spam", values);
        h.send_tuple(&bad).unwrap();
        h.wait_settled(&bad.id, t).unwrap();
        assert!(h.records().fails.contains(&bad.id), "{:?}", h.records());
    }
    let c = Comment {
        id: "c1".into(),
        author: "ann".into(),
        text: "fine".into(),
    };
    let good = h.tuple("spam", vec![json!(c.to_json()), json!("ham")]);
    h.send_tuple(&good).unwrap();
    h.wait_settled(&good.id, t).unwrap();
    let r = h.records();
    assert_eq!(r.acks, std::slice::from_ref(&good.id));
    assert_eq!(r.errors.len(), 4, "each bad tuple reported: {:?}", r.errors);
    assert!(h.close(t).unwrap().is_some_and(|s| s.success()));
    let _ = std::fs::remove_file(&spans);
}

#[test]
fn spam_bolt_fails_tuples_while_the_spam_service_is_down() {
    // A port with nothing listening: connecting is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let spans =
        std::env::temp_dir().join(format!("tdist-pipeline-spam-{}.jsonl", std::process::id()));
    let h = bolt("spam", &spans, &addr);
    let t = Duration::from_secs(60);
    let c = Comment {
        id: "c1".into(),
        author: "ann".into(),
        text: "hello".into(),
    };
    for _ in 0..2 {
        let tuple = h.tuple("kafka-consumer", vec![json!(c.to_json())]);
        h.send_tuple(&tuple).unwrap();
        h.wait_settled(&tuple.id, t).unwrap();
        assert!(h.records().fails.contains(&tuple.id));
    }
    assert!(
        h.records().emits.is_empty(),
        "nothing emitted without a verdict"
    );
    assert!(
        h.close(t).unwrap().is_some_and(|s| s.success()),
        "still running until closed"
    );
    let _ = std::fs::remove_file(&spans);
}

#[test]
fn the_api_refuses_bad_comments_and_produces_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sink = tdist_core::export::InMemory::new();
    let tracer = tdist_core::Tracer::builder()
        .service_name("comments-api")
        .transport(sink.clone())
        .build()
        .unwrap();
    let topic = format!("comments-api-{}", tdist_core::random_u64());
    let broker = pipeline::kafka::Broker::from_env(&topic).unwrap();
    rt.block_on(broker.ensure_topic(&topic)).unwrap();
    let producer = broker
        .producer(tdist_kafka::KafkaTracing::new(tracer.clone()))
        .unwrap();
    let api = Arc::new(pipeline::http::Api::new(
        tracer.clone(),
        producer,
        topic.as_str(),
    ));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(pipeline::http::serve(listener, api));
    let statuses = rt.block_on(async {
        let mut out = Vec::new();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        for (method, path, body) in [
            ("POST", "/comments", "{not json"),
            ("POST", "/comments", "{\"author\":\"a\"}"),
            ("POST", "/comments", "{\"author\":\"a\",\"text\":\"\"}"),
            ("GET", "/comments", ""),
            ("POST", "/elsewhere", "{\"author\":\"a\",\"text\":\"hi\"}"),
            ("POST", "/comments", "{\"author\":\"a\",\"text\":\"hi\"}"),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "127.0.0.1")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            send.ready().await.unwrap();
            let res = send.send_request(req).await.unwrap();
            let status = res.status().as_u16();
            let _ = res.into_body().collect().await.unwrap();
            out.push(status);
        }
        out
    });
    assert_eq!(statuses, [400, 400, 400, 404, 404, 202]);
    tracer.flush().unwrap();
    let spans = sink.spans();
    let servers = spans
        .iter()
        .filter(|s| s.kind() == Some(tdist_core::Kind::Server))
        .count();
    let producers = spans
        .iter()
        .filter(|s| s.kind() == Some(tdist_core::Kind::Producer))
        .count();
    assert_eq!(
        (servers, producers),
        (6, 1),
        "a SERVER span per request, one send: {spans:#?}"
    );
}
