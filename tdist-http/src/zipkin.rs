//! A [`Transport`] that POSTs spans to any Zipkin-compatible collector (Zipkin, Jaeger, the
//! OpenTelemetry collector) at `/api/v2/spans`.
//!
//! It runs on the reporter's background thread, with its own single-threaded tokio runtime and
//! hyper-util's pooled client, so the application's runtime never does span I/O. Each request is
//! bounded by a connect timeout and a whole-request timeout. Connection errors, timeouts, 408,
//! 429 and 5xx are retryable (the reporter retries a bounded number of times with backoff, and
//! waits at least as long as a `Retry-After` asks); other 4xx, such as 400 for data the
//! collector rejects, are not. Its own requests carry
//! `b3: 0` so that a tracing proxy in between does not trace them, and it never creates spans.
//!
//! | Variable | Meaning | Default |
//! |---|---|---|
//! | `OTEL_EXPORTER_ZIPKIN_ENDPOINT` | collector URL (selects this transport) | `http://localhost:9411/api/v2/spans` with `TDIST_TRANSPORT=zipkin` |
//! | `OTEL_EXPORTER_ZIPKIN_TIMEOUT` | ms per request | 10000 |
//! | `TDIST_ZIPKIN_ENCODING` | `json` or `proto3` | `json` |
//! | `TDIST_ZIPKIN_GZIP` | `true` to gzip bodies | `false` |
//! | `TDIST_ZIPKIN_CA_FILE` | PEM file of extra trusted roots for `https://` (feature `tls`) | none |
//! | `TDIST_ZIPKIN_HEADERS` | extra request headers, `name=value` pairs separated by commas, values percent-encoded (the form of `OTEL_EXPORTER_OTLP_HEADERS`), for collectors behind an API key or token | none |
//! | `TDIST_ZIPKIN_CLIENT_CERT_FILE`, `TDIST_ZIPKIN_CLIENT_KEY_FILE` | PEM certificate chain and private key the transport presents to a collector that asks for one (mutual TLS; feature `tls`; both or neither) | none |
//! | `http_proxy`/`HTTP_PROXY`, `https_proxy`/`HTTPS_PROXY`, `all_proxy`/`ALL_PROXY` | proxy (`http://`, `socks5://`, `socks5h://`) for `http://`, for `https://`, for either endpoint (see `ZipkinTransportBuilder::proxy`) | none |
//! | `no_proxy`/`NO_PROXY` | hosts reached directly: domains (with their subdomains), addresses, CIDR blocks, `*`; loopback endpoints always are | none |
//!
//! `https://` endpoints need the `tls` feature (rustls): the server's certificate is checked
//! against the system's trusted roots and any given with
//! `ZipkinTransportBuilder::ca_certificates_pem` or `TDIST_ZIPKIN_CA_FILE`. A collector that
//! admits only known clients gets the certificate given with
//! `ZipkinTransportBuilder::client_certificate_pem` or the two client variables (each file a
//! regular file of at most 8 MiB). Without the feature, put a TLS-terminating proxy or a local
//! agent in front.
//!
//! Credentials in the endpoint (`https://user:password@collector/api/v2/spans`) become an
//! `Authorization: Basic` header, and the URL the transport keeps, shows and puts in its errors
//! has them removed. Header values (`ZipkinTransportBuilder::header`, `TDIST_ZIPKIN_HEADERS`) are
//! marked sensitive and never shown in `Debug` output or errors.
//!
//! ```
//! use tdist_http::zipkin::ZipkinTransport;
//!
//! let env = |k: &str| match k {
//!     "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:9411/api/v2/spans".to_string()),
//!     _ => None,
//! };
//! let builder = ZipkinTransport::configure_with(tdist_core::Tracer::builder(), env).unwrap();
//! assert!(builder.has_transport());
//! ```

use crate::proxy::{Proxy, ProxyChoice, ProxyConnector, ProxyEnv, TunnelRefused};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tdist_core::config::{ConfigError, Wanted};
use tdist_core::encode::{json_list, proto3_list};
use tdist_core::export::{Transport, TransportError};
use tdist_core::{FinishedSpan, TracerBuilder};

/// The usual collector address.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:9411/api/v2/spans";

/// This transport's name in `TDIST_TRANSPORT`.
const NAME: &str = "zipkin";

/// How spans are encoded in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Zipkin v2 JSON (`application/json`); every collector accepts it.
    #[default]
    Json,
    /// proto3 `ListOfSpans` (`application/x-protobuf`), smaller; Zipkin 2.8+.
    Proto3,
}

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZipkinError {
    /// The endpoint is not an absolute URL.
    #[error("invalid collector endpoint: {0}")]
    InvalidEndpoint(String),
    /// The scheme is neither `http` nor `https`, or `https` without the `tls` feature.
    #[error("unsupported scheme in collector endpoint (http, or https with the tls feature): {0}")]
    UnsupportedScheme(String),
    /// TLS settings that cannot be used: no trusted roots, or PEM that holds no certificate.
    #[error("tls: {reason}")]
    Tls {
        /// What the error is about.
        input: TlsInput,
        /// Why it cannot be used.
        reason: String,
    },
    /// An extra header that cannot be sent: an invalid name or value, or one the transport
    /// sets itself (`content-type`, `content-encoding`, `content-length`, `host`, `b3`,
    /// `transfer-encoding`). Names the header, never its value.
    #[error("collector request header {0:?}: {1}")]
    InvalidHeader(String, &'static str),
    /// A proxy URL that cannot be used (from the builder, or from the environment variable
    /// named): not a URL, or a scheme other than `http`, `socks5` and `socks5h` (TLS to the
    /// proxy and SOCKS4 are not supported). Never shows the proxy's credentials.
    #[error("unusable proxy{}: {reason}", variable.map(|v| format!(" in {v}")).unwrap_or_default())]
    InvalidProxy {
        /// The environment variable it came from, if any.
        variable: Option<&'static str>,
        /// What is wrong with it.
        reason: String,
    },
    /// Gzip was asked for but the `gzip` feature is off.
    #[error("gzip requested but tdist-http was built without the gzip feature")]
    GzipUnavailable,
    /// The transport's runtime could not start.
    #[error("cannot start the transport's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What a [`ZipkinError::Tls`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsInput {
    /// The trusted roots (the system's and those given, `TDIST_ZIPKIN_CA_FILE`).
    Roots,
    /// The client certificate (`TDIST_ZIPKIN_CLIENT_CERT_FILE`).
    ClientCertificate,
    /// The client key (`TDIST_ZIPKIN_CLIENT_KEY_FILE`).
    ClientKey,
    /// The TLS configuration itself.
    Config,
}

impl TlsInput {
    /// The variable that names this input's file, if one does.
    fn variable(self) -> Option<&'static str> {
        match self {
            TlsInput::Roots => Some("TDIST_ZIPKIN_CA_FILE"),
            TlsInput::ClientCertificate => Some("TDIST_ZIPKIN_CLIENT_CERT_FILE"),
            TlsInput::ClientKey => Some("TDIST_ZIPKIN_CLIENT_KEY_FILE"),
            TlsInput::Config => None,
        }
    }
}

