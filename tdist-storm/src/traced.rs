//! The traced bolt and collector: every tuple's trace continues through the bolt, with no trace
//! code in the bolt itself.
//!
//! [`TracedBolt`] wraps a [`Bolt`]. At the start of each `execute` it reads the context the
//! tuple carries (a full B3 single string or W3C `traceparent` in a [`TraceField`], or a binary
//! context frame at the start of a Kafka payload), removes it from the values the bolt sees, and starts a CONSUMER
//! span named after the component, current while the bolt works. The bolt's collector is
//! wrapped in a [`TracedCollector`]: each emit gets the span's context added in the trace field
//! (the span of the first anchor, or the current one when unanchored), anchors are passed on
//! untouched, and the ack or fail of the input ends its span (a fail marks it as an error, and
//! so does a panic in `execute`). Spans of inputs still unacked when the bolt is dropped (at
//! shutdown) end as errors too, `not acked before shutdown`.
//!
//! ```
//! use tdist_core::{export::InMemory, Tracer};
//! use tdist_storm::bolt::{Bolt, BoltError, Collector};
//! use tdist_storm::protocol::{Emit, Tuple};
//! use tdist_storm::traced::TracedBolt;
//!
//! struct Upper;
//! impl Bolt for Upper {
//!     fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
//!         let word = t.values[0].as_str().unwrap_or_default().to_uppercase();
//!         out.emit(Emit::new(vec![word.into()]).anchor(&t))?;
//!         out.ack(&t.id)?;
//!         Ok(())
//!     }
//! }
//!
//! let tracer = Tracer::builder().transport(InMemory::new()).build().unwrap();
//! let bolt = TracedBolt::new(Upper, tracer).with_name("upper");
//! // tdist_storm::bolt::run_bolt(bolt) runs it under Storm.
//! # drop(bolt);
//! ```
use crate::bolt::{panic_message, Bolt, BoltError, Collector};
use crate::connection::RuntimeError;
use crate::protocol::{Emit, Handshake, LogLevel, TopologyContext, Tuple};
use base64::Engine as _;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use tdist_core::propagation::{b3, w3c};
use tdist_core::{
    binary, set_current, Endpoint, Extracted, Kind, Span, SpanContext, TagValue, Tracer,
};

pub use crate::traced_spout::{TracedSpout, TracedSpoutOutput};

/// Where a tuple carries its trace context (a B3 single string).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TraceField {
    /// The last value, when it is a full context: a B3 single string with trace and span ids
    /// (`{t}-{s}`, `{t}-{s}-{0|1|d}`, with or without parent) or a W3C `traceparent`. Anything
    /// else, including a sampling-only B3 value (`0`, `1`, `d`), is the upstream's own data and
    /// stays in the tuple, so tuples from uninstrumented components lose nothing. Emits get the
    /// context appended (always a full context, the sampling decision inside it).
    #[default]
    Last,
    /// The value at this position, under the same rule as [`Last`](Self::Last): only a full
    /// context is taken. Emits get the context inserted there.
    Index(usize),
    /// The field of this name, as the topology declares it (`source->stream->fields` for
    /// inputs, `stream->outputfields` for emits). Exact: a declared field is removed whatever
    /// it holds (a sampling-only B3 value is honoured as a decision for a new trace, a garbage
    /// value starts a new trace), and a stream that does not declare it carries no context.
    Named(String),
}

/// How a Kafka payload field is encoded in the tuple's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadEncoding {
    Bytes,
    Base64,
}

/// Puts `ctx` into the emit's trace field (a JSON null keeps a declared field's place when
/// there is no context).
pub(crate) fn inject(
    field: &TraceField,
    topology: &TopologyContext,
    emit: &mut Emit,
    ctx: Option<SpanContext>,
) {
    let value = ctx.map_or(Value::Null, |c| {
        Value::from(b3::format_single(&c, false).as_str())
    });
    let len = emit.values.len();
    match field {
        TraceField::Last if ctx.is_some() => emit.values.push(value),
        TraceField::Index(i) if ctx.is_some() => emit.values.insert((*i).min(len), value),
        TraceField::Named(name) => {
            let stream = emit
                .stream
                .as_deref()
                .unwrap_or(crate::protocol::DEFAULT_STREAM);
            let at = topology
                .output_fields
                .get(stream)
                .and_then(|f| f.iter().position(|f| f == name));
            if let Some(i) = at {
                emit.values.insert(i.min(len), value);
            }
        }
        _ => {}
    }
}

