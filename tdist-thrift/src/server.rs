//! A small threaded TCP server that can be stopped (thrift's `TServer` listens forever), with
//! `TCP_NODELAY` on every accepted socket.

use crate::input::TracingInputProtocol;
use crate::stack::{protocols, BoxedInput, Framing, Protocol};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use thrift::server::TProcessor;
use thrift::TransportErrorKind;

/// Options for [`Server::spawn`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// The framing clients use.
    pub framing: Framing,
    /// The protocol clients use.
    pub protocol: Protocol,
    /// Read through a [`PrefixReader`](crate::prefix::PrefixReader) and detect the tracing
    /// prefix (pair with a [`TracedProcessor`](crate::TracedProcessor)). Off, the stack is
    /// exactly a plain Apache Thrift server's.
    pub detect_prefix: bool,
}

impl ServerOptions {
    /// A traced server's options (prefix detection on).
    pub fn traced(framing: Framing, protocol: Protocol) -> ServerOptions {
        ServerOptions {
            framing,
            protocol,
            detect_prefix: true,
        }
    }

    /// A plain server's options.
    pub fn plain(framing: Framing, protocol: Protocol) -> ServerOptions {
        ServerOptions {
            framing,
            protocol,
            detect_prefix: false,
        }
    }
}

/// A running server: one thread accepting, one per connection. Stops on
/// [`shutdown`](Self::shutdown) or drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `processor` on `listener` in background threads.
    pub fn spawn<P>(
        listener: TcpListener,
        processor: P,
        options: ServerOptions,
    ) -> io::Result<Server>
    where
        P: TProcessor + Send + Sync + 'static,
    {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let processor = Arc::new(processor);
        let (s, c) = (stop.clone(), conns.clone());
        let accept = std::thread::Builder::new()
            .name("tdist-thrift-accept".into())
            .spawn(move || accept_loop(listener, processor, options, s, c))?;
        Ok(Server {
            addr,
            stop,
            conns,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every open connection.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn accept_loop<P: TProcessor + Send + Sync + 'static>(
    listener: TcpListener,
    processor: Arc<P>,
    options: ServerOptions,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            // Out of file descriptors, buffers or memory: they last, and retrying at once
            // would spin on a core until they pass.
            Err(e) if lasts(&e) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            // A connection that failed before it was accepted: on to the next one.
            Err(_) => continue,
        };
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        if let Ok(clone) = stream.try_clone() {
            let mut list = conns.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|c| c.peer_addr().is_ok());
            list.push(clone);
        }
        let processor = processor.clone();
        let _ = std::thread::Builder::new()
            .name("tdist-thrift-conn".into())
            .spawn(move || serve(stream, &*processor, options));
    }
}

/// Whether an accept error is the process's or the system's (it lasts), not one connection's.
/// EMFILE, ENFILE and ENOBUFS (ENOBUFS is 105 on Linux, 55 on the BSDs and macOS).
fn lasts(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::OutOfMemory
        || matches!(e.raw_os_error(), Some(23 | 24))
        || (cfg!(target_os = "linux") && e.raw_os_error() == Some(105))
        || (cfg!(not(target_os = "linux")) && e.raw_os_error() == Some(55))
}

fn serve<P: TProcessor>(stream: TcpStream, processor: &P, options: ServerOptions) {
    let Ok((i, handle, mut o)) = protocols(
        &stream,
        options.framing,
        options.protocol,
        options.detect_prefix,
    ) else {
        return;
    };
    if let Ok(peer) = stream.peer_addr() {
        crate::processor::set_connection_peer(peer);
    }
    let mut i: BoxedInput = match handle {
        Some(h) => Box::new(TracingInputProtocol::server(i, h)),
        None => i,
    };
    loop {
        match processor.process(&mut *i, &mut *o) {
            Ok(()) => {}
            Err(thrift::Error::Transport(e)) if e.kind == TransportErrorKind::EndOfFile => break,
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::lasts;
    use std::io::{Error, ErrorKind};

    #[test]
    #[cfg(target_os = "linux")]
    fn only_errors_that_last_pause_the_accept_loop() {
        assert!(lasts(&Error::from_raw_os_error(24))); // EMFILE
        assert!(lasts(&Error::from_raw_os_error(23))); // ENFILE
        assert!(lasts(&Error::from(ErrorKind::OutOfMemory)));
        assert!(!lasts(&Error::from(ErrorKind::ConnectionAborted)));
        assert!(!lasts(&Error::from_raw_os_error(71))); // EPROTO (Linux)
        assert!(!lasts(&Error::from_raw_os_error(104))); // ECONNRESET (Linux)
    }
}
