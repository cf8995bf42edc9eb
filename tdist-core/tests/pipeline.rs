//! The publishing pipeline: counted drops, a hanging transport that cannot slow the caller,
//! flush that delivers everything, retries, and the Zipkin JSON it produces.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{tracer, Flaky, Hanging};
use tdist_core::export::{InMemory, TransportError};
use tdist_core::{Endpoint, Kind, Sampler, SamplingState, TagValue, Tracer};

#[test]
fn flush_delivers_every_span_from_every_thread() {
    let (tracer, sink) = tracer("flush");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let tracer = tracer.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let mut s = tracer.root_span("work");
                    s.tag("thread", t);
                    s.tag("i", i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The threads have exited: their queues must still be drained.
    let stats = tracer.flush().unwrap();
    assert_eq!(sink.spans().len(), 1200);
    assert_eq!(stats.accepted, 1200);
    assert_eq!(stats.sent, 1200);
    assert_eq!(stats.dropped, 0);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let hanging = Hanging::default();
    let tracer = Tracer::builder()
        .transport(hanging.clone())
        .configure_reporter(|c| {
            c.local_queue_size = 64;
            c.max_queue_size = 64;
            c.max_export_batch_size = 64;
            c.schedule_delay = Duration::from_millis(5);
            c.shutdown_timeout = Duration::from_millis(100);
        })
        .build()
        .unwrap();
    for _ in 0..10_000 {
        tracer.root_span("overload").finish();
    }
    let s = tracer.stats();
    assert_eq!(s.accepted + s.dropped, 10_000);
    assert!(s.dropped >= 10_000 - 2 * 64 - 64, "{s:?}");
    // Memory stayed bounded: at most the thread queue plus the worker's batch are held.
    assert!(s.accepted <= 64 + 64 + 64, "{s:?}");
    hanging.release();
    let s = tracer.flush().unwrap();
    assert_eq!(s.sent, s.accepted);
}

#[test]
fn a_hanging_transport_does_not_slow_the_caller_and_flush_has_a_deadline() {
    let hanging = Hanging::default();
    let tracer = Tracer::builder()
        .transport(hanging.clone())
        .configure_reporter(|c| {
            c.schedule_delay = Duration::from_millis(1);
            c.shutdown_timeout = Duration::from_millis(200);
        })
        .build()
        .unwrap();
    tracer.root_span("first").finish();
    // Wait until the worker is stuck inside the transport.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hanging.calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(hanging.calls.load(Ordering::SeqCst), 1);
    // The application keeps going: 50k spans while the transport hangs. Not a timing
    // assertion: the loop finishing at all proves no call blocked on the transport.
    for _ in 0..50_000 {
        tracer.root_span("during outage").finish();
    }
    let s = tracer.stats();
    assert_eq!(s.accepted + s.dropped, 50_001);
    assert!(s.dropped > 0);
    let started = Instant::now();
    let err = tracer.flush().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.pending > 0);
    hanging.release();
    let s = tracer.flush().unwrap();
    assert_eq!(s.sent + s.failed, s.accepted);
}

