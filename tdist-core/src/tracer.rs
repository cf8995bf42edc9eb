//! The tracer: a service's identity, its sampler, its propagation formats and its reporter.
//!
//! ```
//! use tdist_core::export::InMemory;
//! use tdist_core::propagation::Propagation;
//! use tdist_core::{Kind, Tracer};
//! use std::collections::HashMap;
//!
//! let sink = InMemory::new();
//! let client = Tracer::builder().service_name("frontend").transport(sink.clone()).build().unwrap();
//! let server = client.with_service_name("backend");
//!
//! // Client side: a CLIENT span, its context injected into the request headers.
//! let mut call = client.root_span("get /users");
//! call.set_kind(Kind::Client);
//! let mut headers: HashMap<String, String> = HashMap::new();
//! client.propagation().inject(&call.context(), &mut headers);
//!
//! // Server side: B3 shares the caller's span id.
//! let handled = server.join_span(Propagation::default().extract(&headers), "get /users");
//! assert_eq!(handled.context().span_id(), call.context().span_id());
//! assert!(handled.context().shared());
//! ```

use crate::config::{ConfigError, TracerBuilder};
use crate::context::{Extracted, SamplingState, SpanContext};
use crate::current::current;
use crate::export::{FlushError, Reporter, Stats};
use crate::propagation::Propagation;
use crate::record::{intern_endpoint, Endpoint};
use crate::sampler::Sampler;
use crate::span::Span;
use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Starts spans for one service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: &'static Endpoint,
    sampler: Sampler,
    propagation: Propagation,
    reporter: Option<Reporter>,
    trace_id_128: bool,
    shutdown_timeout: Duration,
}

impl Tracer {
    /// A builder with defaults (service `unknown_service`, parent-based always-on, B3 multi,
    /// no transport).
    pub fn builder() -> TracerBuilder {
        TracerBuilder::default()
    }

    /// A builder from the standard environment variables (see the README's table).
    pub fn from_env() -> Result<TracerBuilder, ConfigError> {
        TracerBuilder::from_env()
    }

    pub(crate) fn from_parts(
        local: Endpoint,
        sampler: Sampler,
        propagation: Propagation,
        reporter: Option<Reporter>,
        trace_id_128: bool,
        shutdown_timeout: Duration,
    ) -> Tracer {
        Tracer {
            inner: Arc::new(Inner {
                local: intern_endpoint(local),
                sampler,
                propagation,
                reporter,
                trace_id_128,
                shutdown_timeout,
            }),
        }
    }

    /// A tracer that records nothing but still propagates contexts it is given.
    pub fn noop() -> Tracer {
        Tracer::from_parts(
            Endpoint::service("unknown_service"),
            Sampler::never(),
            Propagation::default(),
            None,
            true,
            Duration::ZERO,
        )
    }

    /// The same reporter, sampler and propagation for another service name (several services
    /// in one process, as in the demo).
    pub fn with_service_name(&self, name: impl Into<Cow<'static, str>>) -> Tracer {
        let local = self.inner.local.clone().with_service_name(name);
        Tracer {
            inner: Arc::new(Inner {
                local: intern_endpoint(local),
                sampler: self.inner.sampler.clone(),
                propagation: self.inner.propagation.clone(),
                reporter: self.inner.reporter.clone(),
                trace_id_128: self.inner.trace_id_128,
                shutdown_timeout: self.inner.shutdown_timeout,
            }),
        }
    }

    /// The process-wide tracer set by [`TracerBuilder::install`]; a no-op tracer before that.
    pub fn global() -> Tracer {
        GLOBAL
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(Tracer::noop)
    }

    pub(crate) fn set_global(t: Option<Tracer>) -> Option<Tracer> {
        std::mem::replace(&mut *GLOBAL.write().unwrap_or_else(|p| p.into_inner()), t)
    }

    /// This service's endpoint.
    pub fn local_endpoint(&self) -> &Endpoint {
        self.inner.local
    }

    /// The sampler.
    pub fn sampler(&self) -> &Sampler {
        &self.inner.sampler
    }

    /// The formats this tracer injects.
    pub fn propagation(&self) -> &Propagation {
        &self.inner.propagation
    }

    /// The reporter, if spans are published.
    pub fn reporter(&self) -> Option<&Reporter> {
        self.inner.reporter.as_ref()
    }

