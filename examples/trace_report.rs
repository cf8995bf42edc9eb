//! Prints a trace report from Zipkin v2 JSON spans.
//!
//! ```text
//! cargo run -p tdist-examples --example trace_report -- PATH [--trace ID] [--top N] [--repeat N]
//! cargo run -p tdist-examples --example trace_report -- --kafka BOOTSTRAP [--topic zipkin] [...]
//! ```
//!
//! PATH holds JSON lines (tdist's file transport) or JSON arrays (Zipkin's
//! `GET /api/v2/trace/{id}` or `/api/v2/traces`). The report shows the tree of one trace (the
//! longest, or `--trace ID`), repeated calls, self-time contributors, critical-path time and
//! latency percentiles per operation. Malformed lines are listed and skipped.
//!
//! With `--kafka`, the spans are every record currently on the topic (default `zipkin`, the
//! topic tdist's Kafka transport and Zipkin's Kafka collector use; each record a JSON list of
//! spans): every partition is read from its beginning up to the end it had when the report
//! started, without a consumer group, and handed to `Report::from_messages`.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tdist_examples::report::{Report, ReportOptions};

const USAGE: &str = "usage: trace_report (PATH | --kafka BOOTSTRAP [--topic T]) \
     [--trace ID] [--top N] [--repeat N]";

/// Where the spans come from.
enum Source {
    Path(String),
    Kafka { bootstrap: String, topic: String },
}

struct Args {
    source: Source,
    opts: ReportOptions,
}

/// How long reading a topic may take (metadata, watermarks and every record).
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Every record on `topic` from the beginning of each partition up to its end when called.
fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Vec<u8>>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tdist-trace-report")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    let md = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let mut ends = HashMap::new();
    for t in md.topics() {
        if let Some(e) = t.error() {
            return Err(format!("topic {topic}: {}", RDKafkaErrorCode::from(e)));
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), KAFKA_TIMEOUT)
                .map_err(|e| format!("watermarks of {topic}/{}: {e}", p.id()))?;
            if high > low {
                ends.insert(p.id(), high);
            }
        }
    }
    if md.topics().iter().all(|t| t.partitions().is_empty()) {
        return Err(format!("topic {topic} has no partitions (does it exist?)"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let mut messages = Vec::new();
    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{topic}: read {} records, partitions {:?} not at their end after {KAFKA_TIMEOUT:?}",
                messages.len(),
                ends.keys().collect::<Vec<_>>()
            ));
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            None => {}
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            Some(Ok(m)) => {
                if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(0) {
                    ends.remove(&m.partition());
                }
                if let Some(p) = m.payload() {
                    messages.push(p.to_vec());
                }
            }
        }
    }
    Ok(messages)
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut path = None;
    let mut kafka = None;
    let mut topic = None;
    let mut opts = ReportOptions::default();
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("{flag} {v:?} is not a positive number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trace" => opts.trace_id = Some(it.next().ok_or("--trace needs a value")?),
            "--top" => opts.top = number("--top", it.next())?,
            "--repeat" => opts.repeat_threshold = number("--repeat", it.next())?,
            "--kafka" => kafka = Some(it.next().ok_or("--kafka needs the bootstrap servers")?),
            "--topic" => topic = Some(it.next().ok_or("--topic needs a value")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            _ if path.is_none() => path = Some(a),
            _ => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    let source = match (path, kafka, topic) {
        (Some(_), Some(_), _) => return Err(format!("give PATH or --kafka, not both\n{USAGE}")),
        (Some(_), None, Some(_)) => return Err(format!("--topic goes with --kafka\n{USAGE}")),
        (Some(p), None, None) => Source::Path(p),
        (None, Some(bootstrap), topic) => Source::Kafka {
            bootstrap,
            topic: topic.unwrap_or_else(|| "zipkin".to_owned()),
        },
        (None, None, _) => return Err(USAGE.to_owned()),
    };
    Ok(Args { source, opts })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let report = match &args.source {
        Source::Path(path) => match Report::from_path(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Source::Kafka { bootstrap, topic } => match read_topic(bootstrap, topic) {
            Ok(messages) => {
                eprintln!("{} records from {topic} on {bootstrap}", messages.len());
                Report::from_messages(messages)
            }
            Err(e) => {
                eprintln!("cannot read Kafka: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match report.render(&args.opts) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