/// Settings for a [`ZipkinTransport`].
#[derive(Clone)]
pub struct ZipkinTransportBuilder {
    endpoint: String,
    encoding: Encoding,
    gzip: bool,
    timeout: Duration,
    connect_timeout: Duration,
    /// PEM blobs of roots trusted beside the system's.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    ca_pem: Vec<Vec<u8>>,
    /// The client's certificate chain and private key, for mutual TLS.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    client_pem: Option<ClientIdentity>,
    /// Which proxy, if any, the collector is reached through.
    proxy: ProxyChoice,
    /// Extra request headers, checked in `build`.
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for ZipkinTransportBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ZipkinTransportBuilder")
            .field("endpoint", &redact_userinfo(&self.endpoint))
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_pem", &self.ca_pem.len())
            .field("client_pem", &self.client_pem)
            .field("headers", &header_names)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A client certificate chain and its private key, both PEM. The key is left out of `Debug`,
/// so that logging the settings does not log it.
#[derive(Clone)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
struct ClientIdentity {
    chain: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &format_args!("{} bytes of PEM", self.chain.len()))
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

impl ZipkinTransportBuilder {
    /// JSON or proto3 (default JSON).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Gzip request bodies (default off).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Limit on one whole request, connect included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limit on establishing a connection (default the smaller of 2 s and the timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the certificates in `pem` (one or more `CERTIFICATE` blocks) as roots for an
    /// `https://` collector, beside the system's: a private CA, or a collector's self-signed
    /// certificate.
    #[cfg(feature = "tls")]
    pub fn ca_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem.push(pem.into());
        self
    }

    /// Presents a client certificate to an `https://` collector that asks for one (mutual
    /// TLS): `chain` holds the certificate and any intermediates (`CERTIFICATE` blocks, leaf
    /// first), `key` its private key (PKCS#8, PKCS#1 or SEC1). [`build`](Self::build) fails when
    /// either cannot be parsed or the key is not the certificate's.
    #[cfg(feature = "tls")]
    pub fn client_certificate_pem(
        mut self,
        chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_pem = Some(ClientIdentity {
            chain: chain.into(),
            key: key.into(),
        });
        self
    }

