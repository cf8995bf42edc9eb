//! The traced spout: where messages enter the topology, each emitted tuple starts (or
//! continues) a trace.
//!
//! [`TracedSpout`] wraps a [`Spout`]. Every emit gets a PRODUCER span named after the
//! component: a child of the current context when the spout code made one current (for
//! example after reading a context from its source), otherwise a new trace. The span's context
//! goes into the emit's [`TraceField`]. A reliable emit (with a message id) keeps its span until
//! Storm acks or fails that id, so the span covers the tuple's whole processing (a span still
//! waiting when the spout is dropped ends as an error, `not acked before shutdown`); an
//! unreliable emit ends its span at once. Emitting an id again while its span waits ends that
//! span, annotated `storm.replayed`; the new emit's span waits for the ack instead.
//!
//! ```
//! use tdist_core::{export::InMemory, Tracer};
//! use tdist_storm::bolt::BoltError;
//! use tdist_storm::protocol::Emit;
//! use tdist_storm::spout::{Spout, SpoutOutput};
//! use tdist_storm::traced::TracedSpout;
//!
//! struct Words;
//! impl Spout for Words {
//!     fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
//!         out.emit(Emit::new(vec!["hello".into()]).message_id("m1"))?;
//!         Ok(())
//!     }
//! }
//!
//! let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
//! let spout = TracedSpout::new(Words, tracer);
//! // tdist_storm::spout::run_spout(spout) runs it under Storm.
//! # drop(spout);
//! ```
use crate::bolt::BoltError;
use crate::connection::RuntimeError;
use crate::protocol::{Emit, Handshake, LogLevel, TopologyContext};
use crate::spout::{Spout, SpoutOutput};
use crate::traced::{end_unacked, inject, TraceField};
use serde_json::Value;
use std::collections::HashMap;
use tdist_core::{current, Kind, Span, TagValue, Tracer};

/// A spout wrapped so that every tuple it emits carries a trace.
#[derive(Debug)]
pub struct TracedSpout<S> {
    inner: S,
    state: State,
}

#[derive(Debug)]
struct State {
    tracer: Tracer,
    field: TraceField,
    name: Option<String>,
    topology: TopologyContext,
    spans: HashMap<String, Span>,
    max_pending: usize,
}

impl<S: Spout> TracedSpout<S> {
    /// Wraps `inner`, reporting through `tracer`; the context goes in the last field.
    pub fn new(inner: S, tracer: Tracer) -> TracedSpout<S> {
        TracedSpout {
            inner,
            state: State {
                tracer,
                field: TraceField::Last,
                name: None,
                topology: TopologyContext::default(),
                spans: HashMap::new(),
                max_pending: 10_000,
            },
        }
    }

    /// Where the context goes in emitted tuples.
    pub fn with_field(mut self, field: TraceField) -> TracedSpout<S> {
        self.state.field = field;
        self
    }

    /// The span name (default: the component id from the handshake).
    pub fn with_name(mut self, name: impl Into<String>) -> TracedSpout<S> {
        self.state.name = Some(name.into());
        self
    }

    /// How many reliable emits may wait for their ack with an open span (default 10,000);
    /// beyond that a span ends at once, annotated `storm.unacked`.
    pub fn with_max_pending(mut self, n: usize) -> TracedSpout<S> {
        self.state.max_pending = n.max(1);
        self
    }

    /// Spans of reliable emits not yet acked or failed.
    pub fn pending_spans(&self) -> usize {
        self.state.spans.len()
    }

    fn wrap<'a>(&'a mut self, out: &'a mut dyn SpoutOutput) -> (&'a mut S, TracedSpoutOutput<'a>) {
        (
            &mut self.inner,
            TracedSpoutOutput {
                inner: out,
                state: &mut self.state,
            },
        )
    }
}

