//! Forward proxies for the Zipkin transport: which proxy (if any) the collector is reached
//! through, from the builder or the usual environment variables, and the connector that goes
//! through it (absolute-form requests for `http://` endpoints, a `CONNECT` tunnel for
//! `https://` ones).

use crate::zipkin::{basic_auth, decode_userinfo, redact_userinfo};
use http::header::HeaderValue;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
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

/// A proxy to go through: where it is, what it speaks, and its credentials.
#[derive(Clone)]
pub(crate) struct Proxy {
    /// `http://host:port/`: where to open the TCP connection to the proxy.
    pub(crate) uri: Uri,
    pub(crate) kind: ProxyKind,
}

/// What a proxy speaks, with the credentials its URL gave.
#[derive(Clone)]
pub(crate) enum ProxyKind {
    /// An HTTP proxy: absolute-form requests and `CONNECT`; the credentials as a ready
    /// `Proxy-Authorization` value (sensitive).
    Http { auth: Option<HeaderValue> },
    /// A SOCKS5 proxy (RFC 1928), with user/password authentication (RFC 1929) when the URL
    /// has credentials. `remote_dns` (`socks5h://`) lets the proxy resolve the collector's name;
    /// `socks5://` resolves it here, as curl does.
    Socks5 {
        remote_dns: bool,
        auth: Option<(String, String)>,
    },
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("at", &self.shown())
            .field("credentials", &self.has_credentials())
            .finish()
    }
}

impl Proxy {
    /// Parses a proxy URL: `http://`, `socks5://` or `socks5h://`, then
    /// `[user[:password]@]host[:port]`. The scheme is optional (`http`, as curl), the port
    /// defaults to 80 for HTTP and 1080 for SOCKS, credentials are percent-encoded. Errors never
    /// repeat the credentials.
    pub(crate) fn parse(url: &str) -> Result<Proxy, String> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => (String::from("http"), url),
        };
        if !matches!(scheme.as_str(), "http" | "socks5" | "socks5h") {
            return Err(format!(
                "{scheme}:// proxies are not supported (http://, socks5:// and socks5h:// are: \
                 plain HTTP to an HTTP proxy, with a CONNECT tunnel through it for https:// \
                 collectors, or a SOCKS5 tunnel)"
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let shown = format!("{scheme}://{}", redact_userinfo(authority));
        let authority = host_port
            .parse::<http::uri::Authority>()
            .map_err(|_| format!("invalid proxy URL {shown}"))?;
        if authority.host().is_empty() {
            return Err(format!("invalid proxy URL {shown}: no host"));
        }
        // `Authority` takes `host:port` with a port that is not a number; a proxy cannot.
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            None if scheme == "http" => 80,
            None => 1080,
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| format!("invalid proxy URL {shown}: bad port"))?,
        };
        let uri = format!("http://{}:{port}/", authority.host())
            .parse::<Uri>()
            .map_err(|_| format!("invalid proxy URL {shown}"))?;
        let credentials = userinfo.map(decode_userinfo);
        let kind = match scheme.as_str() {
            "http" => ProxyKind::Http {
                auth: credentials.map(|(user, password)| basic_auth(&user, &password)),
            },
            _ => {
                if let Some((user, password)) = &credentials {
                    if user.len() > 255 || password.len() > 255 {
                        let why = "SOCKS5 credentials are at most 255 bytes each";
                        return Err(format!("invalid proxy URL {shown}: {why}"));
                    }
                }
                ProxyKind::Socks5 {
                    remote_dns: scheme == "socks5h",
                    auth: credentials,
                }
            }
        };
        Ok(Proxy { uri, kind })
    }

    /// `Proxy-Authorization` for requests sent to an HTTP proxy in absolute form.
    pub(crate) fn http_auth(&self) -> Option<&HeaderValue> {
        match &self.kind {
            ProxyKind::Http { auth } => auth.as_ref(),
            ProxyKind::Socks5 { .. } => None,
        }
    }

    /// Whether the URL gave credentials.
    fn has_credentials(&self) -> bool {
        match &self.kind {
            ProxyKind::Http { auth } => auth.is_some(),
            ProxyKind::Socks5 { auth, .. } => auth.is_some(),
        }
    }

    /// `scheme://host:port`, without credentials: for `Debug` output and errors.
    pub(crate) fn shown(&self) -> String {
        let scheme = match self.kind {
            ProxyKind::Http { .. } => "http",
            ProxyKind::Socks5 {
                remote_dns: false, ..
            } => "socks5",
            ProxyKind::Socks5 {
                remote_dns: true, ..
            } => "socks5h",
        };
        let at = self.uri.authority().map_or("", |a| a.as_str());
        format!("{scheme}://{at}")
    }
}