    /// Sends `name: value` with every request: an API key or a bearer token for a collector
    /// behind an authenticating gateway. The value is marked sensitive and never shown.
    /// [`build`](Self::build) fails on a name or value HTTP does not allow and on the headers
    /// the transport sets itself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Reaches the collector through the proxy at `url`, whatever the environment says:
    /// `http://[user:password@]host:port` for an HTTP proxy (port 80 by default), or
    /// `socks5h://...` / `socks5://...` for a SOCKS5 proxy (port 1080 by default); credentials
    /// percent-encoded. Through an HTTP proxy, requests for an `http://` endpoint go to the proxy
    /// in absolute form with `Proxy-Authorization` from the URL's credentials, and for an
    /// `https://` endpoint the transport opens a `CONNECT` tunnel (carrying the credentials) and
    /// runs TLS to the collector inside it. Through a SOCKS5 proxy (user/password
    /// authentication when the URL has credentials) every request goes through a tunnel; with
    /// `socks5h://` the proxy resolves the collector's name, with `socks5://` the transport
    /// does, as in curl. A proxy's own refusal (its 407, a 4xx to `CONNECT`, a SOCKS5 proxy
    /// rejecting the password or refusing by its rules) is not retried; errors name the proxy.
    ///
    /// By default the transport follows the environment as curl does: `http_proxy` /
    /// `HTTP_PROXY` for `http://` endpoints, `https_proxy` / `HTTPS_PROXY` for `https://`,
    /// `all_proxy` / `ALL_PROXY` for either, except for hosts in `no_proxy` / `NO_PROXY` and for
    /// loopback endpoints (`localhost`, `127.0.0.0/8`, `::1`), which it always reaches directly.
    /// Under CGI (`REQUEST_METHOD` set) `HTTP_PROXY` is ignored, since a client's `Proxy:`
    /// header arrives in it.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxyChoice::Url(url.into());
        self
    }

    /// Connects to the collector directly, whatever the environment's proxy variables say.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// Checks the endpoint and starts the transport's runtime.
    pub fn build(self) -> Result<ZipkinTransport, ZipkinError> {
        // Errors show the endpoint without its credentials.
        let shown = || redact_userinfo(&self.endpoint);
        let Some((endpoint, basic)) = split_userinfo(self.endpoint.trim()) else {
            return Err(ZipkinError::InvalidEndpoint(shown()));
        };
        match endpoint.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "tls") => {}
            None => return Err(ZipkinError::InvalidEndpoint(shown())),
            Some(_) => return Err(ZipkinError::UnsupportedScheme(shown())),
        }
        let Some(authority) = endpoint.authority().filter(|_| endpoint.host().is_some()) else {
            return Err(ZipkinError::InvalidEndpoint(shown()));
        };
        // `Uri` takes a port that is not a number up to 65535 (`:99999`, `:94l1`) and then
        // reports none, which the connector reads as the scheme's default port (80 or 443).
        let port = authority.as_str()[authority.host().len()..].strip_prefix(':');
        if port.is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_err()) {
            return Err(ZipkinError::InvalidEndpoint(shown()));
        }
        let headers = extra_headers(&self.headers, basic)?;
        let proxy = match &self.proxy {
            ProxyChoice::Direct => None,
            ProxyChoice::Url(url) => Some(Proxy::parse(url).map_err(|reason| {
                let variable = None;
                ZipkinError::InvalidProxy { variable, reason }
            })?),
            ProxyChoice::Env(env) => match env.for_endpoint(&endpoint) {
                None => None,
                Some((variable, url)) => Some(Proxy::parse(url).map_err(|reason| {
                    let variable = Some(variable);
                    ZipkinError::InvalidProxy { variable, reason }
                })?),
            },
        };
        // Requests that go to a proxy in absolute form carry its credentials; inside a tunnel
        // they would reach the collector, so there the CONNECT request carries them.
        let proxy_auth = match endpoint.scheme_str() {
            Some("http") => proxy.as_ref().and_then(|p| p.http_auth().cloned()),
            _ => None,
        };
        if self.gzip && !cfg!(feature = "gzip") {
            return Err(ZipkinError::GzipUnavailable);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout.min(self.timeout)));
        connector.set_nodelay(true);
        // The TLS layer (feature tls) hands `https://` destinations down to this connector.
        connector.enforce_http(false);
        let connector = ProxyConnector::new(connector, proxy.as_ref());
        #[cfg(feature = "tls")]
        let connector = tls::connector(connector, &self.ca_pem, self.client_pem.as_ref())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(ZipkinTransport {
            endpoint,
            headers,
            proxy: proxy.map(|p| p.shown()),
            proxy_auth,
            encoding: self.encoding,
            gzip: self.gzip,
            timeout: self.timeout,
            runtime: Some(runtime),
            client,
        })
    }
}

/// Sends spans to a Zipkin collector over HTTP. See the [module docs](self).
pub struct ZipkinTransport {
    endpoint: Uri,
    /// Extra headers for every request (values sensitive).
    headers: http::HeaderMap,
    /// The proxy the collector is reached through, if any, as `scheme://host:port`.
    proxy: Option<String>,
    /// `Proxy-Authorization` for requests sent to the proxy in absolute form (sensitive).
    proxy_auth: Option<http::HeaderValue>,
    encoding: Encoding,
    gzip: bool,
    timeout: Duration,
    runtime: Option<tokio::runtime::Runtime>,
    client: Client<Connector, Full<Bytes>>,
}

/// Plain TCP (direct or through a proxy), or with the `tls` feature TCP or TLS as the endpoint's
/// scheme says.
#[cfg(not(feature = "tls"))]
type Connector = ProxyConnector;
#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<ProxyConnector>;

#[cfg(feature = "tls")]
mod tls {
    use super::{TlsInput, ZipkinError};
    use crate::proxy::ProxyConnector;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    /// A connector for `http://` and `https://`: rustls with aws-lc-rs, HTTP/1, the system's roots
    /// and those in `extra_pem`, and the client certificate and key in `client_pem` if given.
    pub(super) fn connector(
        tcp: ProxyConnector,
        extra_pem: &[Vec<u8>],
        client_pem: Option<&super::ClientIdentity>,
    ) -> Result<hyper_rustls::HttpsConnector<ProxyConnector>, ZipkinError> {
        let mut roots = rustls::RootCertStore::empty();
        // Certificates the system store holds but rustls cannot parse are skipped, as are
        // unreadable files (the result lists them): the others still count.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for pem in extra_pem {
            for cert in certificates(pem, TlsInput::Roots, "root")? {
                roots.add(cert).map_err(|e| {
                    tls_error(TlsInput::Roots, format!("unusable root certificate: {e}"))
                })?;
            }
        }
        if roots.is_empty() {
            return Err(tls_error(
                TlsInput::Roots,
                "no trusted roots: none in the system store and none given".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(TlsInput::Config, e.to_string()))?
            .with_root_certificates(roots);
        let config = match client_pem {
            None => config.with_no_client_auth(),
            Some(super::ClientIdentity { chain, key }) => {
                let chain = certificates(chain, TlsInput::ClientCertificate, "client certificate")?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    tls_error(TlsInput::ClientKey, format!("bad client key PEM: {e}"))
                })?;
                config.with_client_auth_cert(chain, key).map_err(|e| {
                    let why = format!("unusable client certificate: {e}");
                    tls_error(TlsInput::ClientCertificate, why)
                })?
            }
        };
        Ok(hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp))
    }

    /// The certificates in `pem` (the `input` called `what`, for errors): at least one.
    fn certificates(
        pem: &[u8],
        input: TlsInput,
        what: &str,
    ) -> Result<Vec<CertificateDer<'static>>, ZipkinError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(input, format!("bad {what} PEM: {e}")))?;
        if certs.is_empty() {
            return Err(tls_error(
                input,
                format!("{what} PEM without a CERTIFICATE block"),
            ));
        }
        Ok(certs)
    }

    fn tls_error(input: TlsInput, reason: String) -> ZipkinError {
        ZipkinError::Tls { input, reason }
    }
}

