//! Where every process of the pipeline sends its spans: a JSON-lines file of its own, plus the
//! collectors the environment names, and the merge of all files into one.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("tdist-merge-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("a.jsonl"), "{\"id\":\"1\"}\n").unwrap();
//! std::fs::write(dir.join("b.jsonl"), "{\"id\":\"2\"}").unwrap();
//! let out = dir.join("all.jsonl");
//! let n = tdist_examples::pipeline::spans::merge(&[dir.join("a.jsonl"), dir.join("b.jsonl")], &out).unwrap();
//! assert_eq!(n, 2);
//! assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"1\"}\n{\"id\":\"2\"}\n");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use super::Mode;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tdist_core::export::{
    Detached, DetachedHandle, Fanout, JsonLinesFile, Transport, TransportError,
};
use tdist_core::{FinishedSpan, Sampler, Tracer};

/// Opts in to also publishing spans to the `zipkin` topic when set to `kafka` (and
/// `TDIST_KAFKA_BOOTSTRAP_SERVERS` is set).
pub const TRANSPORT_VAR: &str = "TDIST_TRANSPORT";

/// A collector's transport that reports its first failure on stderr (the demo installs no log
/// subscriber) and passes every result on to the [`Detached`] around it, which counts.
struct WarnOnce<T> {
    name: &'static str,
    inner: T,
    warned: AtomicBool,
}

impl<T: Transport> Transport for WarnOnce<T> {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let result = self.inner.send(spans);
        if let Err(e) = &result {
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!("spans to {} failed (counted, not retried): {e}", self.name);
            }
        }
        result
    }
}

/// Spans one tracer's collectors (Zipkin, Kafka) took and refused, beside its span file (see
/// [`tracer_counted`]).
#[derive(Debug, Default)]
pub struct CollectorCounters {
    collectors: Mutex<Vec<DetachedHandle>>,
}

impl CollectorCounters {
    /// The counts so far, summed over the collectors.
    pub fn get(&self) -> CollectorStats {
        let collectors = self.collectors.lock().unwrap_or_else(|p| p.into_inner());
        collectors
            .iter()
            .map(DetachedHandle::stats)
            .fold(CollectorStats::default(), |acc, s| CollectorStats {
                sent: acc.sent + s.delivered,
                failed: acc.failed + s.failed + s.dropped,
                pending: acc.pending + s.pending,
            })
    }
}

/// What a tracer's collectors did with its spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectorStats {
    /// Spans a collector took.
    pub sent: u64,
    /// Spans a collector did not take, or that did not fit in its queue (counted, never
    /// retried: the span file has them).
    pub failed: u64,
    /// Spans still on their way to a collector.
    pub pending: u64,
}

/// Each collector runs on a thread of its own behind a bounded queue ([`Detached`]), so a
/// collector that hangs never holds up the span file or the other collector.
fn collector<T: Transport>(name: &'static str, inner: T, counters: &CollectorCounters) -> Detached {
    let detached = Detached::new(
        name,
        WarnOnce {
            name,
            inner,
            warned: AtomicBool::new(false),
        },
    );
    counters
        .collectors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(detached.handle());
    detached
}

/// The standard variable naming a Zipkin collector's span endpoint.
pub const ZIPKIN_VAR: &str = "OTEL_EXPORTER_ZIPKIN_ENDPOINT";

/// A tracer for `service` writing Zipkin v2 JSON lines to `file`, and also to the Zipkin
/// collector at `zipkin_endpoint` when given (other `OTEL_EXPORTER_ZIPKIN_*`/`TDIST_ZIPKIN_*`
/// settings from the environment), and to Kafka's `zipkin` topic when `TDIST_TRANSPORT=kafka` and `TDIST_KAFKA_BOOTSTRAP_SERVERS` are set. Sampling and
/// pipeline settings come from the standard `OTEL_*` variables.
pub fn tracer(
    service: &'static str,
    file: &Path,
    zipkin_endpoint: Option<&str>,
) -> Result<Tracer, String> {
    tracer_with(service, file, zipkin_endpoint, None, &Arc::default())
}

/// [`tracer`] for a benchmark mode: [`Mode::Plain`] gets [`Tracer::noop`] (no span file, no
/// reporter), [`Mode::Unsampled`] samples nothing, [`Mode::Sampled`] everything.
pub fn tracer_for(
    mode: Mode,
    service: &'static str,
    file: &Path,
    zipkin_endpoint: Option<&str>,
) -> Result<Tracer, String> {
    tracer_counted(mode, service, file, zipkin_endpoint).map(|(t, _)| t)
}

/// [`tracer_for`], also returning the counters of what its collectors took and refused.
pub fn tracer_counted(
    mode: Mode,
    service: &'static str,
    file: &Path,
    zipkin_endpoint: Option<&str>,
) -> Result<(Tracer, Arc<CollectorCounters>), String> {
    let counters = Arc::<CollectorCounters>::default();
    let sampler = match mode {
        Mode::Plain => return Ok((Tracer::noop(), counters)),
        Mode::Unsampled => Sampler::never(),
        Mode::Sampled => Sampler::always(),
    };
    let tracer = tracer_with(service, file, zipkin_endpoint, Some(sampler), &counters)?;
    Ok((tracer, counters))
}

fn tracer_with(
    service: &'static str,
    file: &Path,
    zipkin_endpoint: Option<&str>,
    sampler: Option<Sampler>,
    counters: &Arc<CollectorCounters>,
) -> Result<Tracer, String> {
    let file_transport =
        JsonLinesFile::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut fanout = Fanout::new().with(file_transport);
    let zipkin = tdist_http::zipkin::ZipkinTransport::from_lookup(|k| match k {
        ZIPKIN_VAR => zipkin_endpoint.map(str::to_owned),
        _ => std::env::var(k).ok(),
    });
    if let Some(t) = zipkin.map_err(|e| e.to_string())? {
        fanout = fanout.with(collector("zipkin", t, counters));
    }
    if to_kafka() {
        match tdist_kafka::KafkaTransport::from_env().map_err(|e| e.to_string())? {
            Some(t) => fanout = fanout.with(collector("kafka", t, counters)),
            None => return Err("TDIST_TRANSPORT=kafka needs TDIST_KAFKA_BOOTSTRAP_SERVERS".into()),
        }
    }
    let mut builder = Tracer::from_env().map_err(|e| e.to_string())?;
    if let Some(s) = sampler {
        builder = builder.sampler(s);
    }
    let builder = builder
        .service_name(service)
        .configure_reporter(|r| r.schedule_delay = Duration::from_millis(200))
        .transport(fanout);
    builder.build().map_err(|e| e.to_string())
}

/// Whether spans also go to Kafka (`TDIST_TRANSPORT=kafka`).
pub fn to_kafka() -> bool {
    std::env::var(TRANSPORT_VAR).is_ok_and(|t| t.trim() == "kafka")
}

/// The topic spans go to on Kafka (`TDIST_KAFKA_TOPIC`, default `zipkin`).
pub fn kafka_topic() -> String {
    std::env::var("TDIST_KAFKA_TOPIC")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "zipkin".to_owned())
}

/// Concatenates the JSON-lines files `parts` into `out` (replacing it), skipping blank lines
/// and files that do not exist. Returns the number of lines written.
pub fn merge(parts: &[PathBuf], out: &Path) -> std::io::Result<usize> {
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    let mut n = 0;
    for part in parts {
        let f = match std::fs::File::open(part) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(f).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}
