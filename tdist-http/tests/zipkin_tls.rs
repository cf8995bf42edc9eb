//! The Zipkin transport to an `https://` collector on 127.0.0.1 (feature `tls`): a hyper server
//! behind rustls with a certificate made for the test, trusted through the transport's PEM
//! roots; without them the certificate is refused and the spans are counted as failed. A
//! collector that requires client certificates (mutual TLS) admits the transport only with the
//! one it knows.
#![cfg(feature = "tls")]

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tdist_core::Tracer;
use tdist_http::zipkin::ZipkinTransport;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// What the collector received: one JSON list per request.
type Received = Arc<Mutex<Vec<Value>>>;

/// A collector on `https://127.0.0.1:PORT/api/v2/spans`, which admits only clients presenting
/// `client_root` (or a certificate it signed) when given; returns its port, its certificate
/// (PEM) and what it receives.
async fn tls_collector(client_root: Option<CertificateDer<'static>>) -> (u16, String, Received) {
    // `zipkin.invalid` does not resolve: only a proxy's tunnel reaches it.
    let names = vec!["127.0.0.1".to_string(), "zipkin.invalid".to_string()];
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let pem = made.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match client_root {
        None => config.with_no_client_auth(),
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            config.with_client_cert_verifier(verifier)
        }
    };
    let config = config
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let received = Received::default();
    let got = received.clone();
    let addr = support::accept_each(move |tcp| {
        let acceptor = acceptor.clone();
        let got = got.clone();
        async move {
            // A client that refuses the certificate ends the handshake: nothing to serve.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let got = got.clone();
                async move {
                    assert_eq!(req.uri().path(), "/api/v2/spans");
                    assert_eq!(req.headers()["b3"], "0");
                    // Inside a tunnel the proxy's credentials stay with the proxy.
                    assert!(req.headers().get("proxy-authorization").is_none());
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    got.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::ACCEPTED;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        }
    })
    .await;
    let port = addr.port();
    (port, pem, received)
}

