//! The response future and body shared by the server and client layers: the span lives until
//! the response body ends, not until its headers are ready.

use bytes::Buf;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tdist_core::{set_current, Span, TagValue, TaskSlot};

pin_project_lite::pin_project! {
    /// The response future of [`TraceServer`](crate::TraceServer) and
    /// [`TraceClient`](crate::TraceClient): polls the inner future with the span's context
    /// current (and drops it so), tags the status, and hands the span to the response body.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        slot: TaskSlot,
        span: Option<Span>,
        error_from: u16,
        grpc: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.slot.drop_inner(this.inner);
        }
    }
}

/// Marks its span failed when dropped, which happens only while a poll of the inner future or
/// body unwinds: the poll forgets it otherwise. A panic would otherwise leave a span that reads
/// as a success: the runtime catches it and drops the future or body later, when nothing tells
/// a panic from a caller that went away (which leaves the span unmarked).
struct MarkOnUnwind<'a>(&'a mut Option<Span>, &'static str);

impl Drop for MarkOnUnwind<'_> {
    #[cold]
    fn drop(&mut self) {
        if let Some(span) = self.0.as_mut().filter(|s| s.is_recording()) {
            span.set_error(self.1);
        }
    }
}

impl<F> ResponseFuture<F> {
    /// Runs `call` (the inner service's `call`) with `span`'s context current and wraps the
    /// future it returns: the common end of the layers' `call`. Statuses from `error_from` up
    /// mark the span as an error; `grpc` reads the outcome of a gRPC call from `grpc-status`.
    #[inline]
    pub(crate) fn call(span: Span, error_from: u16, grpc: bool, call: impl FnOnce() -> F) -> Self {
        let fut = {
            let _current = set_current(Some(span.context()));
            call()
        };
        ResponseFuture::new(fut, span, error_from, grpc)
    }

