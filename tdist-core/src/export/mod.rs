//! Publishing finished spans: the [`Transport`] trait, the [`Reporter`] pipeline that feeds it
//! off the request path, and the transports that need nothing but the standard library.

mod detached;
mod reporter;
mod transports;

pub use detached::{Detached, DetachedBuilder, DetachedHandle, DetachedStats};
pub(crate) use reporter::{record_box, submit};
pub use reporter::{FlushError, Reporter, ReporterConfig, Stats};
#[cfg(feature = "test-util")]
pub use transports::InMemory;
pub use transports::{Fanout, JsonLinesFile, NoopTransport, Stdout};

use crate::record::FinishedSpan;
use std::sync::Arc;
use std::time::Instant;

/// Delivers batches of finished spans somewhere: a collector, a topic, a file.
///
/// Called from the reporter's background thread only, never from application threads. A
/// transport must bound its own I/O with timeouts; while it is slow, the reporter keeps the
/// application fast by dropping (and counting) what does not fit in its queues.
pub trait Transport: Send + Sync + 'static {
    /// Sends one batch (at most the configured export batch size).
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError>;

    /// Sends `spans` again after `failure`, a retryable failure of [`send`](Self::send) (or of
    /// an earlier `resend`) of the same batch. A transport that delivered part of the batch
    /// before it failed (some of its messages, some of its destinations) records what is left
    /// in the failure ([`TransportError::partial`]) and sends only that here, so that a retry
    /// never delivers a span twice. The default sends the whole batch again.
    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        let _ = failure;
        self.send(spans)
    }

    /// For a transport that delivers after [`send`](Self::send) returns (such as [`Detached`]):
    /// waits until what it was given is delivered or failed, or until `deadline`, and returns
    /// how many spans are still pending. Called by [`Tracer::flush`](crate::Tracer::flush) and
    /// at shutdown, on the flushing thread. The default has nothing pending. A panic here is
    /// caught and logged, and counts as nothing pending: it must not reach the application's
    /// flush, nor the last handle's `Drop`.
    fn flush(&self, deadline: Instant) -> u64 {
        let _ = deadline;
        0
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        (**self).send(spans)
    }

    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        (**self).resend(spans, failure)
    }

    fn flush(&self, deadline: Instant) -> u64 {
        (**self).flush(deadline)
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        (**self).send(spans)
    }

    fn resend(
        &self,
        spans: &[FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        (**self).resend(spans, failure)
    }

    fn flush(&self, deadline: Instant) -> u64 {
        (**self).flush(deadline)
    }
}

/// The deadline `timeout` from now. A timeout too long to add to the clock (`Duration::MAX`,
/// meaning "no deadline") is a century, which no flush outlasts, instead of a panic.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Calls `transport.send`, or `transport.resend` after a retryable failure of the same batch,
/// turning a panic into a fatal failure of the batch: a transport that panics must not take a
/// worker thread (and every later span) with it.
pub(crate) fn send_catching_panics(
    transport: &dyn Transport,
    spans: &[FinishedSpan],
    after: Option<&TransportError>,
) -> Result<(), TransportError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match after {
        None => transport.send(spans),
        Some(failure) => transport.resend(spans, failure),
    }))
    .unwrap_or_else(|_| Err(TransportError::fatal("transport panicked")))
}

/// A failed delivery: whether retrying may help, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    retryable: bool,
    message: String,
    retry_after: Option<std::time::Duration>,
    /// Spans of the batch this failure left undelivered, when not all of them.
    undelivered: Option<usize>,
    /// What the transport's `resend` needs to send only the rest.
    resume: Option<Resume>,
}

/// A transport's own record of what is left of a batch; opaque to everyone else.
#[derive(Clone)]
struct Resume(Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resume")
    }
}

impl TransportError {
    /// A failure worth retrying (connection refused, timeout, 5xx).
    pub fn retryable(message: impl Into<String>) -> TransportError {
        TransportError {
            retryable: true,
            message: message.into(),
            retry_after: None,
            undelivered: None,
            resume: None,
        }
    }

    /// A failure that retrying cannot fix (the collector rejected the data: 400).
    pub fn fatal(message: impl Into<String>) -> TransportError {
        TransportError {
            retryable: false,
            message: message.into(),
            retry_after: None,
            undelivered: None,
            resume: None,
        }
    }

    /// Whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The destination asked to be left alone for `delay` before the next attempt (HTTP's
    /// `Retry-After` on a 429 or 503). The reporter waits at least that long before retrying,
    /// and gives the batch up at once when the wait would outlast its export timeout.
    pub fn retry_after(mut self, delay: std::time::Duration) -> TransportError {
        self.retry_after = Some(delay);
        self
    }

    /// The wait the destination asked for, if any.
    pub fn retry_delay(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The same failure with `note` after its message, in parentheses (such as which proxy the
    /// request went through); whether it is retryable and any wait asked for stay as they were.
    pub fn with_note(mut self, note: impl std::fmt::Display) -> TransportError {
        self.message = format!("{} ({note})", self.message);
        self
    }

    /// Part of the batch was delivered before this failure: `undelivered` of its spans were
    /// not, counted against the whole batch (after a `resend`, what is still undelivered of
    /// it, the spans lost for good on earlier attempts included). `resume` is the transport's
    /// own record of what is left, which its [`Transport::resend`] reads back with
    /// [`resume`](Self::resume) to send only that. When the batch is finally given up, the
    /// reporter counts `undelivered` spans as failed and the rest as sent.
    pub fn partial<R: std::any::Any + Send + Sync>(
        mut self,
        undelivered: usize,
        resume: R,
    ) -> TransportError {
        self.undelivered = Some(undelivered);
        self.resume = Some(Resume(Arc::new(resume)));
        self
    }

    /// The record [`partial`](Self::partial) was given, if it is an `R`.
    pub fn resume<R: std::any::Any + Send + Sync>(&self) -> Option<&R> {
        self.resume.as_ref()?.0.downcast_ref()
    }

    /// How many of a batch of `batch_len` spans this failure left undelivered: all of them
    /// unless the failure is [`partial`](Self::partial).
    pub fn undelivered(&self, batch_len: usize) -> usize {
        self.undelivered.map_or(batch_len, |n| n.min(batch_len))
    }
}

#[cfg(test)]
mod tests {
    use super::TransportError;
    use std::time::Duration;

    #[test]
    fn a_note_keeps_the_rest_of_the_failure() {
        let e = TransportError::retryable("503")
            .retry_after(Duration::from_secs(3))
            .with_note("through proxy http://p:1");
        assert_eq!(e.to_string(), "503 (through proxy http://p:1)");
        assert!(e.is_retryable());
        assert_eq!(e.retry_delay(), Some(Duration::from_secs(3)));
        let e = TransportError::fatal("407").with_note("through proxy http://p:1");
        assert!(!e.is_retryable() && e.retry_delay().is_none());
    }
}
