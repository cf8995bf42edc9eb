//! Transports that need only the standard library: stdout, a JSON-lines file, fan-out, no-op,
//! and (feature `test-util`) an in-memory sink for tests.

use super::{Transport, TransportError};
use crate::encode::write_json_span;
use crate::record::FinishedSpan;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Writes each span as one line of Zipkin v2 JSON to standard output.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl Transport for Stdout {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let buf = json_lines(spans);
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)
            .and_then(|()| out.flush())
            .map_err(|e| TransportError::retryable(format!("stdout: {e}")))
    }
}

fn json_lines(spans: &[FinishedSpan]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(spans.len() * 320);
    for s in spans {
        write_json_span(s, &mut buf);
        buf.push(b'\n');
    }
    buf
}

/// Appends each span as one line of Zipkin v2 JSON to a file (what `trace_report` reads).
#[derive(Debug)]
pub struct JsonLinesFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesFile {
    /// Opens `path` for appending, creating it if needed.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<JsonLinesFile> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JsonLinesFile {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for JsonLinesFile {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        let buf = json_lines(spans);
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&buf)
            .and_then(|()| f.flush())
            .map_err(|e| TransportError::retryable(format!("{}: {e}", self.path.display())))
    }
}

/// Discards every span (counted as sent).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopTransport;

impl Transport for NoopTransport {
    fn send(&self, _: &[FinishedSpan]) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Sends every batch to several transports, one after the other. The batch succeeds when all
/// succeed. When some fail, the error is retryable if any failure was, and a retry
/// ([`Transport::resend`]) goes only to the transports whose failure was retryable (each
/// resending only what it did not deliver): a transport that took the batch never sees it
/// twice. Put a destination that may hang behind [`Detached`](super::Detached) so that it
/// cannot hold up the others.
#[derive(Default)]
pub struct Fanout {
    targets: Vec<Box<dyn Transport>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("targets", &self.targets.len())
            .finish()
    }
}

impl Fanout {
    /// An empty fan-out.
    pub fn new() -> Fanout {
        Fanout::default()
    }

    /// Adds a transport.
    pub fn with(mut self, t: impl Transport) -> Fanout {
        self.targets.push(Box::new(t));
        self
    }

    /// How many transports.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// What a failed [`Fanout`] send left: each target's failure, `None` where it delivered.
struct FanoutLeft(Vec<Option<TransportError>>);

/// A fan-out's result from its targets' outcomes, for a batch of `n` spans: retryable when a
/// target may still succeed; partial, so that a retry goes only to the targets that failed (a
/// target that delivered never gets the batch twice, one that failed for good is not asked
/// again).
fn fan_in(outcomes: Vec<Option<TransportError>>, n: usize) -> Result<(), TransportError> {
    let failed: Vec<&TransportError> = outcomes.iter().flatten().collect();
    if failed.is_empty() {
        return Ok(());
    }
    let message = failed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let retryable = failed.iter().filter(|e| e.is_retryable());
    let mut e = match retryable.clone().count() {
        0 => TransportError::fatal(message),
        _ => TransportError::retryable(message),
    };
    if let Some(wait) = retryable.filter_map(|e| e.retry_delay()).max() {
        e = e.retry_after(wait);
    }
    // A span is delivered when every target has it.
    let undelivered = failed.iter().map(|e| e.undelivered(n)).max().unwrap_or(n);
    Err(e.partial(undelivered, FanoutLeft(outcomes)))
}

impl Transport for Fanout {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        // Each target's panic is caught on its own, so that the targets after it still get
        // the batch.
        let outcomes = self
            .targets
            .iter()
            .map(|t| super::send_catching_panics(&**t, spans, None).err())
            .collect();
        fan_in(outcomes, spans.len())
    }

    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        let before = match failure.resume::<FanoutLeft>() {
            Some(FanoutLeft(before)) if before.len() == self.targets.len() => before,
            _ => return self.send(spans),
        };
        let outcomes = self
            .targets
            .iter()
            .zip(before)
            .map(|(t, before)| match before {
                None => None,
                Some(e) if !e.is_retryable() => Some(e.clone()),
                Some(e) => super::send_catching_panics(&**t, spans, Some(e)).err(),
            })
            .collect();
        fan_in(outcomes, spans.len())
    }

    fn flush(&self, deadline: std::time::Instant) -> u64 {
        self.targets.iter().map(|t| t.flush(deadline)).sum()
    }
}

#[cfg(feature = "test-util")]
pub use memory::InMemory;

#[cfg(feature = "test-util")]
mod memory {
    use super::*;
    use crate::id::{SpanId, TraceId};
    use std::collections::HashSet;
    use std::sync::{Arc, Condvar};
    use std::time::{Duration, Instant};

    /// Keeps every span in memory, for tests: inspect, wait for, and check trees.
    #[derive(Debug, Clone, Default)]
    pub struct InMemory {
        inner: Arc<(Mutex<Vec<FinishedSpan>>, Condvar)>,
    }

    impl InMemory {
        /// An empty sink.
        pub fn new() -> InMemory {
            InMemory::default()
        }

        /// Every span received so far.
        pub fn spans(&self) -> Vec<FinishedSpan> {
            self.inner
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }

        /// Spans of one trace.
        pub fn trace(&self, trace_id: TraceId) -> Vec<FinishedSpan> {
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect()
        }

        /// Forgets every span.
        pub fn clear(&self) {
            self.inner
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }

        /// Waits until at least `n` spans arrived; returns how many there are.
        pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
            let deadline = crate::export::deadline_after(timeout);
            let mut g = self.inner.0.lock().unwrap_or_else(|p| p.into_inner());
            while g.len() < n {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                g = self
                    .inner
                    .1
                    .wait_timeout(g, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            g.len()
        }

        /// Spans whose parent never arrived (the broken links of a trace).
        pub fn orphans(&self) -> Vec<FinishedSpan> {
            let spans = self.spans();
            let ids: HashSet<(TraceId, SpanId)> =
                spans.iter().map(|s| (s.trace_id(), s.id())).collect();
            spans
                .into_iter()
                .filter(|s| {
                    s.parent_id()
                        .is_some_and(|p| !ids.contains(&(s.trace_id(), p)))
                })
                .collect()
        }
    }

    impl Transport for InMemory {
        fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
            self.inner
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(spans);
            self.inner.1.notify_all();
            Ok(())
        }
    }
}