#[test]
fn retryable_failures_are_retried_and_fatal_ones_are_not() {
    let sink = InMemory::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let tracer = Tracer::builder()
        .transport(Flaky {
            failures: AtomicUsize::new(2),
            retryable: true,
            sink: sink.clone(),
            calls: calls.clone(),
        })
        .build()
        .unwrap();
    tracer.root_span("retried").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (1, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(sink.spans().len(), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let tracer = Tracer::builder()
        .transport(Flaky {
            failures: AtomicUsize::new(1),
            retryable: false,
            sink: InMemory::new(),
            calls: calls.clone(),
        })
        .build()
        .unwrap();
    tracer.root_span("rejected").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (0, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Fails its first call with a retryable error that asks for `wait` (as HTTP's `Retry-After`),
/// then accepts; remembers when it was called.
struct AsksToWait {
    wait: Duration,
    calls: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl tdist_core::export::Transport for AsksToWait {
    fn send(
        &self,
        _spans: &[tdist_core::FinishedSpan],
    ) -> Result<(), tdist_core::export::TransportError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        if calls.len() == 1 {
            let e = tdist_core::export::TransportError::retryable("429 Too Many Requests");
            return Err(e.retry_after(self.wait));
        }
        Ok(())
    }
}

#[test]
fn a_wait_the_destination_asks_for_is_honored_within_the_export_timeout() {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tracer = Tracer::builder()
        .transport(AsksToWait {
            wait: Duration::from_millis(400),
            calls: calls.clone(),
        })
        .build()
        .unwrap();
    tracer.root_span("waited").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (1, 0));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    // Not the 50 ms of the first backoff step: the 400 ms asked for.
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(400),
        "{calls:?}"
    );

    // A wait longer than the export timeout gives the batch up at once instead of sleeping.
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tracer = Tracer::builder()
        .transport(AsksToWait {
            wait: Duration::from_secs(3600),
            calls: calls.clone(),
        })
        .configure_reporter(|c| c.export_timeout = Duration::from_secs(2))
        .build()
        .unwrap();
    tracer.root_span("given up").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (0, 1));
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[test]
fn unsampled_spans_propagate_but_record_nothing() {
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .sampler(Sampler::never())
        .transport(sink.clone())
        .build()
        .unwrap();
    let mut root = tracer.root_span("ignored");
    root.tag("k", "v");
    assert!(!root.is_recording());
    assert_eq!(root.context().sampling(), SamplingState::Deny);
    let child = tracer.child_span(&root.context(), "child");
    assert_eq!(child.context().parent_id(), Some(root.context().span_id()));
    drop(child);
    drop(root);
    assert_eq!(tracer.flush().unwrap().accepted, 0);
    assert!(sink.spans().is_empty());
}

#[test]
fn encoded_json_is_the_zipkin_v2_model() {
    let (tracer, sink) = tracer("Frontend");
    let mut s = tracer.root_span("GET /Users");
    s.set_kind(Kind::Server);
    s.tag("http.method", "GET");
    s.tag("http.status_code", 200);
    s.annotate("wire send");
    s.set_remote_endpoint(
        Endpoint::addr("127.0.0.1:8080".parse().unwrap()).with_service_name("Backend"),
    );
    let ctx = s.context();
    s.finish();
    tracer.flush().unwrap();
    let json = tdist_core::encode::json_list(&sink.spans());
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let span = &v[0];
    assert_eq!(span["traceId"], ctx.trace_id().to_string());
    assert_eq!(span["id"], ctx.span_id().to_string());
    assert!(span.get("parentId").is_none());
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(span["name"], "get /users");
    assert!(span["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000);
    assert!(span["duration"].as_u64().unwrap() >= 1);
    assert_eq!(span["localEndpoint"]["serviceName"], "frontend");
    assert_eq!(
        span["remoteEndpoint"],
        serde_json::json!({"serviceName":"backend","ipv4":"127.0.0.1","port":8080})
    );
    assert_eq!(span["tags"]["http.status_code"], "200");
    assert_eq!(span["annotations"][0]["value"], "wire send");
    assert!(span.get("debug").is_none() && span.get("shared").is_none());
    // Key order matches Zipkin's own writer.
    let text = String::from_utf8(json).unwrap();
    let order = [
        "\"traceId\"",
        "\"id\"",
        "\"kind\"",
        "\"name\"",
        "\"timestamp\"",
        "\"duration\"",
        "\"localEndpoint\"",
        "\"remoteEndpoint\"",
        "\"annotations\"",
        "\"tags\"",
    ];
    let pos: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn debug_and_shared_reach_the_encoder() {
    let (tracer, sink) = tracer("server");
    let remote = tdist_core::propagation::b3::parse_single(
        "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-d",
    )
    .unwrap();
    let s = tracer.join_span(remote, "get");
    s.finish();
    tracer.flush().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&tdist_core::encode::json_list(&sink.spans())).unwrap();
    assert_eq!(v[0]["debug"], true);
    assert_eq!(v[0]["shared"], true);
    assert_eq!(v[0]["id"], "a2fb4a1d1a96d312");
}

#[test]
fn dropping_the_last_handle_delivers_what_was_finished() {
    let sink = InMemory::new();
    {
        let tracer = Tracer::builder()
            .transport(sink.clone())
            .configure_reporter(|c| c.schedule_delay = Duration::from_secs(60))
            .build()
            .unwrap();
        for _ in 0..10 {
            tracer.root_span("late").finish();
        }
    }
    assert_eq!(sink.spans().len(), 10);
}

#[test]
fn installed_guard_sets_and_clears_the_global_tracer() {
    let sink = InMemory::new();
    {
        let _guard = Tracer::builder()
            .service_name("global")
            .transport(sink.clone())
            .install()
            .unwrap();
        Tracer::global().root_span("via global").finish();
    }
    assert_eq!(sink.spans().len(), 1);
    assert!(!Tracer::global().root_span("after").is_recording());
}

#[test]
fn a_panicking_transport_fails_its_batch_and_the_worker_lives_on() {
    struct PanicOnce(AtomicUsize, InMemory);
    impl tdist_core::export::Transport for PanicOnce {
        fn send(
            &self,
            spans: &[tdist_core::FinishedSpan],
        ) -> Result<(), tdist_core::export::TransportError> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("transport bug");
            }
            self.1.send(spans)
        }
    }
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .transport(PanicOnce(AtomicUsize::new(0), sink.clone()))
        .build()
        .unwrap();
    tracer.root_span("lost to the panic").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (0, 1));
    tracer.root_span("after").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (1, 1));
    assert_eq!(sink.spans()[0].name(), "after");

    // Inside a fan-out, the panic costs that destination its batch and no other destination.
    let sibling = InMemory::new();
    let fanout = tdist_core::export::Fanout::new()
        .with(PanicOnce(AtomicUsize::new(0), InMemory::new()))
        .with(sibling.clone());
    let tracer = Tracer::builder().transport(fanout).build().unwrap();
    tracer.root_span("beside the panic").finish();
    let s = tracer.flush().unwrap();
    assert_eq!((s.sent, s.failed), (0, 1));
    assert_eq!(sibling.spans()[0].name(), "beside the panic");
}

/// A transport whose `flush` panics: the flush and the last handle's drop (during a panic's
/// unwinding too, where a second panic would abort) carry on.
#[test]
fn a_transport_panicking_in_flush_does_not_escape() {
    struct PanicInFlush(InMemory);
    impl tdist_core::export::Transport for PanicInFlush {
        fn send(
            &self,
            spans: &[tdist_core::FinishedSpan],
        ) -> Result<(), tdist_core::export::TransportError> {
            self.0.send(spans)
        }
        fn flush(&self, _deadline: Instant) -> u64 {
            panic!("flush bug");
        }
    }
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .transport(PanicInFlush(sink.clone()))
        .build()
        .unwrap();
    tracer.root_span("work").finish();
    assert_eq!(tracer.flush().unwrap().sent, 1);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _tracer = tracer;
        panic!("the application's own panic");
    }));
    assert!(unwound.is_err());
    assert_eq!(sink.spans().len(), 1);
}

