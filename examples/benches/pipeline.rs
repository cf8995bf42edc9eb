//! The comment pipeline end to end: what tracing costs, and what a failing collector costs.
//!
//! ```text
//! cargo bench -p tdist-examples --bench pipeline
//! ```
//!
//! Not a criterion benchmark: one sample is a whole run of the pipeline (HTTP → Kafka mock
//! cluster → five bolt processes → Thrift), so this is a plain program (`harness = false`)
//! printing tables. It runs this binary again as the bolts (`--bolt NAME`).
//!
//! 1. Overhead: the same load in each [`Mode`] (no tdist at all, instrumented but unsampled,
//!    everything sampled), `ROUNDS` times with the order rotated each round. Throughput is
//!    comments per second from the first request's arrival to the last comment's last bolt
//!    ack (median of the rounds); latency percentiles are over every comment of every round.
//! 2. Failing collector: the sampled mode with every process also sending to a Zipkin endpoint
//!    that is healthy, refused (nothing listens), a black hole (accepts, never answers), or
//!    answers 503. Then the refused port comes back as a healthy collector and a tracer that
//!    failed to deliver delivers again.
//!
//! Peak RSS is this process's `VmHWM` (the API, consumer, Thrift server and harness), reset
//! before each run through `/proc/self/clear_refs`.
//!
//! Environment: `PIPELINE_BENCH_COMMENTS` (default 1000 per run), `PIPELINE_BENCH_ROUNDS`
//! (overhead rounds, default 5), `PIPELINE_BENCH_FAILURE_ROUNDS` (default 3; a black-hole run
//! takes ~50 s, as every process's last flush waits for the Zipkin timeout, 10 s).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tdist_examples::pipeline::{self, bolts, spans, Config, Mode, Outcome};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Resets the peak RSS (`VmHWM`) of this process.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn config(comments: usize, zipkin: Option<String>, run: usize) -> Config {
    let exe = std::env::current_exe().expect("own path");
    Config {
        comments,
        clients: 4,
        topic: format!("bench-{}-{run}", std::process::id()),
        out: std::env::temp_dir().join(format!(
            "tdist-pipeline-bench-{}-{run}.jsonl",
            std::process::id()
        )),
        bolt_command: Box::new(move |name| {
            let mut c = Command::new(&exe);
            c.args(["--bolt", name]).env_remove(spans::TRANSPORT_VAR);
            c
        }),
        progress: false,
        settle_timeout: Duration::from_secs(120),
        zipkin_endpoint: zipkin,
    }
}

struct Sample {
    outcome: Outcome,
    rss_mib: f64,
    /// The whole run, start to shutdown, in seconds.
    wall_s: f64,
    /// Requests a fake collector saw.
    requests: u64,
}