/// The transport's connector: straight to the collector, or through a proxy. Through an HTTP
/// proxy, `http://` destinations get a connection to the proxy marked as proxied (so the client
/// sends absolute-form requests, to which the transport adds `Proxy-Authorization`), and
/// `https://` ones a `CONNECT` tunnel, inside which TLS runs end to end. Through a SOCKS5
/// proxy, every destination gets a tunnel.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    route: Route,
}

#[derive(Debug, Clone)]
enum Route {
    Direct,
    Http {
        proxy: Uri,
        /// Its `Proxy-Authorization` for `CONNECT` (sensitive).
        auth: Option<HeaderValue>,
    },
    Socks5 {
        proxy: Uri,
        remote_dns: bool,
        /// User and password (sensitive).
        auth: Option<(String, String)>,
    },
}

impl ProxyConnector {
    pub(crate) fn new(http: HttpConnector, proxy: Option<&Proxy>) -> ProxyConnector {
        let route = match proxy {
            None => Route::Direct,
            Some(Proxy {
                uri,
                kind: ProxyKind::Http { auth },
            }) => Route::Http {
                proxy: uri.clone(),
                auth: auth.clone(),
            },
            Some(Proxy {
                uri,
                kind: ProxyKind::Socks5 { remote_dns, auth },
            }) => Route::Socks5 {
                proxy: uri.clone(),
                remote_dns: *remote_dns,
                auth: auth.clone(),
            },
        };
        ProxyConnector { http, route }
    }
}

/// `dst` with its port spelled out (`CONNECT` and the SOCKS handshake name one).
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = match dst.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let Some(host) = dst.host() else {
        return dst;
    };
    let authority = format!("{host}:{port}");
    let mut parts = dst.clone().into_parts();
    match authority.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(dst)
        }
        Err(_) => dst,
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
        let (connecting, proxied) = match &mut self.route {
            Route::Direct => (boxed(self.http.call(dst)), false),
            Route::Http { proxy, auth } if dst.scheme_str() == Some("https") => {
                let (dst, auth) = (with_port(dst), auth.clone());
                let connecting = self.http.call(proxy.clone());
                let tunnel = tunnel(connecting, |tcp| async move {
                    connect_tunnel(tcp, &dst, auth).await
                });
                (tunnel, false)
            }
            Route::Http { proxy, .. } => (boxed(self.http.call(proxy.clone())), true),
            Route::Socks5 {
                proxy,
                remote_dns,
                auth,
            } => {
                let (dst, remote_dns, auth) = (with_port(dst), *remote_dns, auth.clone());
                let connecting = self.http.call(proxy.clone());
                let tunnel = tunnel(connecting, move |tcp| async move {
                    socks5_tunnel(tcp, &dst, remote_dns, auth.as_ref()).await
                });
                (tunnel, false)
            }
        };
        Box::pin(async move {
            let io = connecting.await?;
            Ok(ProxyStream { io, proxied })
        })
    }
}

/// A proxy's refusal to open a tunnel to the collector: its own answer, which the transport
/// reports as given and, when it is the proxy's final word, does not retry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TunnelRefused {
    /// An HTTP proxy's answer to `CONNECT` other than 2xx. Statuses below 500 (407 for
    /// credentials, 403 for a policy such as squid's default of tunnelling only to port 443) are
    /// final; 5xx (the proxy could not reach the collector) may pass.
    #[error("proxy refused CONNECT {target}: {status} {reason}")]
    Connect {
        target: String,
        status: u16,
        reason: String,
    },
    /// A SOCKS5 proxy's refusal: of every authentication method offered, of the user and
    /// password, or of the connection (a reply code of RFC 1928 other than "succeeded").
    #[error("SOCKS5 proxy refused the tunnel to {target}: {why}")]
    Socks5 {
        target: String,
        why: String,
        /// Credentials or the proxy's rules, which asking again will not change.
        fatal: bool,
    },
}

