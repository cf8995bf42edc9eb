//! Traced clients: protocol pairs for generated clients, and a connector that negotiates the
//! prefix once per connection.

use crate::call::CallHandle;
use crate::input::TracingInputProtocol;
use crate::output::TracingOutputProtocol;
use crate::prefix::PrefixHandle;
use crate::stack::{protocols, BoxedInput, BoxedOutput, Framing, Protocol};
use crate::PROBE_METHOD;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tdist_core::{Endpoint, Tracer};
use thrift::protocol::{
    TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

/// The input protocol of a traced client connection.
pub type ClientInput = TracingInputProtocol<BoxedInput>;
/// The output protocol of a traced client connection.
pub type ClientOutput = TracingOutputProtocol<BoxedOutput>;

/// Wraps a client's protocols so that each call gets a CLIENT span (see
/// [`TracingOutputProtocol`]). `input` must read from the [`PrefixReader`](crate::prefix::PrefixReader)
/// that `prefix` belongs to (replies from a traced server may carry a prefix). With
/// `send_prefix` off the bytes written are exactly the wrapped protocol's.
pub fn client_protocols<I: TInputProtocol, O: TOutputProtocol>(
    tracer: &Tracer,
    input: I,
    prefix: PrefixHandle,
    output: O,
    send_prefix: bool,
) -> (TracingInputProtocol<I>, TracingOutputProtocol<O>) {
    let call = CallHandle::default();
    (
        TracingInputProtocol::client(input, prefix, call.clone()),
        TracingOutputProtocol::new(output, tracer.clone(), call, send_prefix, None),
    )
}

/// When a client writes the tracing prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upgrade {
    /// Probe each new connection with [`PROBE_METHOD`]; send prefixes only when the server
    /// answered the probe. Servers can be upgraded before or after their clients.
    #[default]
    Negotiate,
    /// Always send the prefix (every server is known to be traced; no probe round trip).
    Always,
    /// Never send the prefix (CLIENT spans are still recorded).
    Never,
}

/// Opens traced client connections over TCP (`TCP_NODELAY` set).
///
/// With [`Upgrade::Negotiate`] (the default) every new connection starts with one probe call.
/// A traced server answers it with a REPLY and the connection carries prefixes. Anything else
/// (an `UNKNOWN_METHOD` exception from a plain Apache Thrift server, a connection closed by an
/// older Go server or a proxy, garbage, a timeout) means "not traced": the probed connection is
/// discarded (a plain server may have left the probe's arguments unread on it), a fresh one is
/// opened, and the answer is remembered for the address, so later connections skip the probe.
/// No user call is ever sent before negotiation is over, so none is lost. Clones share the
/// memory.
///
/// ```no_run
/// use tdist_core::Tracer;
/// use tdist_thrift::Connector;
///
/// let connector = Connector::new(Tracer::global());
/// let conn = connector.connect("127.0.0.1:9090").unwrap();
/// println!("traced: {}", conn.is_traced());
/// let (input, output) = conn.into_protocols();
/// // let client = SpamCheckSyncClient::new(input, output);
/// # drop((input, output));
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    tracer: Tracer,
    framing: Framing,
    protocol: Protocol,
    upgrade: Upgrade,
    probe_timeout: Duration,
    read_timeout: Option<Duration>,
    remember_for: Duration,
    /// Untraced addresses and until when they are remembered (`None`: for good, when the
    /// period reaches past what an `Instant` can hold).
    untraced: Arc<Mutex<HashMap<SocketAddr, Option<Instant>>>>,
}

impl Connector {
    /// Framed binary protocol, negotiating, 5 s probe timeout, untraced answers remembered 5 min.
    pub fn new(tracer: Tracer) -> Connector {
        Connector {
            tracer,
            framing: Framing::default(),
            protocol: Protocol::default(),
            upgrade: Upgrade::default(),
            probe_timeout: Duration::from_secs(5),
            read_timeout: None,
            remember_for: Duration::from_secs(300),
            untraced: Arc::default(),
        }
    }

    /// Sets the framing.
    pub fn framing(mut self, framing: Framing) -> Connector {
        self.framing = framing;
        self
    }