#[test]
fn a_detached_destination_that_hangs_holds_up_neither_its_siblings_nor_flush() {
    use tdist_core::export::{Detached, Fanout};
    let hanging = Hanging::default();
    let sink = InMemory::new();
    let collector = Detached::builder("hanging-collector")
        .capacity(100)
        .build(hanging.clone());
    let counts = collector.handle();
    let tracer = Tracer::builder()
        .transport(Fanout::new().with(sink.clone()).with(collector))
        .configure_reporter(|c| {
            c.schedule_delay = Duration::from_millis(1);
            c.max_export_batch_size = 50;
            c.shutdown_timeout = Duration::from_millis(200);
        })
        .build()
        .unwrap();
    for _ in 0..1000 {
        tracer.root_span("work").finish();
    }
    // The sibling gets every span although the collector hangs from its first batch on; flush
    // waits for the collector only until its deadline and says how much it still holds.
    let started = Instant::now();
    let err = tracer.flush().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sink.spans().len(), 1000);
    let c = counts.stats();
    assert_eq!(err.pending, c.pending);
    assert!(c.pending > 0 && c.pending <= 100, "{c:?}");
    assert_eq!(c.delivered + c.failed, 0);
    assert_eq!(
        c.pending + c.dropped,
        1000,
        "every span accounted for: {c:?}"
    );
    // The collector comes back: what it still held is delivered, and flush succeeds.
    hanging.release();
    tracer.flush().unwrap();
    let c = counts.stats();
    assert_eq!((c.delivered, c.pending), (1000 - c.dropped, 0), "{c:?}");
}