impl std::fmt::Debug for ZipkinTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipkinTransport")
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("proxy", &self.proxy)
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ZipkinTransport {
    /// Settings for `endpoint` (such as `http://zipkin:9411/api/v2/spans`): JSON, no gzip,
    /// 10 s timeout, and the proxy the environment's variables name for it, read now (see
    /// [`ZipkinTransportBuilder::proxy`]).
    pub fn builder(endpoint: impl Into<String>) -> ZipkinTransportBuilder {
        ZipkinTransportBuilder {
            endpoint: endpoint.into(),
            encoding: Encoding::Json,
            gzip: false,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            ca_pem: Vec::new(),
            client_pem: None,
            proxy: ProxyChoice::Env(ProxyEnv::read(&|k| std::env::var(k).ok())),
            headers: Vec::new(),
        }
    }

    /// A transport from the environment (see the module docs); `None` when
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is unset.
    pub fn from_env() -> Result<Option<ZipkinTransport>, ConfigError> {
        let env = tdist_core::EnvReader::new();
        let result = Self::from_lookup(|k| env.get(k));
        env.finish(result)
    }

    /// [`from_env`](Self::from_env) with a custom variable lookup.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ZipkinTransport>, ConfigError> {
        let Some(endpoint) = get("OTEL_EXPORTER_ZIPKIN_ENDPOINT").filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        Self::from_settings(endpoint, &get).map(Some)
    }

    fn from_settings(
        endpoint: String,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<ZipkinTransport, ConfigError> {
        let mut b = ZipkinTransport::builder(endpoint.clone());
        b.proxy = ProxyChoice::Env(ProxyEnv::read(get));
        if let Some(v) = get("OTEL_EXPORTER_ZIPKIN_TIMEOUT") {
            let ms = v.trim().parse::<u64>().ok().filter(|n| *n > 0);
            let ms = ms.ok_or_else(|| {
                ConfigError::new("OTEL_EXPORTER_ZIPKIN_TIMEOUT", v.clone(), "expected ms > 0")
            })?;
            b = b.timeout(Duration::from_millis(ms));
        }
        if let Some(v) = get("TDIST_ZIPKIN_ENCODING") {
            b = b.encoding(match v.trim().to_ascii_lowercase().as_str() {
                "json" => Encoding::Json,
                "proto3" | "proto" | "protobuf" => Encoding::Proto3,
                _ => {
                    let e = ConfigError::new("TDIST_ZIPKIN_ENCODING", v, "expected json or proto3");
                    return Err(e);
                }
            });
        }
        // Without the tls feature, read_tls_file refuses each of these variables.
        if let Some(pem) = read_tls_file(get, "TDIST_ZIPKIN_CA_FILE")? {
            b.ca_pem.push(pem);
        }
        if let Some(v) = get("TDIST_ZIPKIN_HEADERS") {
            for (name, value) in parse_header_list(&v)? {
                b = b.header(name, value);
            }
        }
        let cert = read_tls_file(get, "TDIST_ZIPKIN_CLIENT_CERT_FILE")?;
        let key = read_tls_file(get, "TDIST_ZIPKIN_CLIENT_KEY_FILE")?;
        match (cert, key) {
            (None, None) => {}
            (Some(chain), Some(key)) => b.client_pem = Some(ClientIdentity { chain, key }),
            (Some(_), None) => {
                let e = unpaired(
                    "TDIST_ZIPKIN_CLIENT_KEY_FILE",
                    "TDIST_ZIPKIN_CLIENT_CERT_FILE",
                );
                return Err(e);
            }
            (None, Some(_)) => {
                let e = unpaired(
                    "TDIST_ZIPKIN_CLIENT_CERT_FILE",
                    "TDIST_ZIPKIN_CLIENT_KEY_FILE",
                );
                return Err(e);
            }
        }
        if let Some(v) = get("TDIST_ZIPKIN_GZIP") {
            b = b.gzip(match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => {
                    return Err(ConfigError::new(
                        "TDIST_ZIPKIN_GZIP",
                        v,
                        "expected true/false",
                    ))
                }
            });
        }
        let at_endpoint = |why: String| {
            let shown = redact_userinfo(&endpoint);
            ConfigError::new("OTEL_EXPORTER_ZIPKIN_ENDPOINT", shown, why)
        };
        b.build().map_err(|e| match e {
            ZipkinError::InvalidProxy {
                variable: Some(variable),
                reason,
            } => ConfigError::new(variable, String::new(), reason),
            // Only `TDIST_ZIPKIN_HEADERS` adds headers here; its values are secrets.
            e @ ZipkinError::InvalidHeader(..) => {
                ConfigError::new("TDIST_ZIPKIN_HEADERS", "(redacted)", e.to_string())
            }
            e @ ZipkinError::GzipUnavailable => {
                ConfigError::new("TDIST_ZIPKIN_GZIP", "true", e.to_string())
            }
            // The file a TLS error is about, if a file is.
            ZipkinError::Tls { input, reason } => match input.variable() {
                Some(variable) => {
                    let value = get(variable).unwrap_or_default();
                    ConfigError::new(variable, value, format!("tls: {reason}"))
                }
                None => at_endpoint(format!("tls: {reason}")),
            },
            e => at_endpoint(e.to_string()),
        })
    }

    /// Selects this transport on `builder` when `OTEL_EXPORTER_ZIPKIN_ENDPOINT` is set, or with
    /// the default endpoint when `TDIST_TRANSPORT=zipkin`, unless a transport was set in code
    /// or `TDIST_TRANSPORT` names another (`kafka`, `stdout`, ...). Adapters may be asked in
    /// any order: `TDIST_TRANSPORT` decides.
    pub fn configure(builder: TracerBuilder) -> Result<TracerBuilder, ConfigError> {
        let env = tdist_core::EnvReader::new();
        let result = Self::configure_with(builder, |k| env.get(k));
        env.finish(result)
    }

    /// [`configure`](Self::configure) with a custom variable lookup.
    pub fn configure_with(
        builder: TracerBuilder,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<TracerBuilder, ConfigError> {
        let wanted = builder.wanted(NAME, &get);
        if wanted == Wanted::No {
            return Ok(builder);
        }
        match Self::from_lookup(&get)? {
            Some(t) => Ok(builder.select_transport(NAME, t)),
            None if wanted == Wanted::Named => {
                let t = Self::from_settings(DEFAULT_ENDPOINT.to_owned(), &get)?;
                Ok(builder.select_transport(NAME, t))
            }
            None => Ok(builder),
        }
    }

    /// The collector URL.
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// The request a batch becomes (also useful to see exactly what is sent).
    pub fn request(&self, spans: &[FinishedSpan]) -> Request<Full<Bytes>> {
        let (body, content_type) = match self.encoding {
            Encoding::Json => (json_list(spans), "application/json"),
            Encoding::Proto3 => (proto3_list(spans), "application/x-protobuf"),
        };
        let mut req = Request::post(self.endpoint.clone())
            .header(CONTENT_TYPE, content_type)
            .header("b3", "0");
        if let Some(headers) = req.headers_mut() {
            headers.extend(self.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
            if let Some(auth) = &self.proxy_auth {
                headers.insert(http::header::PROXY_AUTHORIZATION, auth.clone());
            }
        }
        let body = if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
            gzip(&body)
        } else {
            body
        };
        req.body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    fn post(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let req = self.request(spans);
        // The answer's status (and `Retry-After`), and the start of its body, as far as they
        // arrived: an answer whose body is long, or never ends, is still judged by its status.
        let mut head = None;
        let mut text = Vec::new();
        let exchange = async {
            let response = self.client.request(req).await?;
            let wait = retry_after(response.headers().get(http::header::RETRY_AFTER));
            head = Some((response.status(), wait));
            // The collector explains rejections in the body; read the start of it.
            let mut body = response.into_body();
            while text.len() < MAX_ANSWER_TEXT {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        let data = frame.data_ref().map_or(&[][..], |d| &d[..]);
                        let room = MAX_ANSWER_TEXT - text.len();
                        text.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    Some(Err(_)) | None => break,
                }
            }
            Ok::<_, hyper_util::client::legacy::Error>(())
        };
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(TransportError::fatal("zipkin transport is shut down"));
        };
        // The timer must be created inside the runtime.
        let bounded = async { tokio::time::timeout(self.timeout, exchange).await };
        let outcome = match runtime.block_on(bounded) {
            Ok(Ok(())) | Err(_) => match head {
                Some((status, wait)) => classify(status, &String::from_utf8_lossy(&text), wait),
                None => Err(TransportError::retryable(format!(
                    "zipkin collector {} did not answer within {:?}",
                    self.endpoint, self.timeout
                ))),
            },
            Ok(Err(e)) => {
                let message = format!("zipkin collector {}: {}", self.endpoint, error_chain(&e));
                // A proxy that refused the tunnel for a reason of its own (credentials, policy)
                // will refuse again; only its failures to reach the collector are worth retrying.
                match tunnel_refusal(&e) {
                    Some(refused) if refused.is_final() => Err(TransportError::fatal(message)),
                    _ => Err(TransportError::retryable(message)),
                }
            }
        };
        // Through a proxy, any of these may be the proxy's doing: say which one.
        match &self.proxy {
            Some(proxy) => outcome.map_err(|e| e.with_note(format_args!("through proxy {proxy}"))),
            None => outcome,
        }
    }
}

