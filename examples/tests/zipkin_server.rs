//! The comment pipeline against a real Zipkin server (`bash .ci/zipkin.sh` starts one, with
//! Apache Kafka for its Kafka collector): every process's spans go to Zipkin once over its HTTP
//! collector and once over the Kafka `zipkin` topic, then Zipkin's own API must return each trace
//! whole and a dependency graph that links the services across HTTP, Kafka, Storm and Thrift.
//!
//! Ignored by default: they need `TDIST_ZIPKIN_URL` (the server's base URL) and, for the Kafka
//! run, `TDIST_KAFKA_BOOTSTRAP_SERVERS` (the broker the server's Kafka collector reads).

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tdist_examples::pipeline::{self, spans, Config};

const COMMENTS: usize = 4;
/// How long Zipkin's asynchronous collectors get to make everything queryable.
const ARRIVAL: Duration = Duration::from_secs(60);
const NEEDS: &str = "needs a Zipkin server: TDIST_ZIPKIN_URL (see .ci/zipkin.sh)";

/// The two runs change this process's environment (`TDIST_TRANSPORT`): one at a time.
static ENV: Mutex<()> = Mutex::new(());

fn zipkin_url() -> String {
    match std::env::var("TDIST_ZIPKIN_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "TDIST_ZIPKIN_URL is not set: this test {NEEDS}; \
             run `bash .ci/zipkin.sh` or `bash .ci/zipkin.sh start` and export what it prints"
        ),
    }
}

/// The demo's binary (which is also every bolt), built once per test process.
fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| support::build_example("comment_pipeline"))
        .clone()
}

/// How the spans reach Zipkin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// `POST /api/v2/spans` (`OTEL_EXPORTER_ZIPKIN_ENDPOINT` in every process).
    Http,
    /// The `zipkin` topic (`TDIST_TRANSPORT=kafka` in every process).
    Kafka,
}

/// A span as this test compares them: (id, kind, shared).
type Key = (String, String, bool);

fn key(v: &Value) -> Key {
    (
        v["id"].as_str().unwrap_or("").to_owned(),
        v["kind"].as_str().unwrap_or("").to_owned(),
        v["shared"].as_bool().unwrap_or(false),
    )
}

/// Runs the pipeline with spans going to Zipkin `via`; returns the span file's spans by trace
/// id and the run's time window in epoch milliseconds.
fn run_pipeline(zipkin: &str, via: Via) -> (BTreeMap<String, Vec<Value>>, u64, u64) {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    match via {
        Via::Http => std::env::remove_var(spans::TRANSPORT_VAR),
        Via::Kafka => {
            assert!(
                std::env::var("TDIST_KAFKA_BOOTSTRAP_SERVERS").is_ok(),
                "spans over Kafka need TDIST_KAFKA_BOOTSTRAP_SERVERS: the broker Zipkin reads"
            );
            std::env::set_var(spans::TRANSPORT_VAR, "kafka");
        }
    }
    let exe = example_binary();
    let out = std::env::temp_dir().join(format!(
        "tdist-zipkin-server-{:?}-{}.jsonl",
        via,
        std::process::id()
    ));
    let config = Config {
        comments: COMMENTS,
        clients: 2,
        topic: format!(
            "comments-zipkin-{}-{}",
            std::process::id(),
            tdist_core::random_u64()
        ),
        out: out.clone(),
        bolt_command: Box::new(move |name| {
            let mut c = Command::new(&exe);
            c.args(["--bolt", name]);
            match via {
                Via::Http => c.env_remove(spans::TRANSPORT_VAR),
                Via::Kafka => c.env(spans::TRANSPORT_VAR, "kafka"),
            };
            c
        }),
        progress: false,
        settle_timeout: Duration::from_secs(120),
        zipkin_endpoint: match via {
            Via::Http => Some(format!("{zipkin}/api/v2/spans")),
            Via::Kafka => None,
        },
    };
    let outcome = pipeline::run(&config);
    std::env::remove_var(spans::TRANSPORT_VAR);
    let outcome = outcome.expect("pipeline runs");
    assert_eq!(outcome.posted, COMMENTS as u64);
    assert_eq!(outcome.failed, 0);
    assert!(!outcome.mock_kafka || via == Via::Http);

    let mut traces: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in std::fs::read_to_string(&out).expect("span file").lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let id = v["traceId"].as_str().expect("traceId").to_owned();
        traces.entry(id).or_default().push(v);
    }
    let _ = std::fs::remove_file(&out);
    assert_eq!(traces.len(), COMMENTS, "one trace per comment in the file");
    // The run's window, from its spans (epoch microseconds), in whole milliseconds: the
    // dependency query must see this run's traces and not another run's.
    let all = || traces.values().flatten();
    let start = all()
        .filter_map(|s| s["timestamp"].as_u64())
        .min()
        .expect("timestamps")
        / 1000;
    let end = all()
        .filter_map(|s| Some(s["timestamp"].as_u64()? + s["duration"].as_u64().unwrap_or(0)))
        .max()
        .expect("timestamps")
        / 1000
        + 1;
    (traces, start, end)
}

