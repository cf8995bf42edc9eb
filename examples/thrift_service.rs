//! A traced Thrift `SpamCheck` server and a traced, negotiating client.
//!
//! ```text
//! thrift_service --listen 127.0.0.1:9090 [--plain] [--framing framed|buffered] [--protocol binary|compact] [--spans FILE]
//! thrift_service --connect 127.0.0.1:9090 [--count N] [--upgrade negotiate|always|never] [--expect-traced yes|no] [...]
//! ```
//!
//! The server prints `listening on ADDR` once ready. The client checks `--count` comments, sends
//! one oneway `report`, checks that an empty comment is refused with `InvalidComment`, prints
//! one line per call and `traced: true|false`, and exits non-zero on any failure. Spans go to
//! `--spans FILE` as Zipkin v2 JSON lines.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use tdist_core::export::{JsonLinesFile, NoopTransport};
use tdist_core::Tracer;
use tdist_examples::spam_check::SpamChecker;
use tdist_examples::thrift_gen::comments::{
    Comment, InvalidComment, SpamCheckSyncClient, SpamCheckSyncProcessor, TSpamCheckSyncClient,
    Verdict,
};
use tdist_thrift::{Connector, Framing, Protocol, Server, ServerOptions, TracedProcessor, Upgrade};

struct Args {
    listen: Option<String>,
    connect: Option<String>,
    plain: bool,
    framing: Framing,
    protocol: Protocol,
    upgrade: Upgrade,
    count: usize,
    spans: Option<String>,
    expect_traced: Option<bool>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        listen: None,
        connect: None,
        plain: false,
        framing: Framing::Framed,
        protocol: Protocol::Binary,
        upgrade: Upgrade::Negotiate,
        count: 5,
        spans: None,
        expect_traced: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = Some(value()?),
            "--connect" => a.connect = Some(value()?),
            "--plain" => a.plain = true,
            "--spans" => a.spans = Some(value()?),
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--framing" => {
                a.framing = match value()?.as_str() {
                    "framed" => Framing::Framed,
                    "buffered" => Framing::Buffered,
                    v => return Err(format!("unknown framing {v}")),
                }
            }
            "--protocol" => {
                a.protocol = match value()?.as_str() {
                    "binary" => Protocol::Binary,
                    "compact" => Protocol::Compact,
                    v => return Err(format!("unknown protocol {v}")),
                }
            }
            "--upgrade" => {
                a.upgrade = match value()?.as_str() {
                    "negotiate" => Upgrade::Negotiate,
                    "always" => Upgrade::Always,
                    "never" => Upgrade::Never,
                    v => return Err(format!("unknown upgrade mode {v}")),
                }
            }
            "--expect-traced" => a.expect_traced = Some(value()? == "yes"),
            f => return Err(format!("unknown argument {f}")),
        }
    }
    Ok(a)
}

fn tracer(service: &'static str, spans: &Option<String>) -> Result<Tracer, String> {
    let b = Tracer::builder()
        .service_name(service)
        .configure_reporter(|r| r.schedule_delay = std::time::Duration::from_millis(200));
    let b = match spans {
        Some(path) => b.transport(JsonLinesFile::create(path).map_err(|e| format!("{path}: {e}"))?),
        None => b.transport(NoopTransport),
    };
    b.build().map_err(|e| e.to_string())
}

fn serve(args: &Args, addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let processor = SpamCheckSyncProcessor::new(SpamChecker::default());
    let mut traced = None;
    let server = if args.plain {
        let opts = ServerOptions::plain(args.framing, args.protocol);
        Server::spawn(listener, processor, opts)
    } else {
        let t = tracer("spam-check", &args.spans)?;
        traced = Some(t.clone());
        let opts = ServerOptions::traced(args.framing, args.protocol);
        Server::spawn(listener, TracedProcessor::new(t, processor), opts)
    }
    .map_err(|e| e.to_string())?;
    println!("listening on {local}");
    std::io::stdout().flush().ok();
    // Serves until Ctrl-C or SIGTERM, then stops and flushes what the last calls recorded.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(tdist_examples::stop_signal());
    drop(server);
    if let Some(t) = traced {
        t.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

const COMMENTS: &[&str] = &[
    "Thanks, this fixed my build.",
    "BUY CHEAP PILLS NOW!!! http://spam.example",
    "Free crypto offer, click here: https://x.example",
    "I disagree with the second paragraph, but good post.",
];

fn call(args: &Args, addr: &str) -> Result<(), String> {
    let t = tracer("comments-client", &args.spans)?;
    let connector = Connector::new(t.clone())
        .framing(args.framing)
        .protocol(args.protocol)
        .upgrade(args.upgrade);
    let conn = connector
        .connect(addr)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let traced = conn.is_traced();
    println!("traced: {traced}");
    if let Some(want) = args.expect_traced {
        if want != traced {
            return Err(format!("expected traced={want}, negotiated {traced}"));
        }
    }
    let (i, o) = conn.into_protocols();
    let mut client = SpamCheckSyncClient::new(i, o);
    let root = t.root_span("moderate comments");
    let _current = root.enter();
    for n in 0..args.count {
        let text = COMMENTS[n % COMMENTS.len()];
        let c = Comment::new(format!("c{n}"), "demo".to_owned(), text.to_owned(), None);
        let s = client.check(c).map_err(|e| format!("check c{n}: {e}"))?;
        let score = s.score.map(|f| f.0).unwrap_or(-1.0);
        let verdict = s.verdict.ok_or("no verdict")?;
        println!("c{n}: score {score:.2} verdict {}", verdict.0);
    }
    client
        .report("c1".to_owned(), Verdict::SPAM)
        .map_err(|e| format!("report: {e}"))?;
    let empty = Comment::new("c-empty".to_owned(), "demo".to_owned(), String::new(), None);
    match client.check(empty) {
        Err(thrift::Error::User(e)) if e.downcast_ref::<InvalidComment>().is_some() => {
            println!("empty comment refused: {e}");
        }
        other => {
            return Err(format!(
                "empty comment: expected InvalidComment, got {other:?}"
            ))
        }
    }
    drop(_current);
    root.finish();
    t.flush().map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let res = parse().and_then(|args| match (&args.listen, &args.connect) {
        (Some(a), None) => serve(&args, a),
        (None, Some(a)) => call(&args, a),
        _ => Err("give exactly one of --listen ADDR or --connect ADDR".into()),
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thrift_service: {e}");
            ExitCode::FAILURE
        }
    }
}