/// The most of an answer's body read (for the error message of a rejection).
const MAX_ANSWER_TEXT: usize = 1024;

/// Headers the transport sets itself, which an extra header may not replace.
const OWN_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
    "b3",
];

/// The extra headers as sent: each checked, values marked sensitive, and `Authorization: Basic`
/// from the endpoint's credentials (user, password) unless an `authorization` header is given.
fn extra_headers(
    given: &[(String, String)],
    basic: Option<(String, String)>,
) -> Result<http::HeaderMap, ZipkinError> {
    use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
    let mut headers = http::HeaderMap::new();
    for (name, value) in given {
        let invalid = |why| ZipkinError::InvalidHeader(name.clone(), why);
        let name = HeaderName::try_from(name.trim()).map_err(|_| invalid("invalid name"))?;
        if OWN_HEADERS.contains(&name.as_str()) {
            return Err(invalid("set by the transport itself"));
        }
        let mut value =
            HeaderValue::try_from(value.trim()).map_err(|_| invalid("invalid value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    if let Some((user, password)) = basic.filter(|_| !headers.contains_key(AUTHORIZATION)) {
        headers.insert(AUTHORIZATION, basic_auth(&user, &password));
    }
    Ok(headers)
}

/// `Basic` credentials as a header value (`Authorization`, `Proxy-Authorization`), marked
/// sensitive.
pub(crate) fn basic_auth(user: &str, password: &str) -> http::HeaderValue {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::try_from(format!("Basic {token}"))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// A URL's `user[:password]`, each percent-decoded (a missing password is empty).
pub(crate) fn decode_userinfo(userinfo: &str) -> (String, String) {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (decode(user), decode(password))
}

/// The endpoint without its credentials (`user:password@`), and the credentials decoded;
/// `None` when it is not a URI.
fn split_userinfo(endpoint: &str) -> Option<(Uri, Option<(String, String)>)> {
    let uri: Uri = endpoint.parse().ok()?;
    let Some(authority) = uri.authority() else {
        return Some((uri, None));
    };
    let Some((userinfo, host)) = authority.as_str().rsplit_once('@') else {
        return Some((uri, None));
    };
    let credentials = decode_userinfo(userinfo);
    let host = host.parse().ok()?;
    let mut parts = uri.into_parts();
    parts.authority = Some(host);
    Some((Uri::from_parts(parts).ok()?, Some(credentials)))
}

/// `endpoint` with any credentials before an `@` in its authority replaced by `***`, for
/// messages.
pub(crate) fn redact_userinfo(endpoint: &str) -> String {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, endpoint),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let redacted = match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("***@{host}{}", &rest[authority_end..]),
        None => return endpoint.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{redacted}"),
        None => redacted,
    }
}

/// `TDIST_ZIPKIN_HEADERS`: `name=value` pairs separated by commas, values percent-decoded, empty
/// entries skipped. Errors name the variable and the entry's position, never a value.
fn parse_header_list(list: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::new();
    for (i, entry) in list.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = entry.split_once('=') else {
            let why = format!("entry {} is not name=value", i + 1);
            return Err(ConfigError::new("TDIST_ZIPKIN_HEADERS", "(redacted)", why));
        };
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8();
        let Ok(value) = value else {
            let why = format!("the value of entry {} is not UTF-8 once decoded", i + 1);
            return Err(ConfigError::new("TDIST_ZIPKIN_HEADERS", "(redacted)", why));
        };
        headers.push((name.trim().to_owned(), value.into_owned()));
    }
    Ok(headers)
}

