//! Forward proxies for the Zipkin transport: which proxy (if any) the collector is reached
//! through, from the builder or the usual environment variables, and the connector that goes
//! through it (absolute-form requests for `http://` endpoints, a `CONNECT` tunnel for
//! `https://` ones).

use crate::zipkin::redact_userinfo;
use base64::Engine as _;
use http::header::HeaderValue;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tower_service::Service;

/// Where the transport's proxy setting comes from.
#[derive(Clone)]
pub(crate) enum ProxyChoice {
    /// The environment's variables, as read when the builder was made.
    Env(ProxyEnv),
    /// Never a proxy.
    Direct,
    /// This proxy URL, whatever the environment says.
    Url(String),
}

impl std::fmt::Debug for ProxyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyChoice::Env(env) => f.debug_tuple("Env").field(env).finish(),
            ProxyChoice::Direct => f.write_str("Direct"),
            ProxyChoice::Url(url) => f.debug_tuple("Url").field(&redact_userinfo(url)).finish(),
        }
    }
}

/// The proxy variables of an environment, as curl and most HTTP clients read them: the
/// lower-case name first; empty values count as unset.
#[derive(Clone, Default)]
pub(crate) struct ProxyEnv {
    http: Option<(&'static str, String)>,
    https: Option<(&'static str, String)>,
    all: Option<(&'static str, String)>,
    no: String,
}

impl std::fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |var: &Option<(&'static str, String)>| {
            var.as_ref()
                .map(|(name, value)| format!("{name}={}", redact_userinfo(value)))
        };
        f.debug_struct("ProxyEnv")
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("all", &shown(&self.all))
            .field("no", &self.no)
            .finish()
    }
}

impl ProxyEnv {
    /// Reads the variables through `get`. Under CGI (`REQUEST_METHOD` set), `HTTP_PROXY` is
    /// ignored: a client's `Proxy:` request header arrives in it ("httpoxy").
    pub(crate) fn read(get: &impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                get(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let cgi = get("REQUEST_METHOD").is_some();
        ProxyEnv {
            http: if cgi {
                first(&["http_proxy"])
            } else {
                first(&["http_proxy", "HTTP_PROXY"])
            },
            https: first(&["https_proxy", "HTTPS_PROXY"]),
            all: first(&["all_proxy", "ALL_PROXY"]),
            no: first(&["no_proxy", "NO_PROXY"]).map_or_else(String::new, |(_, v)| v),
        }
    }

    /// The variable naming the proxy for `endpoint`, and its value; `None` to connect directly:
    /// no variable for its scheme, a `NO_PROXY` entry that matches its host, or a loopback host
    /// (as Go's `ProxyFromEnvironment`: a proxy elsewhere cannot reach this machine's
    /// loopback, and a collector beside the service is the common case).
    pub(crate) fn for_endpoint(&self, endpoint: &Uri) -> Option<(&'static str, &str)> {
        let host = endpoint.host()?;
        let var = match endpoint.scheme_str() {
            Some("https") => self.https.as_ref(),
            _ => self.http.as_ref(),
        };
        let (name, value) = var.or(self.all.as_ref())?;
        if is_loopback(host) || no_proxy_matches(&self.no, host) {
            return None;
        }
        Some((name, value))
    }
}

/// Whether `host` (as in a URI; IPv6 in brackets) is this machine's loopback.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// Whether a `NO_PROXY` list exempts `host`, with curl's rules: entries separated by commas,
/// `*` for every host, an IP address or a CIDR block for addresses, and otherwise a domain that
/// matches itself and its subdomains (a leading dot changes nothing; a port is ignored).
pub(crate) fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ip = host.parse::<IpAddr>().ok();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                (Some(ip), Ok(net), Ok(bits)) => in_block(ip, net, bits),
                _ => false,
            };
        }
        let bare = entry.trim_start_matches('[');
        let bare = match bare.split_once(']') {
            Some((ip, _port)) => ip,
            None => bare,
        };
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return host_ip == Some(ip);
        }
        let domain = match entry.rsplit_once(':') {
            Some((d, port)) if port.bytes().all(|b| b.is_ascii_digit()) => d,
            _ => entry,
        };
        let domain = domain.trim_start_matches('.').trim_end_matches('.');
        if domain.is_empty() {
            return false;
        }
        let domain = domain.to_ascii_lowercase();
        host == domain
            || host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// Whether `ip` lies in the block `net`/`bits` (both of one family).
fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = u32::from(width - bits);
    // A shift by the whole width (a /0 block) leaves nothing to compare.
    ip.checked_shr(shift).unwrap_or(0) == net.checked_shr(shift).unwrap_or(0)
}

/// A proxy to go through: where it is, shown without credentials, and the
/// `Proxy-Authorization` its URL's credentials make.
#[derive(Clone)]
pub(crate) struct Proxy {
    /// `http://host:port/`.
    pub(crate) uri: Uri,
    pub(crate) auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("uri", &self.uri)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Proxy {
    /// Parses a proxy URL: `http://[user[:password]@]host[:port]`, the scheme optional (as
    /// curl), the port 80 by default, credentials percent-encoded. Errors never repeat the
    /// credentials.
    pub(crate) fn parse(url: &str) -> Result<Proxy, String> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "{scheme}:// proxies are not supported (an http:// proxy is: plain HTTP to \
                     the proxy, and a CONNECT tunnel through it for https:// collectors)"
                ))
            }
            None => url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let shown = match userinfo {
            Some(_) => format!("http://***@{host_port}"),
            None => format!("http://{host_port}"),
        };
        let authority = host_port
            .parse::<http::uri::Authority>()
            .map_err(|_| format!("invalid proxy URL {shown}"))?;
        if authority.host().is_empty() {
            return Err(format!("invalid proxy URL {shown}: no host"));
        }
        // `Authority` takes `host:port` with a port that is not a number; a proxy cannot.
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            None => 80,
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("invalid proxy URL {shown}: bad port"))?,
        };
        let uri = format!("http://{}:{port}/", authority.host())
            .parse::<Uri>()
            .map_err(|_| format!("invalid proxy URL {shown}"))?;
        let auth = userinfo.map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |s| percent_encoding::percent_decode_str(s).decode_utf8_lossy();
            let pair = format!("{}:{}", decode(user), decode(password));
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = HeaderValue::try_from(format!("Basic {token}"))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        Ok(Proxy { uri, auth })
    }
}

/// The transport's connector: straight to the collector, or through an HTTP proxy. Through a
/// proxy, `http://` destinations get a connection to the proxy marked as proxied (so the
/// client sends absolute-form requests, to which the transport adds `Proxy-Authorization`),
/// and `https://` ones a `CONNECT` tunnel, inside which TLS runs end to end.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    tunnel: Option<Tunnel<HttpConnector>>,
    proxy: Option<Uri>,
}

impl ProxyConnector {
    pub(crate) fn new(http: HttpConnector, proxy: Option<&Proxy>) -> ProxyConnector {
        ProxyConnector {
            tunnel: proxy.map(|p| {
                let tunnel = Tunnel::new(p.uri.clone(), http.clone());
                match &p.auth {
                    Some(auth) => tunnel.with_auth(auth.clone()),
                    None => tunnel,
                }
            }),
            proxy: proxy.map(|p| p.uri.clone()),
            http,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match (&self.proxy, &mut self.tunnel) {
            (Some(_), Some(tunnel)) if dst.scheme_str() == Some("https") => {
                let tunneling = tunnel.call(dst);
                Box::pin(async move {
                    let io = tunneling.await?;
                    Ok(ProxyStream { io, proxied: false })
                })
            }
            (Some(proxy), _) => {
                let connecting = self.http.call(proxy.clone());
                Box::pin(async move {
                    let io = connecting.await?;
                    Ok(ProxyStream { io, proxied: true })
                })
            }
            (None, _) => {
                let connecting = self.http.call(dst);
                Box::pin(async move {
                    let io = connecting.await?;
                    Ok(ProxyStream { io, proxied: false })
                })
            }
        }
    }
}

/// A TCP connection to the collector, or to a proxy that forwards requests to it.
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyEnv::read(&|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn chosen<'a>(env: &'a ProxyEnv, endpoint: &str) -> Option<(&'static str, &'a str)> {
        env.for_endpoint(&endpoint.parse().unwrap())
    }

    #[test]
    fn the_variable_follows_the_endpoints_scheme() {
        let e = env(&[
            ("HTTP_PROXY", "http://plain:3128"),
            ("https_proxy", "http://secure:3128"),
            ("HTTPS_PROXY", "http://ignored:3128"),
            ("ALL_PROXY", "http://all:3128"),
        ]);
        let http = chosen(&e, "http://zipkin:9411/api/v2/spans");
        assert_eq!(http, Some(("HTTP_PROXY", "http://plain:3128")));
        let https = chosen(&e, "https://zipkin/api/v2/spans");
        assert_eq!(https, Some(("https_proxy", "http://secure:3128")));
        let only_all = env(&[("ALL_PROXY", "http://all:3128"), ("http_proxy", " ")]);
        let all = chosen(&only_all, "http://zipkin:9411/");
        assert_eq!(all, Some(("ALL_PROXY", "http://all:3128")));
        assert_eq!(chosen(&env(&[]), "http://zipkin:9411/"), None);
    }