#[test]
fn shutdown_delivers_once_and_later_calls_return_at_once() {
    let hanging = Hanging::default();
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .transport(
            tdist_core::export::Fanout::new()
                .with(sink.clone())
                .with(tdist_core::export::Detached::new("never", hanging.clone())),
        )
        .configure_reporter(|c| c.shutdown_timeout = Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..10 {
        tracer.root_span("before").finish();
    }
    let err = tracer.shutdown().unwrap_err();
    assert_eq!(err.pending, 10, "the hanging collector still holds them");
    assert_eq!(sink.spans().len(), 10);
    // Already shut down: no second wait, here or when the tracer is dropped.
    let started = Instant::now();
    assert_eq!(tracer.shutdown().unwrap().sent, 10);
    drop(tracer);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no second 2 s wait"
    );
    assert_eq!(sink.spans().len(), 10);
    hanging.release();
}

#[test]
fn a_thread_s_next_span_starts_empty_after_a_full_one() {
    // Record boxes are reused by the thread that emptied them: nothing of a span with every
    // field set may leak into the thread's next spans.
    let (tracer, sink) = tracer("reuse");
    for round in 0..3 {
        let mut full = tracer.root_span("full");
        full.set_kind(Kind::Client);
        for i in 0..6 {
            full.tag(format!("owned.{i}"), format!("value {round} {i}"));
        }
        full.annotate(format!("event {round}"));
        full.set_remote_endpoint(Endpoint::service("peer"));
        full.set_error("boom");
        full.finish();
        tracer.root_span("plain").finish();
    }
    tracer.flush().unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 6);
    let plain: Vec<_> = spans.iter().filter(|s| s.name() == "plain").collect();
    assert_eq!(plain.len(), 3);
    for s in plain {
        assert_eq!(s.kind(), None);
        assert_eq!(s.tags().count(), 0, "{:?}", s.tags().collect::<Vec<_>>());
        assert!(s.annotations().is_empty());
        assert!(s.remote_endpoint().is_none());
    }
    for s in spans.iter().filter(|s| s.name() == "full") {
        assert_eq!(s.kind(), Some(Kind::Client));
        assert_eq!(s.tags().count(), 7);
        assert_eq!(s.annotations().len(), 1);
        assert_eq!(
            s.remote_endpoint().and_then(|e| e.service_name()),
            Some("peer")
        );
    }
}

/// Remembers the names of the spans of each batch it is given.
#[derive(Clone, Default)]
struct Batches(Arc<std::sync::Mutex<Vec<Vec<String>>>>);

impl tdist_core::export::Transport for Batches {
    fn send(
        &self,
        spans: &[tdist_core::FinishedSpan],
    ) -> Result<(), tdist_core::export::TransportError> {
        let names = spans.iter().map(|s| s.name().to_owned()).collect();
        self.0.lock().unwrap().push(names);
        Ok(())
    }
}

#[test]
fn a_busy_thread_s_spans_go_out_in_order_and_quiet_threads_share_a_batch() {
    let batches = Batches::default();
    let tracer = Tracer::builder()
        .transport(batches.clone())
        .configure_reporter(|c| {
            c.local_queue_size = 1024;
            c.max_export_batch_size = 100;
            c.schedule_delay = Duration::from_secs(3600);
        })
        .build()
        .unwrap();
    // One busy thread: its ring is exported as it stands, in batches of at most 100, also when
    // the spans ready wrap around the end of the ring (700 + 700 > 1024). The ring never
    // overflows: each phase fits in it even if the worker had not run.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..700 {
                tracer.root_span(i.to_string()).finish();
            }
            tracer.flush().unwrap();
            for i in 700..1400 {
                tracer.root_span(i.to_string()).finish();
            }
        });
    });
    tracer.flush().unwrap();
    let busy = std::mem::take(&mut *batches.0.lock().unwrap());
    assert!(
        busy.iter().all(|b| !b.is_empty() && b.len() <= 100),
        "{busy:?}"
    );
    let names: Vec<String> = busy.into_iter().flatten().collect();
    let expected: Vec<String> = (0..1400).map(|i| i.to_string()).collect();
    assert_eq!(names, expected);

    // Four quiet threads with three spans each: one batch of twelve.
    std::thread::scope(|s| {
        for t in 0..4 {
            let tracer = &tracer;
            s.spawn(move || {
                for i in 0..3 {
                    tracer.root_span(format!("{t}-{i}")).finish();
                }
            });
        }
    });
    let stats = tracer.flush().unwrap();
    let quiet = std::mem::take(&mut *batches.0.lock().unwrap());
    assert_eq!(quiet.len(), 1, "{quiet:?}");
    assert_eq!(quiet[0].len(), 12);
    assert_eq!((stats.accepted, stats.sent, stats.dropped), (1412, 1412, 0));
}