    /// The reporter's counters (zero without a reporter).
    pub fn stats(&self) -> Stats {
        self.inner
            .reporter
            .as_ref()
            .map(Reporter::stats)
            .unwrap_or_default()
    }

    /// Delivers every span finished so far, within the shutdown timeout.
    pub fn flush(&self) -> Result<Stats, FlushError> {
        match &self.inner.reporter {
            Some(r) => r.flush(self.inner.shutdown_timeout),
            None => Ok(Stats::default()),
        }
    }

    /// Delivers every span finished so far within the shutdown timeout, then stops the
    /// reporter (shared by every clone and [`with_service_name`](Self::with_service_name)
    /// tracer): spans finished afterwards may not be delivered. This is what dropping the last
    /// handle does, for a program that wants the final counts or still holds other handles;
    /// later calls, and that drop, return at once.
    pub fn shutdown(&self) -> Result<Stats, FlushError> {
        match &self.inner.reporter {
            Some(r) => r.shutdown(self.inner.shutdown_timeout),
            None => Ok(Stats::default()),
        }
    }

    /// A child of the current context, or a new root when there is none.
    #[inline]
    pub fn span(&self, name: impl Into<Cow<'static, str>>) -> Span {
        match current() {
            Some(parent) => self.child_span(&parent, name),
            None => self.root_span(name),
        }
    }

    /// A new trace.
    #[inline]
    pub fn root_span(&self, name: impl Into<Cow<'static, str>>) -> Span {
        self.new_trace(&self.inner.sampler, SamplingState::Defer, name)
    }

    #[inline]
    fn new_trace(
        &self,
        sampler: &Sampler,
        inbound: SamplingState,
        name: impl Into<Cow<'static, str>>,
    ) -> Span {
        let (trace_id, span_id) = crate::id::random_trace_and_span(self.inner.trace_id_128);
        let sampling = sampler.decide(inbound, trace_id);
        let ctx = SpanContext::new(trace_id, span_id).with_sampling(sampling);
        self.start(ctx, name)
    }

    /// A child of `parent` in the same process: it inherits the parent's decision.
    #[inline]
    pub fn child_span(&self, parent: &SpanContext, name: impl Into<Cow<'static, str>>) -> Span {
        let mut ctx = parent.new_child();
        if ctx.sampling() == SamplingState::Defer {
            ctx = ctx.with_sampling(
                self.inner
                    .sampler
                    .decide(SamplingState::Defer, ctx.trace_id()),
            );
        }
        self.start(ctx, name)
    }

    /// A child of a context received from another process (a message, a W3C caller, a tuple):
    /// the caller's decision is respected as the sampler says. Starts a new trace when
    /// nothing was extracted, keeping a sampling-only decision.
    #[inline]
    pub fn child_of_remote(
        &self,
        extracted: Extracted,
        name: impl Into<Cow<'static, str>>,
    ) -> Span {
        self.remote(extracted, name, &self.inner.sampler, false)
    }

    /// [`child_of_remote`](Self::child_of_remote) with `sampler` deciding instead of the
    /// tracer's own: for a rule that applies to some requests only (an HTTP server's health
    /// checks, say). A parent-based `sampler` still respects the caller's decision.
    #[inline]
    pub fn child_of_remote_sampled(
        &self,
        extracted: Extracted,
        name: impl Into<Cow<'static, str>>,
        sampler: &Sampler,
    ) -> Span {
        self.remote(extracted, name, sampler, false)
    }

    /// The server side of a B3 RPC: reports under the caller's span id (marked `shared`), with
    /// the caller's parent. Starts a new trace when nothing was extracted.
    #[inline]
    pub fn join_span(&self, extracted: Extracted, name: impl Into<Cow<'static, str>>) -> Span {
        self.remote(extracted, name, &self.inner.sampler, true)
    }

    /// [`join_span`](Self::join_span) with `sampler` deciding instead of the tracer's own (see
    /// [`child_of_remote_sampled`](Self::child_of_remote_sampled)).
    #[inline]
    pub fn join_span_sampled(
        &self,
        extracted: Extracted,
        name: impl Into<Cow<'static, str>>,
        sampler: &Sampler,
    ) -> Span {
        self.remote(extracted, name, sampler, true)
    }

