//! Shared helpers for tdist-core's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tdist_core::export::{InMemory, Transport, TransportError};
use tdist_core::{FinishedSpan, Tracer};

/// A tracer with a fast schedule and an in-memory sink.
pub fn tracer(service: &'static str) -> (Tracer, InMemory) {
    let sink = InMemory::new();
    let tracer = Tracer::builder()
        .service_name(service)
        .transport(sink.clone())
        .configure_reporter(|c| c.schedule_delay = Duration::from_millis(20))
        .build()
        .unwrap();
    (tracer, sink)
}

/// A transport that blocks every call until released (or forever).
#[derive(Clone, Default)]
pub struct Hanging {
    pub released: Arc<(Mutex<bool>, Condvar)>,
    pub calls: Arc<AtomicUsize>,
}

impl Hanging {
    pub fn release(&self) {
        *self.released.0.lock().unwrap() = true;
        self.released.1.notify_all();
    }
}

impl Transport for Hanging {
    fn send(&self, _spans: &[FinishedSpan]) -> Result<(), TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut r = self.released.0.lock().unwrap();
        while !*r {
            r = self.released.1.wait(r).unwrap();
        }
        Ok(())
    }
}

/// A transport that fails the first `failures` calls, then delivers to `sink`.
pub struct Flaky {
    pub failures: AtomicUsize,
    pub retryable: bool,
    pub sink: InMemory,
    pub calls: Arc<AtomicUsize>,
}

impl Transport for Flaky {
    fn send(&self, spans: &[FinishedSpan]) -> Result<(), TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(if self.retryable {
                TransportError::retryable("503 from collector")
            } else {
                TransportError::fatal("400 from collector")
            });
        }
        self.sink.send(spans)
    }
}
