//! The topology's bolts, each run as its own process under Storm's multilang protocol
//! (or the harness): `spam` asks the Thrift `SpamCheck` service for a verdict and emits the
//! comment with it; `notify`, `index`, `store` and `statistics` consume that stream. Every
//! bolt is wrapped in tdist-storm's `TracedBolt`, so each tuple's trace continues through it.
//!
//! `statistics` is deliberately chatty: one small local "db" span per counter it bumps, many
//! under one parent, which the report's repeated-call finding points out.

use super::comments::Comment;
use super::Mode;
use crate::spam_check::verdict as verdict_of;
use crate::thrift_gen::comments::{self as gen, SpamCheckSyncClient, TSpamCheckSyncClient};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use tdist_core::{Kind, Tracer};
use tdist_storm::bolt::{run_bolt, Bolt, BoltError, Collector};
use tdist_storm::protocol::{Emit, Handshake, Tuple};
use tdist_storm::traced::TracedBolt;
use tdist_thrift::{
    protocols, BoxedInput, BoxedOutput, ClientInput, ClientOutput, Connector, Framing, Protocol,
};

/// The environment variable giving the spam bolt the Thrift service's address.
pub const SPAM_ADDR_VAR: &str = "PIPELINE_SPAM_CHECK_ADDR";
/// The environment variable giving each bolt its span file (as core's `TDIST_FILE`).
pub const SPAN_FILE_VAR: &str = "TDIST_FILE";

/// The bolts: component id and the service name its spans report.
pub const BOLTS: &[(&str, &str)] = &[
    ("spam", "spam-filter"),
    ("notify", "notifier"),
    ("index", "search-indexer"),
    ("store", "comment-store"),
    ("statistics", "statistics"),
];

/// The bolts fed by the spam bolt's stream.
pub const DOWNSTREAM: &[&str] = &["notify", "index", "store", "statistics"];

fn comment_of(t: &Tuple) -> Result<Comment, BoltError> {
    let text = t
        .values
        .first()
        .and_then(Value::as_str)
        .ok_or("tuple has no comment")?;
    Ok(Comment::from_json(text)?)
}

fn verdict_in(t: &Tuple) -> &str {
    t.values.get(1).and_then(Value::as_str).unwrap_or("unknown")
}

type SpamClient = SpamCheckSyncClient<BoxedInput, BoxedOutput>;

/// Calls the `SpamCheck` service (a CLIENT span per call) and emits `[comment, verdict]`.
/// Without a connector (the plain mode), over Apache Thrift's own framed binary protocols.
struct SpamBolt {
    connector: Option<Connector>,
    addr: String,
    client: Option<SpamClient>,
}

impl SpamBolt {
    fn client(&mut self) -> Result<&mut SpamClient, BoltError> {
        if self.client.is_none() {
            let (i, o): (BoxedInput, BoxedOutput) = match &self.connector {
                Some(connector) => {
                    let (i, o): (ClientInput, ClientOutput) =
                        connector.connect(self.addr.as_str())?.into_protocols();
                    (Box::new(i), Box::new(o))
                }
                None => {
                    let stream = std::net::TcpStream::connect(self.addr.as_str())?;
                    let _ = stream.set_nodelay(true);
                    let (i, _, o) = protocols(&stream, Framing::Framed, Protocol::Binary, false)?;
                    (i, o)
                }
            };
            self.client = Some(SpamCheckSyncClient::new(i, o));
        }
        Ok(self.client.as_mut().expect("just connected"))
    }
}

impl Bolt for SpamBolt {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let c = comment_of(&t)?;
        let request = gen::Comment::new(c.id.clone(), c.author.clone(), c.text.clone(), None);
        let scored = match self.client()?.check(request) {
            Ok(s) => s,
            Err(e) => {
                self.client = None; // reconnect for the next tuple
                return Err(e.into());
            }
        };
        let score = scored.score.map_or(0.0, |s| s.0);
        let verdict = match scored.verdict.unwrap_or_else(|| verdict_of(score)) {
            gen::Verdict::SPAM => "spam",
            gen::Verdict::HAM => "ham",
            _ => "unsure",
        };
        out.emit(Emit::new(vec![c.to_json().into(), verdict.into()]).anchor(&t))?;
        out.ack(&t.id)?;
        Ok(())
    }
}

/// Tells the author's followers about published comments (renders a message per follower).
struct NotifyBolt {
    tracer: Tracer,
    sent: u64,
}

impl Bolt for NotifyBolt {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let c = comment_of(&t)?;
        if verdict_in(&t) != "spam" {
            let mut span = self.tracer.span("render notification");
            let followers = 1 + c.author.len() % 3;
            let body: Vec<String> = (0..followers)
                .map(|f| format!("follower-{f}: {} wrote {:?}", c.author, c.text))
                .collect();
            span.tag("followers", followers as i64);
            span.tag("bytes", body.iter().map(String::len).sum::<usize>() as i64);
            self.sent += followers as u64;
        }
        out.ack(&t.id)?;
        Ok(())
    }
}

/// Adds published comments to an inverted word index.
struct IndexBolt {
    tracer: Tracer,
    index: HashMap<String, Vec<String>>,
}