/// A bolt wrapped so that every tuple's trace continues through it.
#[derive(Debug)]
pub struct TracedBolt<B> {
    inner: B,
    tracer: Tracer,
    field: TraceField,
    kafka_payload: Option<usize>,
    name: Option<String>,
    remote_service: Cow<'static, str>,
    topology: TopologyContext,
    spans: HashMap<String, Span>,
    max_pending: usize,
}

impl<B: Bolt> TracedBolt<B> {
    /// Wraps `inner`, reporting through `tracer`; the context travels in the last field.
    pub fn new(inner: B, tracer: Tracer) -> TracedBolt<B> {
        TracedBolt {
            inner,
            tracer,
            field: TraceField::Last,
            kafka_payload: None,
            name: None,
            remote_service: Cow::Borrowed("storm"),
            topology: TopologyContext::default(),
            spans: HashMap::new(),
            max_pending: 10_000,
        }
    }

    /// Where the context travels in tuples.
    pub fn with_field(mut self, field: TraceField) -> TracedBolt<B> {
        self.field = field;
        self
    }

    /// Also reads a context frame (tdist's binary format, as the Kafka adapter writes it) at the
    /// start of the payload at `index`: a JSON array of bytes or a base64 string. The frame is
    /// removed, so the bolt sees the plain payload. A context field, when present, wins.
    pub fn with_kafka_payload(mut self, index: usize) -> TracedBolt<B> {
        self.kafka_payload = Some(index);
        self
    }

    /// The span name (default: the component id from the handshake).
    pub fn with_name(mut self, name: impl Into<String>) -> TracedBolt<B> {
        self.name = Some(name.into());
        self
    }

    /// The remote service of the bolt's CONSUMER span (default `storm`): the "broker" the tuple
    /// came through, as Zipkin's dependency graph expects of messaging spans (it skips consumer
    /// spans without one, leaving bolts out of the graph).
    pub fn with_remote_service_name(mut self, name: impl Into<Cow<'static, str>>) -> TracedBolt<B> {
        self.remote_service = name.into();
        self
    }

    /// How many input spans may wait for their ack (default 10,000). Beyond that a span is
    /// ended when `execute` returns, annotated `storm.unacked`.
    pub fn with_max_pending(mut self, n: usize) -> TracedBolt<B> {
        self.max_pending = n.max(1);
        self
    }

    /// The wrapped bolt.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Spans of inputs not yet acked or failed.
    pub fn pending_spans(&self) -> usize {
        self.spans.len()
    }

    /// Finds and removes the context in `tuple`.
    pub fn extract(&self, tuple: &mut Tuple) -> Extracted {
        let mut found = match &self.field {
            TraceField::Last => match tuple.values.len() {
                0 => Extracted::Empty,
                n => take_if_valid(&mut tuple.values, n - 1),
            },
            TraceField::Index(i) => take_if_valid(&mut tuple.values, *i),
            TraceField::Named(name) => {
                let comp = tuple.component.as_deref().unwrap_or("");
                let at = self
                    .topology
                    .input_fields(comp, &tuple.stream)
                    .and_then(|f| f.iter().position(|f| f == name));
                match at {
                    Some(i) if i < tuple.values.len() => {
                        parse_value(&tuple.values.remove(i)).unwrap_or_default()
                    }
                    _ => Extracted::Empty,
                }
            }
        };
        if let Some(i) = self.kafka_payload {
            if let Some(ctx) = tuple.values.get_mut(i).and_then(unframe) {
                if found.context().is_none() {
                    found = Extracted::Context(ctx);
                }
            }
        }
        found
    }

    fn name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if !self.topology.component_id.is_empty() => self.topology.component_id.clone(),
            None => "storm-bolt".to_owned(),
        }
    }
}