impl TunnelRefused {
    /// Whether the refusal is the proxy's final word (credentials, policy), so that a retry
    /// would only be refused again.
    pub(crate) fn is_final(&self) -> bool {
        match self {
            TunnelRefused::Connect { status, .. } => *status < 500,
            TunnelRefused::Socks5 { fatal, .. } => *fatal,
        }
    }
}

/// The most of a proxy's answer to `CONNECT` read before giving up on it.
const MAX_CONNECT_ANSWER: usize = 16 * 1024;

/// Asks the HTTP proxy at the other end of `io` for a tunnel to `dst` (whose port is spelled
/// out) and reads its answer. On 2xx `io` is the tunnel. Unlike hyper-util's `Tunnel`, this keeps
/// the refusal's status and reason for the error, which is how an operator learns that the proxy
/// wants credentials or does not tunnel to the collector's port.
pub(crate) async fn connect_tunnel<T>(
    mut io: T,
    dst: &Uri,
    auth: Option<HeaderValue>,
) -> Result<T, BoxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = dst
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or("no host to tunnel to")?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = &auth {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    io.write_all(&request).await?;
    io.flush().await?;

    // The answer's head. Nothing may follow it: the collector speaks only after the client
    // (TLS's ClientHello), so bytes past the head would be the proxy's own, and not ours to pass.
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(
                format!("proxy answered CONNECT {target} with over 16 KiB of headers").into(),
            );
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(format!("proxy closed the connection during CONNECT {target}").into());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let mut words = status_line.splitn(3, ' ');
    let (version, code, reason) = (words.next(), words.next(), words.next());
    let status = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(status)) if v.starts_with("HTTP/1.") && (100..600).contains(&status) => {
            status
        }
        _ => {
            let shown: String = status_line.chars().take(80).collect();
            return Err(format!("proxy answered CONNECT {target} with {shown:?}").into());
        }
    };
    if (200..300).contains(&status) {
        if end != head.len() {
            return Err(format!("proxy sent data after accepting CONNECT {target}").into());
        }
        return Ok(io);
    }
    let reason = reason.unwrap_or_default().chars().take(200).collect();
    Err(Box::new(TunnelRefused::Connect {
        target,
        status,
        reason,
    }))
}

/// What a SOCKS5 reply code (RFC 1928, section 6) other than 0 ("succeeded") says, and
/// whether it is final: the proxy's rules, or a request it cannot serve at all. The others are
/// the proxy failing to reach the collector, which a later attempt may not.
fn socks5_reply(code: u8) -> (&'static str, bool) {
    match code {
        1 => ("general SOCKS server failure", false),
        2 => ("connection not allowed by its rules", true),
        3 => ("network unreachable", false),
        4 => ("host unreachable", false),
        5 => ("connection refused by the collector", false),
        6 => ("TTL expired", false),
        7 => ("CONNECT not supported", true),
        8 => ("address type not supported", true),
        _ => ("unassigned reply code", false),
    }
}