    #[test]
    fn cgi_ignores_http_proxy() {
        let e = env(&[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:80")]);
        assert_eq!(chosen(&e, "http://zipkin:9411/"), None);
        let e = env(&[("REQUEST_METHOD", "GET"), ("http_proxy", "http://ok:80")]);
        assert_eq!(chosen(&e, "http://zipkin:9411/").unwrap().0, "http_proxy");
    }

    #[test]
    fn loopback_and_no_proxy_hosts_connect_directly() {
        let e = env(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            (
                "NO_PROXY",
                "internal.example, .corp, 10.0.0.0/8, 192.168.1.7, [fd00::1], *.x",
            ),
        ]);
        for direct in [
            "http://127.0.0.1:9411/",
            "http://127.1.2.3:9411/",
            "http://[::1]:9411/",
            "http://localhost:9411/",
            "http://zipkin.localhost:9411/",
            "http://internal.example/",
            "http://zipkin.internal.example/",
            "http://a.b.corp/",
            "http://corp/",
            "http://10.20.30.40/",
            "http://192.168.1.7:9411/",
            "http://[fd00::1]:9411/",
        ] {
            assert_eq!(chosen(&e, direct), None, "{direct}");
        }
        for proxied in [
            "http://example/",
            "http://notinternal.example/",
            "http://corp.example/",
            "http://11.0.0.1/",
            "http://192.168.1.8/",
            "http://[fd00::2]/",
        ] {
            assert!(chosen(&e, proxied).is_some(), "{proxied}");
        }
        let every = env(&[("HTTP_PROXY", "http://proxy:3128"), ("no_proxy", "*")]);
        assert_eq!(chosen(&every, "http://zipkin:9411/"), None);
    }

    #[test]
    fn no_proxy_entries() {
        assert!(no_proxy_matches("Zipkin.Example:9411", "zipkin.example"));
        assert!(no_proxy_matches("example", "ZIPKIN.example."));
        assert!(no_proxy_matches("0.0.0.0/0", "8.8.8.8"));
        assert!(no_proxy_matches("fd00::/8", "[fd12::1]"));
        assert!(!no_proxy_matches("fd00::/8", "10.0.0.1"));
        assert!(!no_proxy_matches("10.0.0.0/33", "10.0.0.1"));
        assert!(!no_proxy_matches("", "zipkin"));
        assert!(!no_proxy_matches(" , .", "zipkin"));
        assert!(!no_proxy_matches("ample", "example"));
    }

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://proxy.corp:3128").unwrap();
        assert_eq!(p.uri, "http://proxy.corp:3128/");
        assert!(p.auth.is_none());
        assert_eq!(
            Proxy::parse("proxy.corp").unwrap().uri,
            "http://proxy.corp:80/"
        );
        assert_eq!(
            Proxy::parse("HTTP://[fd00::1]:8080/ignored").unwrap().uri,
            "http://[fd00::1]:8080/"
        );
        let p = Proxy::parse("http://ann%40corp:p%3Ass@proxy:3128").unwrap();
        let auth = p.auth.unwrap();
        assert!(auth.is_sensitive());
        // base64("ann@corp:p:ss")
        assert_eq!(auth, "Basic YW5uQGNvcnA6cDpzcw==");
        assert!(!format!("{:?}", Proxy::parse("http://u:secret@p:1").unwrap()).contains("secret"));
        let choice = ProxyChoice::Url("http://u:secret@p:1".into());
        assert_eq!(format!("{choice:?}"), r#"Url("http://***@p:1")"#);
        let e = env(&[("HTTPS_PROXY", "http://u:secret@p:1")]);
        assert!(format!("{e:?}").contains(r#"https: Some("HTTPS_PROXY=http://***@p:1")"#));
        for (bad, why) in [
            ("https://proxy:443", "https:// proxies are not supported"),
            ("socks5://proxy:1080", "socks5:// proxies are not supported"),
            ("http://", "invalid proxy URL"),
            ("http://user:secret@", "invalid proxy URL"),
            ("http://proxy:port", "invalid proxy URL"),
            (
                "http://user:secret@pro xy:1",
                "invalid proxy URL http://***@pro xy:1",
            ),
        ] {
            let err = Proxy::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
