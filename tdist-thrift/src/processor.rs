//! The traced processor: a SERVER span per call, the context current while the handler runs,
//! replies in kind, and the answer to the upgrade probe.

use crate::input::{take_inbound, Inbound};
use crate::prefix::write_prefix;
use crate::PROBE_METHOD;
use std::cell::Cell;
use std::net::SocketAddr;
use tdist_core::{Endpoint, Extracted, Kind, SpanContext, Tracer};
use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol,
    TStructIdentifier, TType,
};
use thrift::server::TProcessor;

thread_local! {
    /// The client address of the connection this thread serves (set by [`Server`](crate::Server)).
    static PEER: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// Records the client address of the connection served on this thread, for SERVER spans'
/// remote endpoint.
pub(crate) fn set_connection_peer(peer: SocketAddr) {
    PEER.with(|p| p.set(Some(peer)));
}

/// Wraps any [`TProcessor`] (a generated `…SyncProcessor`, a multiplexed processor, ...).
///
/// For each request it reads the message header, takes the context that a
/// [`TracingInputProtocol`](crate::TracingInputProtocol) found in front of it, and starts a
/// SERVER span named after the method: by default it joins the caller's span (Zipkin's shared
/// RPC span), or with [`child_spans`](Self::child_spans) starts a child of it; without a prefix
/// the span is a child of the thread's current context or a new root. The span is current while
/// the wrapped processor and its handler run, so calls the handler makes continue the trace.
///
/// The reply carries a prefix only when the request did, so a client that sent plain Thrift gets
/// exactly the bytes a plain server would send. Application exceptions, declared exceptions and
/// processor errors tag the span as an error. Finagle's `__can__finagle__trace__v3__` probe is
/// refused with `UNKNOWN_METHOD` (args drained), so Finagle clients fall back to plain Thrift.
/// Under [`Server`](crate::Server) the span's remote endpoint is the client's address.
///
/// The upgrade probe ([`PROBE_METHOD`]) is handled here, after its arguments are drained, and
/// never reaches the wrapped processor. It is answered with a REPLY only when the request was
/// read through a [`TracingInputProtocol`](crate::TracingInputProtocol) (a [`Server`](crate::Server)
/// with [`ServerOptions::traced`](crate::ServerOptions::traced), or thrift's `TServer` with a
/// [`TracingInputProtocolFactory`](crate::TracingInputProtocolFactory)); on a plain stack, which
/// could not read the prefixed calls a REPLY would invite, it is refused with `UNKNOWN_METHOD`
/// like any unknown method, and negotiating clients talk plain Thrift to it (still traced on
/// this side, as new traces).
#[derive(Debug)]
pub struct TracedProcessor<P> {
    inner: P,
    tracer: Tracer,
    join: bool,
}

impl<P: TProcessor> TracedProcessor<P> {
    /// Wraps `inner`, recording spans with `tracer`.
    pub fn new(tracer: Tracer, inner: P) -> Self {
        TracedProcessor {
            inner,
            tracer,
            join: true,
        }
    }

    /// Start the SERVER span as a child of the caller's span instead of sharing its id.
    pub fn child_spans(mut self, on: bool) -> Self {
        self.join = !on;
        self
    }

    /// The wrapped processor.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }
}

impl<P: TProcessor> TProcessor for TracedProcessor<P> {
    fn process(
        &self,
        i: &mut dyn TInputProtocol,
        o: &mut dyn TOutputProtocol,
    ) -> thrift::Result<()> {
        // Whatever an earlier read on this thread left is not about this request.
        take_inbound();
        let ident = i.read_message_begin()?;
        let Inbound {
            detects,
            context: inbound,
        } = take_inbound();
        if ident.message_type == TMessageType::Call {
            // Answer the probe only if this stack would understand the prefixed calls that
            // follow; otherwise refuse it as a plain server would, so the client stays plain.
            if ident.name == PROBE_METHOD && detects {
                return answer_probe(i, o, &ident);
            }
            if ident.name == PROBE_METHOD || ident.name == FINAGLE_PROBE {
                return refuse_probe(i, o, &ident);
            }
        }
        let name = ident.name.clone();
        let mut span = match inbound {
            Some(ctx) if self.join => self.tracer.join_span(Extracted::Context(ctx), name),
            Some(ctx) => self.tracer.child_of_remote(Extracted::Context(ctx), name),
            None => self.tracer.span(name),
        };
        span.set_kind(Kind::Server);
        if let Some(peer) = PEER.with(Cell::get) {
            span.set_remote_endpoint(Endpoint::addr(peer));
        }
        let mut reply = ReplyOut::new(o, inbound.map(|_| span.context()));
        let res = {
            let _current = span.enter();
            let mut replay = Replay {
                first: Some(ident),
                inner: i,
            };
            self.inner.process(&mut replay, &mut reply)
        };
        match (&res, reply.error) {
            (Err(e), _) => span.set_error(e.to_string()),
            (Ok(()), Some(e)) => span.set_error(e),
            _ => {}
        }
        span.finish();
        res
    }
}

/// Finagle's TTwitter upgrade probe. We do not speak TTwitter, so it is refused as a plain server
/// would refuse it, but with its arguments drained: generated Rust processors leave them unread,
/// which would corrupt the next request on the connection.
const FINAGLE_PROBE: &str = "__can__finagle__trace__v3__";

fn refuse_probe(
    i: &mut dyn TInputProtocol,
    o: &mut dyn TOutputProtocol,
    ident: &TMessageIdentifier,
) -> thrift::Result<()> {
    i.skip(TType::Struct)?;
    i.read_message_end()?;
    let reply = TMessageIdentifier::new(
        ident.name.clone(),
        TMessageType::Exception,
        ident.sequence_number,
    );
    let e = thrift::ApplicationError::new(
        thrift::ApplicationErrorKind::UnknownMethod,
        format!("unknown method {}", ident.name),
    );
    o.write_message_begin(&reply)?;
    thrift::Error::write_application_error_to_out_protocol(&e, o)?;
    o.write_message_end()?;
    o.flush()
}

fn answer_probe(
    i: &mut dyn TInputProtocol,
    o: &mut dyn TOutputProtocol,
    ident: &TMessageIdentifier,
) -> thrift::Result<()> {
    i.skip(TType::Struct)?;
    i.read_message_end()?;
    let reply = TMessageIdentifier::new(PROBE_METHOD, TMessageType::Reply, ident.sequence_number);
    o.write_message_begin(&reply)?;
    o.write_struct_begin(&TStructIdentifier::new("UpgradeReply"))?;
    o.write_field_stop()?;
    o.write_struct_end()?;
    o.write_message_end()?;
    o.flush()
}

/// Hands the already-read message header to the wrapped processor, then reads through.
struct Replay<'a> {
    first: Option<TMessageIdentifier>,
    inner: &'a mut dyn TInputProtocol,
}