/// The contents of the PEM file named by variable `name`, if it is set and not empty; an error
/// when it cannot be read, or when tdist-http was built without the `tls` feature.
fn read_tls_file(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = get(name).filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    if !cfg!(feature = "tls") {
        let why = "tdist-http was built without the tls feature";
        return Err(ConfigError::new(name, path, why));
    }
    read_bounded(std::path::Path::new(path.trim()), MAX_TLS_FILE)
        .map(Some)
        .map_err(|why| ConfigError::new(name, path, why))
}

/// The largest PEM file read from the environment. System CA bundles are a few hundred KB.
const MAX_TLS_FILE: u64 = 8 << 20;

/// A regular file's contents, if it has at most `max` bytes. A device or a FIFO (a mistyped
/// `/dev/...` path) is refused before it is opened, so that it can neither block nor fill the
/// memory.
fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut contents = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut contents))
        .map_err(|e| e.to_string())?;
    if contents.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(contents)
}

/// The error for a client certificate without its key, or a key without its certificate.
fn unpaired(missing: &'static str, given: &str) -> ConfigError {
    let why = format!("unset while {given} is set: a client certificate needs its key");
    ConfigError::new(missing, String::new(), why)
}

/// How long a `Retry-After` header asks the client to wait: delta-seconds, or an HTTP date
/// (zero when it has passed). `None` when absent or unreadable.
fn retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let value = value?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The outcome of an answer: success, a failure worth retrying (after `retry_after`, when the
/// collector asked for a wait), or one that is not.
fn classify(
    status: StatusCode,
    text: &str,
    retry_after: Option<Duration>,
) -> Result<(), TransportError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        // Only a proxy on the way says this: its credentials are missing or wrong.
        let why = "the proxy wants other credentials";
        return Err(TransportError::fatal(format!(
            "proxy answered {status}: {why}"
        )));
    }
    let message = format!("zipkin collector answered {status}: {}", text.trim());
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        let e = TransportError::retryable(message);
        Err(match retry_after {
            Some(wait) => e.retry_after(wait),
            None => e,
        })
    } else {
        Err(TransportError::fatal(message))
    }
}

