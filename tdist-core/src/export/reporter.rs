//! The reporter: per-thread bounded lock-free queues, one background worker, counted drops.
//!
//! Application threads write each finished span into a bounded ring of their own (an `rtrb`
//! single-producer single-consumer ring holding the records themselves: a copy into the next
//! slot and one release store, no compare-and-swap, no lock, no allocation, no I/O). A full ring
//! drops the span and counts it. The worker only reads the slots, so each record's cache lines
//! cross between cores once, and the live span's record box never leaves its thread.
//!
//! The worker wakes on a timer, when a thread has written a quarter of its ring since the last
//! wake, or on `flush`; it drains every thread's ring (also those of threads that have exited,
//! so nothing is lost at thread exit), hands batches to the [`Transport`] and retries retryable
//! failures with bounded backoff. A busy thread's spans are exported straight from its ring;
//! the few spans of quiet threads are gathered into one batch.
//!
//! Memory is bounded: each thread's queue holds at most `local_queue_size` spans and the worker
//! holds at most `max_queue_size` drained spans while the transport is slow.

use super::{Transport, TransportError};
use crate::record::FinishedSpan;
use rtrb::{Consumer, Producer, RingBuffer};
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Sizes and timings of the pipeline. Defaults follow OpenTelemetry's batch span processor.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// Spans the worker holds while the transport is busy (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048; at
    /// most 1,048,576).
    pub max_queue_size: usize,
    /// Longest wait between exports (`OTEL_BSP_SCHEDULE_DELAY`, 5 s).
    pub schedule_delay: Duration,
    /// Most spans per transport call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_export_batch_size: usize,
    /// Time budget for one batch, retries included (`OTEL_BSP_EXPORT_TIMEOUT`, 30 s).
    pub export_timeout: Duration,
    /// Spans each thread may buffer before the worker drains them (`TDIST_LOCAL_QUEUE_SIZE`, 2048;
    /// at most 1,048,576).
    /// The ring holds the records themselves (376 bytes each), so 2048 reserves ~770 KB of
    /// address space per thread that reports spans (pages are touched as the ring fills), from
    /// the thread's first span until it has exited and its spans are drained. The worker is
    /// woken when a thread has written a quarter of its ring since the last wake.
    pub local_queue_size: usize,
    /// Retries of a retryable failure within the export timeout (`TDIST_EXPORT_RETRIES`, 3).
    pub max_retries: u32,
    /// How long dropping the last handle (or a tracer guard) waits for the final flush
    /// (`TDIST_SHUTDOWN_TIMEOUT`, 5 s).
    pub shutdown_timeout: Duration,
}