#[test]
fn times_are_read_on_the_span_and_converted_when_reported() {
    let (tracer, sink) = tracer("times");
    let before = tdist_core::now_us();
    let measured = tracer.root_span("measured");
    std::thread::sleep(Duration::from_millis(3));
    measured.finish();

    let mut given = tracer.root_span("given");
    given.set_start_us(1_000_000);
    given.finish_at_us(1_000_250);

    let mut backwards = tracer.root_span("backwards");
    backwards.set_start_us(2_000_000);
    backwards.finish_at_us(1_999_000);

    let mut started_earlier = tracer.root_span("started earlier");
    started_earlier.set_start_us(before - 10_000);
    started_earlier.finish();
    let after = tdist_core::now_us();

    tracer.flush().unwrap();
    let spans = sink.spans();
    let by_name = |n: &str| spans.iter().find(|s| s.name() == n).unwrap().clone();
    let m = by_name("measured");
    assert!((before..=after).contains(&m.timestamp_us()), "{m:?}");
    assert!(
        m.duration_us() >= 3_000 && m.duration_us() <= after - before + 1,
        "{m:?}"
    );
    let g = by_name("given");
    assert_eq!((g.timestamp_us(), g.duration_us()), (1_000_000, 250));
    assert_eq!(by_name("backwards").duration_us(), 1);
    let e = by_name("started earlier");
    assert_eq!(e.timestamp_us(), before - 10_000);
    assert!(e.duration_us() >= 10_000 && e.duration_us() <= after - before + 10_001);
}

/// Delivers the first half of a batch to `sink` and fails with a retryable partial failure;
/// on `resend`, delivers the rest, or (when `rest_fails`) fails the rest for good.
struct Halves {
    sink: InMemory,
    rest_fails: bool,
    sends: AtomicUsize,
    resends: AtomicUsize,
}

impl Halves {
    fn new(sink: &InMemory, rest_fails: bool) -> Halves {
        Halves {
            sink: sink.clone(),
            rest_fails,
            sends: AtomicUsize::new(0),
            resends: AtomicUsize::new(0),
        }
    }
}

/// What `Halves` leaves for `resend`: where the undelivered part starts.
struct From(usize);

impl tdist_core::export::Transport for Halves {
    fn send(&self, spans: &[tdist_core::FinishedSpan]) -> Result<(), TransportError> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        let half = spans.len() / 2;
        self.sink.send(&spans[..half])?;
        let e = TransportError::retryable("second half refused");
        Err(e.partial(spans.len() - half, From(half)))
    }

    fn resend(
        &self,
        spans: &[tdist_core::FinishedSpan],
        failure: &TransportError,
    ) -> Result<(), TransportError> {
        self.resends.fetch_add(1, Ordering::SeqCst);
        let From(start) = failure
            .resume::<From>()
            .expect("our own failure comes back");
        if self.rest_fails {
            let e = TransportError::fatal("second half rejected");
            return Err(e.partial(spans.len() - start, From(*start)));
        }
        self.sink.send(&spans[*start..])
    }
}

fn ten_spans(tracer: &Tracer) -> tdist_core::export::Stats {
    for i in 0..10 {
        tracer.root_span(format!("s{i}")).finish();
    }
    tracer.flush().unwrap()
}