    /// A span for a context from another process: a child of it, or (`join`) the same span
    /// id, marked `shared`; a new trace when nothing was extracted. Always inlined, so that
    /// each public form is what it was before it had a sampled variant (as a shared function
    /// it was left out of line in the HTTP server's call) and `join` folds away.
    #[inline(always)]
    fn remote(
        &self,
        extracted: Extracted,
        name: impl Into<Cow<'static, str>>,
        sampler: &Sampler,
        join: bool,
    ) -> Span {
        match extracted {
            Extracted::Context(remote) => {
                let sampling = sampler.decide(remote.sampling(), remote.trace_id());
                let ctx = match join {
                    true => remote.with_shared(true),
                    false => remote.new_child(),
                };
                self.start(ctx.with_sampling(sampling), name)
            }
            other => self.new_trace(sampler, other.sampling(), name),
        }
    }

    #[inline]
    fn start(&self, ctx: SpanContext, name: impl Into<Cow<'static, str>>) -> Span {
        match (&self.inner.reporter, ctx.is_sampled()) {
            (Some(r), true) => Span::recording(ctx, name.into(), r.id(), self.inner.local),
            _ => Span::noop(ctx),
        }
    }
}

static GLOBAL: RwLock<Option<Tracer>> = RwLock::new(None);

/// Returned by [`TracerBuilder::install`]: while it lives the tracer is global (until another
/// is installed); on drop it flushes within the shutdown timeout and, unless another tracer was
/// installed since, the global tracer becomes a no-op again.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the tracer down"]
pub struct TracerGuard {
    tracer: Tracer,
}

impl TracerGuard {
    pub(crate) fn new(tracer: Tracer) -> TracerGuard {
        Tracer::set_global(Some(tracer.clone()));
        TracerGuard { tracer }
    }

    /// The installed tracer.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }
}

impl Drop for TracerGuard {
    fn drop(&mut self) {
        // Only this guard's tracer: a newer one installed since (a reload's
        // `guard = builder.install()?`, which drops the old guard after) stays global.
        {
            let mut global = GLOBAL.write().unwrap_or_else(|p| p.into_inner());
            if global
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(&t.inner, &self.tracer.inner))
            {
                *global = None;
            }
        }
        if let Some(r) = &self.tracer.inner.reporter {
            let _ = r.shutdown(self.tracer.inner.shutdown_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::NoopTransport;
    use crate::id::{SpanId, TraceId};

    #[test]
    fn a_request_s_own_sampler_decides_when_the_caller_did_not() {
        let tracer = Tracer::builder()
            .transport(NoopTransport)
            .sampler(Sampler::always())
            .build()
            .unwrap();
        let never = Sampler::never();
        let remote = |s: SamplingState| {
            let ctx = SpanContext::new(TraceId::random_128(), SpanId::random());
            Extracted::Context(ctx.with_sampling(s))
        };
        let sampled = |span: Span| span.context().sampling();
        for join in [false, true] {
            let start = |e: Extracted, sampler: &Sampler| match join {
                true => tracer.join_span_sampled(e, "x", sampler),
                false => tracer.child_of_remote_sampled(e, "x", sampler),
            };
            // No decision from the caller: the given sampler's, not the tracer's.
            assert_eq!(
                sampled(start(Extracted::Empty, &never)),
                SamplingState::Deny
            );
            let deferred = Extracted::Sampling(SamplingState::Defer);
            assert_eq!(sampled(start(deferred, &never)), SamplingState::Deny);
            assert_eq!(
                sampled(start(remote(SamplingState::Defer), &never)),
                SamplingState::Deny
            );
            // A parent-based sampler keeps the caller's decision.
            for inbound in [
                SamplingState::Accept,
                SamplingState::Deny,
                SamplingState::Debug,
            ] {
                assert_eq!(sampled(start(remote(inbound), &never)), inbound);
                let only = Extracted::Sampling(inbound);
                assert_eq!(sampled(start(only, &never)), inbound);
            }
            // The tracer's own sampler is what the plain forms use.
            let plain = match join {
                true => tracer.join_span(Extracted::Empty, "x"),
                false => tracer.child_of_remote(Extracted::Empty, "x"),
            };
            assert_eq!(sampled(plain), SamplingState::Accept);
        }
    }
}