fn run_once(
    comments: usize,
    mode: Mode,
    zipkin: Option<String>,
    run: usize,
) -> Result<Sample, String> {
    let c = config(comments, zipkin, run);
    let t0 = Instant::now();
    reset_peak_rss();
    let outcome = pipeline::run_mode(&c, mode).map_err(|e| e.to_string())?;
    let rss_mib = peak_rss_mib();
    let _ = std::fs::remove_file(&c.out);
    if outcome.latencies.len() != comments {
        return Err(format!(
            "{}: {} of {comments} comments timed end to end",
            mode.name(),
            outcome.latencies.len()
        ));
    }
    Ok(Sample {
        outcome,
        rss_mib,
        wall_s: t0.elapsed().as_secs_f64(),
        requests: 0,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Throughput (median of runs), pooled p50/p99, max peak RSS of several samples.
#[derive(Clone, Copy)]
struct Summary {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    rss_mib: f64,
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut all: Vec<Duration> = samples
        .iter()
        .flat_map(|s| s.outcome.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    Summary {
        throughput: median(samples.iter().map(|s| s.outcome.throughput()).collect()),
        p50: quantile(&all, 0.50),
        p99: quantile(&all, 0.99),
        rss_mib: samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
    }
}

fn pct(x: f64, base: f64) -> String {
    format!("{:+.1}%", (x / base - 1.0) * 100.0)
}

/// How a fake Zipkin collector behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Reads each request and answers 202.
    Healthy,
    /// Accepts connections, never reads or answers.
    BlackHole,
    /// Reads each request and answers 503.
    Unavailable,
}

/// A fake Zipkin collector on 127.0.0.1 (threads; stops when dropped).
struct Collector {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    spans: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    fn start(listener: TcpListener, behaviour: Behaviour) -> Collector {
        let addr = listener.local_addr().expect("bound");
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(AtomicU64::new(0));
        let spans = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (requests.clone(), spans.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if behaviour == Behaviour::BlackHole {
                            held.push(stream);
                            continue;
                        }
                        let (r, s, st) = (r.clone(), s.clone(), st.clone());
                        std::thread::spawn(move || serve(stream, behaviour, &r, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Collector {
            addr,
            requests,
            spans,
            stop,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/api/v2/spans", self.addr)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 requests on one kept-alive connection.
fn serve(
    stream: TcpStream,
    behaviour: Behaviour,
    requests: &AtomicU64,
    spans: &AtomicU64,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if first
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            }
            first = false;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let answer: &[u8] = match behaviour {
            Behaviour::Healthy => {
                if let Ok(serde_json::Value::Array(a)) = serde_json::from_slice(&body) {
                    spans.fetch_add(a.len() as u64, Ordering::Relaxed);
                }
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
            }
            _ => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        };
        if out.write_all(answer).is_err() {
            return;
        }
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A tracer (the pipeline's own set-up) sending to a refused port fails and counts; once a
/// collector listens there, the same tracer delivers again.
fn resume_check() -> Result<String, String> {
    let addr = free_port();
    let endpoint = format!("http://{addr}/api/v2/spans");
    let file =
        std::env::temp_dir().join(format!("tdist-bench-resume-{}.jsonl", std::process::id()));
    let (tracer, counters) =
        spans::tracer_counted(Mode::Sampled, "resume-check", &file, Some(&endpoint))?;
    let emit = |n: usize| {
        for i in 0..n {
            let mut s = tracer.span("resume");
            s.tag("i", i as i64);
        }
        tracer.flush().map_err(|e| e.to_string())
    };
    let before = counters.get();
    emit(100)?;
    let down = counters.get();
    let listener = TcpListener::bind(addr).map_err(|e| format!("rebinding {addr}: {e}"))?;
    let collector = Collector::start(listener, Behaviour::Healthy);
    emit(100)?;
    let up = counters.get();
    let received = collector.spans.load(Ordering::Relaxed);
    let _ = std::fs::remove_file(&file);
    Ok(format!(
        "collector down: 100 spans → failed +{}, sent +{}; collector back on the same port: 100 spans → \
         sent +{}, failed +{}, the collector received {received}",
        down.failed - before.failed,
        down.sent - before.sent,
        up.sent - down.sent,
        up.failed - down.failed
    ))
}

fn bench() -> Result<(), String> {
    let comments = env_usize("PIPELINE_BENCH_COMMENTS", 1000);
    let rounds = env_usize("PIPELINE_BENCH_ROUNDS", 5);
    let failure_rounds = env_usize("PIPELINE_BENCH_FAILURE_ROUNDS", 3);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("comment pipeline benchmark: {comments} comments per run from 4 clients, {rounds} rounds, {cores} cores");
    println!("load average before: {}", loadavg());
    let started = Instant::now();
    let mut run = 0;

    // Overhead: every mode each round, order rotated.
    let mut samples: Vec<Vec<Sample>> = Mode::ALL.iter().map(|_| Vec::new()).collect();
    // Warm-up (page cache, first process spawns), not counted.
    run_once(comments / 4, Mode::Plain, None, run)?;
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let i = (k + round) % Mode::ALL.len();
            run += 1;
            samples[i].push(run_once(comments, Mode::ALL[i], None, run)?);
        }
    }
    println!("\n## Overhead (load average now {})\n", loadavg());
    println!("| mode | comments/s (median of {rounds}) | vs plain | p50 ms | p99 ms | p99 vs plain | peak RSS MiB | spans accepted / sent / failed / dropped (API process, last run) |");
    println!("|---|---|---|---|---|---|---|---|");
    let base = summarize(&samples[0]);
    for (i, mode) in Mode::ALL.iter().enumerate() {
        let s = summarize(&samples[i]);
        let st = samples[i]
            .last()
            .map(|s| s.outcome.tracer_stats)
            .unwrap_or_default();
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.2} | {} | {:.1} | {} / {} / {} / {} |",
            mode.name(),
            s.throughput,
            pct(s.throughput, base.throughput),
            ms(s.p50),
            ms(s.p99),
            pct(ms(s.p99), ms(base.p99)),
            s.rss_mib,
            st.accepted,
            st.sent,
            st.failed,
            st.dropped
        );
    }
    let per_run = |i: usize| {
        samples[i]
            .iter()
            .map(|s| format!("{:.0}", s.outcome.throughput()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, mode) in Mode::ALL.iter().enumerate() {
        println!("- {} runs, comments/s: {}", mode.name(), per_run(i));
    }

    // Failing collectors: sampled mode, every process also sending to the endpoint; each
    // case `failure_rounds` times, order rotated.
    let cases = [
        "healthy",
        "refused (nothing listens)",
        "black hole (never answers)",
        "503 to everything",
    ];
    let mut failing: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..failure_rounds {
        for k in 0..cases.len() {
            let c = (k + round) % cases.len();
            let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string());
            let collector = match c {
                0 => Some(Collector::start(bind()?, Behaviour::Healthy)),
                2 => Some(Collector::start(bind()?, Behaviour::BlackHole)),
                3 => Some(Collector::start(bind()?, Behaviour::Unavailable)),
                _ => None,
            };
            let endpoint = match &collector {
                Some(col) => col.endpoint(),
                None => format!("http://{}/api/v2/spans", free_port()),
            };
            run += 1;
            let mut sample = run_once(comments, Mode::Sampled, Some(endpoint), run)?;
            sample.requests = collector
                .as_ref()
                .map_or(0, |c| c.requests.load(Ordering::Relaxed));
            failing[c].push(sample);
        }
    }
    println!(
        "\n## Failing Zipkin collector (sampled mode, {failure_rounds} runs each; load average now {})\n",
        loadavg()
    );
    println!(
        "| collector | comments/s (median) | vs healthy | p50 ms | p99 ms | p99 vs healthy | peak RSS MiB | \
         API process spans: accepted / sent / failed / dropped / pending at exit | \
         API process to the collector: took / refused / pending at exit | requests the collector saw | slowest run incl. shutdown s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let healthy = summarize(&failing[0]);
    for (c, name) in cases.iter().enumerate() {
        let samples = &failing[c];
        let s = summarize(samples);
        let sum = |f: &dyn Fn(&Outcome) -> u64| samples.iter().map(|x| f(&x.outcome)).sum::<u64>();
        println!(
            "| {name} | {:.0} | {} | {:.2} | {:.2} | {} | {:.1} | {} / {} / {} / {} / {} | {} / {} / {} | {} | {:.1} |",
            s.throughput,
            pct(s.throughput, healthy.throughput),
            ms(s.p50),
            ms(s.p99),
            pct(ms(s.p99), ms(healthy.p99)),
            s.rss_mib,
            sum(&|o| o.tracer_stats.accepted),
            sum(&|o| o.tracer_stats.sent),
            sum(&|o| o.tracer_stats.failed),
            sum(&|o| o.tracer_stats.dropped),
            sum(&|o| o.tracer_stats.pending()),
            sum(&|o| o.collector.sent),
            sum(&|o| o.collector.failed),
            sum(&|o| o.collector.pending),
            samples.iter().map(|r| r.requests).sum::<u64>(),
            samples.iter().map(|r| r.wall_s).fold(0.0, f64::max),
        );
    }
    println!("\nresume: {}", resume_check()?);
    println!(
        "\nwhole benchmark {:.0}s; load average after: {}",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bolt") {
        return match args.get(i + 1) {
            Some(name) => bolts::run(name),
            None => ExitCode::from(2),
        };
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (it only builds this).
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline bench: {e}");
            ExitCode::FAILURE
        }
    }
}
