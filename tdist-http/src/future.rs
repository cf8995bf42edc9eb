//! The response future and body shared by the server and client layers: the span lives until
//! the response body ends, not until its headers are ready.

use bytes::Buf;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tdist_core::{set_current, Span, WithContext};

pin_project_lite::pin_project! {
    /// The response future of [`TraceServer`](crate::TraceServer) and
    /// [`TraceClient`](crate::TraceClient): polls the inner future with the span's context
    /// current, tags the status, and hands the span to the response body.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: WithContext<F>,
        span: Option<Span>,
        error_from: u16,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: WithContext<F>, span: Span, error_from: u16) -> ResponseFuture<F> {
        ResponseFuture {
            inner,
            span: Some(span),
            error_from,
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
        let out = std::task::ready!(this.inner.poll(cx));
        let mut span = this.span.take();
        Poll::Ready(match out {
            Ok(response) => {
                if let Some(span) = span.as_mut().filter(|s| s.is_recording()) {
                    let status = response.status().as_u16();
                    span.tag("http.status_code", status);
                    if status >= *this.error_from {
                        span.set_error(status.to_string());
                    }
                }
                Ok(response.map(|body| TracedBody::new(body, span)))
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
    }
}

impl<B> TracedBody<B> {
    /// Wraps `inner`; `span` (if any) finishes when the body ends.
    #[inline]
    pub fn new(inner: B, span: Option<Span>) -> TracedBody<B> {
        TracedBody { inner, span }
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
                this.inner.as_mut().poll_frame(cx)
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
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
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
