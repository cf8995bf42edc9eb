//! The Storm side of the pipeline, played by tdist-storm's harness: one child process per bolt,
//! tuples into the `spam` bolt, and every emit of `spam` forwarded to each downstream bolt (as
//! Storm's shuffle grouping would, with one task each). Acks and fails are counted per bolt.

use super::bolts::{BOLTS, DOWNSTREAM, SPAM_ADDR_VAR, SPAN_FILE_VAR};
use super::comments::Comment;
use super::spans::ZIPKIN_VAR;
use super::{Mode, Timings, MODE_VAR};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tdist_storm::harness::{Harness, HarnessConfig, HarnessError};

/// How tuples a bolt received ended.
#[derive(Debug, Default)]
pub struct Settled {
    /// Acked tuples.
    pub acked: AtomicU64,
    /// Failed tuples.
    pub failed: AtomicU64,
}

impl Settled {
    /// Acked plus failed.
    pub fn total(&self) -> u64 {
        self.acked.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

struct Node {
    name: &'static str,
    harness: Arc<Harness>,
    settled: Arc<Settled>,
    span_file: PathBuf,
}

/// The running bolts.
pub struct Topology {
    nodes: Vec<Node>,
    stop: Arc<AtomicBool>,
    pumps: Vec<JoinHandle<()>>,
    error: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field(
                "bolts",
                &self.nodes.iter().map(|n| n.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn spawn_bolt(
    bolt_cmd: &dyn Fn(&str) -> Command,
    name: &'static str,
    dir: &Path,
    spam_addr: &str,
    zipkin: Option<&str>,
    mode: Mode,
) -> Result<Node, HarnessError> {
    let span_file = dir.join(format!("bolt-{name}.jsonl"));
    let mut cmd = bolt_cmd(name);
    cmd.env(SPAN_FILE_VAR, &span_file)
        .env(SPAM_ADDR_VAR, spam_addr)
        .env_remove("OTEL_SERVICE_NAME")
        .env(MODE_VAR, mode.name());
    match mode {
        Mode::Unsampled => cmd.env("OTEL_TRACES_SAMPLER", "always_off"),
        Mode::Sampled => cmd.env("OTEL_TRACES_SAMPLER", "always_on"),
        Mode::Plain => cmd.env_remove("OTEL_TRACES_SAMPLER"),
    };
    match zipkin {
        Some(z) => cmd.env(ZIPKIN_VAR, z),
        None => cmd.env_remove(ZIPKIN_VAR),
    };
    let mut config = HarnessConfig::bolt(name);
    config.max_pending = 1000;
    config.subprocess_timeout = Duration::from_secs(60);
    config.handshake_timeout = Duration::from_secs(60);
    let config = match (name == "spam", mode == Mode::Plain) {
        (true, false) => config.input("kafka-consumer", "default", &["comment", "_trace"]),
        (true, true) => config.input("kafka-consumer", "default", &["comment"]),
        (false, false) => config.input("spam", "default", &["comment", "verdict", "_trace"]),
        (false, true) => config.input("spam", "default", &["comment", "verdict"]),
    };
    let harness = Harness::spawn(cmd, config)?;
    Ok(Node {
        name,
        harness: Arc::new(harness),
        settled: Arc::new(Settled::default()),
        span_file,
    })
}

/// Moves what a bolt sent out of its harness: counts acks and fails, forwards emits to
/// `targets`, and tells `timings` which comment each forwarded tuple carries and when a
/// downstream bolt acked it. Ends when `stop` is set, or records the first error.
fn pump(
    from: Arc<Harness>,
    settled: Arc<Settled>,
    source: &'static str,
    targets: Vec<Arc<Harness>>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    timings: Option<Arc<Timings>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let waited = from.wait_for(
            |r| !r.emits.is_empty() || !r.acks.is_empty() || !r.fails.is_empty(),
            Duration::from_millis(100),
            "activity",
        );
        if let Err(HarnessError::Died { reason, stderr }) = waited {
            let mut e = error.lock().unwrap_or_else(|p| p.into_inner());
            e.get_or_insert(format!("bolt {source} died: {reason}; stderr: {stderr}"));
            return;
        }
        let records = from.take_records();
        for r in &records.errors {
            eprintln!("bolt {source} reported: {r}");
        }
        for emit in records.emits {
            let comment = timings.as_ref().and_then(|_| {
                let text = emit.emit.values.first()?.as_str()?;
                Comment::from_json(text).ok().map(|c| c.id)
            });
            for t in &targets {
                let tuple = t.tuple(source, emit.emit.values.clone());
                if let (Some(timings), Some(c)) = (&timings, &comment) {
                    timings.forwarded(&tuple.id, c);
                }
                if let Err(e) = t.send_tuple(&tuple) {
                    let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(format!("forwarding from {source}: {e}"));
                    return;
                }
            }
        }
        if let Some(timings) = &timings {
            if targets.is_empty() {
                let now = Instant::now();
                for id in &records.acks {
                    timings.acked(id, now);
                }
            }
        }
        settled
            .acked
            .fetch_add(records.acks.len() as u64, Ordering::Relaxed);
        settled
            .failed
            .fetch_add(records.fails.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for Topology {
    /// Without [`Topology::shutdown`] (an error path): stops forwarding; the harnesses then kill
    /// the bolts.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }
}

impl Topology {
    /// Starts every bolt with `bolt_cmd(name)` (the command running that bolt), writing its spans
    /// under `dir` (and to the Zipkin collector at `zipkin`); the spam bolt calls the Thrift
    /// service at `spam_addr`.
    pub fn start(
        bolt_cmd: &dyn Fn(&str) -> Command,
        dir: &Path,
        spam_addr: &str,
        zipkin: Option<&str>,
    ) -> Result<Topology, HarnessError> {
        Topology::start_mode(bolt_cmd, dir, spam_addr, zipkin, Mode::Sampled, None)
    }

    /// [`Topology::start`] with the bolts in benchmark `mode` (passed in `PIPELINE_MODE`),
    /// reporting forwarded tuples and downstream acks to `timings`.
    pub fn start_mode(
        bolt_cmd: &dyn Fn(&str) -> Command,
        dir: &Path,
        spam_addr: &str,
        zipkin: Option<&str>,
        mode: Mode,
        timings: Option<Arc<Timings>>,
    ) -> Result<Topology, HarnessError> {
        let mut nodes = Vec::new();
        for (name, _) in BOLTS {
            nodes.push(spawn_bolt(bolt_cmd, name, dir, spam_addr, zipkin, mode)?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let mut pumps = Vec::new();
        for n in &nodes {
            let targets = if n.name == "spam" {
                nodes
                    .iter()
                    .filter(|d| DOWNSTREAM.contains(&d.name))
                    .map(|d| d.harness.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let (h, s, name) = (n.harness.clone(), n.settled.clone(), n.name);
            let (stop, error, timings) = (stop.clone(), error.clone(), timings.clone());
            pumps.push(std::thread::spawn(move || {
                pump(h, s, name, targets, stop, error, timings)
            }));
        }
        Ok(Topology {
            nodes,
            stop,
            pumps,
            error,
        })
    }

    /// Sends `[comment, trace]` to the spam bolt (waiting while too many are in flight).
    pub fn submit(&self, values: Vec<Value>) -> Result<(), HarnessError> {
        let spam = &self.nodes[0].harness;
        spam.send_tuple(&spam.tuple("kafka-consumer", values))
    }

    /// How many tuples bolt `name` has settled (acked or failed).
    pub fn settled(&self, name: &str) -> Option<&Settled> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| &*n.settled)
    }

    /// The tuples settled by the bolt that settled the fewest.
    pub fn min_settled(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.settled.total())
            .min()
            .unwrap_or(0)
    }

    /// The first error a bolt or the forwarding hit.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether all of `n` submitted tuples went through: the spam bolt settled `n`, and every
    /// downstream bolt settled as many as the spam bolt acked (a failed tuple emits nothing).
    pub fn is_done(&self, n: u64) -> bool {
        let spam = &self.nodes[0].settled;
        let acked = spam.acked.load(Ordering::Relaxed);
        spam.total() >= n && self.nodes[1..].iter().all(|d| d.settled.total() >= acked)
    }

    /// Tuples failed by any bolt.
    pub fn failed(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.settled.failed.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until [`Topology::is_done`] for `n`, or an error, or `timeout`.
    pub fn wait_settled(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.error() {
                return Err(e);
            }
            if self.is_done(n) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "after {timeout:?} the bolts settled {} of {n} tuples",
                    self.min_settled()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops forwarding, closes every bolt's stdin (as Storm does on shutdown) so each flushes
    /// its spans and exits, and returns the bolts' span files. Bolts that do not exit within
    /// `timeout` are killed and named in the error.
    pub fn shutdown(mut self, timeout: Duration) -> Result<Vec<PathBuf>, String> {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
        let files = self.nodes.iter().map(|n| n.span_file.clone()).collect();
        // Every bolt at once: each may spend up to its shutdown timeout flushing spans.
        let problems: Vec<String> = std::thread::scope(|scope| {
            let closing: Vec<_> = self
                .nodes
                .drain(..)
                .map(|n| {
                    scope.spawn(move || {
                        let Ok(h) = Arc::try_unwrap(n.harness) else {
                            return Some(format!("bolt {} still in use", n.name));
                        };
                        match h.close(timeout) {
                            Ok(Some(s)) if s.success() => None,
                            Ok(Some(s)) => Some(format!("bolt {} exited with {s}", n.name)),
                            Ok(None) => Some(format!("bolt {} had to be killed", n.name)),
                            Err(e) => Some(format!("bolt {}: {e}", n.name)),
                        }
                    })
                })
                .collect();
            closing
                .into_iter()
                .filter_map(|c| {
                    c.join()
                        .unwrap_or_else(|_| Some("closing a bolt panicked".into()))
                })
                .collect()
        });
        if problems.is_empty() {
            Ok(files)
        } else {
            Err(problems.join("; "))
        }
    }
}
