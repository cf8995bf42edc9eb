//! [`Detached`]: a transport on a thread of its own, so that one slow destination cannot hold up
//! the others.

use super::reporter::lock;
use super::{Transport, TransportError};
use crate::record::FinishedSpan;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Runs a transport on a thread of its own, behind a bounded queue of batches.
///
/// The reporter has one worker thread, and a [`Fanout`](super::Fanout) calls its transports one
/// after the other. A destination that hangs (a collector that accepts connections and never
/// answers) then holds every other destination back for its whole timeout, batch after batch.
/// Behind `Detached`, it has its own worker instead, as each sender has in Brave's
/// `AsyncReporter`: [`send`](Transport::send) copies the batch into the queue and returns at
/// once, so the reporter and the other destinations go on at their own pace.
///
/// Nothing is lost silently and memory stays bounded: a batch that does not fit in the queue
/// (`capacity` spans, 2048 by default) is dropped and counted; what the inner transport fails
/// on (after `retries` retries of retryable errors, 0 by default) is counted as failed; what is
/// still queued when the `Detached` is dropped is counted as dropped. [`stats`](Self::stats)
/// (or a [`DetachedHandle`] kept after the transport was handed to a tracer) reads the counts.
///
/// To the reporter, a batch handed to a `Detached` counts as sent: its own counters tell what
/// the destination got. [`Tracer::flush`](crate::Tracer::flush) and shutdown wait, within their
/// deadline, until what was queued before them is delivered or failed.
///
/// ```
/// use tdist_core::export::{Detached, Fanout, JsonLinesFile, NoopTransport};
/// # let path = std::env::temp_dir().join(format!("tdist-detached-doc-{}.jsonl", std::process::id()));
/// let collector = Detached::new("collector", NoopTransport);
/// let counts = collector.handle();
/// let transport = Fanout::new()
///     .with(JsonLinesFile::create(&path)?) // always written, however the collector behaves
///     .with(collector);
/// # let _ = transport;
/// assert_eq!(counts.stats().dropped, 0);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Detached {
    shared: Arc<Shared>,
}

/// Reads a [`Detached`] transport's counters and waits for its queue, from anywhere.
#[derive(Debug, Clone)]
pub struct DetachedHandle {
    shared: Arc<Shared>,
}

/// What a [`Detached`] transport did with the spans it was given, in spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetachedStats {
    /// Delivered by the inner transport.
    pub delivered: u64,
    /// Given up on after the inner transport failed.
    pub failed: u64,
    /// Dropped because the queue was full, or still queued when the transport was dropped.
    pub dropped: u64,
    /// Queued or being sent now.
    pub pending: u64,
}

#[derive(Debug)]
struct Shared {
    name: String,
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the worker: work arrived, or the transport closed.
    work: Condvar,
    /// Wakes flushers: a batch was finished.
    idle: Condvar,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Last time a drop or failure was logged (rate limit), as ms since `created`.
    created: Instant,
    last_log_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    batches: VecDeque<Vec<FinishedSpan>>,
    /// Spans in `batches` plus the batch being sent.
    pending: usize,
    /// Spans ever queued, and how many of them are settled (delivered, failed, or dropped when
    /// the transport closed): batches settle in the order they were queued, so a flush waits
    /// until `settled` reaches what `queued` was when it began.
    queued: u64,
    settled: u64,
    closed: bool,
}

impl Detached {
    /// Runs `inner` on a new thread named `tdist-<name>`, with room for 2048 spans and no
    /// retries.
    pub fn new(name: impl Into<String>, inner: impl Transport) -> Detached {
        Detached::builder(name).build(inner)
    }

    /// Settings beyond [`new`](Self::new)'s.
    pub fn builder(name: impl Into<String>) -> DetachedBuilder {
        DetachedBuilder {
            name: name.into(),
            capacity: 2048,
            retries: 0,
        }
    }

