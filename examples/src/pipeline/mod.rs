//! The comment pipeline: one trace per comment across HTTP → Kafka → Storm → Thrift.
//!
//! - [`http`]: the comments API (`POST /comments`, a SERVER span per request) produces each
//!   comment to Kafka with a traced producer (PRODUCER span, context in header and frame).
//! - [`kafka`]: the mock cluster or a real broker, and the consumer loop (CONSUMER span per
//!   record) feeding the topology with the context as the tuple's last field.
//! - [`topology`], [`bolts`]: Rust multilang bolts as child processes under tdist-storm's
//!   harness: `spam` (calls the traced Thrift `SpamCheck` server, CLIENT and SERVER spans),
//!   then `notify`, `index`, `store` and a chatty `statistics`.
//! - [`spans`]: every process writes JSON lines of its own; [`run`] merges them into one file.
//!
//! [`run`] starts all of it in this process (plus the bolt processes), posts the comments from
//! several concurrent clients, waits until every bolt has settled every tuple, stops the bolts
//! so they flush, and returns where the spans are.

pub mod bolts;
pub mod comments;
pub mod http;
pub mod kafka;
pub mod spans;
pub mod topology;

use crate::spam_check::SpamChecker;
use crate::thrift_gen::comments::SpamCheckSyncProcessor;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tdist_kafka::KafkaTracing;
use tdist_thrift::{Framing, Protocol, Server, ServerOptions, TracedProcessor};
use topology::Topology;

/// The Kafka topic comments go through by default.
pub const TOPIC: &str = "comments";

/// The environment variable passing the [`Mode`] to the bolt processes.
pub const MODE_VAR: &str = "PIPELINE_MODE";

/// How much of tdist the pipeline uses (the overhead benchmark compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No tdist instrumentation: hyper without `ServerLayer`, rdkafka's own producer and
    /// consumer, Apache Thrift's processor and protocols, bolts not wrapped in `TracedBolt`
    /// (their own spans go to `Tracer::noop`), no span files.
    Plain,
    /// Everything instrumented, nothing sampled (`OTEL_TRACES_SAMPLER=always_off`).
    Unsampled,
    /// Everything instrumented and sampled; spans to a file per process (and collectors).
    #[default]
    Sampled,
}

impl Mode {
    /// All modes, in the benchmark's order.
    pub const ALL: [Mode; 3] = [Mode::Plain, Mode::Unsampled, Mode::Sampled];

    /// `plain`, `unsampled` or `sampled`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Unsampled => "unsampled",
            Mode::Sampled => "sampled",
        }
    }

    /// The mode named `s` (see [`Mode::name`]).
    pub fn parse(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| format!("unknown mode {s:?} (plain, unsampled or sampled)"))
    }

    /// The mode in `PIPELINE_MODE`; [`Mode::Sampled`] when unset.
    pub fn from_env() -> Result<Mode, String> {
        match std::env::var(MODE_VAR) {
            Ok(v) if !v.trim().is_empty() => Mode::parse(&v),
            _ => Ok(Mode::Sampled),
        }
    }
}

/// Per-comment latency from the HTTP request's arrival at the API to the last downstream
/// bolt's ack (as the harness sees it), measured with `Instant`, independent of tracing.
#[derive(Debug, Default)]
pub struct Timings {
    inner: std::sync::Mutex<TimingsInner>,
}

#[derive(Debug, Default)]
struct TimingsInner {
    /// Comment id → arrival, downstream acks so far.
    open: std::collections::HashMap<String, (Instant, usize)>,
    /// Downstream tuple id → comment id.
    tuples: std::collections::HashMap<String, String>,
    first_arrival: Option<Instant>,
    last_done: Option<Instant>,
    done: Vec<Duration>,
}

impl Timings {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimingsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Comment `id`'s request arrived at `at`.
    pub fn arrived(&self, id: &str, at: Instant) {
        let mut t = self.lock();
        t.first_arrival = Some(t.first_arrival.map_or(at, |f| f.min(at)));
        t.open.insert(id.to_owned(), (at, 0));
    }

    /// Tuple `tuple` carrying comment `comment` went to a downstream bolt.
    pub fn forwarded(&self, tuple: &str, comment: &str) {
        self.lock()
            .tuples
            .insert(tuple.to_owned(), comment.to_owned());
    }

    /// A downstream bolt acked tuple `tuple` at `at`; the comment is done when every downstream
    /// bolt has acked it.
    pub fn acked(&self, tuple: &str, at: Instant) {
        let mut t = self.lock();
        let Some(comment) = t.tuples.remove(tuple) else {
            return;
        };
        let Some(entry) = t.open.get_mut(&comment) else {
            return;
        };
        entry.1 += 1;
        if entry.1 < bolts::DOWNSTREAM.len() {
            return;
        }
        let arrived = entry.0;
        t.open.remove(&comment);
        t.done.push(at.saturating_duration_since(arrived));
        t.last_done = Some(t.last_done.map_or(at, |l| l.max(at)));
    }

