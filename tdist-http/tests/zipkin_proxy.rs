//! The Zipkin transport through an HTTP forward proxy on 127.0.0.1, as deployments behind an
//! egress proxy reach a collector: the proxy given in code or by `HTTP_PROXY`, its credentials,
//! `NO_PROXY` and loopback endpoints going direct, a proxy that refuses the credentials, and
//! proxy settings that cannot be used; a SOCKS5 proxy from `ALL_PROXY`, resolving the name itself
//! (`socks5h://`) or not. (`https://` through a `CONNECT` tunnel: `zipkin_tls.rs`.)
//!
//! The endpoints name `zipkin.invalid`, which does not resolve: a span arrives only if the
//! proxy carried it.

mod support;

use support::{tracer_to, Collector, ForwardProxy, Socks5Proxy};
use tdist_http::zipkin::{ZipkinError, ZipkinTransport};

const ENDPOINT: &str = "http://zipkin.invalid:9411/api/v2/spans";

/// One span through `transport`; the spans sent and failed.
fn send_one(transport: ZipkinTransport, retries: u32, name: &'static str) -> (u64, u64) {
    let t = tracer_to(transport, retries);
    t.root_span(name).finish();
    let stats = t.flush().unwrap();
    (stats.sent, stats.failed)
}

/// A proxy given in code, with credentials: requests go to it in absolute form with
/// `Proxy-Authorization`, and it delivers them.
#[test]
fn spans_reach_the_collector_through_a_proxy_given_in_code() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    // base64("reporter:s:cret")
    let (proxy, paddr) = rt.block_on(ForwardProxy::start(
        caddr,
        Some("Basic cmVwb3J0ZXI6czpjcmV0"),
    ));
    let transport = ZipkinTransport::builder(ENDPOINT)
        .proxy(format!("http://reporter:s%3Acret@{paddr}"))
        .build()
        .unwrap();
    let shown = format!("{transport:?}");
    assert!(
        shown.contains(&paddr.to_string()) && !shown.contains("cret"),
        "{shown}"
    );
    assert_eq!(send_one(transport, 0, "via-proxy"), (1, 0));

    let seen = proxy.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, ENDPOINT, "absolute form");
    assert_eq!(seen[0].auth.as_deref(), Some("Basic cmVwb3J0ZXI6czpjcmV0"));
    let received = collector.received.lock().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/api/v2/spans");
    assert_eq!(received[0].headers["b3"], "0");
    assert_eq!(received[0].headers["host"], "zipkin.invalid:9411");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body[0]["name"], "via-proxy");
}

/// `HTTP_PROXY` from the environment, except for hosts in `NO_PROXY` and loopback endpoints.
#[test]
fn the_environments_proxy_with_its_exceptions() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    let (proxy, paddr) = rt.block_on(ForwardProxy::start(caddr, None));
    let from_env = |endpoint: String, no_proxy: Option<&str>| {
        let proxy_url = format!("http://{paddr}");
        let no_proxy = no_proxy.map(str::to_owned);
        let env = move |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_EXPORTER_ZIPKIN_TIMEOUT" => Some("1000".into()),
            "HTTP_PROXY" => Some(proxy_url.clone()),
            "NO_PROXY" => no_proxy.clone(),
            _ => None,
        };
        ZipkinTransport::from_lookup(env).unwrap().unwrap()
    };

    assert_eq!(send_one(from_env(ENDPOINT.into(), None), 0, "env"), (1, 0));
    assert_eq!((proxy.count(), collector.count()), (1, 1));
    assert_eq!(proxy.seen.lock().unwrap()[0].target, ENDPOINT);

    // NO_PROXY names the collector's domain: the transport goes direct, cannot resolve the
    // name, and counts the span as failed; the proxy sees nothing.
    let bypass = from_env(ENDPOINT.into(), Some("localhost, .invalid"));
    assert_eq!(send_one(bypass, 0, "bypass"), (0, 1));
    assert_eq!((proxy.count(), collector.count()), (1, 1));

    // A collector on the loopback is reached directly whatever HTTP_PROXY says.
    let local = from_env(format!("http://{caddr}/api/v2/spans"), None);
    assert_eq!(send_one(local, 0, "local"), (1, 0));
    assert_eq!((proxy.count(), collector.count()), (1, 2));
}

/// A proxy that refuses the credentials answers 407: a setting to fix, not retried.
#[test]
fn a_proxy_that_refuses_the_credentials_is_not_retried() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    let (proxy, paddr) = rt.block_on(ForwardProxy::start(caddr, Some("Basic c2VjcmV0")));
    let transport = ZipkinTransport::builder(ENDPOINT)
        .proxy(format!("http://{paddr}"))
        .build()
        .unwrap();
    // The error the reporter counts says who refused.
    let err = support::send_directly(&transport).unwrap_err();
    assert!(!err.is_retryable());
    let shown = err.to_string();
    assert!(shown.contains("proxy answered 407"), "{shown}");
    assert!(
        shown.contains(&format!("through proxy http://{paddr}")),
        "{shown}"
    );

    assert_eq!(send_one(transport, 3, "refused"), (0, 1));
    assert_eq!((proxy.count(), collector.count()), (2, 0));
    assert_eq!(proxy.seen.lock().unwrap()[1].auth, None);
}