    /// A handle that reads the counters and outlives the transport's move into a tracer.
    pub fn handle(&self) -> DetachedHandle {
        DetachedHandle {
            shared: self.shared.clone(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> DetachedStats {
        self.shared.stats()
    }
}

/// Builds a [`Detached`] transport.
#[derive(Debug)]
pub struct DetachedBuilder {
    name: String,
    capacity: usize,
    retries: u32,
}

impl DetachedBuilder {
    /// Most spans queued at once (at least one batch is always taken when the queue is empty).
    pub fn capacity(mut self, spans: usize) -> Self {
        self.capacity = spans;
        self
    }

    /// Retries of a retryable failure, with doubling backoff from 100 ms (at most 2 s), or the
    /// wait the destination asked for (`TransportError::retry_after`, at most 30 s) when longer.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Starts the worker thread around `inner`.
    pub fn build(self, inner: impl Transport) -> Detached {
        let shared = Arc::new(Shared {
            name: self.name,
            capacity: self.capacity,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            created: Instant::now(),
            last_log_ms: AtomicU64::new(u64::MAX),
        });
        let worker = shared.clone();
        let retries = self.retries;
        let spawned = std::thread::Builder::new()
            .name(format!("tdist-{}", shared.name))
            .spawn(move || run(&worker, &inner, retries));
        if let Err(e) = spawned {
            // No thread: every batch will be dropped and counted.
            tracing::warn!(target: "tdist", name = %shared.name, error = %e, "tdist: no thread for a detached transport");
            lock(&shared.state).closed = true;
        }
        Detached { shared }
    }
}

impl DetachedHandle {
    /// The counts so far.
    pub fn stats(&self) -> DetachedStats {
        self.shared.stats()
    }

    /// Waits at most `timeout` until the spans queued before the call are delivered or failed;
    /// returns how many of them are still pending.
    pub fn flush(&self, timeout: Duration) -> u64 {
        self.shared.wait_idle(super::deadline_after(timeout))
    }
}

impl Transport for Detached {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        if spans.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        let mut state = lock(&s.state);
        let fits = state.pending == 0 || state.pending + spans.len() <= s.capacity;
        let state_closed = state.closed;
        if state_closed || !fits {
            drop(state);
            s.dropped.fetch_add(spans.len() as u64, Ordering::AcqRel);
            s.log_loss(&if state_closed {
                "closed: spans dropped"
            } else {
                "queue full: spans dropped"
            });
            return Ok(());
        }
        state.pending += spans.len();
        state.queued += spans.len() as u64;
        state.batches.push_back(spans.to_vec());
        drop(state);
        s.work.notify_one();
        Ok(())
    }

    fn flush(&self, deadline: Instant) -> u64 {
        self.shared.wait_idle(deadline)
    }
}

impl Drop for Detached {
    /// Stops the worker without waiting for it (a flush with a deadline comes first when the
    /// tracer shuts down): what is still queued is counted as dropped. A send in progress ends
    /// within the inner transport's own timeout.
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        // Not counted as settled: batches settle in order, and the one being sent (queued
        // before these) has not; a flusher woken by the close reads what is left from `pending`.
        let left: usize = state.batches.drain(..).map(|b| b.len()).sum();
        state.pending -= left;
        drop(state);
        self.shared.dropped.fetch_add(left as u64, Ordering::AcqRel);
        self.shared.work.notify_all();
        self.shared.idle.notify_all();
    }
}

impl Shared {
    fn stats(&self) -> DetachedStats {
        // The sender settles a batch (its counts and `pending`) under the state lock, so a
        // batch is counted once here: as pending or as delivered and failed.
        let state = lock(&self.state);
        DetachedStats {
            delivered: self.delivered.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
            dropped: self.dropped.load(Ordering::Acquire),
            pending: state.pending as u64,
        }
    }