    /// The latencies of the comments done so far, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut v = self.lock().done.clone();
        v.sort_unstable();
        v
    }

    /// From the first arrival to the last comment done.
    pub fn span(&self) -> Option<Duration> {
        let t = self.lock();
        Some(t.last_done?.saturating_duration_since(t.first_arrival?))
    }
}

/// How to run the pipeline.
pub struct Config {
    /// How many comments to post.
    pub comments: usize,
    /// How many concurrent HTTP clients post them.
    pub clients: usize,
    /// The Kafka topic (created on a real broker if missing; give concurrent runs against one
    /// broker different topics).
    pub topic: String,
    /// The JSON-lines file receiving every span of every process.
    pub out: PathBuf,
    /// The command that runs bolt `name` (this program with `--bolt name`, in the demo).
    pub bolt_command: Box<dyn Fn(&str) -> Command + Send + Sync>,
    /// Print a progress line on stderr while the load runs.
    pub progress: bool,
    /// How long to wait for the topology to process everything once posted.
    pub settle_timeout: Duration,
    /// A Zipkin collector's span endpoint every process also sends to (the demo takes it from
    /// `OTEL_EXPORTER_ZIPKIN_ENDPOINT`).
    pub zipkin_endpoint: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("comments", &self.comments)
            .field("clients", &self.clients)
            .field("topic", &self.topic)
            .field("out", &self.out)
            .field("progress", &self.progress)
            .field("zipkin_endpoint", &self.zipkin_endpoint)
            .finish_non_exhaustive()
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The merged span file.
    pub spans_file: PathBuf,
    /// Spans in it.
    pub spans: usize,
    /// Comments accepted by the API.
    pub posted: u64,
    /// Records the consumer delivered to the topology.
    pub consumed: u64,
    /// Tuples a bolt failed (their traces stop at that bolt; the bolt's error is on stderr).
    pub failed: u64,
    /// Whether librdkafka's mock cluster was used.
    pub mock_kafka: bool,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The mode it ran in.
    pub mode: Mode,
    /// Per-comment latency, HTTP arrival to the last downstream ack, sorted.
    pub latencies: Vec<Duration>,
    /// From the first comment's arrival to the last one's last ack.
    pub load_span: Option<Duration>,
    /// This process's tracer after the final flush (zero in [`Mode::Plain`]).
    pub tracer_stats: tdist_core::export::Stats,
    /// Spans this process's tracer's collectors (Zipkin, Kafka) took and refused by the end of
    /// the run (the rest of [`Outcome::tracer_stats`]'s accepted spans are still pending).
    pub collector: spans::CollectorStats,
}

impl Outcome {
    /// Comments done end to end per second ([`Outcome::load_span`]).
    pub fn throughput(&self) -> f64 {
        match self.load_span {
            Some(d) if !d.is_zero() => self.latencies.len() as f64 / d.as_secs_f64(),
            _ => 0.0,
        }
    }

    /// The latency at quantile `q` (0..=1), nearest rank.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Some(self.latencies[rank - 1])
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[error("comment pipeline: {0}")]
pub struct PipelineError(pub String);

fn err(e: impl std::fmt::Display) -> PipelineError {
    PipelineError(e.to_string())
}

fn work_dir() -> Result<PathBuf, PipelineError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tdist-pipeline-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Counters the load and the consumer update, shown by the progress line.
#[derive(Debug, Default)]
struct Progress {
    posted: AtomicU64,
    failed: AtomicU64,
}

/// Posts `n` comments from `clients` concurrent connections to the API at `addr`.
async fn load(
    addr: std::net::SocketAddr,
    n: usize,
    clients: usize,
    progress: Arc<Progress>,
) -> Result<(), PipelineError> {
    let clients = clients.clamp(1, n.max(1));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = http::Client::connect(addr).await?;
            for i in (c..n).step_by(clients) {
                match client.post(&comments::sample(i)).await {
                    Ok(_) => progress.posted.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        progress.failed.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                };
            }
            Ok::<_, http::PostError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(err)?.map_err(err)?;
    }
    Ok(())
}

fn show_progress(total: usize, progress: &Progress, topology: &Topology) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    eprint!(
        "\r  posted {:>4}/{total}   through the topology {:>4}/{total}",
        progress.posted.load(Ordering::Relaxed),
        topology.min_settled()
    );
    let _ = std::io::stderr().flush();
}

/// Runs the whole pipeline once, fully traced; see the module docs.
pub fn run(config: &Config) -> Result<Outcome, PipelineError> {
    run_mode(config, Mode::Sampled)
}