    #[inline]
    pub(crate) fn new(inner: F, span: Span, error_from: u16, grpc: bool) -> ResponseFuture<F> {
        ResponseFuture {
            inner: Some(inner),
            slot: TaskSlot::new(Some(span.context())),
            span: Some(span),
            error_from,
            grpc,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Dropped only if the poll unwinds; the normal path forgets it and pays nothing.
        let unwinding = MarkOnUnwind(this.span, "the service panicked before its response");
        let polled = this.slot.poll_inner(this.inner, cx);
        std::mem::forget(unwinding);
        let out = std::task::ready!(polled);
        let mut span = this.span.take();
        let mut grpc_trailers = *this.grpc;
        Poll::Ready(match out {
            Ok(response) => {
                if let Some(span) = span.as_mut().filter(|s| s.is_recording()) {
                    let status = response.status().as_u16();
                    span.tag("http.status_code", status);
                    // An empty map costs a null check; only a handler that set details pays more.
                    let error_given = !response.extensions().is_empty()
                        && SpanDetails::apply_from(response.extensions(), span);
                    if status >= *this.error_from && !error_given {
                        span.set_error(status.to_string());
                    }
                    // A gRPC call that fails before any message may answer with its status in
                    // the headers and no trailers.
                    if grpc_trailers && crate::grpc::record_status(span, response.headers()) {
                        grpc_trailers = false;
                    }
                }
                Ok(response.map(|body| TracedBody {
                    inner: body,
                    span,
                    grpc_trailers,
                }))
            }
            Err(e) => {
                if let Some(mut span) = span {
                    if span.is_recording() {
                        span.set_error(e.to_string());
                    }
                    span.finish();
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that finishes its span when the body ends: at end of stream, on a body
    /// error (tagged), or when dropped before the end (a client that went away).
    ///
    /// While a frame is produced the span's context is current, so work done by a streaming
    /// body belongs to the trace too.
    #[derive(Debug)]
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Option<Span>,
        // Whether trailers carry a gRPC call's status.
        grpc_trailers: bool,
    }

}

impl<B> TracedBody<B> {
    /// Wraps `inner`; `span` (if any) finishes when the body ends.
    #[inline]
    pub fn new(inner: B, span: Option<Span>) -> TracedBody<B> {
        TracedBody {
            inner,
            span,
            grpc_trailers: false,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether the span is still open.
    pub fn span_open(&self) -> bool {
        self.span.is_some()
    }
}

impl<B> Body for TracedBody<B>
where
    B: Body,
    B::Data: Buf,
    B::Error: fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = match this.span.as_ref() {
            Some(span) => {
                let _current = set_current(Some(span.context()));
                // Dropped only if the poll unwinds (before `_current` restores the context):
                // the normal path forgets it and pays nothing.
                let unwinding = MarkOnUnwind(&mut *this.span, "the response body panicked");
                let polled = this.inner.as_mut().poll_frame(cx);
                std::mem::forget(unwinding);
                polled
            }
            None => this.inner.as_mut().poll_frame(cx),
        };
        let done = match &polled {
            Poll::Pending => false,
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(e))) => {
                if let Some(span) = this.span.as_mut().filter(|s| s.is_recording()) {
                    span.set_error(e.to_string());
                }
                true
            }
            Poll::Ready(Some(Ok(frame))) => {
                if *this.grpc_trailers {
                    if let (Some(trailers), Some(span)) = (
                        frame.trailers_ref(),
                        this.span.as_mut().filter(|s| s.is_recording()),
                    ) {
                        crate::grpc::record_status(span, trailers);
                    }
                }
                this.inner.is_end_stream()
            }
        };
        if done {
            if let Some(span) = this.span.take() {
                span.finish();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a handler adds to its request's span: tags, a name, an error. Put it in the response's
/// extensions (in axum, return `Extension(details)` beside the body) and the layer copies it onto
/// the span when the response arrives (it stays in the extensions); the handler needs no handle
/// on the span, and a response without extensions pays one null check.
///
/// A span that is not recorded ignores it. An error given here replaces the one the layer would
/// derive from a 5xx (server) or 4xx/5xx (client) status.
///
/// ```
/// use http::Response;
/// use tdist_http::SpanDetails;
///
/// let mut response = Response::new("order placed");
/// response.extensions_mut().insert(
///     SpanDetails::new()
///         .name("POST /orders")
///         .tag("order.id", 42)
///         .tag("customer.tier", "gold"),
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpanDetails {
    name: Option<Cow<'static, str>>,
    tags: Vec<(Cow<'static, str>, TagValue)>,
    error: Option<Cow<'static, str>>,
}

impl SpanDetails {
    /// Nothing to add yet.
    pub fn new() -> SpanDetails {
        SpanDetails::default()
    }

    /// Renames the span (a route the layer could not know, say).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> SpanDetails {
        self.name = Some(name.into());
        self
    }

    /// Adds a tag.
    pub fn tag(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<TagValue>,
    ) -> SpanDetails {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Marks the span failed with `message` (`error` tag), whatever the status.
    pub fn error(mut self, message: impl Into<Cow<'static, str>>) -> SpanDetails {
        self.error = Some(message.into());
        self
    }

    /// Applies the details found in `extensions` to `span`; whether they carried an error.
    /// Out of line: most responses have no extensions, and those that do rarely have details.
    #[inline(never)]
    fn apply_from(extensions: &http::Extensions, span: &mut Span) -> bool {
        let Some(details) = extensions.get::<SpanDetails>() else {
            return false;
        };
        if let Some(name) = &details.name {
            span.set_name(name.clone());
        }
        for (key, value) in &details.tags {
            span.tag(key.clone(), value.clone());
        }
        match &details.error {
            Some(message) => {
                span.set_error(message.clone());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::task::Waker;
    use tdist_core::export::InMemory;
    use tdist_core::{current, SpanContext, Tracer};

    /// What was current at each poll and at the drop.
    type Seen = Arc<Mutex<Vec<(&'static str, Option<SpanContext>)>>>;

    /// Pending once, then ready; records the current context on every poll and on drop.
    struct Probe {
        polls: usize,
        seen: Seen,
    }

    impl Future for Probe {
        type Output = Result<Response<String>, std::convert::Infallible>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.seen.lock().unwrap().push(("poll", current()));
            self.polls += 1;
            if self.polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(Response::new(String::new())))
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.seen.lock().unwrap().push(("drop", current()));
        }
    }

    #[test]
    fn the_inner_future_is_polled_and_dropped_with_the_span_current() {
        let tracer = Tracer::builder()
            .transport(InMemory::new())
            .build()
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        for cancel in [false, true] {
            let seen = Seen::default();
            let span = tracer.root_span("request");
            let ctx = Some(span.context());
            let probe = Probe {
                polls: 0,
                seen: seen.clone(),
            };
            let mut fut = Box::pin(ResponseFuture::new(probe, span, 500, false));
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            if !cancel {
                assert!(fut.as_mut().poll(&mut cx).is_ready());
            }
            drop(fut);
            assert_eq!(current(), None, "nothing leaks to the thread");
            let seen = seen.lock().unwrap();
            let expected: &[&str] = if cancel {
                &["poll", "drop"]
            } else {
                &["poll", "poll", "drop"]
            };
            assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), expected);
            assert!(seen.iter().all(|s| s.1 == ctx), "{seen:?}");
        }
    }
}