fn tracer_to(transport: ZipkinTransport) -> Tracer {
    Tracer::builder()
        .service_name("shop")
        .transport(transport)
        .configure_reporter(|c| {
            c.schedule_delay = Duration::from_millis(20);
            c.max_retries = 0;
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_that_the_transport_trusts() {
    let (port, pem, received) = tls_collector(None).await;
    let url = format!("https://127.0.0.1:{port}/api/v2/spans");

    // Trusted through the environment, as a deployment would configure it.
    let ca_file = std::env::temp_dir().join(format!("tdist-zipkin-ca-{port}.pem"));
    std::fs::write(&ca_file, &pem).unwrap();
    let env = |k: &str| match k {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(url.clone()),
        "TDIST_ZIPKIN_CA_FILE" => Some(ca_file.display().to_string()),
        _ => None,
    };
    let trusted = ZipkinTransport::from_lookup(env).unwrap().unwrap();
    std::fs::remove_file(&ca_file).unwrap();
    assert_eq!(send_one(tracer_to(trusted), "checkout").await, (1, 0));
    let lists = received.lock().unwrap().clone();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0][0]["name"], "checkout");
    assert_eq!(lists[0][0]["localEndpoint"]["serviceName"], "shop");

    // Without the collector's certificate among its roots the transport refuses it: the span
    // is counted as failed, and nothing reaches the collector.
    let untrusted = ZipkinTransport::builder(url).build().unwrap();
    assert_eq!(send_one(tracer_to(untrusted), "refused").await, (0, 1));
    assert_eq!(received.lock().unwrap().len(), 1);
}

/// An `https://` collector reached through an HTTP proxy named by `HTTPS_PROXY`: a `CONNECT`
/// tunnel carrying the proxy's credentials, TLS to the collector (its name and certificate)
/// inside it; then through a SOCKS5 proxy's tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_through_a_connect_tunnel() {
    let (port, pem, received) = tls_collector(None).await;
    // base64("egress:pw")
    let basic = Some("Basic ZWdyZXNzOnB3");
    let (proxy, paddr) = support::ForwardProxy::start(([127, 0, 0, 1], port).into(), basic).await;
    let ca_file = std::env::temp_dir().join(format!("tdist-zipkin-tunnel-ca-{port}.pem"));
    std::fs::write(&ca_file, &pem).unwrap();
    let env = |k: &str| match k {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => {
            Some(format!("https://zipkin.invalid:{port}/api/v2/spans"))
        }
        "TDIST_ZIPKIN_CA_FILE" => Some(ca_file.display().to_string()),
        "HTTPS_PROXY" => Some(format!("http://egress:pw@{paddr}")),
        // For http:// endpoints only: not this one.
        "HTTP_PROXY" => Some("http://127.0.0.1:9".into()),
        _ => None,
    };
    let transport = ZipkinTransport::from_lookup(env).unwrap().unwrap();
    std::fs::remove_file(&ca_file).unwrap();
    assert_eq!(send_one(tracer_to(transport), "tunneled").await, (1, 0));
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "CONNECT");
    assert_eq!(seen[0].target, format!("zipkin.invalid:{port}"));
    assert_eq!(seen[0].auth.as_deref(), basic);
    let lists = received.lock().unwrap().clone();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0][0]["name"], "tunneled");

    // Wrong credentials: the proxy answers the CONNECT with 407, which the error reports and
    // which is not retried (the proxy sees one CONNECT although the tracer may retry 3 times).
    let wrong = ZipkinTransport::builder(format!("https://zipkin.invalid:{port}/api/v2/spans"))
        .ca_certificates_pem(pem.clone())
        .proxy(format!("http://egress:guess@{paddr}"))
        .build()
        .unwrap();
    let err = support::send_directly(&wrong).unwrap_err();
    let shown = err.to_string();
    assert!(!err.is_retryable(), "{shown}");
    let refusal =
        format!("proxy refused CONNECT zipkin.invalid:{port}: 407 Proxy Authentication Required");
    assert!(shown.contains(&refusal), "{shown}");
    assert_eq!(proxy.count(), 2);
    let t = support::tracer_to(wrong, 3);
    t.root_span("refused").finish();
    let stats = tokio::task::spawn_blocking(move || t.flush())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stats.sent, stats.failed, proxy.count()), (0, 1, 3));

    // The same through a SOCKS5 proxy that resolves the name: TLS inside its tunnel.
    let (socks, saddr) = support::Socks5Proxy::start(([127, 0, 0, 1], port).into(), None).await;
    let transport = ZipkinTransport::builder(format!("https://zipkin.invalid:{port}/api/v2/spans"))
        .ca_certificates_pem(pem)
        .proxy(format!("socks5h://{saddr}"))
        .build()
        .unwrap();
    assert_eq!(send_one(tracer_to(transport), "socks").await, (1, 0));
    let tunnels = socks.tunnels.lock().unwrap().clone();
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    assert_eq!(
        (tunnels[0].host.as_str(), tunnels[0].port),
        ("zipkin.invalid", port)
    );
    assert_eq!(received.lock().unwrap().len(), 2);
}