    /// Sets the protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Connector {
        self.protocol = protocol;
        self
    }

    /// Sets when prefixes are sent.
    pub fn upgrade(mut self, upgrade: Upgrade) -> Connector {
        self.upgrade = upgrade;
        self
    }

    /// How long to wait for the probe's answer before treating the server as untraced
    /// (default 5 s). `Duration::ZERO` means no limit: the probe waits as long as the server
    /// takes to answer or close, as a zero `SO_TIMEOUT` does in Java and Thrift's sockets.
    pub fn probe_timeout(mut self, timeout: Duration) -> Connector {
        self.probe_timeout = timeout;
        self
    }

    /// A read timeout for calls (none by default). `Some(Duration::ZERO)` is the same as
    /// `None`.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Connector {
        self.read_timeout = timeout;
        self
    }

    /// How long an "untraced" answer is remembered before the address is probed again.
    pub fn remember_untraced_for(mut self, period: Duration) -> Connector {
        self.remember_for = period;
        self
    }

    /// Whether `addr` is currently remembered as untraced.
    pub fn is_known_untraced(&self, addr: SocketAddr) -> bool {
        let mut map = self.untraced.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&addr) {
            Some(None) => true,
            Some(Some(until)) if *until > Instant::now() => true,
            Some(_) => {
                map.remove(&addr);
                false
            }
            None => false,
        }
    }

    fn remember_untraced(&self, addr: SocketAddr) {
        // `Duration::MAX` ("remember for good") would overflow `now + period`.
        let now = Instant::now();
        let until = now.checked_add(self.remember_for);
        let mut map = self.untraced.lock().unwrap_or_else(|p| p.into_inner());
        // Answers are otherwise dropped only when their address is looked up again: a client of
        // a changing fleet would keep every address it ever probed.
        map.retain(|_, until| until.is_none_or(|u| u > now));
        map.insert(addr, until);
    }

    /// Connects to the first address `addr` resolves to and negotiates.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<Connection> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let traced = match self.upgrade {
            Upgrade::Never => false,
            Upgrade::Always => true,
            Upgrade::Negotiate if self.is_known_untraced(addr) => false,
            Upgrade::Negotiate => {
                let stream = open(addr)?;
                if self.probe(&stream) {
                    stream.set_read_timeout(limit(self.read_timeout))?;
                    return self.wrap(stream, addr, true);
                }
                self.remember_untraced(addr);
                false
            }
        };
        let stream = open(addr)?;
        stream.set_read_timeout(limit(self.read_timeout))?;
        self.wrap(stream, addr, traced)
    }

    /// Sends the probe on `stream`; true when the server answered it as a traced server.
    fn probe(&self, stream: &TcpStream) -> bool {
        let attempt = || -> thrift::Result<bool> {
            // A failure here would read as "untraced": the timeout must be one the OS takes.
            stream.set_read_timeout(limit(Some(self.probe_timeout)))?;
            let (mut i, _, mut o) = protocols(stream, self.framing, self.protocol, false)?;
            let call = TMessageIdentifier::new(PROBE_METHOD, TMessageType::Call, 0);
            o.write_message_begin(&call)?;
            o.write_struct_begin(&TStructIdentifier::new("ConnectionOptions"))?;
            o.write_field_stop()?;
            o.write_struct_end()?;
            o.write_message_end()?;
            o.flush()?;
            let reply = i.read_message_begin()?;
            if reply.message_type != TMessageType::Reply || reply.name != PROBE_METHOD {
                return Ok(false);
            }
            i.skip(TType::Struct)?;
            i.read_message_end()?;
            Ok(true)
        };
        attempt().unwrap_or(false)
    }

    fn wrap(&self, stream: TcpStream, addr: SocketAddr, traced: bool) -> io::Result<Connection> {
        let (input, handle, output) = protocols(&stream, self.framing, self.protocol, true)?;
        let handle = handle.ok_or_else(|| io::Error::other("no prefix reader"))?;
        let call = CallHandle::default();
        let remote = Some(Endpoint::addr(addr));
        Ok(Connection {
            input: TracingInputProtocol::client(input, handle, call.clone()),
            output: TracingOutputProtocol::new(output, self.tracer.clone(), call, traced, remote),
            traced,
            peer: addr,
            stream,
        })
    }
}

/// A socket read timeout: zero means none (`set_read_timeout` refuses `Some(ZERO)`).
fn limit(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|t| !t.is_zero())
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connected, negotiated client connection: hand its protocols to a generated client.
#[derive(Debug)]
pub struct Connection {
    input: ClientInput,
    output: ClientOutput,
    traced: bool,
    peer: SocketAddr,
    stream: TcpStream,
}

impl Connection {
    /// Whether calls on this connection carry the tracing prefix.
    pub fn is_traced(&self) -> bool {
        self.traced
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket (for timeouts or shutdown; the protocols hold clones of it).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The protocols, for `…SyncClient::new(input, output)`.
    pub fn into_protocols(self) -> (ClientInput, ClientOutput) {
        (self.input, self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_untraced_answers_are_released() {
        // A client of a churning fleet (new addresses over time) must not keep every address it
        // ever probed: an expired answer for an address never contacted again is dropped.
        let c = Connector::new(Tracer::builder().build().unwrap())
            .remember_untraced_for(Duration::ZERO);
        for port in 1..=10_000u16 {
            c.remember_untraced(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let kept = c.untraced.lock().unwrap().len();
        assert!(kept <= 1, "{kept} expired answers kept");
    }
}