/// Takes the value at `i` when it is a full context. A position is only a guess at where a trace
/// field might be (an untraced upstream puts ordinary data there), so anything less stays in the
/// tuple: a sampling-only B3 value (`0`, `1`, `d`) is also a plausible ordinary value, and our
/// emitters never write one (the sampling decision travels inside a full context, `{t}-{s}-0`).
fn take_if_valid(values: &mut Vec<Value>, i: usize) -> Extracted {
    match values.get(i).and_then(parse_value) {
        Some(found @ Extracted::Context(_)) => {
            values.remove(i);
            found
        }
        _ => Extracted::Empty,
    }
}

/// A context string: B3 single, or W3C `traceparent`.
fn parse_value(v: &Value) -> Option<Extracted> {
    let s = v.as_str()?;
    if let Ok(e) = b3::parse_single(s) {
        return Some(e);
    }
    if s.len() == w3c::TRACEPARENT_LEN {
        return w3c::parse_traceparent(s).ok().map(Extracted::Context);
    }
    None
}

/// Removes a context frame from a payload value, returning the context.
fn unframe(v: &mut Value) -> Option<SpanContext> {
    let (bytes, encoding) = match v {
        Value::Array(items) => {
            // An array with anything but bytes in it is not a payload, wherever that is; of a
            // payload, only the frame's bytes are needed to decide.
            let byte = |b: &Value| b.as_u64().and_then(|b| u8::try_from(b).ok());
            if !items.iter().all(|b| byte(b).is_some()) {
                return None;
            }
            let head: Vec<u8> = items
                .iter()
                .take(binary::MAX_LEN)
                .filter_map(byte)
                .collect();
            (head, PayloadEncoding::Bytes)
        }
        Value::String(s) => (
            base64::engine::general_purpose::STANDARD.decode(s).ok()?,
            PayloadEncoding::Base64,
        ),
        _ => return None,
    };
    let (ctx, rest) = binary::decode(&bytes).ok()?;
    let consumed = bytes.len() - rest.len();
    match encoding {
        PayloadEncoding::Bytes => {
            if let Value::Array(items) = v {
                items.drain(..consumed);
            }
        }
        PayloadEncoding::Base64 => {
            *v = Value::String(base64::engine::general_purpose::STANDARD.encode(rest));
        }
    }
    Some(ctx)
}

impl<B: Bolt> Bolt for TracedBolt<B> {
    fn prepare(&mut self, handshake: &Handshake, out: &mut dyn Collector) -> Result<(), BoltError> {
        self.topology = handshake.context.clone();
        let mut traced = TracedCollector {
            inner: out,
            spans: &mut self.spans,
            current: None,
            field: &self.field,
            topology: &self.topology,
        };
        self.inner.prepare(handshake, &mut traced)
    }

    fn execute(&mut self, mut tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let extracted = self.extract(&mut tuple);
        let mut span = self.tracer.child_of_remote(extracted, self.name());
        span.set_kind(Kind::Consumer);
        span.set_remote_endpoint(Endpoint::service(self.remote_service.clone()));
        if let Some(c) = &tuple.component {
            span.tag("storm.source", TagValue::text(c));
        }
        span.tag("storm.stream", TagValue::text(&tuple.stream));
        let ctx = span.context();
        let id = tuple.id.clone();
        self.spans.insert(id.clone(), span);
        let outcome = {
            let _current = set_current(Some(ctx));
            let mut traced = TracedCollector {
                inner: out,
                spans: &mut self.spans,
                current: Some(ctx),
                field: &self.field,
                topology: &self.topology,
            };
            catch_unwind(AssertUnwindSafe(|| self.inner.execute(tuple, &mut traced)))
        };
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => {
                // The runtime fails the tuple through the plain collector and stops: end the
                // span here as the traced collector's fail would, then let the panic go on.
                if let Some(mut span) = self.spans.remove(&id) {
                    span.annotate("storm.fail");
                    span.set_error(format!("execute panicked: {}", panic_message(&*panic)));
                    span.finish();
                }
                resume_unwind(panic);
            }
        };
        if let Err(e) = &result {
            if let Some(mut span) = self.spans.remove(&id) {
                span.set_error(e.to_string());
                span.finish();
            }
        } else if self.spans.len() > self.max_pending {
            if let Some(mut span) = self.spans.remove(&id) {
                span.annotate("storm.unacked");
                span.finish();
            }
        }
        result
    }
}