/// Opens a tunnel to `dst` (whose port is spelled out) through the SOCKS5 proxy at the other
/// end of `io` (RFC 1928), authenticating with user and password (RFC 1929) when `auth` is
/// given. With `remote_dns` a name is sent for the proxy to resolve (`socks5h://`); without,
/// it is resolved here and the proxy gets an address (`socks5://`). On success `io` is the
/// tunnel. The proxy's refusals keep their reason (which hyper-util's `SocksV5` does not
/// expose), so a wrong password is reported as one and not retried.
pub(crate) async fn socks5_tunnel<T>(
    mut io: T,
    dst: &Uri,
    remote_dns: bool,
    auth: Option<&(String, String)>,
) -> Result<T, BoxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = dst.host().ok_or("no host to tunnel to")?;
    let port = dst.port_u16().ok_or("no port to tunnel to")?;
    let target = format!("{host}:{port}");
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let refused = |why: String, fatal: bool| -> BoxError {
        Box::new(TunnelRefused::Socks5 {
            target: target.clone(),
            why,
            fatal,
        })
    };
    let closed = |e: std::io::Error| -> BoxError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                format!("proxy closed the connection during the SOCKS5 handshake for {target}")
                    .into()
            }
            _ => e.into(),
        }
    };

    // The destination as the request names it: an address, or a name of at most 255 bytes.
    let mut address = Vec::with_capacity(2 + bare.len());
    let ip = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if remote_dns => None,
        Err(_) => {
            let mut found = tokio::net::lookup_host((bare, port)).await?;
            let first = found
                .next()
                .ok_or_else(|| format!("{bare} resolved to no address"))?;
            Some(first.ip())
        }
    };
    match ip {
        Some(std::net::IpAddr::V4(v4)) => {
            address.push(1);
            address.extend_from_slice(&v4.octets());
        }
        Some(std::net::IpAddr::V6(v6)) => {
            address.push(4);
            address.extend_from_slice(&v6.octets());
        }
        None => {
            let len = u8::try_from(bare.len())
                .map_err(|_| format!("{bare} is too long a name for SOCKS5 (255 bytes at most)"))?;
            address.push(3);
            address.push(len);
            address.extend_from_slice(bare.as_bytes());
        }
    }
    address.extend_from_slice(&port.to_be_bytes());

    // The methods offered: none, and user/password when there are credentials (the proxy picks).
    let greeting: &[u8] = match auth {
        Some(_) => &[5, 2, 0, 2],
        None => &[5, 1, 0],
    };
    io.write_all(greeting).await?;
    io.flush().await?;
    let mut chosen = [0u8; 2];
    io.read_exact(&mut chosen).await.map_err(closed)?;
    if chosen[0] != 5 {
        return Err(format!(
            "proxy answered the SOCKS5 greeting for {target} with {:?}: not a SOCKS5 proxy",
            String::from_utf8_lossy(&chosen)
        )
        .into());
    }
    match (chosen[1], auth) {
        (0, _) => {}
        (2, Some((user, password))) => {
            // Both fit in a byte: checked when the proxy URL was parsed.
            let mut login = Vec::with_capacity(3 + user.len() + password.len());
            login.push(1);
            login.push(user.len() as u8);
            login.extend_from_slice(user.as_bytes());
            login.push(password.len() as u8);
            login.extend_from_slice(password.as_bytes());
            io.write_all(&login).await?;
            io.flush().await?;
            // The answer's first byte should be 1 (RFC 1929's version), but some proxies send 5;
            // as curl does, only the status counts.
            let mut status = [0u8; 2];
            io.read_exact(&mut status).await.map_err(closed)?;
            if status[1] != 0 {
                return Err(refused(
                    "it rejected the user name and password".into(),
                    true,
                ));
            }
        }
        (0xff, Some(_)) => {
            let why = "it accepts neither no authentication nor user/password";
            return Err(refused(why.into(), true));
        }
        (0xff, None) => {
            let why = "it requires authentication (give user:password in the proxy URL)";
            return Err(refused(why.into(), true));
        }
        (other, _) => {
            return Err(format!(
                "SOCKS5 proxy chose authentication method {other:#04x} for {target}, which was \
                 not offered"
            )
            .into())
        }
    }

    // CONNECT, then the reply: version, code, reserved, and the address the proxy bound.
    let mut request = vec![5, 1, 0];
    request.extend_from_slice(&address);
    io.write_all(&request).await?;
    io.flush().await?;
    let mut reply = [0u8; 4];
    io.read_exact(&mut reply).await.map_err(closed)?;
    if reply[0] != 5 {
        return Err(format!(
            "SOCKS5 proxy answered CONNECT {target} with version {}",
            reply[0]
        )
        .into());
    }
    if reply[1] != 0 {
        let (why, fatal) = socks5_reply(reply[1]);
        return Err(refused(format!("{why} (reply {})", reply[1]), fatal));
    }
    // The bound address is of no use here, but must be read past: the tunnel starts after it.
    let bound = match reply[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8];
            io.read_exact(&mut len).await.map_err(closed)?;
            usize::from(len[0])
        }
        other => {
            return Err(
                format!("SOCKS5 proxy answered CONNECT {target} with address type {other}").into(),
            )
        }
    };
    let mut rest = vec![0u8; bound + 2];
    io.read_exact(&mut rest).await.map_err(closed)?;
    Ok(io)
}

/// A connection on its way: to the collector, to a proxy, or through a proxy's tunnel.
type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

/// A tunnel through a proxy: the connection to the proxy, then `handshake` on it (`CONNECT` or
/// SOCKS5), whose stream is the tunnel.
fn tunnel<C, E, H, HF>(connecting: C, handshake: H) -> Connecting
where
    C: Future<Output = Result<TokioIo<TcpStream>, E>> + Send + 'static,
    E: Into<BoxError>,
    H: FnOnce(TcpStream) -> HF + Send + 'static,
    HF: Future<Output = Result<TcpStream, BoxError>> + Send,
{
    Box::pin(async move {
        let io = connecting.await.map_err(Into::into)?;
        Ok(TokioIo::new(handshake(io.into_inner()).await?))
    })
}