impl TInputProtocol for Replay<'_> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        match self.first.take() {
            Some(ident) => Ok(ident),
            None => self.inner.read_message_begin(),
        }
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        self.inner.read_message_end()
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        self.inner.read_field_begin()
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        self.inner.read_string()
    }

    fwd_in_rest!(inner);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Nothing,
    FirstField,
    Message,
}

/// Writes the reply: the prefix first when the request had one, and notes exceptions.
struct ReplyOut<'a> {
    inner: &'a mut dyn TOutputProtocol,
    prefix: Option<SpanContext>,
    watch: Watch,
    error: Option<String>,
}

impl<'a> ReplyOut<'a> {
    fn new(inner: &'a mut dyn TOutputProtocol, prefix: Option<SpanContext>) -> Self {
        ReplyOut {
            inner,
            prefix,
            watch: Watch::Nothing,
            error: None,
        }
    }
}

impl TOutputProtocol for ReplyOut<'_> {
    fn write_message_begin(&mut self, ident: &TMessageIdentifier) -> thrift::Result<()> {
        self.watch = match ident.message_type {
            TMessageType::Reply => Watch::FirstField,
            TMessageType::Exception => {
                self.error = Some("application exception".into());
                Watch::Message
            }
            _ => Watch::Nothing,
        };
        if let Some(ctx) = self.prefix.take() {
            write_prefix(&mut *self.inner, &ctx)?;
        }
        self.inner.write_message_begin(ident)
    }

    fn write_message_end(&mut self) -> thrift::Result<()> {
        self.inner.write_message_end()
    }

    fn write_field_begin(&mut self, f: &TFieldIdentifier) -> thrift::Result<()> {
        if self.watch == Watch::FirstField {
            self.watch = Watch::Nothing;
            if f.id != Some(0) {
                let id = f.id.unwrap_or(-1);
                let name = f.name.as_deref().unwrap_or("?");
                self.error = Some(format!("declared exception {name} (result field {id})"));
            }
        }
        self.inner.write_field_begin(f)
    }

    fn write_string(&mut self, s: &str) -> thrift::Result<()> {
        if self.watch == Watch::Message {
            self.watch = Watch::Nothing;
            self.error = Some(s.to_owned());
        }
        self.inner.write_string(s)
    }

    fn flush(&mut self) -> thrift::Result<()> {
        self.inner.flush()
    }

    fwd_out_rest!(inner);
}