impl Default for ReporterConfig {
    fn default() -> ReporterConfig {
        ReporterConfig {
            max_queue_size: 2048,
            schedule_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
            local_queue_size: 2048,
            max_retries: 3,
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// The most spans a queue may be configured to hold (each is 376 bytes): larger sizes are
/// lowered to it, rather than failing when a ring or the worker's batch is allocated.
const MAX_QUEUE: usize = 1 << 20;

/// The pipeline's counters. `accepted = sent + failed + pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Spans taken onto a queue.
    pub accepted: u64,
    /// Spans refused because a queue was full (never sent).
    pub dropped: u64,
    /// Spans the transport delivered.
    pub sent: u64,
    /// Spans given up on after the transport failed (and retries ran out).
    pub failed: u64,
}

impl Stats {
    /// Spans accepted and not yet sent or failed.
    pub fn pending(&self) -> u64 {
        self.accepted.saturating_sub(self.sent + self.failed)
    }
}

/// A flush or shutdown that did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flush did not complete within {timeout:?}: {pending} spans pending")]
pub struct FlushError {
    /// The deadline given.
    pub timeout: Duration,
    /// Spans accepted but not yet delivered or failed.
    pub pending: u64,
}

/// One thread's queue, shared with the worker. The producing end lives in the thread's
/// [`LocalEntry`].
struct LocalQueue {
    /// Taken by the worker only (the lock is never contended on the span path).
    consumer: Mutex<Consumer<FinishedSpan>>,
    /// Written by the owning thread only; read by anyone.
    accepted: AtomicU64,
    dropped: AtomicU64,
    /// Spans the worker has taken out of the ring (written by the worker only): the ring has
    /// given up every span it accepted up to here.
    taken: AtomicU64,
}

struct Shared {
    id: u64,
    config: ReporterConfig,
    transport: Box<dyn Transport>,
    queues: Mutex<Vec<Arc<LocalQueue>>>,
    worker: OnceLock<Thread>,
    sleeping: AtomicBool,
    retired_accepted: AtomicU64,
    retired_dropped: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    control: Mutex<Control>,
    done: Condvar,
    /// The ring of spans finished without a thread state of their own ([`submit_stray`]),
    /// made on first use.
    stray: Mutex<Option<LocalEntry>>,
}

#[derive(Default)]
struct Control {
    requested: u64,
    completed: u64,
    stop: bool,
    exited: bool,
}

/// A handle to a span pipeline. Cheap to clone; the worker stops (after a final flush bounded
/// by the export timeout) when the last handle is dropped.
#[derive(Clone)]
pub struct Reporter {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("id", &self.handle.shared.id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Every live reporter by id, so a thread can find the queue registry of the reporter a span
/// names without the span holding a reference count.
type Registry = Mutex<Vec<(u64, Weak<Shared>)>>;

fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// Locks `m`; a panic elsewhere while it was held does not stop span delivery.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter {
    /// Starts a pipeline that delivers to `transport`.
    pub fn new(transport: impl Transport, config: ReporterConfig) -> Reporter {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut config = config;
        config.max_queue_size = config.max_queue_size.clamp(1, MAX_QUEUE);
        config.max_export_batch_size = config.max_export_batch_size.clamp(1, config.max_queue_size);
        config.local_queue_size = config.local_queue_size.clamp(2, MAX_QUEUE);
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            transport: Box::new(transport),
            queues: Mutex::default(),
            worker: OnceLock::new(),
            sleeping: AtomicBool::new(false),
            retired_accepted: AtomicU64::new(0),
            retired_dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            control: Mutex::default(),
            done: Condvar::new(),
            stray: Mutex::new(None),
        });
        let worker_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tdist-reporter".into())
            .spawn(move || run(worker_shared))
            .expect("spawning the tdist reporter thread");
        let _ = shared.worker.set(thread.thread().clone());
        lock(registry()).push((shared.id, Arc::downgrade(&shared)));
        Reporter {
            handle: Arc::new(Handle { shared }),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.handle.shared.id
    }

    /// The counters, summed over every thread.
    pub fn stats(&self) -> Stats {
        self.handle.shared.stats()
    }

    /// Delivers every span finished before this call, waiting at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<Stats, FlushError> {
        self.handle.shared.flush(timeout)
    }

    /// Flushes within `timeout`, then stops the worker. Spans finished afterwards may not be
    /// delivered.
    pub fn shutdown(&self, timeout: Duration) -> Result<Stats, FlushError> {
        self.handle.shared.shutdown(timeout)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let timeout = self.shared.config.shutdown_timeout;
        let _ = self.shared.shutdown(timeout);
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        // The worker retires an exited thread's queue (moving its counts to `retired_*`) under
        // the queues lock: reading both under it counts that thread once, never zero times.
        let queues = lock(&self.queues);
        let mut s = Stats {
            accepted: self.retired_accepted.load(Ordering::Acquire),
            dropped: self.retired_dropped.load(Ordering::Acquire),
            sent: self.sent.load(Ordering::Acquire),
            failed: self.failed.load(Ordering::Acquire),
        };
        for q in queues.iter() {
            s.accepted += q.accepted.load(Ordering::Acquire);
            s.dropped += q.dropped.load(Ordering::Acquire);
        }
        s
    }

    fn wake(&self) {
        if self.sleeping.load(Ordering::Acquire) {
            if let Some(t) = self.worker.get() {
                t.unpark();
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<Stats, FlushError> {
        let deadline = super::deadline_after(timeout);
        let mut c = lock(&self.control);
        if c.exited || c.stop {
            return Ok(self.stats());
        }
        c.requested += 1;
        let target = c.requested;
        if let Some(t) = self.worker.get() {
            t.unpark();
        }
        while c.completed < target && !c.exited {
            let now = Instant::now();
            if now >= deadline {
                drop(c);
                return Err(FlushError {
                    timeout,
                    pending: self.stats().pending(),
                });
            }
            c = self
                .done
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let covered = c.completed >= target;
        drop(c);
        if !covered {
            // A shutdown stopped the worker before it had taken everything this flush covers.
            return Err(FlushError {
                timeout,
                pending: self.stats().pending(),
            });
        }
        // Transports that deliver on threads of their own (`Detached`) are waited for here, on
        // the flushing thread, within the same deadline; the worker never waits for them.
        // A transport's panic stays here: `flush` also runs in the last handle's `Drop`, where
        // a panic during unwinding would abort the program.
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.transport.flush(deadline)
        }));
        let pending = waited.unwrap_or_else(|_| {
            tracing::warn!(target: "tdist", "tdist transport panicked in flush");
            0
        });
        if pending > 0 {
            return Err(FlushError { timeout, pending });
        }
        Ok(self.stats())
    }

    fn shutdown(&self, timeout: Duration) -> Result<Stats, FlushError> {
        let result = self.flush(timeout);
        lock(&self.control).stop = true;
        if let Some(t) = self.worker.get() {
            t.unpark();
        }
        lock(registry()).retain(|(id, _)| *id != self.id);
        result
    }
}

/// The worker loop.
fn run(shared: Arc<Shared>) {
    let cfg = shared.config.clone();
    let mut batch: Vec<FinishedSpan> = Vec::with_capacity(cfg.max_queue_size);
    let mut queues: Vec<Arc<LocalQueue>> = Vec::new();
    let mut last_drop_log = Instant::now();
    let mut dropped_logged = 0;
    let mut first = 0usize;
    loop {
        let (target, stop) = {
            let c = lock(&shared.control);
            (c.requested, c.stop)
        };
        // What each ring has accepted by now, which includes every span finished before a
        // flush that `target` counts. Rounds go on until the rings have given all of that up,
        // and no further: spans that arrive meanwhile wait for the next wake. (Draining until
        // the rings were empty never ended under a steady load, so a flush waited out its
        // deadline and batches shrank to a few spans each.) Each round starts at the next ring,
        // so a ring behind busy ones is reached first within as many rounds as there are rings.
        // Weak: a strong count here would keep `drain` from retiring the ring of a thread that
        // has exited.
        let owed: Vec<(Weak<LocalQueue>, u64)> = lock(&shared.queues)
            .iter()
            .map(|q| (Arc::downgrade(q), q.accepted.load(Ordering::Acquire)))
            .collect();
        let mut paid = false;
        while !paid {
            first = first.wrapping_add(1);
            drain(&shared, &mut batch, &mut queues, first);
            for spans in batch.chunks(cfg.max_export_batch_size) {
                export(&shared, spans);
            }
            batch.clear();
            // A ring retired meanwhile had given up all it accepted.
            paid = owed.iter().all(|(q, n)| {
                q.upgrade()
                    .is_none_or(|q| q.taken.load(Ordering::Acquire) >= *n)
            });
            if stopping(&shared) {
                break;
            }
        }
        let dropped = shared.stats().dropped;
        if dropped > dropped_logged && last_drop_log.elapsed() > Duration::from_secs(10) {
            tracing::warn!(
                target: "tdist",
                dropped = dropped - dropped_logged,
                "tdist span queue full: spans dropped (see Reporter::stats)"
            );
            dropped_logged = dropped;
            last_drop_log = Instant::now();
        }
        {
            let mut c = lock(&shared.control);
            // Rounds a shutdown cut short complete no flush: its flushers learn from `exited`
            // that the worker is gone without having delivered what they wait for.
            if paid && c.completed < target {
                c.completed = target;
                shared.done.notify_all();
            }
            if stop {
                c.exited = true;
                shared.done.notify_all();
                return;
            }
            if c.requested > c.completed || c.stop {
                continue;
            }
        }
        shared.sleeping.store(true, Ordering::Release);
        // A zero delay means "as soon as possible", not a worker spinning on a core.
        std::thread::park_timeout(cfg.schedule_delay.max(Duration::from_millis(1)));
        shared.sleeping.store(false, Ordering::Release);
    }
}

/// Moves spans from every thread's queue into `batch`, up to the worker's queue size, starting
/// at queue `first` (modulo their number), and retires the queues of threads that have exited
/// once they are empty.
///
/// A thread that has a large batch ready (half an export batch or more, as under load) has it
/// exported straight from its ring, where the records already are: moving each record into
/// `batch` first would copy it twice more on the worker, whose work competes with the
/// application for the cores. Threads with a few spans each are gathered into one batch.
fn drain(
    shared: &Shared,
    batch: &mut Vec<FinishedSpan>,
    queues: &mut Vec<Arc<LocalQueue>>,
    first: usize,
) {
    let cap = shared.config.max_queue_size;
    let export_size = shared.config.max_export_batch_size;
    // The registry lock is not held while exporting: `stats` takes it.
    queues.extend(lock(&shared.queues).iter().cloned());
    let start = first % queues.len().max(1);
    queues.rotate_left(start);
    for q in queues.iter() {
        let mut consumer = lock(&q.consumer);
        let ready = consumer.slots();
        if ready == 0 {
            continue;
        }
        if batch.is_empty() && ready >= export_size.div_ceil(2) {
            if let Ok(chunk) = consumer.read_chunk(ready) {
                let (first, second) = chunk.as_slices();
                for part in [first, second] {
                    for spans in part.chunks(export_size) {
                        export(shared, spans);
                    }
                }
                // Drops the exported records in their slots and frees the slots.
                chunk.commit_all();
                q.taken.fetch_add(ready as u64, Ordering::AcqRel);
            }
            continue;
        }
        let n = ready.min(cap.saturating_sub(batch.len()));
        if n == 0 {
            continue;
        }
        // Moving the records out only reads the slots; the producer later overwrites them.
        if let Ok(chunk) = consumer.read_chunk(n) {
            batch.extend(chunk);
            q.taken.fetch_add(n as u64, Ordering::AcqRel);
        }
    }
    queues.clear();
    lock(&shared.queues).retain(|q| {
        // The count's load is relaxed: the fence orders the reads after it (the ring's tail,
        // the counters) after the producer's last writes, which come before its release of
        // the queue.
        let orphaned = Arc::strong_count(q) == 1 && {
            std::sync::atomic::fence(Ordering::Acquire);
            lock(&q.consumer).is_empty()
        };
        if orphaned {
            shared
                .retired_accepted
                .fetch_add(q.accepted.load(Ordering::Acquire), Ordering::AcqRel);
            shared
                .retired_dropped
                .fetch_add(q.dropped.load(Ordering::Acquire), Ordering::AcqRel);
        }
        !orphaned
    });
}

/// Sends one batch, retrying retryable failures with doubling backoff inside the export timeout;
/// a destination that asks for a longer wait (`TransportError::retry_after`) gets it. A retry
/// goes through `Transport::resend` with the last failure, so a transport that delivered part of
/// the batch sends only the rest.
fn export(shared: &Shared, spans: &[FinishedSpan]) {
    let cfg = &shared.config;
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0;
    let mut last: Option<TransportError> = None;
    loop {
        let sent = super::send_catching_panics(&*shared.transport, spans, last.as_ref());
        match sent {
            Ok(()) => {
                shared.sent.fetch_add(spans.len() as u64, Ordering::AcqRel);
                return;
            }
            Err(e) => {
                attempt += 1;
                let wait = e.retry_delay().map_or(backoff, |asked| asked.max(backoff));
                // Saturating: a destination may ask for any wait, `Duration::MAX` included.
                let out_of_time = start.elapsed().saturating_add(wait) >= cfg.export_timeout;
                if !e.is_retryable() || attempt > cfg.max_retries || out_of_time || stopping(shared)
                {
                    fail(shared, spans.len(), &e);
                    return;
                }
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                last = Some(e);
            }
        }
    }
}

fn stopping(shared: &Shared) -> bool {
    lock(&shared.control).stop
}

/// Counts a batch of `n` spans given up after `e`: what `e` says was delivered as sent, the
/// rest as failed.
fn fail(shared: &Shared, n: usize, e: &TransportError) {
    let lost = e.undelivered(n);
    shared.sent.fetch_add((n - lost) as u64, Ordering::AcqRel);
    shared.failed.fetch_add(lost as u64, Ordering::AcqRel);
    tracing::debug!(target: "tdist", spans = lost, error = %e, "tdist transport failed");
}

/// At most this many emptied record boxes wait per thread for reuse (~12 KB).
const FREE_BOXES: usize = 32;

struct LocalEntry {
    reporter: u64,
    producer: Producer<FinishedSpan>,
    capacity: usize,
    queue: Arc<LocalQueue>,
    shared: Weak<Shared>,
    since_wake: usize,
}

/// What a thread keeps for the spans it finishes (one thread-local, so finishing a span takes
/// one borrow).
///
/// It has no destructor of its own, so it stays usable while the thread's other thread-locals
/// are destroyed (a span held in one is finished then). [`ExitGuard`] empties it instead when
/// the thread exits; the spans finished after that take [`submit_stray`]'s way.
struct ThreadState {
    /// This thread's ring for each reporter it has finished spans for.
    entries: ManuallyDrop<Vec<LocalEntry>>,
    /// Record boxes of spans this thread finished, for its next spans: a box is filled, read and
    /// emptied on one thread, so its cache lines stay on that core. The boxes are what is kept
    /// (a live span owns one), so `Vec<Box<_>>` is meant.
    #[allow(clippy::vec_box)]
    free: ManuallyDrop<Vec<Box<FinishedSpan>>>,
}

thread_local! {
    static LOCAL: RefCell<ThreadState> = const {
        RefCell::new(ThreadState {
            entries: ManuallyDrop::new(Vec::new()),
            free: ManuallyDrop::new(Vec::new()),
        })
    };
    /// Set up by a thread's first ring; its destructor releases the thread's rings (the worker
    /// drains and retires them) and boxes.
    static EXIT: ExitGuard = const { ExitGuard };
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let (entries, free) = LOCAL.with(|local| match local.try_borrow_mut() {
            Ok(mut local) => (
                std::mem::take(&mut *local.entries),
                std::mem::take(&mut *local.free),
            ),
            Err(_) => Default::default(),
        });
        drop(entries);
        drop(free);
    }
}

/// A record box for a new span: one this thread emptied before, else a new allocation.
#[inline]
pub(crate) fn record_box(
    context: crate::SpanContext,
    name: std::borrow::Cow<'static, str>,
    local: &'static crate::record::Endpoint,
    start: crate::clock::Stamp,
) -> Box<FinishedSpan> {
    let recycled = LOCAL
        .try_with(|local| local.try_borrow_mut().ok()?.free.pop())
        .ok()
        .flatten();
    match recycled {
        Some(mut boxed) => {
            boxed.restart(context, name, local, start);
            boxed
        }
        None => Box::new(FinishedSpan::started(context, name, local, start)),
    }
}

#[inline]
fn entry_index(local: &mut Vec<LocalEntry>, reporter: u64) -> Option<usize> {
    match local.iter().position(|e| e.reporter == reporter) {
        Some(i) => Some(i),
        None => {
            let entry = register(reporter, local)?;
            local.push(entry);
            Some(local.len() - 1)
        }
    }
}

/// Hands a finished span to reporter `id` from the current thread. Never blocks.
#[inline]
pub(crate) fn submit(reporter: u64, mut span: Box<FinishedSpan>) {
    // The record is taken from its box and pushed in one expression: every further move of the
    // 376 bytes (into a local, into the closure) showed up as a `memcpy` of its own.
    // `LOCAL` has no destructor, so this never fails; `with` would add its panic path here.
    let _ = LOCAL.try_with(|local| {
        let Ok(mut local) = local.try_borrow_mut() else {
            return submit_stray(reporter, span);
        };
        let ThreadState { entries, free } = &mut *local;
        let Some(idx) = entry_index(entries, reporter) else {
            // The thread is exiting, or the reporter has shut down.
            drop(local);
            return submit_stray(reporter, span);
        };
        let entry = &mut entries[idx];
        if push(entry, span.take()) {
            match entry.shared.upgrade() {
                Some(s) => s.wake(),
                None => {
                    entries.swap_remove(idx);
                }
            }
        }
        // The emptied box is kept for this thread's next span, up to `FREE_BOXES`.
        if free.len() < FREE_BOXES {
            free.push(span);
        }
    });
}

/// Pushes `record` onto `entry`'s ring, counting it accepted, or dropped when the ring is full;
/// whether the worker is due a wake (a quarter of the ring written since the last one).
#[inline]
fn push(entry: &mut LocalEntry, record: FinishedSpan) -> bool {
    let q = &entry.queue;
    match entry.producer.push(record) {
        Ok(()) => {
            // Only the ring's producer writes these counters: a plain load and store suffice.
            q.accepted
                .store(q.accepted.load(Ordering::Relaxed) + 1, Ordering::Release);
            entry.since_wake += 1;
        }
        Err(_) => {
            q.dropped
                .store(q.dropped.load(Ordering::Relaxed) + 1, Ordering::Release);
            entry.since_wake = usize::MAX / 2;
        }
    }
    let due = entry.since_wake >= entry.capacity / 4;
    if due {
        entry.since_wake = 0;
    }
    due
}

/// Spans a reporter's stray ring holds (see [`submit_stray`]).
const STRAY_CAPACITY: usize = 256;

/// The way in for a span finished where the thread's own rings cannot be used: in a
/// thread-local destructor after tdist's exit guard has run (a thread-local that holds a span,
/// or a runtime dropping its tasks at thread exit). The span goes onto the reporter's stray
/// ring, shared by such threads under a lock, and is delivered and counted like any other. A
/// reporter that has shut down takes nothing ("may not be delivered").
#[cold]
#[inline(never)]
fn submit_stray(reporter: u64, mut span: Box<FinishedSpan>) {
    let Some(shared) = find(reporter) else {
        return;
    };
    let mut stray = lock(&shared.stray);
    let entry = stray.get_or_insert_with(|| ring(&shared, STRAY_CAPACITY));
    if push(entry, span.take()) {
        shared.wake();
    }
}

/// The live reporter with this id.
fn find(reporter: u64) -> Option<Arc<Shared>> {
    lock(registry())
        .iter()
        .find(|(id, _)| *id == reporter)
        .and_then(|(_, w)| w.upgrade())
}

/// A thread's first span for `reporter`: its ring, made now. The rings of reporters that are
/// gone are released here too; a long-lived thread (a pool's) would otherwise keep one for
/// every tracer the program ever built and dropped, since nothing else visits them.
fn register(reporter: u64, local: &mut Vec<LocalEntry>) -> Option<LocalEntry> {
    local.retain(|e| e.shared.strong_count() > 0);
    // A thread whose exit guard has run (or cannot be set up) gets no ring: nothing would
    // release it.
    EXIT.try_with(|_| ()).ok()?;
    let shared = find(reporter)?;
    let capacity = shared.config.local_queue_size;
    Some(ring(&shared, capacity))
}

/// A new ring of `capacity` records, registered with `shared`'s worker.
fn ring(shared: &Arc<Shared>, capacity: usize) -> LocalEntry {
    let (producer, consumer) = RingBuffer::new(capacity);
    let queue = Arc::new(LocalQueue {
        consumer: Mutex::new(consumer),
        accepted: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        taken: AtomicU64::new(0),
    });
    lock(&shared.queues).push(queue.clone());
    LocalEntry {
        reporter: shared.id,
        producer,
        capacity,
        queue,
        shared: Arc::downgrade(shared),
        since_wake: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::InMemory;

    /// An exited thread's ring is released (by its exit guard) and, once drained, retired: a
    /// program that runs a thread per job does not keep a ring per thread it ever ran.
    #[test]
    fn an_exited_thread_s_ring_is_retired() {
        let sink = InMemory::new();
        let tracer = crate::Tracer::builder()
            .transport(sink.clone())
            .build()
            .unwrap();
        let reporter = tracer.reporter().expect("a reporter");
        for _ in 0..3 {
            let tracer = tracer.clone();
            std::thread::spawn(move || tracer.root_span("job").finish())
                .join()
                .unwrap();
        }
        // Two flushes: the first drains the rings, the second's wake finds them empty.
        reporter.flush(Duration::from_secs(5)).unwrap();
        let stats = reporter.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(stats.accepted, 3);
        assert_eq!(sink.spans().len(), 3);
        assert!(lock(&reporter.handle.shared.queues).is_empty());
    }

    /// A thread that outlives its tracers keeps no ring for those that are gone: its next new
    /// reporter's first span releases them.
    #[test]
    fn a_thread_keeps_no_ring_for_a_tracer_that_is_gone() {
        std::thread::spawn(|| {
            for _ in 0..3 {
                let tracer = crate::Tracer::builder()
                    .transport(InMemory::new())
                    .build()
                    .unwrap();
                tracer.root_span("job").finish();
                let gone = Arc::downgrade(&tracer.reporter().unwrap().handle.shared);
                drop(tracer);
                // The worker lets go of the reporter a moment after the last handle.
                let deadline = Instant::now() + Duration::from_secs(10);
                while gone.strong_count() > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let live = crate::Tracer::builder()
                .transport(InMemory::new())
                .build()
                .unwrap();
            live.root_span("job").finish();
            let rings = LOCAL.with(|l| l.borrow().entries.len());
            assert_eq!(rings, 1, "rings kept");
        })
        .join()
        .unwrap();
    }

    /// Absurd queue sizes (from the environment, say) are lowered, not a panic when the first
    /// span's ring is made.
    #[test]
    fn huge_queue_sizes_are_capped() {
        let sink = InMemory::new();
        let tracer = crate::Tracer::builder()
            .transport(sink.clone())
            .configure_reporter(|c| {
                c.local_queue_size = usize::MAX / 2;
                c.max_queue_size = usize::MAX / 2;
            })
            .build()
            .unwrap();
        std::thread::spawn({
            let tracer = tracer.clone();
            move || tracer.root_span("job").finish()
        })
        .join()
        .unwrap();
        tracer.flush().unwrap();
        assert_eq!(sink.spans().len(), 1);
    }
}