/// Flushes `tracer` after one span named `name`; the spans sent and failed.
async fn send_one(tracer: Tracer, name: &'static str) -> (u64, u64) {
    tracer.root_span(name).finish();
    let stats = tokio::task::spawn_blocking(move || tracer.flush())
        .await
        .unwrap();
    match stats {
        Ok(s) => (s.sent, s.failed),
        Err(e) => panic!("flush: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_requires_client_certificates_admits_the_configured_one() {
    let client = rcgen::generate_simple_self_signed(vec!["tdist-reporter".to_string()]).unwrap();
    let (port, pem, received) = tls_collector(Some(client.cert.der().clone())).await;
    let url = format!("https://127.0.0.1:{port}/api/v2/spans");

    // All three files from the environment, as a deployment would configure them.
    let dir = std::env::temp_dir();
    let files = [
        ("ca", pem.clone()),
        ("cert", client.cert.pem()),
        ("key", client.signing_key.serialize_pem()),
    ]
    .map(|(what, text)| {
        let path = dir.join(format!("tdist-zipkin-mtls-{port}-{what}.pem"));
        std::fs::write(&path, text).unwrap();
        path
    });
    let env = |k: &str| {
        let file = match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => return Some(url.clone()),
            "TDIST_ZIPKIN_CA_FILE" => &files[0],
            "TDIST_ZIPKIN_CLIENT_CERT_FILE" => &files[1],
            "TDIST_ZIPKIN_CLIENT_KEY_FILE" => &files[2],
            _ => return None,
        };
        Some(file.display().to_string())
    };
    let admitted = ZipkinTransport::from_lookup(env).unwrap().unwrap();
    for file in &files {
        std::fs::remove_file(file).unwrap();
    }
    assert_eq!(send_one(tracer_to(admitted), "admitted").await, (1, 0));
    let lists = received.lock().unwrap().clone();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0][0]["name"], "admitted");

    // No client certificate, or one the collector does not know: the handshake fails, the
    // span is counted as failed and nothing reaches the collector.
    let without = ZipkinTransport::builder(url.clone()).ca_certificates_pem(pem.clone());
    let stranger = rcgen::generate_simple_self_signed(vec!["someone-else".to_string()]).unwrap();
    let unknown = without
        .clone()
        .client_certificate_pem(stranger.cert.pem(), stranger.signing_key.serialize_pem());
    for (refused, name) in [
        (without, "no certificate"),
        (unknown, "unknown certificate"),
    ] {
        let tracer = tracer_to(refused.build().unwrap());
        assert_eq!(send_one(tracer, name).await, (0, 1), "{name}");
    }
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[test]
fn a_client_certificate_needs_its_own_key() {
    let url = "https://127.0.0.1:9411/api/v2/spans";
    let one = rcgen::generate_simple_self_signed(vec!["one".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    let cases = [
        (
            one.cert.pem(),
            other.signing_key.serialize_pem(),
            "unusable client certificate",
        ),
        (
            one.cert.pem(),
            "no key here".to_string(),
            "bad client key PEM",
        ),
        (
            "no certificate here".to_string(),
            one.signing_key.serialize_pem(),
            "without a CERTIFICATE",
        ),
    ];
    for (chain, key, expected) in cases {
        let b = ZipkinTransport::builder(url).client_certificate_pem(chain, key.clone());
        let shown = format!("{b:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains(key.trim()),
            "{shown}"
        );
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    // From the environment, a certificate without its key (or the reverse) names what is missing.
    let cert = std::env::temp_dir().join(format!(
        "tdist-zipkin-unpaired-cert-{}.pem",
        std::process::id()
    ));
    std::fs::write(&cert, one.cert.pem()).unwrap();
    for (given, missing) in [
        (
            "TDIST_ZIPKIN_CLIENT_CERT_FILE",
            "TDIST_ZIPKIN_CLIENT_KEY_FILE",
        ),
        (
            "TDIST_ZIPKIN_CLIENT_KEY_FILE",
            "TDIST_ZIPKIN_CLIENT_CERT_FILE",
        ),
    ] {
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(url.to_string()),
            k if k == given => Some(cert.display().to_string()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err();
        assert_eq!(err.variable(), missing, "{err}");
    }

    // A file that holds no usable PEM is named, not the endpoint.
    let junk = std::env::temp_dir().join(format!("tdist-zipkin-junk-{}.pem", std::process::id()));
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let key = std::env::temp_dir().join(format!("tdist-zipkin-key-{}.pem", std::process::id()));
    std::fs::write(&key, one.signing_key.serialize_pem()).unwrap();
    for (variable, cert_file, key_file) in [
        ("TDIST_ZIPKIN_CA_FILE", None, None),
        ("TDIST_ZIPKIN_CLIENT_CERT_FILE", Some(&junk), Some(&key)),
        ("TDIST_ZIPKIN_CLIENT_KEY_FILE", Some(&cert), Some(&junk)),
    ] {
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some(url.to_string()),
            "TDIST_ZIPKIN_CA_FILE" if variable == k => Some(junk.display().to_string()),
            "TDIST_ZIPKIN_CLIENT_CERT_FILE" => cert_file.map(|f| f.display().to_string()),
            "TDIST_ZIPKIN_CLIENT_KEY_FILE" => key_file.map(|f| f.display().to_string()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err();
        assert_eq!(err.variable(), variable, "{err}");
    }
    std::fs::remove_file(&junk).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&cert).unwrap();
}

#[test]
fn a_missing_ca_file_is_a_configuration_error() {
    let env = |k: &str| match k {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("https://127.0.0.1:9411/api/v2/spans".into()),
        "TDIST_ZIPKIN_CA_FILE" => Some("/nonexistent/tdist-ca.pem".into()),
        _ => None,
    };
    let err = ZipkinTransport::from_lookup(env).unwrap_err();
    assert!(err.to_string().contains("TDIST_ZIPKIN_CA_FILE"), "{err}");
}

#[test]
fn pem_without_a_certificate_is_refused() {
    let b = ZipkinTransport::builder("https://127.0.0.1:9411/api/v2/spans");
    let err = b
        .ca_certificates_pem("not a certificate")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tls"), "{err}");
}

/// Against real egress proxies (`bash .ci/proxies.sh` starts them): Debian's tinyproxy tunnels
/// to the `https://` collector (`TDIST_HTTP_PROXY`, basic auth); a tinyproxy that tunnels only
/// to port 443 (`TDIST_STRICT_PROXY`) refuses with 403, which the error reports and which is not
/// retried; microsocks (`TDIST_SOCKS_PROXY`, SOCKS5 with a password) tunnels too, rejects a
/// wrong password (final, not retried) and reports a collector port that refuses connections
/// (retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real proxies: TDIST_HTTP_PROXY, TDIST_STRICT_PROXY, TDIST_SOCKS_PROXY (see .ci/proxies.sh)"]
async fn https_through_real_proxies() {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: see .ci/proxies.sh"))
    };
    let (port, pem, received) = tls_collector(None).await;
    let endpoint = format!("https://127.0.0.1:{port}/api/v2/spans");
    let through = |proxy: String| {
        ZipkinTransport::builder(endpoint.clone())
            .ca_certificates_pem(pem.clone())
            .proxy(proxy)
            .build()
            .unwrap()
    };

    let tinyproxy = through(var("TDIST_HTTP_PROXY"));
    assert_eq!(send_one(tracer_to(tinyproxy), "tinyproxy").await, (1, 0));
    let socks = through(var("TDIST_SOCKS_PROXY"));
    assert_eq!(send_one(tracer_to(socks), "microsocks").await, (1, 0));
    let names: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|l| l[0]["name"].clone())
        .collect();
    assert_eq!(names, ["tinyproxy", "microsocks"]);

    let strict = through(var("TDIST_STRICT_PROXY"));
    let err = support::send_directly(&strict).unwrap_err();
    let shown = err.to_string();
    eprintln!("strict proxy: {shown}");
    assert!(!err.is_retryable(), "{shown}");
    assert!(
        shown.contains(&format!("proxy refused CONNECT 127.0.0.1:{port}: 403")),
        "{shown}"
    );

    let socks_url = var("TDIST_SOCKS_PROXY");
    // socks5h://user:password@host:port, with another password.
    let (before_at, at) = socks_url
        .rsplit_once('@')
        .expect("credentials in TDIST_SOCKS_PROXY");
    let (scheme_and_user, _) = before_at.rsplit_once(':').expect("a password");
    let err =
        support::send_directly(&through(format!("{scheme_and_user}:wrong@{at}"))).unwrap_err();
    let shown = err.to_string();
    eprintln!("socks proxy, wrong password: {shown}");
    assert!(!err.is_retryable(), "{shown}");
    assert!(
        shown.contains("rejected the user name and password"),
        "{shown}"
    );
    // A port nothing listens on: microsocks reports the refusal, which a later attempt may not meet.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = ZipkinTransport::builder(format!("https://127.0.0.1:{closed_port}/api/v2/spans"))
        .ca_certificates_pem(pem.clone())
        .proxy(socks_url)
        .build()
        .unwrap();
    let err = support::send_directly(&nowhere).unwrap_err();
    let shown = err.to_string();
    eprintln!("socks proxy, closed port: {shown}");
    assert!(err.is_retryable(), "{shown}");
    assert!(
        shown.contains("connection refused by the collector (reply 5)"),
        "{shown}"
    );
    assert_eq!(received.lock().unwrap().len(), 2);
}