/// Runs the whole pipeline once in benchmark `mode`, timing each comment end to end.
pub fn run_mode(config: &Config, mode: Mode) -> Result<Outcome, PipelineError> {
    let started = Instant::now();
    let dir = work_dir()?;
    let broker = kafka::Broker::from_env(&config.topic).map_err(err)?;
    let demo_file = dir.join("demo.jsonl");
    let zipkin = config.zipkin_endpoint.as_deref();
    let (tracer, collector) =
        spans::tracer_counted(mode, "comments-api", &demo_file, zipkin).map_err(err)?;
    let timings = Arc::new(Timings::default());

    let thrift_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
    let thrift_addr = thrift_listener.local_addr().map_err(err)?;
    let checker = SpamCheckSyncProcessor::new(SpamChecker::default());
    let thrift = if mode == Mode::Plain {
        let options = ServerOptions::plain(Framing::Framed, Protocol::Binary);
        Server::spawn(thrift_listener, checker, options)
    } else {
        let processor = TracedProcessor::new(tracer.with_service_name("spam-check"), checker);
        let options = ServerOptions::traced(Framing::Framed, Protocol::Binary);
        Server::spawn(thrift_listener, processor, options)
    }
    .map_err(err)?;

    let spam_addr = thrift_addr.to_string();
    let topology = Topology::start_mode(
        &*config.bolt_command,
        &dir,
        &spam_addr,
        zipkin,
        mode,
        Some(timings.clone()),
    )
    .map_err(|e| err(format!("starting the bolts: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err)?;
    rt.block_on(broker.ensure_topic(&config.topic))
        .map_err(err)?;
    if spans::to_kafka() {
        rt.block_on(broker.ensure_topic(&spans::kafka_topic()))
            .map_err(err)?;
    }
    let consumer_tracing = KafkaTracing::new(tracer.with_service_name("moderation"));
    let consumer_tracing = (mode != Mode::Plain).then_some(&consumer_tracing);
    let consumer = broker.consumer(&config.topic).map_err(err)?;
    let api = if mode == Mode::Plain {
        let producer = broker.plain_producer().map_err(err)?;
        http::Api::plain(producer, config.topic.as_str())
    } else {
        let producer = broker
            .producer(KafkaTracing::new(tracer.clone()))
            .map_err(err)?;
        http::Api::new(tracer.clone(), producer, config.topic.as_str())
    };
    let api = Arc::new(api.with_timings(timings.clone()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(err)?;
    let api_addr = listener.local_addr().map_err(err)?;
    let server = rt.spawn(http::serve(listener, api));

    let progress = Arc::new(Progress::default());
    let stop = AtomicBool::new(false);
    let n = config.comments;
    let (loaded, consumed, settled) = std::thread::scope(|s| {
        let consumer_thread = s.spawn(|| {
            kafka::consume_loop(
                &consumer,
                consumer_tracing,
                || stop.load(Ordering::Relaxed),
                |values| topology.submit(values),
            )
        });
        let load = rt.spawn(load(api_addr, n, config.clients, progress.clone()));
        while !load.is_finished() && topology.error().is_none() {
            if config.progress {
                show_progress(n, &progress, &topology);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let loaded = rt.block_on(load).map_err(err).and_then(|r| r);
        let settled = match &loaded {
            Ok(()) => {
                let deadline = Instant::now() + config.settle_timeout;
                loop {
                    if config.progress {
                        show_progress(n, &progress, &topology);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    match topology.wait_settled(n as u64, left.min(Duration::from_millis(200))) {
                        Ok(()) => break Ok(()),
                        Err(e) if left.is_zero() || topology.error().is_some() => break Err(e),
                        Err(_) => {}
                    }
                }
            }
            Err(_) => Ok(()),
        };
        if config.progress {
            show_progress(n, &progress, &topology);
            if std::io::stderr().is_terminal() {
                eprintln!();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let consumed = consumer_thread.join();
        (loaded, consumed, settled)
    });
    server.abort();
    drop(rt);
    let consumed = match consumed {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(err(format!("feeding the topology: {e}"))),
        Err(_) => return Err(err("the consumer thread panicked")),
    };
    let failed = topology.failed();
    let bolt_files = topology.shutdown(Duration::from_secs(30));
    thrift.shutdown();
    let _ = tracer.shutdown();
    let tracer_stats = tracer.stats();
    loaded?;
    settled.map_err(err)?;
    let bolt_files = bolt_files.map_err(|e| err(format!("stopping the bolts: {e}")))?;

    let mut parts = vec![demo_file];
    parts.extend(bolt_files);
    let spans = spans::merge(&parts, &config.out)
        .map_err(|e| err(format!("{}: {e}", config.out.display())))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome {
        spans_file: config.out.clone(),
        spans,
        posted: progress.posted.load(Ordering::Relaxed),
        consumed,
        failed,
        mock_kafka: broker.is_mock(),
        elapsed: started.elapsed(),
        mode,
        latencies: timings.latencies(),
        load_span: timings.span(),
        tracer_stats,
        collector: collector.get(),
    })
}
