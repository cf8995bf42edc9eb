//! Spans: started by a [`Tracer`](crate::Tracer), finished explicitly or on drop.
//!
//! An unsampled span carries only its context (so it still propagates ids and the decision) and
//! records nothing: no clock read, no allocation, no queue.
//!
//! ```
//! use tdist_core::export::InMemory;
//! use tdist_core::{Kind, Tracer};
//!
//! let sink = InMemory::new();
//! let tracer = Tracer::builder().service_name("shop").transport(sink.clone()).build().unwrap();
//! let root = tracer.root_span("checkout");
//! {
//!     let _in_root = root.enter();
//!     let mut child = tracer.span("charge");
//!     child.set_kind(Kind::Client);
//!     child.tag("amount", 42);
//! } // child finished on drop
//! root.finish();
//! tracer.flush().unwrap();
//! let spans = sink.spans();
//! assert_eq!(spans.len(), 2);
//! assert_eq!(spans[0].parent_id(), Some(spans[1].id()));
//! ```

use crate::clock::{now_ns, Stamp};
use crate::context::SpanContext;
use crate::current::{set_current, ContextGuard};
use crate::record::{Annotation, Endpoint, FinishedSpan, Kind, TagValue};
use std::borrow::Cow;

/// A unit of work in a trace.
#[derive(Debug)]
pub struct Span {
    context: SpanContext,
    reporter: u64,
    /// The record, boxed and filled in place: the span is a small handle to move around (into
    /// futures, across calls), an unsampled span never touches a record, and finishing hands
    /// the box itself to the reporter's queue instead of copying the record.
    recording: Option<Box<FinishedSpan>>,
}

impl Span {
    /// A span that records nothing and only carries `context`.
    pub fn noop(context: SpanContext) -> Span {
        Span {
            context,
            reporter: 0,
            recording: None,
        }
    }

    #[inline]
    pub(crate) fn recording(
        context: SpanContext,
        name: Cow<'static, str>,
        reporter: u64,
        local: &'static Endpoint,
    ) -> Span {
        Span {
            context,
            reporter,
            recording: Some(crate::export::record_box(
                context,
                name,
                local,
                Stamp::now(),
            )),
        }
    }

    /// This span's context, to make children of or to inject.
    #[inline]
    pub fn context(&self) -> SpanContext {
        self.context
    }

    /// Whether this span will be reported.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Makes this span's context current until the guard drops.
    pub fn enter(&self) -> ContextGuard {
        set_current(Some(self.context))
    }

    /// Renames the span (names are reported lower-case).
    #[inline]
    pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(r) = &mut self.recording {
            r.name = name.into();
        }
    }

    /// Sets the kind (client, server, producer, consumer); unset means local.
    #[inline]
    pub fn set_kind(&mut self, kind: Kind) {
        if let Some(r) = &mut self.recording {
            r.kind = Some(kind);
        }
    }

    /// Adds a tag. Values are formatted when the span is encoded, off the request path.
    #[inline]
    pub fn tag(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<TagValue>) {
        if let Some(r) = &mut self.recording {
            r.tags.push((key.into(), value.into()));
        }
    }

    /// Sets tag `key`, replacing the value it has (not on the request path: for `tracing`
    /// fields recorded again, which replace their value).
    pub(crate) fn replace_tag(&mut self, key: &'static str, value: TagValue) {
        if let Some(r) = &mut self.recording {
            if let Some(i) = r.tags.iter().position(|(k, _)| k == key) {
                r.tags.remove(i);
            }
            r.tags.push((Cow::Borrowed(key), value));
        }
    }

    /// Records a timestamped event.
    pub fn annotate(&mut self, value: impl Into<Cow<'static, str>>) {
        if let Some(r) = &mut self.recording {
            r.annotations.push(Annotation {
                timestamp_us: now_ns() / 1_000,
                value: value.into(),
            });
        }
    }

    /// Sets the peer of an RPC or messaging span.
    pub fn set_remote_endpoint(&mut self, endpoint: Endpoint) {
        if let Some(r) = &mut self.recording {
            r.remote = Some(Box::new(endpoint));
        }
    }

    /// Marks the span failed: the `error` tag, as Zipkin's UI reads it.
    pub fn set_error(&mut self, message: impl Into<Cow<'static, str>>) {
        let message = message.into();
        let message = if message.is_empty() {
            Cow::Borrowed("true")
        } else {
            message
        };
        self.tag("error", TagValue::Str(message));
    }

    /// Sets the start time (epoch microseconds), for spans whose work began before the span
    /// object existed.
    pub fn set_start_us(&mut self, timestamp_us: u64) {
        if let Some(r) = &mut self.recording {
            r.start = Stamp::UnixNs(timestamp_us.saturating_mul(1_000));
        }
    }

    /// Finishes the span now and hands it to the reporter.
    #[inline]
    pub fn finish(mut self) {
        if self.recording.is_some() {
            self.end(Stamp::now());
        }
    }

    /// Finishes the span at a given time (epoch microseconds).
    pub fn finish_at_us(mut self, timestamp_us: u64) {
        self.end(Stamp::UnixNs(timestamp_us.saturating_mul(1_000)));
    }

    /// Drops the span without reporting it.
    pub fn abandon(mut self) {
        self.recording = None;
    }

    #[inline]
    fn end(&mut self, end: Stamp) {
        let Some(mut r) = self.recording.take() else {
            return;
        };
        r.end = end;
        crate::export::submit(self.reporter, r);
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if self.recording.is_some() {
            self.end(Stamp::now());
        }
    }
}
