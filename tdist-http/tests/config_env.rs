//! `ZipkinTransport::from_env` and `configure` read the real process environment; this file is
//! its own test process with one test, so setting variables here races with nothing.
#![cfg(unix)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use tdist_core::Tracer;
use tdist_http::zipkin::ZipkinTransport;

/// A value that is not valid Unicode is a `ConfigError` naming the variable, not a variable
/// left unset (which would send the spans without the proxy, or not to Zipkin at all).
#[test]
fn a_value_that_is_not_unicode_names_its_variable() {
    let latin1 = |s: &[u8]| OsString::from_vec(s.to_vec());
    // Whatever the suite runs under (CI names collectors and proxies in the environment).
    for var in [
        "TDIST_TRANSPORT",
        "REQUEST_METHOD",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var(
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
        "http://127.0.0.1:9411/api/v2/spans",
    );
    for (var, value) in [
        (
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            latin1(b"http://caf\xe9:9411/"),
        ),
        ("TDIST_ZIPKIN_HEADERS", latin1(b"x-team=caf\xe9")),
        ("HTTPS_PROXY", latin1(b"http://caf\xe9:3128")),
    ] {
        let before = std::env::var_os(var);
        std::env::set_var(var, &value);
        let from_env = ZipkinTransport::from_env().map(|_| ());
        let configured = ZipkinTransport::configure(Tracer::builder()).map(|_| ());
        match before {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
        for result in [from_env, configured] {
            let err = result.expect_err(var);
            assert_eq!(err.variable(), var);
            assert!(err.to_string().contains("Unicode"), "{err}");
        }
    }
    ZipkinTransport::from_env().unwrap().unwrap();

    // Only what the transport reads counts: with no endpoint (another transport chosen) a
    // proxy variable of other programs is no one's error, and under CGI `HTTP_PROXY` (set
    // from a client's `Proxy:` header) is not read at all.
    std::env::set_var("no_proxy", latin1(b"caf\xe9.example"));
    std::env::remove_var("OTEL_EXPORTER_ZIPKIN_ENDPOINT");
    assert!(ZipkinTransport::from_env().unwrap().is_none());
    ZipkinTransport::configure(Tracer::builder()).unwrap();
    std::env::remove_var("no_proxy");
    std::env::set_var(
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
        "http://127.0.0.1:9411/api/v2/spans",
    );
    std::env::set_var("REQUEST_METHOD", "GET");
    std::env::set_var("HTTP_PROXY", latin1(b"http://caf\xe9:3128"));
    ZipkinTransport::from_env().unwrap().unwrap();
    std::env::remove_var("HTTP_PROXY");
    std::env::remove_var("REQUEST_METHOD");
}