/// A proxy's refusal of a tunnel (`CONNECT` or SOCKS5) somewhere in `e`'s chain of causes.
fn tunnel_refusal<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e TunnelRefused> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<TunnelRefused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(feature = "gzip")]
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(not(feature = "gzip"))]
fn gzip(body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

impl Drop for ZipkinTransport {
    fn drop(&mut self) {
        // The last tracer handle may be dropped inside an async context, where dropping a
        // runtime normally would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Transport for ZipkinTransport {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        if spans.is_empty() {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Called from inside someone's runtime (not the reporter thread): block_on would
            // panic there, so do the I/O on a scoped thread.
            return std::thread::scope(|s| {
                s.spawn(|| self.post(spans))
                    .join()
                    .unwrap_or_else(|_| Err(TransportError::fatal("zipkin transport panicked")))
            });
        }
        self.post(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(classify(StatusCode::ACCEPTED, "", None).is_ok());
        assert!(classify(StatusCode::SERVICE_UNAVAILABLE, "", None)
            .unwrap_err()
            .is_retryable());
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, "", None)
            .unwrap_err()
            .is_retryable());
        let e = classify(StatusCode::PROXY_AUTHENTICATION_REQUIRED, "", None).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("proxy answered 407"), "{e}");
        let e = classify(
            StatusCode::BAD_REQUEST,
            "Expected a JSON_V2 encoded list",
            None,
        )
        .unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("JSON_V2"));
    }

    #[test]
    fn retry_after_is_read_from_seconds_or_a_date() {
        let read = |v: &'static str| retry_after(Some(&http::HeaderValue::from_static(v)));
        assert_eq!(read("7"), Some(Duration::from_secs(7)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let soon = http::HeaderValue::try_from(httpdate::fmt_http_date(soon)).unwrap();
        let wait = retry_after(Some(&soon)).unwrap();
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(read("soon"), None);
        assert_eq!(read("-3"), None);
        assert_eq!(retry_after(None), None);

        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            "",
            Some(Duration::from_secs(2)),
        );
        assert_eq!(e.unwrap_err().retry_delay(), Some(Duration::from_secs(2)));
        let e = classify(StatusCode::BAD_REQUEST, "", Some(Duration::from_secs(2)));
        assert!(!e.unwrap_err().is_retryable());
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(matches!(
            ZipkinTransport::builder("not a url").build(),
            Err(ZipkinError::InvalidEndpoint(_))
        ));
        // `https` with the `tls` feature only; other schemes never.
        let https = ZipkinTransport::builder("https://zipkin/api/v2/spans").build();
        match cfg!(feature = "tls") {
            true => assert!(https.is_ok(), "{https:?}"),
            false => assert!(matches!(https, Err(ZipkinError::UnsupportedScheme(_)))),
        }
        assert!(matches!(
            ZipkinTransport::builder("ftp://zipkin/api/v2/spans").build(),
            Err(ZipkinError::UnsupportedScheme(_))
        ));
        assert!(
            ZipkinTransport::builder("http://127.0.0.1:9411/api/v2/spans")
                .build()
                .is_ok()
        );
    }

    /// A port that is not a number up to 65535 makes `Uri::port_u16` `None`, which the
    /// connector reads as "the scheme's default": the spans would go to port 80 or 443.
    #[test]
    fn endpoints_with_unusable_ports_are_refused() {
        for bad in [
            "http://127.0.0.1:99999/api/v2/spans",
            "http://127.0.0.1:65536/api/v2/spans",
            "http://[::1]:70000/api/v2/spans",
            "http://collector:94l1/api/v2/spans",
            "http://reporter:secret@collector:123456/api/v2/spans",
        ] {
            let built = ZipkinTransport::builder(bad).no_proxy().build();
            match built {
                Err(ZipkinError::InvalidEndpoint(shown)) => {
                    assert!(!shown.contains("secret"), "{shown}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for good in [
            "http://127.0.0.1:9411/api/v2/spans",
            "http://127.0.0.1/api/v2/spans",
            "http://[::1]:9411/api/v2/spans",
            "http://127.0.0.1:65535/api/v2/spans",
        ] {
            let built = ZipkinTransport::builder(good).no_proxy().build();
            assert!(built.is_ok(), "{good}: {built:?}");
        }
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:99999/api/v2/spans".into()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err();
        assert_eq!(err.variable(), "OTEL_EXPORTER_ZIPKIN_ENDPOINT");
    }

    #[test]
    fn env_selection() {
        let none = |_: &str| None;
        let b = ZipkinTransport::configure_with(TracerBuilder::default(), none).unwrap();
        assert!(!b.has_transport());
        let wanted = |k: &str| (k == "TDIST_TRANSPORT").then(|| "zipkin".to_string());
        let b = ZipkinTransport::configure_with(TracerBuilder::default(), wanted).unwrap();
        assert!(b.has_transport());
        let bad = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:9411/api/v2/spans".into()),
            "OTEL_EXPORTER_ZIPKIN_TIMEOUT" => Some("soon".into()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(bad).unwrap_err();
        assert_eq!(err.variable(), "OTEL_EXPORTER_ZIPKIN_TIMEOUT");
    }

    /// `TDIST_TRANSPORT` decides between adapters, whichever is asked first.
    #[test]
    fn env_selection_follows_tdist_transport() {
        let env = |transport: Option<&'static str>| {
            move |k: &str| match k {
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:9/api/v2/spans".into()),
                "TDIST_TRANSPORT" => transport.map(str::to_owned),
                _ => None,
            }
        };
        let configured = |transport| {
            let b = TracerBuilder::from_lookup(env(transport)).unwrap();
            ZipkinTransport::configure_with(b, env(transport)).unwrap()
        };
        for transport in [None, Some("zipkin")] {
            let b = configured(transport);
            assert!(b.has_transport() && b.pending_transport().is_none());
            b.build().unwrap().shutdown().unwrap();
        }
        // Kafka was asked for: the endpoint alone does not take its place.
        let b = configured(Some("kafka"));
        assert_eq!(b.pending_transport(), Some("kafka"));
        assert!(b.may_select("kafka"));
        // Core's own choice, or a transport set in code, leaves the endpoint unused.
        let b = configured(Some("none"));
        assert!(b.has_transport() && !b.may_select(NAME));
        let in_code = TracerBuilder::from_lookup(env(None))
            .unwrap()
            .transport(tdist_core::export::NoopTransport);
        let b = ZipkinTransport::configure_with(in_code, env(None)).unwrap();
        assert!(!b.may_select(NAME));
        // The endpoint set and the builder never shown to this adapter: it builds (with a
        // warning), with no transport.
        let b = TracerBuilder::from_lookup(env(None)).unwrap();
        assert!(!b.has_transport());
        b.build().unwrap().shutdown().unwrap();
    }

    #[test]
    fn header_lists_from_the_environment() {
        let parsed = parse_header_list("api-key=abc%20def%2C1, x-team = t1 ,,").unwrap();
        let expected = [("api-key", "abc def,1"), ("x-team", "t1")];
        let expected: Vec<_> = expected.map(|(n, v)| (n.into(), v.into())).into();
        assert_eq!(parsed, expected);
        assert_eq!(parse_header_list("").unwrap(), Vec::new());
        for bad in ["api-key", "a=1,token-secret-value", "a=%FF"] {
            let err = parse_header_list(bad).unwrap_err();
            assert_eq!(err.variable(), "TDIST_ZIPKIN_HEADERS");
            let shown = err.to_string();
            assert!(
                !shown.contains("secret") && !shown.contains("%FF"),
                "{shown}"
            );
        }

        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:9411/api/v2/spans".into()),
            "TDIST_ZIPKIN_HEADERS" => Some("X-Api-Key=k3y,x-tenant=shop".into()),
            _ => None,
        };
        let t = ZipkinTransport::from_lookup(env).unwrap().unwrap();
        let req = t.request(&[]);
        assert_eq!(req.headers()["x-api-key"], "k3y");
        assert_eq!(req.headers()["x-tenant"], "shop");
        assert!(req.headers()["x-api-key"].is_sensitive());
        assert_eq!(req.headers()["b3"], "0");
        assert!(!format!("{t:?}").contains("k3y"), "{t:?}");
    }

    /// A header from `TDIST_ZIPKIN_HEADERS` that the list's syntax allows but HTTP or the
    /// transport does not is that variable's error, not the endpoint's, and shows no value.
    #[test]
    fn unusable_headers_from_the_environment_name_their_variable() {
        for list in [
            "content-type=text/plain",
            "x-api-key=secret%0Abreak",
            "bad name=secret",
        ] {
            let env = |k: &str| match k {
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => {
                    Some("http://127.0.0.1:9411/api/v2/spans".into())
                }
                "TDIST_ZIPKIN_HEADERS" => Some(list.into()),
                _ => None,
            };
            let err = ZipkinTransport::from_lookup(env).unwrap_err();
            assert_eq!(err.variable(), "TDIST_ZIPKIN_HEADERS", "{list}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn headers_the_transport_sets_or_http_forbids_are_refused() {
        let url = "http://127.0.0.1:9411/api/v2/spans";
        for (name, value, why) in [
            ("Content-Type", "text/plain", "set by the transport itself"),
            ("b3", "1", "set by the transport itself"),
            ("bad name", "v", "invalid name"),
            ("x-ok", "line\nbreak", "invalid value"),
        ] {
            let b = ZipkinTransport::builder(url).header(name, value);
            let err = b.build().unwrap_err();
            assert!(matches!(&err, ZipkinError::InvalidHeader(n, w) if n == name && *w == why));
            assert!(!err.to_string().contains("break"), "{err}");
        }
    }

    #[test]
    fn credentials_in_the_endpoint_become_basic_auth_and_are_never_shown() {
        let url = "http://reporter:p%40ss@127.0.0.1:9411/api/v2/spans";
        let b = ZipkinTransport::builder(url);
        assert!(!format!("{b:?}").contains("p%40ss"), "{b:?}");
        let t = b.build().unwrap();
        assert_eq!(t.endpoint(), "http://127.0.0.1:9411/api/v2/spans");
        assert!(!format!("{t:?}").contains("reporter"), "{t:?}");
        let req = t.request(&[]);
        // base64("reporter:p@ss")
        assert_eq!(req.headers()["authorization"], "Basic cmVwb3J0ZXI6cEBzcw==");
        assert!(req.headers()["authorization"].is_sensitive());
        assert_eq!(req.uri(), "http://127.0.0.1:9411/api/v2/spans");

        // An explicit authorization header wins over the endpoint's credentials.
        let t = ZipkinTransport::builder(url)
            .header("Authorization", "Bearer t0ken")
            .build()
            .unwrap();
        let req = t.request(&[]);
        let auth: Vec<_> = req.headers().get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer t0ken"]);

        // Errors about an endpoint with credentials leave them out.
        for bad in [
            "ftp://reporter:secret@127.0.0.1/x",
            "reporter:secret@127.0.0.1",
        ] {
            let err = ZipkinTransport::builder(bad)
                .build()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("***@127.0.0.1") && !err.contains("secret"),
                "{err}"
            );
        }
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("ftp://reporter:secret@127.0.0.1/x".into()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn userinfo_is_redacted_wherever_it_appears() {
        for (given, shown) in [
            ("http://u:p@h:1/a@b", "http://***@h:1/a@b"),
            ("https://u@h/x", "https://***@h/x"),
            ("http://h:1/api/v2/spans", "http://h:1/api/v2/spans"),
            ("u:p@h", "***@h"),
            ("http://h/?q=a@b", "http://h/?q=a@b"),
        ] {
            assert_eq!(redact_userinfo(given), shown);
        }
    }

    /// A TLS file variable naming a device or a file too large to be PEM is refused with the
    /// variable's name, without reading it (`/dev/zero` would never end).
    #[cfg(feature = "tls")]
    #[test]
    fn tls_files_must_be_regular_and_bounded() {
        let big = std::env::temp_dir().join(format!("tdist-big-{}.pem", std::process::id()));
        std::fs::write(&big, vec![b'x'; 4096]).unwrap();
        assert_eq!(read_bounded(&big, 4096).unwrap().len(), 4096);
        let err = read_bounded(&big, 4095).unwrap_err();
        assert!(err.contains("larger than 4095 bytes"), "{err}");
        std::fs::remove_file(&big).unwrap();
        for name in TLS_FILES {
            let err = tls_file_error(name, "/dev/zero");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }

    /// The variables that name TLS files.
    const TLS_FILES: [&str; 3] = [
        "TDIST_ZIPKIN_CA_FILE",
        "TDIST_ZIPKIN_CLIENT_CERT_FILE",
        "TDIST_ZIPKIN_CLIENT_KEY_FILE",
    ];

    /// The configuration error for TLS file variable `name` set to `path` (the endpoint set,
    /// nothing else), checked to name the variable.
    fn tls_file_error(name: &str, path: &str) -> ConfigError {
        let env = |k: &str| match k {
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT" => Some("http://127.0.0.1:9411/api/v2/spans".into()),
            k if k == name => Some(path.into()),
            _ => None,
        };
        let err = ZipkinTransport::from_lookup(env).unwrap_err();
        assert_eq!(err.variable(), name);
        err
    }

    /// Without the `tls` feature a TLS file is a configuration error (the settings it asks for
    /// could not be honoured), even before the file is read.
    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_files_need_the_tls_feature() {
        for name in TLS_FILES {
            let err = tls_file_error(name, "/nonexistent/tdist.pem");
            assert!(err.to_string().contains("tls feature"), "{err}");
        }
    }
}