impl<B> Drop for TracedBolt<B> {
    /// Ends the spans of inputs never acked or failed (the runtime stopped: Storm closed the
    /// pipe, or the bolt failed) as errors, since Storm will time those tuples out.
    fn drop(&mut self) {
        end_unacked(&mut self.spans);
    }
}

/// Ends spans still waiting for an ack when their component stops: marked `storm.unacked` and
/// with an `error` tag, not reported as successes.
pub(crate) fn end_unacked(spans: &mut HashMap<String, Span>) {
    for (_, mut span) in spans.drain() {
        span.annotate("storm.unacked");
        span.set_error("not acked before shutdown");
        span.finish();
    }
}

/// Wraps a bolt's collector: adds the trace context to every emit and ends input spans on
/// ack or fail. Made by [`TracedBolt`]; bolts see it as a plain `&mut dyn Collector`.
pub struct TracedCollector<'a> {
    inner: &'a mut dyn Collector,
    spans: &'a mut HashMap<String, Span>,
    current: Option<SpanContext>,
    field: &'a TraceField,
    topology: &'a TopologyContext,
}

impl std::fmt::Debug for TracedCollector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedCollector")
            .field("current", &self.current)
            .field("field", self.field)
            .finish_non_exhaustive()
    }
}

impl TracedCollector<'_> {
    /// The context an emit carries: its first traced anchor's span, else the current span.
    fn context_for(&self, emit: &Emit) -> Option<SpanContext> {
        emit.anchors
            .iter()
            .find_map(|a| self.spans.get(a).map(Span::context))
            .or(self.current)
    }
}