impl State {
    /// Keeps a reliable emit's span until Storm acks or fails its id. An id emitted again while
    /// its span still waits (a replay) ends the older span first, annotated `storm.replayed`,
    /// however full the map is: each span ends once, and the ack ends the newest. Beyond
    /// `max_pending` the new span ends at once, annotated `storm.unacked`.
    fn keep(&mut self, id: String, mut span: Span) {
        if let Some(mut old) = self.spans.remove(&id) {
            old.annotate("storm.replayed");
            old.finish();
        }
        if self.spans.len() < self.max_pending {
            self.spans.insert(id, span);
        } else {
            span.annotate("storm.unacked");
            span.finish();
        }
    }
}

impl Drop for State {
    /// Ends the spans of emits never acked or failed (the spout stopped) as errors.
    fn drop(&mut self) {
        end_unacked(&mut self.spans);
    }
}

/// Message ids are compared by their JSON text (Storm echoes them back as sent).
fn key(id: &Value) -> String {
    id.to_string()
}

impl<S: Spout> Spout for TracedSpout<S> {
    fn open(&mut self, handshake: &Handshake, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        self.state.topology = handshake.context.clone();
        let (inner, mut out) = self.wrap(out);
        inner.open(handshake, &mut out)
    }

    fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        let (inner, mut out) = self.wrap(out);
        inner.next_tuple(&mut out)
    }

    fn ack(&mut self, message_id: Value, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        if let Some(span) = self.state.spans.remove(&key(&message_id)) {
            span.finish();
        }
        let (inner, mut out) = self.wrap(out);
        inner.ack(message_id, &mut out)
    }

    fn fail(&mut self, message_id: Value, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        if let Some(mut span) = self.state.spans.remove(&key(&message_id)) {
            span.annotate("storm.fail");
            span.set_error("tuple failed or timed out");
            span.finish();
        }
        let (inner, mut out) = self.wrap(out);
        inner.fail(message_id, &mut out)
    }

    fn activate(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        let (inner, mut out) = self.wrap(out);
        inner.activate(&mut out)
    }

    fn deactivate(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        let (inner, mut out) = self.wrap(out);
        inner.deactivate(&mut out)
    }
}

/// Wraps a spout's output: starts a span per emit and puts its context in the tuple.
pub struct TracedSpoutOutput<'a> {
    inner: &'a mut dyn SpoutOutput,
    state: &'a mut State,
}

impl std::fmt::Debug for TracedSpoutOutput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedSpoutOutput")
            .field("pending_spans", &self.state.spans.len())
            .finish_non_exhaustive()
    }
}

impl SpoutOutput for TracedSpoutOutput<'_> {
    fn emit(&mut self, mut emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError> {
        let s = &mut *self.state;
        let name = match &s.name {
            Some(n) => n.clone(),
            None if !s.topology.component_id.is_empty() => s.topology.component_id.clone(),
            None => "storm-spout".to_owned(),
        };
        let mut span = match current() {
            Some(parent) => s.tracer.child_span(&parent, name),
            None => s.tracer.root_span(name),
        };
        span.set_kind(Kind::Producer);
        if let Some(stream) = &emit.stream {
            span.tag("storm.stream", TagValue::text(stream));
        }
        inject(&s.field, &s.topology, &mut emit, Some(span.context()));
        let id = emit.message_id.as_ref().map(key);
        let result = self.inner.emit(emit);
        match (id, &result) {
            (Some(id), Ok(_)) => s.keep(id, span),
            (_, Err(e)) => {
                span.set_error(e.to_string());
                span.finish();
            }
            (None, Ok(_)) => span.finish(),
        }
        result
    }

    fn log(&mut self, level: LogLevel, msg: &str) -> Result<(), RuntimeError> {
        self.inner.log(level, msg)
    }

    fn report_error(&mut self, msg: &str) -> Result<(), RuntimeError> {
        self.inner.report_error(msg)
    }

    fn metrics(&mut self, name: &str, params: Value) -> Result<(), RuntimeError> {
        self.inner.metrics(name, params)
    }
}