/// `GET {base}{path}` on Zipkin's API: (status, JSON body or Null).
fn get(rt: &tokio::runtime::Runtime, base: &str, path: &str) -> (u16, Value) {
    let authority = base
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("TDIST_ZIPKIN_URL must be http://HOST:PORT, not {base}"))
        .to_owned();
    let path = path.to_owned();
    rt.block_on(async move {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(authority.as_str()),
        )
        .await
        .unwrap_or_else(|_| panic!("connect {authority}: timed out"))
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header("host", authority.as_str())
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), async {
            let res = send.send_request(req).await?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
        .await
        .unwrap_or_else(|_| panic!("GET {path}: timed out"))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = serde_json::from_slice(&res.1).unwrap_or(Value::Null);
        (res.0, body)
    })
}

/// Polls `GET /api/v2/trace/{id}` until Zipkin has exactly the file's spans of every trace.
fn assert_traces_arrive_whole(
    rt: &tokio::runtime::Runtime,
    zipkin: &str,
    traces: &BTreeMap<String, Vec<Value>>,
) {
    let deadline = Instant::now() + ARRIVAL;
    for (id, file_spans) in traces {
        let want: BTreeSet<Key> = file_spans.iter().map(key).collect();
        let got = loop {
            let (status, body) = get(rt, zipkin, &format!("/api/v2/trace/{id}"));
            let got: Vec<Value> = match (status, body) {
                (200, Value::Array(spans)) => spans,
                _ => Vec::new(),
            };
            let keys: BTreeSet<Key> = got.iter().map(key).collect();
            if keys == want {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "trace {id}: Zipkin has {} of the file's {} spans after {ARRIVAL:?} \
                 (HTTP {status}); missing {:#?}",
                keys.len(),
                want.len(),
                want.difference(&keys).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(got.len(), file_spans.len(), "trace {id}: no duplicates");
        let roots: Vec<&Value> = got.iter().filter(|s| s["parentId"].is_null()).collect();
        assert_eq!(roots.len(), 1, "trace {id}: exactly one root: {roots:#?}");
        assert_eq!(roots[0]["name"], "post /comments");
        assert_eq!(roots[0]["kind"], "SERVER");
        let ids: BTreeSet<&str> = got.iter().filter_map(|s| s["id"].as_str()).collect();
        for s in &got {
            if let Some(p) = s["parentId"].as_str() {
                assert!(ids.contains(p), "trace {id}: parent {p} of {s} missing");
            }
            assert_eq!(s["traceId"].as_str(), Some(id.as_str()));
        }
    }
}

/// The dependency links Zipkin derived from the traces in [start, end]: (parent, child) → calls.
fn dependencies(
    rt: &tokio::runtime::Runtime,
    zipkin: &str,
    start: u64,
    end: u64,
) -> HashMap<(String, String), u64> {
    let (status, body) = get(
        rt,
        zipkin,
        &format!("/api/v2/dependencies?endTs={end}&lookback={}", end - start),
    );
    assert_eq!(status, 200, "dependencies: {body}");
    body.as_array()
        .expect("dependencies is a JSON array")
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or("").to_owned();
            (
                (s("parent"), s("child")),
                l["callCount"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The links every comment adds, one call each: the API produces to Kafka, the consumer reads it,
/// Storm delivers the tuple to the spam bolt and on to the store and statistics bolts (their
/// CONSUMER spans name `storm` as the broker), the spam bolt calls the Thrift spam check, the
/// store bolt calls the database.
const LINKS: &[(&str, &str)] = &[
    ("comments-api", "kafka"),
    ("kafka", "moderation"),
    ("storm", "spam-filter"),
    ("storm", "comment-store"),
    ("storm", "statistics"),
    ("storm", "notifier"),
    ("storm", "search-indexer"),
    ("spam-filter", "spam-check"),
    ("comment-store", "comments-db"),
];

fn check(via: Via) {
    let zipkin = zipkin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, health) = get(&rt, &zipkin, "/health");
    assert_eq!((status, &health["status"]), (200, &Value::from("UP")));

    let (traces, start, end) = run_pipeline(&zipkin, via);
    assert_traces_arrive_whole(&rt, &zipkin, &traces);

    let links = dependencies(&rt, &zipkin, start, end);
    eprintln!("{via:?}: Zipkin's dependency links: {links:?}");
    for (parent, child) in LINKS {
        assert_eq!(
            links.get(&(parent.to_string(), child.to_string())).copied(),
            Some(COMMENTS as u64),
            "link {parent} -> {child}, one call per comment, in {links:#?}"
        );
    }
}

#[test]
#[ignore = "needs a Zipkin server: TDIST_ZIPKIN_URL (see .ci/zipkin.sh)"]
fn spans_over_http_arrive_whole_in_zipkin() {
    check(Via::Http);
}

#[test]
#[ignore = "needs a Zipkin server and its Kafka broker: TDIST_ZIPKIN_URL, TDIST_KAFKA_BOOTSTRAP_SERVERS (see .ci/zipkin.sh)"]
fn spans_over_the_kafka_topic_arrive_whole_in_zipkin() {
    check(Via::Kafka);
}

/// Real proxies between the Zipkin transport and the server, as egress proxies would be:
/// Debian's tinyproxy (HTTP, basic auth) and microsocks (SOCKS5, user and password), both started
/// by `.ci/zipkin.sh`. A span sent through each arrives in Zipkin; with a wrong password the proxy
/// refuses (tinyproxy answers 401, microsocks rejects the password) and the span is counted as
/// failed.
#[test]
#[ignore = "needs a Zipkin server and two proxies: TDIST_ZIPKIN_URL, TDIST_HTTP_PROXY, TDIST_SOCKS_PROXY (see .ci/zipkin.sh)"]
fn spans_through_proxies_arrive_in_zipkin() {
    use tdist_http::zipkin::ZipkinTransport;
    let zipkin = zipkin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tracer_through = |proxy_url: &str| {
        let transport = ZipkinTransport::builder(format!("{zipkin}/api/v2/spans"))
            .proxy(proxy_url)
            .build()
            .unwrap();
        tdist_core::Tracer::builder()
            .service_name("behind-proxy")
            .transport(transport)
            .configure_reporter(|c| c.max_retries = 2)
            .build()
            .unwrap()
    };

    // Zipkin lower-cases span names.
    for (var, name) in [
        ("TDIST_HTTP_PROXY", "through an http proxy"),
        ("TDIST_SOCKS_PROXY", "through a socks5 proxy"),
    ] {
        let proxy = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var}: a scheme://user:password@host:port proxy (see .ci/zipkin.sh)")
        });
        let tracer = tracer_through(&proxy);
        let span = tracer.root_span(name);
        let trace_id = span.context().trace_id().to_string();
        span.finish();
        let stats = tracer.flush().unwrap();
        assert_eq!((stats.sent, stats.failed), (1, 0), "{var}: {stats:?}");
        let deadline = Instant::now() + ARRIVAL;
        let found = loop {
            let (status, body) = get(&rt, &zipkin, &format!("/api/v2/trace/{trace_id}"));
            if status == 200 || Instant::now() > deadline {
                break body;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(found[0]["name"], name, "{found}");
        assert_eq!(found[0]["localEndpoint"]["serviceName"], "behind-proxy");

        // The same proxy with a wrong password: refused and counted.
        let (scheme, rest) = proxy.split_once("://").expect("a proxy URL");
        let (userinfo, host) = rest
            .split_once('@')
            .expect("the proxy URL carries credentials");
        let user = userinfo.split(':').next().unwrap();
        let tracer = tracer_through(&format!("{scheme}://{user}:wrong@{host}"));
        tracer.root_span("refused by the proxy").finish();
        let stats = tracer.flush().unwrap();
        assert_eq!((stats.sent, stats.failed), (0, 1), "{var}: {stats:?}");
    }
}