impl Collector for TracedCollector<'_> {
    fn emit(&mut self, mut emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError> {
        let ctx = self.context_for(&emit);
        inject(self.field, self.topology, &mut emit, ctx);
        self.inner.emit(emit)
    }

    fn ack(&mut self, tuple_id: &str) -> Result<(), RuntimeError> {
        self.inner.ack(tuple_id)?;
        if let Some(span) = self.spans.remove(tuple_id) {
            span.finish();
        }
        Ok(())
    }

    fn fail(&mut self, tuple_id: &str) -> Result<(), RuntimeError> {
        self.inner.fail(tuple_id)?;
        if let Some(mut span) = self.spans.remove(tuple_id) {
            span.annotate("storm.fail");
            span.set_error("tuple failed");
            span.finish();
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use tdist_core::{SamplingState, SpanId, TraceId};

    struct Nop;
    impl Bolt for Nop {
        fn execute(&mut self, _: Tuple, _: &mut dyn Collector) -> Result<(), BoltError> {
            Ok(())
        }
    }

    fn bolt() -> TracedBolt<Nop> {
        TracedBolt::new(Nop, Tracer::noop())
    }

    fn ctx() -> SpanContext {
        SpanContext::new(TraceId::random_64(), SpanId::random())
            .with_sampling(SamplingState::Accept)
    }

    #[test]
    fn index_field_is_removed_only_when_valid() {
        let b = bolt().with_field(TraceField::Index(0));
        let c = ctx();
        let mut t = Tuple::new(
            "1",
            "s",
            vec![json!(b3::format_single(&c, false).as_str()), json!("x")],
        );
        assert_eq!(
            b.extract(&mut t).context().map(|x| x.span_id()),
            Some(c.span_id())
        );
        assert_eq!(t.values, [json!("x")]);
        let mut t = Tuple::new("1", "s", vec![json!("x")]);
        assert!(b.extract(&mut t).is_empty());
        assert_eq!(t.values, [json!("x")]);
    }

    #[test]
    fn sampling_only_value_is_ordinary_data_by_position() {
        // An untraced upstream's last value may well be "0", "1" or "d": it stays, and it
        // decides nothing about sampling.
        for field in [TraceField::Last, TraceField::Index(1)] {
            let b = bolt().with_field(field);
            for v in ["0", "1", "d"] {
                let mut t = Tuple::new("1", "s", vec![json!("user42"), json!(v)]);
                assert_eq!(b.extract(&mut t), Extracted::Empty, "{v}");
                assert_eq!(t.values, [json!("user42"), json!(v)]);
            }
        }
    }

    #[test]
    fn sampling_only_value_in_a_declared_field_is_a_decision() {
        let mut b = bolt().with_field(TraceField::Named("_trace".into()));
        b.topology.input_fields = HashMap::from([(
            ("s".to_owned(), "default".to_owned()),
            vec!["word".to_owned(), "_trace".to_owned()],
        )]);
        let mut t = Tuple::new("1", "s", vec![json!("x"), json!("0")]);
        assert_eq!(b.extract(&mut t), Extracted::Sampling(SamplingState::Deny));
        assert_eq!(t.values, [json!("x")]);
    }

    #[test]
    fn unsampled_emit_carries_a_full_context_that_position_fields_read_back() {
        let never = Tracer::builder()
            .sampler(tdist_core::Sampler::never())
            .transport(tdist_core::export::NoopTransport)
            .build()
            .unwrap();
        let span = never.root_span("spout");
        assert_eq!(span.context().sampling(), SamplingState::Deny);
        for field in [TraceField::Last, TraceField::Index(0)] {
            let mut emit = Emit::new(vec![json!("x")]);
            inject(
                &field,
                &TopologyContext::default(),
                &mut emit,
                Some(span.context()),
            );
            let at = usize::from(field == TraceField::Last);
            let written = emit.values[at].as_str().unwrap().to_owned();
            assert!(written.ends_with("-0"), "{written}");
            let mut t = Tuple::new("1", "s", emit.values);
            let got = bolt().with_field(field).extract(&mut t);
            assert_eq!(got.context(), Some(span.context()));
            assert_eq!(t.values, [json!("x")]);
        }
    }

    #[test]
    fn field_wins_over_payload_but_payload_is_unframed() {
        let (a, p) = (ctx(), ctx());
        let mut framed = binary::encode(&p).as_bytes().to_vec();
        framed.push(7);
        let b = bolt().with_kafka_payload(0);
        let mut t = Tuple::new(
            "1",
            "s",
            vec![json!(framed), json!(b3::format_single(&a, false).as_str())],
        );
        assert_eq!(b.extract(&mut t).context().unwrap().span_id(), a.span_id());
        assert_eq!(t.values, [json!([7])]);
    }

    #[test]
    fn array_with_a_frame_but_not_only_bytes_is_not_a_payload() {
        // Found by the `tuple_context` fuzz target: a valid frame followed by a value that is
        // not a byte had its first items removed as if the array were a Kafka payload.
        let mut items: Vec<Value> = binary::encode(&ctx())
            .as_bytes()
            .iter()
            .map(|&b| json!(b))
            .collect();
        items.extend([json!(7), json!(1123), json!("x")]);
        let b = bolt()
            .with_field(TraceField::Named("_trace".into()))
            .with_kafka_payload(0);
        let mut t = Tuple::new("1", "s", vec![Value::Array(items.clone())]);
        assert_eq!(b.extract(&mut t), Extracted::Empty);
        assert_eq!(t.values, [Value::Array(items)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn extract_never_panics(
            values in prop::collection::vec(crate::protocol::fuzz::json_value(), 0..5),
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            index in 0usize..4,
        ) {
            let mut values = values;
            values.push(json!(bytes));
            for field in [TraceField::Last, TraceField::Index(index), TraceField::Named("_trace".into())] {
                let b = bolt().with_field(field).with_kafka_payload(index);
                let mut t = Tuple::new("1", "s", values.clone());
                let before = t.values.len();
                let _ = b.extract(&mut t);
                prop_assert!(t.values.len() + 1 >= before);
            }
        }
    }
}