impl Bolt for IndexBolt {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let c = comment_of(&t)?;
        if verdict_in(&t) != "spam" {
            let mut span = self.tracer.span("index.update");
            let mut terms = 0u64;
            for w in c.text.split(|ch: char| !ch.is_alphanumeric()) {
                if w.len() > 2 {
                    self.index
                        .entry(w.to_lowercase())
                        .or_default()
                        .push(c.id.clone());
                    terms += 1;
                }
            }
            span.tag("terms", terms as i64);
        }
        out.ack(&t.id)?;
        Ok(())
    }
}

/// Stores every comment with its verdict (spam is kept, hidden, for moderators).
struct StoreBolt {
    tracer: Tracer,
    rows: BTreeMap<String, (Comment, String)>,
}

impl Bolt for StoreBolt {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let c = comment_of(&t)?;
        let verdict = verdict_in(&t).to_owned();
        let mut span = self.tracer.span("db.insert");
        span.set_kind(Kind::Client);
        span.set_remote_endpoint(tdist_core::Endpoint::service("comments-db"));
        span.tag(
            "db.table",
            if verdict == "spam" {
                "quarantine"
            } else {
                "comments"
            },
        );
        self.rows.insert(c.id.clone(), (c, verdict));
        span.tag("rows", self.rows.len() as i64);
        drop(span);
        out.ack(&t.id)?;
        Ok(())
    }
}

/// Counts per author, per verdict and per word, one small "db" span per counter bumped.
struct StatisticsBolt {
    tracer: Tracer,
    counters: HashMap<String, u64>,
}

impl StatisticsBolt {
    fn bump(&mut self, key: String) {
        let mut span = self.tracer.span("db.increment");
        span.tag("counter", key.clone());
        let n = self.counters.entry(key).or_default();
        *n += 1;
        span.tag("value", *n as i64);
    }
}

impl Bolt for StatisticsBolt {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let c = comment_of(&t)?;
        self.bump(format!("author:{}", c.author));
        self.bump(format!("verdict:{}", verdict_in(&t)));
        for w in c.text.split(|ch: char| !ch.is_alphanumeric()) {
            if !w.is_empty() {
                self.bump(format!("word:{}", w.to_lowercase()));
            }
        }
        out.ack(&t.id)?;
        Ok(())
    }
}

/// Logs the bolt's name once prepared (visible in the harness's records).
struct Named<B>(&'static str, B);

impl<B: Bolt> Bolt for Named<B> {
    fn prepare(&mut self, h: &Handshake, out: &mut dyn Collector) -> Result<(), BoltError> {
        out.log(
            tdist_storm::protocol::LogLevel::Info,
            &format!("{} bolt prepared", self.0),
        )?;
        self.1.prepare(h, out)
    }

    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        self.1.execute(t, out)
    }
}

fn make(name: &str, tracer: &Tracer, mode: Mode) -> Result<Box<dyn Bolt>, String> {
    let t = tracer.clone();
    Ok(match name {
        "spam" => {
            let addr =
                std::env::var(SPAM_ADDR_VAR).map_err(|_| format!("{SPAM_ADDR_VAR} unset"))?;
            Box::new(Named(
                "spam",
                SpamBolt {
                    connector: (mode != Mode::Plain).then(|| Connector::new(t)),
                    addr,
                    client: None,
                },
            ))
        }
        "notify" => Box::new(Named("notify", NotifyBolt { tracer: t, sent: 0 })),
        "index" => Box::new(Named(
            "index",
            IndexBolt {
                tracer: t,
                index: HashMap::new(),
            },
        )),
        "store" => Box::new(Named(
            "store",
            StoreBolt {
                tracer: t,
                rows: BTreeMap::new(),
            },
        )),
        "statistics" => Box::new(Named(
            "statistics",
            StatisticsBolt {
                tracer: t,
                counters: HashMap::new(),
            },
        )),
        other => return Err(format!("unknown bolt {other:?}")),
    })
}

/// Runs bolt `name` on stdin/stdout until the pipe closes, then flushes its spans to the file
/// in `TDIST_FILE`. The process's entry point in bolt mode. The benchmark mode comes from
/// `PIPELINE_MODE` ([`Mode::from_env`]): in [`Mode::Plain`] the bolt is not wrapped in
/// `TracedBolt`, the spam bolt speaks plain Thrift and the bolts' own spans go to
/// [`Tracer::noop`].
pub fn run(name: &str) -> ExitCode {
    let Some(&(_, service)) = BOLTS.iter().find(|(n, _)| *n == name) else {
        eprintln!("unknown bolt {name:?}");
        return ExitCode::from(2);
    };
    let Some(file) = std::env::var_os(SPAN_FILE_VAR).map(PathBuf::from) else {
        eprintln!("{SPAN_FILE_VAR} must name the bolt's span file");
        return ExitCode::from(2);
    };
    let mode = match Mode::from_env() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bolt {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let zipkin = std::env::var(super::spans::ZIPKIN_VAR).ok();
    let tracer = match super::spans::tracer_for(mode, service, &file, zipkin.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bolt {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let bolt = match make(name, &tracer, mode) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bolt {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Plain => run_bolt(bolt),
        _ => run_bolt(TracedBolt::new(bolt, tracer.clone()).with_name(name)),
    };
    // One bounded wait for the span file and the collectors (TDIST_SHUTDOWN_TIMEOUT), not a
    // flush followed by another at the drop.
    let _ = tracer.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
