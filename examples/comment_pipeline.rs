//! The comment pipeline: one trace per comment across HTTP → Kafka → Storm → Thrift.
//!
//! ```text
//! cargo run --example comment_pipeline -- [--comments N] [--clients N] [--out PATH] [--quiet]
//!     [--mode plain|unsampled|sampled]
//! ```
//!
//! `--mode` (default `sampled`) chooses how much tdist runs: none at all, instrumented but
//! unsampled, or everything sampled; the end-to-end latency and throughput are printed in
//! every mode, the trace report only when spans were recorded.
//!
//! Defaults: 40 comments (every fourth one spam) from 4 clients; spans in
//! `target/<profile>/comment_pipeline_spans.jsonl`.
//!
//! An HTTP API accepts `POST /comments` and produces each comment to Kafka (librdkafka's mock
//! cluster, or `TDIST_KAFKA_BOOTSTRAP_SERVERS`); a consumer feeds a topology of Rust multilang
//! bolts (this program again, run with `--bolt NAME` as child processes under tdist-storm's
//! harness); the spam bolt calls a traced Thrift service. Every span of every process ends up in
//! one JSON-lines file, and the terminal shows one trace as a tree, the contributors (self time
//! per service and operation), latency percentiles and repeated calls.
//!
//! Spans also go to `OTEL_EXPORTER_ZIPKIN_ENDPOINT` when set, and to Kafka's `zipkin` topic
//! with `TDIST_TRANSPORT=kafka` and `TDIST_KAFKA_BOOTSTRAP_SERVERS`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;
use tdist_examples::pipeline::{self, bolts, spans, Config, Mode};
use tdist_examples::report::{Report, ReportOptions};

const USAGE: &str = "usage: comment_pipeline [--comments N] [--clients N] [--out PATH] [--quiet] \
     [--mode plain|unsampled|sampled] | --bolt NAME";

fn parse() -> Result<(Config, Mode, bool), String> {
    let mut mode = Mode::Sampled;
    let mut config = Config {
        comments: 40,
        clients: 4,
        topic: pipeline::TOPIC.to_owned(),
        out: PathBuf::new(),
        bolt_command: Box::new(|_| Command::new("unset")),
        progress: true,
        settle_timeout: Duration::from_secs(90),
        zipkin_endpoint: std::env::var(spans::ZIPKIN_VAR)
            .ok()
            .filter(|e| !e.trim().is_empty()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--comments" => {
                config.comments = value()?.parse().map_err(|e| format!("--comments: {e}"))?
            }
            "--clients" => {
                config.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?
            }
            "--out" => config.out = PathBuf::from(value()?),
            "--quiet" => config.progress = false,
            "--mode" => mode = Mode::parse(&value()?)?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    if config.out.as_os_str().is_empty() {
        // Beside the build output (target/<profile>/), out of the source tree.
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .unwrap_or(Path::new("."));
        config.out = dir.join("comment_pipeline_spans.jsonl");
    }
    config.bolt_command = Box::new(move |name| {
        let mut c = Command::new(&exe);
        c.args(["--bolt", name]);
        c
    });
    let valid = config_is_valid(&config);
    Ok((config, mode, valid))
}

fn config_is_valid(c: &Config) -> bool {
    c.comments > 0 && c.clients > 0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = args.as_slice() {
        if flag == "--bolt" {
            return bolts::run(name);
        }
    }
    let (config, mode) = match parse() {
        Ok((c, m, true)) => (c, m),
        Ok(_) => {
            eprintln!("--comments and --clients must be at least 1");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "posting {} comments from {} clients through HTTP → Kafka → Storm → Thrift ...",
        config.comments, config.clients
    );
    let outcome = match pipeline::run_mode(&config, mode) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if outcome.spans > 0 {
        let report = match Report::from_path(&outcome.spans_file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", outcome.spans_file.display());
                return ExitCode::FAILURE;
            }
        };
        match report.render(&ReportOptions::default()) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if outcome.failed > 0 {
        println!(
            "{} tuples failed in the topology (see above)",
            outcome.failed
        );
    }
    println!(
        "{} comments posted, {} consumed, {} spans from every process in {} (kafka: {}), {:.1}s",
        outcome.posted,
        outcome.consumed,
        outcome.spans,
        outcome.spans_file.display(),
        if outcome.mock_kafka {
            "mock cluster"
        } else {
            "broker"
        },
        outcome.elapsed.as_secs_f64()
    );
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "mode {}: {:.0} comments/s end to end, latency p50 {:.1} ms, p99 {:.1} ms ({} timed)",
        outcome.mode.name(),
        outcome.throughput(),
        ms(outcome.latency(0.50)),
        ms(outcome.latency(0.99)),
        outcome.latencies.len()
    );
    let s = outcome.tracer_stats;
    println!(
        "spans: accepted {}, sent {}, failed {}, dropped {} (this process); collectors took {}, refused {}, still pending {}",
        s.accepted,
        s.sent,
        s.failed,
        s.dropped,
        outcome.collector.sent,
        outcome.collector.failed,
        outcome.collector.pending
    );
    ExitCode::SUCCESS
}