/// Proxy settings the transport cannot use are refused when it is built, naming the variable
/// they came from and never showing the credentials.
#[test]
fn unusable_proxies_are_refused() {
    let err = ZipkinTransport::builder(ENDPOINT)
        .proxy("socks4://user:secret@127.0.0.1:1080")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, ZipkinError::InvalidProxy { variable: None, .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("socks4:// proxies are not supported"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");

    for (var, value) in [
        ("HTTP_PROXY", "http://user:secret@proxy:port"),
        ("http_proxy", "https://user:secret@proxy"),
        ("ALL_PROXY", "http://user:secret@"),
    ] {
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(ENDPOINT.to_string()),
            k if k == var => Some(value.to_string()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err();
        assert_eq!(err.variable(), var, "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    // The environment's proxy is not consulted for a transport told to go direct, nor for a
    // loopback endpoint; an explicit proxy replaces it.
    let direct = ZipkinTransport::builder(ENDPOINT)
        .no_proxy()
        .build()
        .unwrap();
    assert!(format!("{direct:?}").contains("proxy: None"), "{direct:?}");
}

/// A SOCKS5 proxy from `ALL_PROXY` (as an SSH `-D` forward is often set up): with
/// `socks5h://` the proxy gets the collector's name and resolves it; with `socks5://` the
/// transport resolves the name itself first (so an unresolvable name fails here, and the proxy
/// sees nothing).
#[test]
fn spans_reach_the_collector_through_a_socks5_proxy() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (collector, caddr) = rt.block_on(Collector::start(&[]));
    let (proxy, paddr) = rt.block_on(Socks5Proxy::start(caddr, Some(("ssh", "p@ss"))));
    let through = |all_proxy: String| {
        let env = move |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(ENDPOINT.to_string()),
            "OTEL_EXPORTER_ZIPKIN_TIMEOUT" => Some("1000".into()),
            "ALL_PROXY" => Some(all_proxy.clone()),
            _ => None,
        };
        ZipkinTransport::from_lookup(env).unwrap().unwrap()
    };

    let remote_dns = through(format!("socks5h://ssh:p%40ss@{paddr}"));
    let shown = format!("{remote_dns:?}");
    assert!(
        shown.contains(&format!("socks5h://{paddr}")) && !shown.contains("p@ss"),
        "{shown}"
    );
    assert_eq!(send_one(remote_dns, 0, "via-socks"), (1, 0));
    let tunnels = proxy.tunnels.lock().unwrap().clone();
    assert_eq!(tunnels.len(), 1);
    assert_eq!(
        (tunnels[0].host.as_str(), tunnels[0].port),
        ("zipkin.invalid", 9411)
    );
    assert_eq!(tunnels[0].user.as_deref(), Some("ssh"));
    let received = collector.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    // Inside a tunnel the request is the one a direct connection would carry.
    assert_eq!(received[0].path, "/api/v2/spans");
    assert_eq!(received[0].headers["host"], "zipkin.invalid:9411");
    assert!(received[0].headers.get("proxy-authorization").is_none());

    // Wrong password: the proxy says so, and the transport reports it as the proxy's final
    // word, not retried (one handshake although the tracer may retry twice).
    let wrong = format!("socks5h://ssh:guess@{paddr}");
    let err = support::send_directly(&through(wrong.clone())).unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(
            "SOCKS5 proxy refused the tunnel to zipkin.invalid:9411: it rejected the user name \
             and password"
        ) && message.contains(&format!("(through proxy socks5h://{paddr})"))
            && !message.contains("guess"),
        "{message}"
    );
    let before = proxy.session_count();
    assert_eq!(send_one(through(wrong), 2, "refused"), (0, 1));
    assert_eq!(proxy.session_count() - before, 1);
    // socks5:// resolves the name here, which fails before the proxy is asked for a tunnel.
    assert_eq!(
        send_one(through(format!("socks5://ssh:p%40ss@{paddr}")), 0, "local"),
        (0, 1)
    );
    assert_eq!((proxy.count(), collector.count()), (1, 1));
}

/// A SOCKS5 proxy's refusal of the connection: by its rules (reply 2), final and not retried;
/// because the collector refused it (reply 5), retried like any connection failure.
#[test]
fn socks5_refusals_are_named_and_retried_only_when_they_may_pass() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, caddr) = rt.block_on(Collector::start(&[]));
    for (reply, why, retried) in [
        (2, "connection not allowed by its rules (reply 2)", false),
        (5, "connection refused by the collector (reply 5)", true),
    ] {
        let (proxy, paddr) = rt.block_on(Socks5Proxy::replying(caddr, None, reply));
        let through = || {
            ZipkinTransport::builder(ENDPOINT)
                .proxy(format!("socks5h://{paddr}"))
                .build()
                .unwrap()
        };
        let err = support::send_directly(&through()).unwrap_err();
        assert_eq!(err.is_retryable(), retried, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("refused the tunnel to zipkin.invalid:9411: {why}")),
            "{err}"
        );
        assert_eq!(send_one(through(), 2, "refused"), (0, 1));
        let attempts = if retried { 3 } else { 1 };
        assert_eq!(proxy.session_count(), 1 + attempts, "reply {reply}");
    }
}
