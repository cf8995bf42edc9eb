//! The tracing output protocol (client side): a CLIENT span per call, its context written as a
//! prefix in front of the message when the server is known to understand it.

use crate::call::CallHandle;
use crate::prefix::write_prefix;
use crate::PROBE_METHOD;
use tdist_core::{Endpoint, Kind, Tracer};
use thrift::protocol::{TFieldIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol};

/// A [`TOutputProtocol`] wrapper for clients. For each CALL or ONEWAY message it starts a
/// CLIENT span named after the method, as a child of the current context; when prefixes are on
/// it writes the span's context in front of the message, into the same buffer or frame. With
/// prefixes off it writes exactly what the wrapped protocol writes. A ONEWAY call's span ends
/// when the message is flushed; a CALL's when the paired [`TracingInputProtocol`](crate::TracingInputProtocol)
/// has read the reply.
///
/// Built in pairs by [`client_protocols`](crate::client_protocols) or a [`Connector`](crate::Connector).
pub struct TracingOutputProtocol<P> {
    inner: P,
    tracer: Tracer,
    call: CallHandle,
    send_prefix: bool,
    remote: Option<Endpoint>,
    oneway: bool,
}

impl<P: TOutputProtocol> TracingOutputProtocol<P> {
    pub(crate) fn new(
        inner: P,
        tracer: Tracer,
        call: CallHandle,
        send_prefix: bool,
        remote: Option<Endpoint>,
    ) -> Self {
        TracingOutputProtocol {
            inner,
            tracer,
            call,
            send_prefix,
            remote,
            oneway: false,
        }
    }

    /// Whether a tracing prefix is written in front of calls.
    pub fn sends_prefix(&self) -> bool {
        self.send_prefix
    }

    /// The wrapped protocol.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P: TOutputProtocol> TOutputProtocol for TracingOutputProtocol<P> {
    fn write_message_begin(&mut self, ident: &TMessageIdentifier) -> thrift::Result<()> {
        let is_call = matches!(
            ident.message_type,
            TMessageType::Call | TMessageType::OneWay
        );
        if !is_call || ident.name == PROBE_METHOD {
            return self.inner.write_message_begin(ident);
        }
        let mut span = self.tracer.span(ident.name.clone());
        span.set_kind(Kind::Client);
        if let Some(remote) = &self.remote {
            span.set_remote_endpoint(remote.clone());
        }
        let ctx = span.context();
        self.oneway = ident.message_type == TMessageType::OneWay;
        self.call.start(span);
        let res = if self.send_prefix {
            write_prefix(&mut self.inner, &ctx).and_then(|()| self.inner.write_message_begin(ident))
        } else {
            self.inner.write_message_begin(ident)
        };
        if let Err(e) = &res {
            self.call.finish(Some(e.to_string()));
        }
        res
    }

    fn write_message_end(&mut self) -> thrift::Result<()> {
        self.inner.write_message_end()
    }

    fn write_field_begin(&mut self, f: &TFieldIdentifier) -> thrift::Result<()> {
        self.inner.write_field_begin(f)
    }

    fn write_string(&mut self, s: &str) -> thrift::Result<()> {
        self.inner.write_string(s)
    }

    fn flush(&mut self) -> thrift::Result<()> {
        let res = self.inner.flush();
        if let Err(e) = &res {
            self.call.finish(Some(e.to_string()));
        } else if std::mem::take(&mut self.oneway) {
            self.call.finish(None);
        }
        res
    }

    fwd_out_rest!(inner);
}

impl<P> std::fmt::Debug for TracingOutputProtocol<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingOutputProtocol")
            .field("send_prefix", &self.send_prefix)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}