fn boxed<F, E>(connecting: F) -> Connecting
where
    F: Future<Output = Result<TokioIo<TcpStream>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    Box::pin(async move { connecting.await.map_err(Into::into) })
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
        assert_eq!(p.shown(), "http://proxy.corp:3128");
        assert!(p.http_auth().is_none());
        assert_eq!(
            Proxy::parse("proxy.corp").unwrap().uri,
            "http://proxy.corp:80/"
        );
        assert_eq!(
            Proxy::parse("HTTP://[fd00::1]:8080/ignored").unwrap().uri,
            "http://[fd00::1]:8080/"
        );
        let p = Proxy::parse("http://ann%40corp:p%3Ass@proxy:3128").unwrap();
        let auth = p.http_auth().unwrap();
        assert!(auth.is_sensitive());
        // base64("ann@corp:p:ss")
        assert_eq!(auth, "Basic YW5uQGNvcnA6cDpzcw==");
        for url in ["http://u:secret@p:1", "socks5h://u:secret@p:1"] {
            let shown = format!("{:?}", Proxy::parse(url).unwrap());
            assert!(
                !shown.contains("secret") && shown.contains("credentials: true"),
                "{shown}"
            );
        }
        let choice = ProxyChoice::Url("http://u:secret@p:1".into());
        assert_eq!(format!("{choice:?}"), r#"Url("http://***@p:1")"#);
        let e = env(&[("HTTPS_PROXY", "http://u:secret@p:1")]);
        assert!(format!("{e:?}").contains(r#"https: Some("HTTPS_PROXY=http://***@p:1")"#));
        for (bad, why) in [
            ("https://proxy:443", "https:// proxies are not supported"),
            (
                "socks4a://proxy:1080",
                "socks4a:// proxies are not supported",
            ),
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
        let long = format!("socks5://{}:secret@proxy", "u".repeat(256));
        let err = Proxy::parse(&long).unwrap_err();
        assert!(
            err.contains("at most 255 bytes") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn socks5_urls() {
        let p = Proxy::parse("SOCKS5h://ann:p%40ss@[::1]").unwrap();
        assert_eq!(
            (p.uri.to_string(), p.shown()),
            ("http://[::1]:1080/".into(), "socks5h://[::1]:1080".into())
        );
        let ProxyKind::Socks5 { remote_dns, auth } = &p.kind else {
            panic!("{p:?}");
        };
        assert!(*remote_dns);
        assert_eq!(
            auth.as_ref().unwrap(),
            &("ann".to_string(), "p@ss".to_string())
        );
        assert!(
            p.http_auth().is_none(),
            "SOCKS credentials never become a header"
        );
        let p = Proxy::parse("socks5://127.0.0.1:9050").unwrap();
        assert_eq!(p.shown(), "socks5://127.0.0.1:9050");
        assert!(matches!(
            p.kind,
            ProxyKind::Socks5 {
                remote_dns: false,
                auth: None
            }
        ));
    }

    /// `connect_tunnel` against a scripted proxy: what it sends, and what it makes of `answer`.
    async fn tunnel_with(answer: &'static [u8], close: bool) -> (String, Result<(), String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut proxy) = tokio::io::duplex(64 * 1024);
        let dst: Uri = "https://zipkin.example:443/api/v2/spans".parse().unwrap();
        let auth = Some(HeaderValue::from_static("Basic dTpw"));
        let proxy_side = async move {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                proxy.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            proxy.write_all(answer).await.unwrap();
            if !close {
                // Keep the connection open until the client is done with it.
                let mut rest = Vec::new();
                let _ = proxy.read_to_end(&mut rest).await;
            }
            String::from_utf8(request).unwrap()
        };
        let client_side = async move {
            let outcome = connect_tunnel(client, &dst, auth).await.map(drop);
            outcome.map_err(|e| match e.downcast_ref::<TunnelRefused>() {
                Some(r @ TunnelRefused::Connect { status, .. }) => format!("refused {status} {r}"),
                _ => e.to_string(),
            })
        };
        tokio::join!(proxy_side, client_side)
    }

    #[tokio::test]
    async fn connect_requests_and_answers() {
        let (request, outcome) =
            tunnel_with(b"HTTP/1.1 200 Connection established\r\n\r\n", false).await;
        assert_eq!(
            request,
            "CONNECT zipkin.example:443 HTTP/1.1\r\nHost: zipkin.example:443\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(outcome, Ok(()));
        let cases: [(&[u8], bool, &str); 6] = [
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
                false,
                "refused 407 proxy refused CONNECT zipkin.example:443: 407 Proxy Authentication Required",
            ),
            (
                b"HTTP/1.0 403 Forbidden\r\n\r\n",
                false,
                "refused 403 proxy refused CONNECT zipkin.example:443: 403 Forbidden",
            ),
            (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", false, "proxy answered CONNECT zipkin.example:443 with \"SSH-2.0-OpenSSH_9.2\""),
            (b"HTTP/1.1 200 OK\r\n", true, "proxy closed the connection during CONNECT zipkin.example:443"),
            (b"HTTP/1.1 200 OK\r\n\r\nsurprise", false, "proxy sent data after accepting CONNECT zipkin.example:443"),
            (b"HTTP/1.1 999 Odd\r\n\r\n", false, "proxy answered CONNECT zipkin.example:443 with \"HTTP/1.1 999 Odd\""),
        ];
        for (answer, close, expected) in cases {
            let (_, outcome) = tunnel_with(answer, close).await;
            assert_eq!(
                outcome,
                Err(expected.to_string()),
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
        let endless: &'static [u8] = Box::leak(
            [
                b"HTTP/1.1 200 OK\r\n".as_slice(),
                &b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(600),
            ]
            .concat()
            .into_boxed_slice(),
        );
        let (_, outcome) = tunnel_with(endless, false).await;
        assert_eq!(
            outcome,
            Err("proxy answered CONNECT zipkin.example:443 with over 16 KiB of headers".into())
        );
    }

    /// A scripted proxy's steps: how many bytes to read, then what to answer.
    type Script<'a> = &'a [(usize, &'static [u8])];
    type Credentials = Option<(&'static str, &'static str)>;

    /// `socks5_tunnel` to `dst` against a scripted SOCKS5 proxy, which reads what a client
    /// sends at each step of `steps` (that many bytes) and then writes the step's answer; it
    /// closes after the last step. Returns what the client sent at each step, and the outcome
    /// (on success, what the tunnel then carried from the proxy).
    async fn socks_with(
        dst: &str,
        remote_dns: bool,
        auth: Option<(&str, &str)>,
        steps: Script<'_>,
    ) -> (Vec<Vec<u8>>, Result<Vec<u8>, String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut proxy) = tokio::io::duplex(64 * 1024);
        let dst: Uri = dst.parse().unwrap();
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let steps = steps.to_vec();
        let proxy_side = async move {
            let mut sent = Vec::new();
            for (n, answer) in steps {
                let mut got = vec![0u8; n];
                if proxy.read_exact(&mut got).await.is_err() {
                    break;
                }
                sent.push(got);
                proxy.write_all(answer).await.unwrap();
            }
            sent
        };
        let client_side = async move {
            match socks5_tunnel(client, &dst, remote_dns, auth.as_ref()).await {
                Ok(mut tunnel) => {
                    let mut carried = Vec::new();
                    tunnel.read_to_end(&mut carried).await.unwrap();
                    Ok(carried)
                }
                Err(e) => Err(match e.downcast_ref::<TunnelRefused>() {
                    Some(r) => format!("refused (final: {}): {r}", r.is_final()),
                    None => e.to_string(),
                }),
            }
        };
        tokio::join!(proxy_side, client_side)
    }

    #[tokio::test]
    async fn socks5_handshakes() {
        // socks5h:// with credentials: the name goes to the proxy; what follows the reply's
        // bound address (here a name) is the tunnel's, and none of it is lost.
        let (sent, outcome) = socks_with(
            "http://zipkin.example:9411/api/v2/spans",
            true,
            Some(("ann", "p@ss")),
            &[
                (4, b"\x05\x02"),
                (10, b"\x01\x00"),
                (21, b"\x05\x00\x00\x03\x05proxy\x23\x82HTTP/1.1 200 OK\r\n"),
            ],
        )
        .await;
        assert_eq!(outcome, Ok(b"HTTP/1.1 200 OK\r\n".to_vec()));
        assert_eq!(sent[0], b"\x05\x02\x00\x02");
        assert_eq!(sent[1], b"\x01\x03ann\x04p@ss");
        assert_eq!(sent[2], b"\x05\x01\x00\x03\x0ezipkin.example\x24\xc3");

        // Addresses are sent as addresses; a proxy that wants no authentication is not sent
        // the credentials.
        let ok4: &[u8] = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x01\xbb";
        let (sent, outcome) = socks_with(
            "https://10.1.2.3:443/",
            true,
            Some(("u", "p")),
            &[(4, b"\x05\x00"), (10, ok4)],
        )
        .await;
        assert_eq!(outcome, Ok(Vec::new()));
        assert_eq!(sent[1], b"\x05\x01\x00\x01\x0a\x01\x02\x03\x01\xbb");
        let ok6: &[u8] = b"\x05\x00\x00\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x01\xbb";
        let (sent, outcome) = socks_with(
            "https://[fd00::1]:443/",
            false,
            None,
            &[(3, b"\x05\x00"), (22, ok6)],
        )
        .await;
        assert_eq!(outcome, Ok(Vec::new()));
        assert_eq!(sent[0], b"\x05\x01\x00");
        let mut v6 = vec![5, 1, 0, 4, 0xfd];
        v6.extend_from_slice(&[0; 14]);
        v6.extend_from_slice(&[1, 1, 0xbb]);
        assert_eq!(sent[1], v6);
        // socks5:// resolves the name here.
        let (sent, outcome) = socks_with(
            "http://localhost:9411/",
            false,
            None,
            &[(3, b"\x05\x00"), (10, ok4)],
        )
        .await;
        assert_eq!(outcome, Ok(Vec::new()));
        assert!(
            sent[1] == b"\x05\x01\x00\x01\x7f\x00\x00\x01\x24\xc3" || sent[1][..4] == [5, 1, 0, 4],
            "{:?}",
            sent[1]
        );

        // Refusals: final for credentials and rules, not for failures to reach the collector.
        let target = "SOCKS5 proxy refused the tunnel to zipkin.example:9411";
        let dst = "http://zipkin.example:9411/";
        let creds = Some(("ann", "guess"));
        let cases: [(Credentials, Script<'_>, String); 6] = [
            (
                creds,
                &[(4, b"\x05\x02"), (11, b"\x01\x01")],
                format!("refused (final: true): {target}: it rejected the user name and password"),
            ),
            (
                None,
                &[(3, b"\x05\xff")],
                format!(
                    "refused (final: true): {target}: it requires authentication (give \
                     user:password in the proxy URL)"
                ),
            ),
            (
                creds,
                &[(4, b"\x05\xff")],
                format!(
                    "refused (final: true): {target}: it accepts neither no authentication nor \
                     user/password"
                ),
            ),
            (
                None,
                &[(3, b"\x05\x00"), (21, b"\x05\x02\x00\x01\0\0\0\0\0\0")],
                format!("refused (final: true): {target}: connection not allowed by its rules (reply 2)"),
            ),
            (
                None,
                &[(3, b"\x05\x00"), (21, b"\x05\x05\x00\x01\0\0\0\0\0\0")],
                format!(
                    "refused (final: false): {target}: connection refused by the collector (reply 5)"
                ),
            ),
            (
                None,
                &[(3, b"\x05\x00"), (21, b"\x05\x01\x00\x01\0\0\0\0\0\0")],
                format!("refused (final: false): {target}: general SOCKS server failure (reply 1)"),
            ),
        ];
        for (auth, steps, expected) in cases {
            let (_, outcome) = socks_with(dst, true, auth, steps).await;
            assert_eq!(outcome, Err(expected));
        }

        // Not SOCKS5, cut short, or answering out of turn: errors, never a tunnel or a panic.
        let garbled: [(Script<'_>, &str); 5] = [
            (
                &[(3, b"HTTP/1.1 400 Bad Request\r\n\r\n")],
                "proxy answered the SOCKS5 greeting for zipkin.example:9411 with \"HT\": not a SOCKS5 proxy",
            ),
            (
                &[(3, b"\x05")],
                "proxy closed the connection during the SOCKS5 handshake for zipkin.example:9411",
            ),
            (
                &[(3, b"\x05\x02")],
                "SOCKS5 proxy chose authentication method 0x02 for zipkin.example:9411, which was not offered",
            ),
            (
                &[(3, b"\x05\x00"), (21, b"\x04\x00\x00\x01\0\0\0\0\0\0")],
                "SOCKS5 proxy answered CONNECT zipkin.example:9411 with version 4",
            ),
            (
                &[(3, b"\x05\x00"), (21, b"\x05\x00\x00\x07\0\0\0\0\0\0")],
                "SOCKS5 proxy answered CONNECT zipkin.example:9411 with address type 7",
            ),
        ];
        for (steps, expected) in garbled {
            let (_, outcome) = socks_with(dst, true, None, steps).await;
            assert_eq!(outcome, Err(expected.to_string()));
        }
        let (_, outcome) = socks_with(
            dst,
            true,
            None,
            &[(3, b"\x05\x00"), (21, b"\x05\x00\x00\x01\x7f\x00")],
        )
        .await;
        assert_eq!(
            outcome,
            Err(
                "proxy closed the connection during the SOCKS5 handshake for zipkin.example:9411"
                    .into()
            )
        );
    }

    /// Whatever a proxy answers (arbitrary bytes, often near-valid), the tunnel setups end with
    /// an error or a tunnel and never panic; a tunnel only after a well-formed acceptance.
    mod answers {
        use super::*;
        use proptest::prelude::*;

        /// Answers that are often near a valid SOCKS5 or `CONNECT` exchange.
        fn answer() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(vec![5, 0]),
                Just(vec![5, 2]),
                Just(vec![1, 0]),
                Just(vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 80]),
                Just(vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 80]),
                Just(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
                Just(b"HTTP/1.1 407 Auth\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..24),
            ];
            proptest::collection::vec(piece, 0..5).prop_map(|p| p.concat())
        }

        fn run<F: Future>(f: F) -> F::Output {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(f)
        }

        /// `tunnel` against a proxy that sends `answer` at once and then closes.
        async fn against<T, Fut>(answer: Vec<u8>, tunnel: T) -> bool
        where
            T: FnOnce(tokio::io::DuplexStream) -> Fut,
            Fut: Future<Output = Result<tokio::io::DuplexStream, BoxError>>,
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (client, mut proxy) = tokio::io::duplex(64 * 1024);
            let proxy_side = async move {
                let _ = proxy.write_all(&answer).await;
                let _ = proxy.shutdown().await;
                // Take whatever the client sends until it is done.
                let mut sent = Vec::new();
                let _ = proxy.read_to_end(&mut sent).await;
            };
            let client_side = async move { tunnel(client).await.map(drop).is_ok() };
            tokio::join!(proxy_side, client_side).1
        }

        proptest! {
            #[test]
            fn socks5_never_panics(answer in answer(), remote in any::<bool>(), auth in any::<bool>()) {
                // A name only where the proxy resolves it: no lookups here.
                let dst: Uri = match remote {
                    true => "http://zipkin.example:9411/".parse().unwrap(),
                    false => "http://10.1.2.3:9411/".parse().unwrap(),
                };
                let creds = auth.then(|| ("u".to_owned(), "p".to_owned()));
                // Accepted: no authentication, or user/password answered with status 0 (its
                // version byte is not checked: some proxies answer 5 there, as curl tolerates).
                let valid_start = answer.starts_with(&[5, 0])
                    || (auth && answer.starts_with(&[5, 2]) && answer.get(3) == Some(&0));
                let opened = run(against(answer, |io| async move {
                    socks5_tunnel(io, &dst, remote, creds.as_ref()).await
                }));
                prop_assert!(!opened || valid_start);
            }

            #[test]
            fn connect_never_panics(answer in answer()) {
                let dst: Uri = "https://zipkin.example:443/".parse().unwrap();
                let accepted = answer.starts_with(b"HTTP/1.") && answer.ends_with(b"\r\n\r\n");
                let opened = run(against(answer, |io| async move {
                    connect_tunnel(io, &dst, None).await
                }));
                prop_assert!(!opened || accepted);
            }
        }
    }

    #[test]
    fn socks_destinations_name_their_port() {
        let named = |u: &str| with_port(u.parse().unwrap()).to_string();
        assert_eq!(
            named("http://zipkin/api/v2/spans"),
            "http://zipkin:80/api/v2/spans"
        );
        assert_eq!(
            named("https://zipkin/api/v2/spans"),
            "https://zipkin:443/api/v2/spans"
        );
        assert_eq!(named("http://[fd00::1]:9411/x"), "http://[fd00::1]:9411/x");
        assert_eq!(named("https://[fd00::1]/x"), "https://[fd00::1]:443/x");
    }
}
