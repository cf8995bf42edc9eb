//! Shared test support: the demo's generated services, handlers, servers, a recording proxy.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

#[path = "../../../examples/src/thrift_gen/comments.rs"]
#[allow(clippy::all, rust_2018_idioms)]
pub mod comments;

use comments::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tdist_core::export::InMemory;
use tdist_core::{current, SpanContext, Tracer};
use tdist_thrift::{
    ClientInput, ClientOutput, Connector, Framing, Protocol, Server, ServerOptions,
    TracedProcessor, Upgrade, PROBE_METHOD,
};
use thrift::OrderedFloat;

pub const STACKS: [(Framing, Protocol); 4] = [
    (Framing::Framed, Protocol::Binary),
    (Framing::Framed, Protocol::Compact),
    (Framing::Buffered, Protocol::Binary),
    (Framing::Buffered, Protocol::Compact),
];

pub fn tracer(sink: &InMemory, service: &'static str) -> Tracer {
    Tracer::builder()
        .service_name(service)
        .sampler(tdist_core::Sampler::always())
        .transport(sink.clone())
        .configure_reporter(|r| r.schedule_delay = Duration::from_millis(20))
        .build()
        .unwrap()
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// SpamCheck: scores by the word "spam"; records the context current in the handler.
#[derive(Default, Clone)]
pub struct Spam {
    pub seen: Arc<Mutex<Vec<Option<SpanContext>>>>,
    pub reports: Arc<Mutex<Vec<String>>>,
}

impl SpamCheckSyncHandler for Spam {
    fn handle_check(&self, c: Comment) -> thrift::Result<SpamScore> {
        self.seen.lock().unwrap().push(current());
        let text = c.text.unwrap_or_default();
        if text.is_empty() {
            return Err(InvalidComment::new("empty".to_owned()).into());
        }
        if text == "boom" {
            return Err(thrift::Error::Application(thrift::ApplicationError::new(
                thrift::ApplicationErrorKind::InternalError,
                "handler exploded",
            )));
        }
        let (score, verdict) = if text.contains("spam") {
            (0.9, Verdict::SPAM)
        } else {
            (0.1, Verdict::HAM)
        };
        Ok(SpamScore::new(OrderedFloat(score), verdict, None))
    }

    fn handle_report(&self, id: String, _v: Verdict) -> thrift::Result<()> {
        self.seen.lock().unwrap().push(current());
        self.reports.lock().unwrap().push(id);
        Ok(())
    }
}

pub type SpamClient = SpamCheckSyncClient<ClientInput, ClientOutput>;

/// Comments: calls SpamCheck downstream through a traced client.
pub struct Posts {
    pub spam: Mutex<SpamClient>,
}

impl CommentsSyncHandler for Posts {
    fn handle_post(&self, c: Comment) -> thrift::Result<PostResult> {
        let id = c.id.clone().unwrap_or_default();
        let score = self.spam.lock().unwrap().check(c)?;
        let published = score.verdict != Some(Verdict::SPAM);
        Ok(PostResult::new(id, published, score))
    }
}

pub fn spam_server(tracer: Option<Tracer>, stack: (Framing, Protocol), spam: Spam) -> Server {
    let p = SpamCheckSyncProcessor::new(spam);
    match tracer {
        Some(t) => Server::spawn(
            listener(),
            TracedProcessor::new(t, p),
            ServerOptions::traced(stack.0, stack.1),
        ),
        None => Server::spawn(listener(), p, ServerOptions::plain(stack.0, stack.1)),
    }
    .unwrap()
}

pub fn connector(t: &Tracer, stack: (Framing, Protocol), upgrade: Upgrade) -> Connector {
    Connector::new(t.clone())
        .framing(stack.0)
        .protocol(stack.1)
        .upgrade(upgrade)
        .read_timeout(Some(Duration::from_secs(10)))
}

pub fn spam_client(c: &Connector, addr: SocketAddr) -> (SpamClient, bool) {
    let conn = c.connect(addr).unwrap();
    let traced = conn.is_traced();
    let (i, o) = conn.into_protocols();
    (SpamCheckSyncClient::new(i, o), traced)
}

pub fn comment(id: &str, text: &str) -> Comment {
    Comment::new(id.to_owned(), "tester".to_owned(), text.to_owned(), None)
}

/// A TCP proxy that records every byte each client connection sends. With `close_on_probe`,
/// a connection whose first bytes contain the probe's method name is closed unanswered (as Go
/// Thrift servers do with unknown methods).
pub struct Proxy {
    pub addr: SocketAddr,
    pub sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    pub fn spawn(target: SocketAddr, close_on_probe: bool) -> Proxy {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let rec = sent.clone();
        thread::spawn(move || {
            for client in l.incoming() {
                let Ok(client) = client else { return };
                client.set_nodelay(true).unwrap();
                let idx = {
                    let mut r = rec.lock().unwrap();
                    r.push(Vec::new());
                    r.len() - 1
                };
                let rec = rec.clone();
                thread::spawn(move || pipe(client, target, rec, idx, close_on_probe));
            }
        });
        Proxy { addr, sent }
    }

    /// The bytes each connection sent, in connection order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.sent.lock().unwrap().clone()
    }
}

fn pipe(
    mut client: TcpStream,
    target: SocketAddr,
    rec: Arc<Mutex<Vec<Vec<u8>>>>,
    idx: usize,
    close_on_probe: bool,
) {
    let mut server = TcpStream::connect(target).unwrap();
    server.set_nodelay(true).unwrap();
    let mut back_from = server.try_clone().unwrap();
    let mut back_to = client.try_clone().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = back_from.read(&mut buf) {
            if n == 0 || back_to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = back_to.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 4096];
    let mut total = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total.extend_from_slice(&buf[..n]);
        rec.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
        if close_on_probe && contains(&total, PROBE_METHOD.as_bytes()) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `bytes` contain the start of a tracing prefix (magic and version).
pub fn has_prefix(bytes: &[u8]) -> bool {
    contains(bytes, &[0xC1, 0xB3, 0x01])
}