    /// Waits until every span queued before the call is settled (not for an empty queue,
    /// which a steady load never leaves), or until `deadline`; returns how many of those are
    /// still pending.
    fn wait_idle(&self, deadline: Instant) -> u64 {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let state = lock(&self.state);
        let mark = state.queued;
        let (state, _) = self
            .idle
            .wait_timeout_while(state, timeout, |s| s.settled < mark && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        // After a close, the batches it dropped are neither settled nor pending.
        mark.saturating_sub(state.settled).min(state.pending as u64)
    }

    /// Logs a loss at most every 10 s (`what` is formatted only then).
    fn log_loss(&self, what: &dyn std::fmt::Display) {
        let now = self.created.elapsed().as_millis() as u64;
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if last != u64::MAX && now.saturating_sub(last) < 10_000 {
            return;
        }
        if self
            .last_log_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                target: "tdist",
                transport = %self.name,
                delivered = self.delivered.load(Ordering::Relaxed),
                failed = self.failed.load(Ordering::Relaxed),
                dropped = self.dropped.load(Ordering::Relaxed),
                "tdist detached transport: {what}"
            );
        }
    }
}

fn run(shared: &Shared, inner: &dyn Transport, retries: u32) {
    loop {
        let batch = {
            let mut state = lock(&shared.state);
            loop {
                if state.closed {
                    return;
                }
                if let Some(b) = state.batches.pop_front() {
                    break b;
                }
                state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let lost = send_with_retries(shared, inner, &batch, retries);
        let n = batch.len() as u64;
        let mut state = lock(&shared.state);
        shared.delivered.fetch_add(n - lost, Ordering::AcqRel);
        shared.failed.fetch_add(lost, Ordering::AcqRel);
        state.pending -= batch.len();
        state.settled += n;
        drop(state);
        shared.idle.notify_all();
    }
}

/// The longest wait a destination's `retry_after` gets before a retry; a longer ask is cut to
/// this (the batches behind this one wait for it).
const MAX_ASKED_WAIT: Duration = Duration::from_secs(30);

/// Sends `batch` to `inner`, retrying retryable failures (through `Transport::resend`, so a
/// transport that delivered part of it sends only the rest); returns how many of its spans were
/// not delivered.
fn send_with_retries(
    shared: &Shared,
    inner: &dyn Transport,
    batch: &[FinishedSpan],
    retries: u32,
) -> u64 {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0;
    let mut last: Option<TransportError> = None;
    loop {
        let e = match super::send_catching_panics(inner, batch, last.as_ref()) {
            Ok(()) => return 0,
            Err(e) => e,
        };
        if !e.is_retryable() || attempt >= retries {
            shared.log_loss(&format_args!("spans failed: {e}"));
            return e.undelivered(batch.len()) as u64;
        }
        attempt += 1;
        // Back off (at least as long as the destination asked, up to a bound), but stop at once
        // when the transport is dropped.
        let wait = e
            .retry_delay()
            .map_or(backoff, |asked| asked.min(MAX_ASKED_WAIT).max(backoff));
        let state = lock(&shared.state);
        let (state, _) = shared
            .work
            .wait_timeout_while(state, wait, |s| !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return e.undelivered(batch.len()) as u64;
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
        last = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{Fanout, JsonLinesFile};
    use crate::record::FinishedSpan;
    use std::sync::atomic::AtomicUsize;

    fn spans(n: usize) -> Vec<FinishedSpan> {
        (0..n).map(|_| FinishedSpan::empty()).collect()
    }

    /// Blocks every send until released; counts calls.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
        calls: AtomicUsize,
    }

    impl Gate {
        fn release(&self) {
            *lock(&self.open) = true;
            self.cv.notify_all();
        }
    }

    impl Transport for Gate {
        fn send(&self, _: &[FinishedSpan]) -> Result<(), TransportError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let open = lock(&self.open);
            let _open = self.cv.wait_while(open, |o| !*o).unwrap();
            Ok(())
        }
    }

    struct Failing(AtomicUsize, bool);

    impl Transport for Failing {
        fn send(&self, _: &[FinishedSpan]) -> Result<(), TransportError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if self.1 {
                Err(TransportError::retryable("503"))
            } else {
                Err(TransportError::fatal("400"))
            }
        }
    }

    #[test]
    fn a_hanging_destination_holds_up_neither_the_caller_nor_its_siblings() {
        let gate = Arc::new(Gate::default());
        let path =
            std::env::temp_dir().join(format!("tdist-detached-test-{}.jsonl", std::process::id()));
        let hanging = Detached::builder("hanging")
            .capacity(10)
            .build(gate.clone());
        let handle = hanging.handle();
        let fanout = Fanout::new()
            .with(JsonLinesFile::create(&path).unwrap())
            .with(hanging);
        let started = Instant::now();
        for _ in 0..5 {
            fanout.send(&spans(4)).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let written = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(written, 20, "the file got every span");
        // Two batches fit in 10 spans (one stuck in the gate, one queued); three are dropped.
        assert_eq!(handle.flush(Duration::from_millis(50)), 8);
        let s = handle.stats();
        assert_eq!((s.delivered, s.failed, s.dropped, s.pending), (0, 0, 12, 8));

        gate.release();
        assert_eq!(handle.flush(Duration::from_secs(10)), 0);
        let s = handle.stats();
        assert_eq!((s.delivered, s.failed, s.dropped, s.pending), (8, 0, 12, 0));
        assert_eq!(gate.calls.load(Ordering::SeqCst), 2);
        drop(fanout);
        std::fs::remove_file(&path).ok();
    }

    /// Fails once asking for a wait, then accepts; remembers when it was called.
    struct AsksToWait(Duration, Mutex<Vec<Instant>>);

    impl Transport for AsksToWait {
        fn send(&self, _: &[FinishedSpan]) -> Result<(), TransportError> {
            let mut calls = lock(&self.1);
            calls.push(Instant::now());
            match calls.len() {
                1 => Err(TransportError::retryable("429").retry_after(self.0)),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn a_wait_the_destination_asks_for_is_honored() {
        let asks = Arc::new(AsksToWait(
            Duration::from_millis(300),
            Mutex::new(Vec::new()),
        ));
        let t = Detached::builder("rate-limited")
            .retries(1)
            .build(asks.clone());
        t.send(&spans(1)).unwrap();
        assert_eq!(t.flush(Instant::now() + Duration::from_secs(10)), 0);
        assert_eq!(t.stats().delivered, 1);
        let calls = lock(&asks.1).clone();
        assert_eq!(calls.len(), 2);
        assert!(
            calls[1] - calls[0] >= Duration::from_millis(300),
            "{calls:?}"
        );

        // Dropping the transport during a long wait: no retry follows it.
        let asks = Arc::new(AsksToWait(
            Duration::from_secs(3600),
            Mutex::new(Vec::new()),
        ));
        let t = Detached::builder("asks-an-hour")
            .retries(1)
            .build(asks.clone());
        t.send(&spans(1)).unwrap();
        let waiting = Instant::now();
        while lock(&asks.1).is_empty() && waiting.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(t);
        assert_eq!(lock(&asks.1).len(), 1, "no retry after the drop");
    }

    #[test]
    fn failures_are_retried_as_configured_then_counted() {
        let retryable = Arc::new(Failing(AtomicUsize::new(0), true));
        let t = Detached::builder("retrying")
            .retries(2)
            .build(retryable.clone());
        t.send(&spans(3)).unwrap();
        assert_eq!(t.flush(Instant::now() + Duration::from_secs(10)), 0);
        assert_eq!(
            retryable.0.load(Ordering::SeqCst),
            3,
            "first try and two retries"
        );
        assert_eq!(t.stats().failed, 3);

        let fatal = Arc::new(Failing(AtomicUsize::new(0), false));
        let t = Detached::builder("fatal").retries(5).build(fatal.clone());
        t.send(&spans(2)).unwrap();
        assert_eq!(t.flush(Instant::now() + Duration::from_secs(10)), 0);
        assert_eq!(
            fatal.0.load(Ordering::SeqCst),
            1,
            "a fatal error is not retried"
        );
        assert_eq!(
            t.stats(),
            DetachedStats {
                delivered: 0,
                failed: 2,
                dropped: 0,
                pending: 0
            }
        );
    }

    /// Queues another batch from inside each send, as a reporter under a steady load does: the
    /// queue is never empty.
    #[derive(Default)]
    struct Refilling {
        target: std::sync::OnceLock<std::sync::Weak<Detached>>,
        stop: std::sync::atomic::AtomicBool,
    }

    impl Transport for Refilling {
        fn send(&self, _: &[FinishedSpan]) -> Result<(), TransportError> {
            std::thread::sleep(Duration::from_millis(1));
            if !self.stop.load(Ordering::SeqCst) {
                if let Some(d) = self.target.get().and_then(std::sync::Weak::upgrade) {
                    d.send(&spans(1)).unwrap();
                }
            }
            Ok(())
        }
    }

    /// A flush waits for what was queued before it, not for a queue that a steady load never
    /// lets empty (it used to wait for that, so it always ran out its deadline).
    #[test]
    fn a_flush_under_a_steady_load_completes() {
        let refilling = Arc::new(Refilling::default());
        let t = Arc::new(Detached::new("steady", refilling.clone()));
        refilling.target.set(Arc::downgrade(&t)).unwrap();
        t.send(&spans(1)).unwrap();
        t.send(&spans(2)).unwrap();
        let left = t.flush(Instant::now() + Duration::from_secs(2));
        refilling.stop.store(true, Ordering::SeqCst);
        assert_eq!(left, 0, "{:?}", t.stats());
        assert!(t.stats().delivered >= 3, "{:?}", t.stats());
        // The worker may have queued one more batch just before it saw `stop`.
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.stats().pending > 0 && Instant::now() < deadline {
            t.flush(deadline);
        }
        assert_eq!(t.stats().pending, 0);
    }

    #[test]
    fn dropping_counts_what_is_still_queued_and_does_not_wait() {
        let gate = Arc::new(Gate::default());
        let t = Detached::new("closing", gate.clone());
        let handle = t.handle();
        for _ in 0..3 {
            t.send(&spans(2)).unwrap();
        }
        // Wait until the worker holds the first batch in the gate.
        while gate.calls.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let started = Instant::now();
        drop(t);
        assert!(started.elapsed() < Duration::from_secs(5));
        let s = handle.stats();
        assert_eq!(
            (s.dropped, s.pending),
            (4, 2),
            "two batches dropped, one in flight"
        );
        gate.release();
        while handle.stats().pending > 0 {
            std::thread::yield_now();
        }
        assert_eq!(handle.stats().delivered, 2);
    }

    /// A flush waiting on the batch in flight when the transport is dropped still reports that
    /// batch as pending: the batches the drop threw away were queued after it.
    #[test]
    fn a_flush_cut_short_by_the_drop_reports_the_batch_in_flight() {
        let gate = Arc::new(Gate::default());
        let t = Detached::new("closing", gate.clone());
        let handle = t.handle();
        t.send(&spans(2)).unwrap();
        while gate.calls.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let flusher = {
            let handle = handle.clone();
            std::thread::spawn(move || handle.flush(Duration::from_secs(30)))
        };
        // Let the flush take its mark first (were it later, it would cover the next batch too,
        // and the answer would be the same).
        std::thread::sleep(Duration::from_millis(100));
        t.send(&spans(4)).unwrap();
        drop(t);
        assert_eq!(flusher.join().unwrap(), 2);
        gate.release();
    }
}