/// Each span's name, sorted: a span delivered twice shows up twice.
fn names(sink: &InMemory) -> Vec<String> {
    let mut names: Vec<String> = sink.spans().iter().map(|s| s.name().to_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_retry_after_a_partial_failure_sends_only_the_rest_and_each_span_is_counted_once() {
    let all: Vec<String> = {
        let mut v: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        v.sort();
        v
    };
    // One transport that delivers half, then the rest on the retry.
    let sink = InMemory::new();
    let halves = Arc::new(Halves::new(&sink, false));
    let tracer = Tracer::builder().transport(halves.clone()).build().unwrap();
    let s = ten_spans(&tracer);
    assert_eq!((s.sent, s.failed), (10, 0));
    assert_eq!(names(&sink), all);
    assert_eq!(
        halves.resends.load(Ordering::SeqCst),
        halves.sends.load(Ordering::SeqCst)
    );

    // The rest rejected for good: half counted as sent, half as failed, nothing twice.
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .transport(Halves::new(&sink, true))
        .build()
        .unwrap();
    let s = ten_spans(&tracer);
    assert_eq!(s.sent + s.failed, 10);
    assert_eq!(s.sent as usize, sink.spans().len());
    assert!(s.failed >= 5, "{s:?}");

    // Beside a destination that took the batch: the retry goes to the one that failed only.
    let (file, remote) = (InMemory::new(), InMemory::new());
    let halves = Arc::new(Halves::new(&remote, false));
    let fanout = tdist_core::export::Fanout::new()
        .with(file.clone())
        .with(halves.clone());
    let tracer = Tracer::builder().transport(fanout).build().unwrap();
    let s = ten_spans(&tracer);
    assert_eq!((s.sent, s.failed), (10, 0));
    assert_eq!(
        names(&file),
        all,
        "the destination that took the batch got it once"
    );
    assert_eq!(names(&remote), all);

    // Behind Detached, which retries on its own thread.
    let remote = InMemory::new();
    let detached = tdist_core::export::Detached::builder("remote")
        .retries(2)
        .build(Halves::new(&remote, false));
    let handle = detached.handle();
    let tracer = Tracer::builder().transport(detached).build().unwrap();
    ten_spans(&tracer);
    let d = handle.stats();
    assert_eq!((d.delivered, d.failed), (10, 0), "{d:?}");
    assert_eq!(names(&remote), all);

    // A destination that refused the batch for good is not asked again while another retries;
    // its spans count as failed (a span is delivered when every destination has it).
    let calls = Arc::new(AtomicUsize::new(0));
    let refusing = Flaky {
        failures: AtomicUsize::new(usize::MAX),
        retryable: false,
        sink: InMemory::new(),
        calls: calls.clone(),
    };
    let remote = InMemory::new();
    let halves = Arc::new(Halves::new(&remote, false));
    let fanout = tdist_core::export::Fanout::new()
        .with(refusing)
        .with(halves.clone());
    let tracer = Tracer::builder().transport(fanout).build().unwrap();
    let s = ten_spans(&tracer);
    assert_eq!((s.sent, s.failed), (0, 10));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        halves.sends.load(Ordering::SeqCst)
    );
    assert_eq!(names(&remote), all);
}

/// Counts calls and spans; each call takes a little while, as a remote collector's would.
#[derive(Default)]
struct SlowCounter {
    calls: AtomicUsize,
    spans: AtomicUsize,
}

impl tdist_core::export::Transport for SlowCounter {
    fn send(&self, spans: &[tdist_core::FinishedSpan]) -> Result<(), TransportError> {
        std::thread::sleep(Duration::from_millis(2));
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.spans.fetch_add(spans.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// Under a steady load the worker still batches and a flush still completes once what was
/// finished before it is delivered. (The worker used to drain until every ring was empty,
/// which never happened under load: each flush waited out its deadline, and the transport got
/// a few spans per call instead of batches.)
#[test]
fn under_a_steady_load_flush_completes_and_batches_stay_large() {
    let counter = Arc::new(SlowCounter::default());
    let tracer = Tracer::builder()
        .transport(counter.clone())
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (tracer, stop) = (tracer.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    tracer.root_span("steady").finish();
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let flushed = tracer.flush();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let s = flushed.expect("the flush completed while the load went on");
    assert_eq!(s.failed + s.dropped, 0, "{s:?}");
    let s = tracer.flush().unwrap();
    let (calls, spans) = (
        counter.calls.load(Ordering::SeqCst),
        counter.spans.load(Ordering::SeqCst),
    );
    assert_eq!(spans as u64, s.sent);
    assert!(
        spans >= 50 * calls,
        "{spans} spans in {calls} calls: batches of a few spans"
    );
}

/// A tag set twice reads back as its last value, the one the encoders report.
#[test]
fn a_tag_set_twice_reads_back_as_its_last_value() {
    let (tracer, sink) = tracer("tags");
    let mut span = tracer.root_span("twice");
    span.tag("http.status_code", 500i64);
    span.tag("http.status_code", 200i64);
    span.finish();
    tracer.flush().unwrap();
    let span = &sink.spans()[0];
    assert_eq!(span.tag("http.status_code"), Some(&TagValue::I64(200)));
    let json =
        String::from_utf8(tdist_core::encode::json_list(std::slice::from_ref(span))).unwrap();
    assert!(json.contains(r#""http.status_code":"200""#), "{json}");
}

/// A span tagged in a loop (past the pairwise-compared few) reports each key once, with its last
/// value, in the order those last values were set, as a short list does.
#[test]
fn many_tags_report_each_key_once_with_its_last_value() {
    let (tracer, sink) = tracer("tags");
    let mut span = tracer.root_span("loop");
    for round in 0..5i64 {
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            span.tag(key, round);
        }
    }
    span.tag("c", "late");
    span.finish();
    tracer.flush().unwrap();
    let span = &sink.spans()[0];
    let reported: Vec<(String, TagValue)> = span
        .reported_tags()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    let mut expected: Vec<(String, TagValue)> = ["a", "b", "d", "e", "f", "g", "h"]
        .iter()
        .map(|k| (k.to_string(), TagValue::I64(4)))
        .collect();
    expected.push(("c".into(), TagValue::from("late")));
    assert_eq!(reported, expected);
}

/// Sends to an `InMemory` after a pause, as a slow collector would.
struct SlowSink(InMemory, Duration);

impl tdist_core::export::Transport for SlowSink {
    fn send(&self, spans: &[tdist_core::FinishedSpan]) -> Result<(), TransportError> {
        std::thread::sleep(self.1);
        tdist_core::export::Transport::send(&self.0, spans)
    }
}

/// A flush returns only once the spans finished before it are delivered, even while busy
/// threads keep refilling their queues faster than the transport takes them and a quiet
/// thread's spans sit behind theirs. (Its rounds were once bounded instead, and a flush could
/// return `Ok` with a quiet thread's spans still queued.)
#[test]
fn a_flush_under_overload_still_covers_a_quiet_thread_s_spans() {
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .transport(SlowSink(sink.clone(), Duration::from_millis(30)))
        .configure_reporter(|c| {
            c.max_queue_size = 4096;
            c.max_export_batch_size = 4096;
            c.local_queue_size = 1024;
            c.shutdown_timeout = Duration::from_secs(30);
        })
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..5)
        .map(|_| {
            let (tracer, stop) = (tracer.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    tracer.root_span("busy").finish();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = tracer.clone();
    std::thread::spawn(move || {
        for _ in 0..100 {
            t.root_span("quiet").finish();
        }
    })
    .join()
    .unwrap();
    let flushed = tracer.flush();
    let quiet = sink.spans().iter().filter(|s| s.name() == "quiet").count();
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    flushed.expect("the flush completed");
    assert_eq!(
        quiet, 100,
        "every span finished before the flush was delivered by it"
    );
}

thread_local! {
    static HELD: std::cell::RefCell<Option<tdist_core::Span>> = const { std::cell::RefCell::new(None) };
}

/// Spans finished while a thread exits, by the destructor of a thread-local that holds them,
/// are delivered and counted whether that destructor runs before or after tdist's own.
#[test]
fn spans_finished_by_thread_local_destructors_are_delivered() {
    let (tracer, sink) = tracer("exiting");
    for held_first in [true, false] {
        let tracer = tracer.clone();
        std::thread::spawn(move || {
            // Thread-locals are destroyed in the reverse order of their first use.
            if held_first {
                HELD.with(|h| *h.borrow_mut() = Some(tracer.root_span("held")));
                tracer.root_span("before").finish();
            } else {
                tracer.root_span("before").finish();
                HELD.with(|h| *h.borrow_mut() = Some(tracer.root_span("held")));
            }
        })
        .join()
        .unwrap();
    }
    let stats = tracer.flush().unwrap();
    let mut names = names(&sink);
    names.sort();
    assert_eq!(names, ["before", "before", "held", "held"]);
    assert_eq!(stats.accepted, 4);
    assert_eq!(stats.sent, 4);
    assert_eq!(stats.dropped, 0);
}

/// A destination that asks for the longest wait there is (as a `Retry-After` of 2^64 - 1
/// seconds would) gets its batch given up at once; the worker goes on. (Adding the wait to the
/// time spent overflowed, and the panic took the worker thread, and every later span, with it.)
#[test]
fn an_endless_wait_asked_for_gives_the_batch_up_and_the_worker_lives_on() {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tracer = Tracer::builder()
        .transport(AsksToWait {
            wait: Duration::MAX,
            calls: calls.clone(),
        })
        .configure_reporter(|c| c.shutdown_timeout = Duration::from_secs(2))
        .build()
        .unwrap();
    tracer.root_span("given up").finish();
    let s = tracer.flush().expect("the worker is alive");
    assert_eq!((s.sent, s.failed), (0, 1));
    tracer.root_span("after").finish();
    let s = tracer.flush().expect("the worker is alive");
    assert_eq!((s.sent, s.failed), (1, 1));
}

/// `Duration::MAX` as a flush or shutdown timeout means "no deadline"; it is not a panic
/// (computing the deadline overflowed, in `Drop` too when it was the shutdown timeout).
#[test]
fn the_longest_timeout_is_no_deadline() {
    let sink = InMemory::new();
    let detached = tdist_core::export::Detached::new("unbounded", sink.clone());
    let handle = detached.handle();
    let tracer = Tracer::builder()
        .transport(detached)
        .configure_reporter(|c| c.shutdown_timeout = Duration::MAX)
        .build()
        .unwrap();
    tracer.root_span("a").finish();
    let reporter = tracer.reporter().unwrap();
    assert_eq!(reporter.flush(Duration::MAX).unwrap().sent, 1);
    assert_eq!(handle.flush(Duration::MAX), 0);
    tracer.root_span("b").finish();
    assert_eq!(tracer.flush().unwrap().sent, 2);
    drop(tracer);
    assert_eq!(sink.spans().len(), 2);
}

/// A flush that a shutdown cuts short says so. (The worker marked the flush complete when
/// shutdown stopped its rounds early, so a flush on another thread returned `Ok` with spans
/// finished before it still queued, never to be delivered.)
#[test]
fn a_flush_cut_short_by_a_shutdown_is_not_ok() {
    let hanging = Hanging::default();
    let tracer = Tracer::builder()
        .transport(hanging.clone())
        .configure_reporter(|c| {
            // One round takes four quiet threads' spans: nine need three rounds.
            c.max_queue_size = 4;
            c.max_export_batch_size = 4;
            c.schedule_delay = Duration::from_secs(3600);
        })
        .build()
        .unwrap();
    let reporter = tracer.reporter().unwrap().clone();
    // The worker has had its first wake, and sleeps until asked.
    reporter.flush(Duration::from_secs(5)).unwrap();
    for _ in 0..9 {
        let tracer = tracer.clone();
        std::thread::spawn(move || tracer.root_span("quiet").finish())
            .join()
            .unwrap();
    }
    let flushing = {
        let reporter = reporter.clone();
        std::thread::spawn(move || reporter.flush(Duration::from_secs(30)))
    };
    // The flush's first round is in the transport.
    while hanging.calls.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(reporter.shutdown(Duration::from_millis(50)).is_err());
    hanging.release();
    let flushed = flushing.join().unwrap();
    let err = flushed.expect_err("the shutdown cut the flush short");
    assert!(err.pending > 0, "{err:?}");
}
