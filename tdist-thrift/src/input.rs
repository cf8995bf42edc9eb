//! The tracing input protocol: detects the prefix in front of each message.

use crate::call::CallHandle;
use crate::prefix::{prefix_error, Detected, PrefixHandle, PrefixReader};
use std::cell::Cell;
use tdist_core::SpanContext;
use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TInputProtocolFactory, TMessageIdentifier, TMessageType,
    TType,
};
use thrift::transport::TReadTransport;

/// What a server-side input protocol learnt about the request this thread read last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Inbound {
    /// The request was read through prefix detection, so a prefixed request would have been
    /// understood. False when the stack is plain Thrift (or nothing was read).
    pub(crate) detects: bool,
    /// The context in front of the request, if it had a prefix.
    pub(crate) context: Option<SpanContext>,
}

thread_local! {
    /// Set by a server-side input protocol at each message start; taken by the traced
    /// processor.
    static INBOUND: Cell<Inbound> = const {
        Cell::new(Inbound {
            detects: false,
            context: None,
        })
    };
}

/// Takes what was found in front of the request this thread read last (server side), leaving
/// "nothing read through prefix detection".
pub(crate) fn take_inbound() -> Inbound {
    INBOUND.with(Cell::take)
}

#[derive(Debug)]
enum Role {
    Server,
    Client(CallHandle),
}

/// What a client is waiting for inside a reply, to tag errors without a lock per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Nothing,
    /// A REPLY: its first field says success (id 0) or a declared exception (id ≥ 1).
    FirstField,
    /// An EXCEPTION: its first string is the application error's message.
    Message,
}

/// A [`TInputProtocol`] wrapper that, before each message, checks for the tracing prefix.
///
/// * **Server role** ([`server`](Self::server)): a prefix's context is handed to the
///   [`TracedProcessor`](crate::TracedProcessor) serving the call on this thread; without a
///   prefix the message is read as plain Thrift.
/// * **Client role** (built by [`client_protocols`](crate::client_protocols) or a
///   [`Connector`](crate::Connector)): strips a prefix from replies and ends the call's CLIENT
///   span when the reply has been read, tagging application and declared exceptions as errors.
///
/// A prefix that starts with the magic byte but is invalid is a
/// [`ProtocolErrorKind::InvalidData`](thrift::ProtocolErrorKind::InvalidData) error.
pub struct TracingInputProtocol<P> {
    inner: P,
    prefix: PrefixHandle,
    role: Role,
    watch: Watch,
    error: Option<String>,
}

impl<P: TInputProtocol> TracingInputProtocol<P> {
    /// A server-side wrapper. `inner` must read from the [`PrefixReader`] that `prefix` belongs to.
    pub fn server(inner: P, prefix: PrefixHandle) -> Self {
        Self::with_role(inner, prefix, Role::Server)
    }

    pub(crate) fn client(inner: P, prefix: PrefixHandle, call: CallHandle) -> Self {
        Self::with_role(inner, prefix, Role::Client(call))
    }

    fn with_role(inner: P, prefix: PrefixHandle, role: Role) -> Self {
        TracingInputProtocol {
            inner,
            prefix,
            role,
            watch: Watch::Nothing,
            error: None,
        }
    }

    /// The wrapped protocol.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    fn begin(&mut self) -> thrift::Result<(TMessageIdentifier, Detected)> {
        self.prefix.arm();
        let res = self.inner.read_message_begin();
        let found = self.prefix.take();
        match (res, found) {
            (_, Detected::Invalid(e)) => Err(prefix_error(e)),
            (Ok(ident), found) => Ok((ident, found)),
            (Err(e), _) => Err(e),
        }
    }

    fn client_begin(&mut self, call: &CallHandle) -> thrift::Result<TMessageIdentifier> {
        self.error = None;
        match self.begin() {
            Ok((ident, _)) => {
                self.watch = match ident.message_type {
                    TMessageType::Reply => Watch::FirstField,
                    TMessageType::Exception => {
                        self.error = Some("application exception".into());
                        Watch::Message
                    }
                    _ => Watch::Nothing,
                };
                Ok(ident)
            }
            Err(e) => {
                call.finish(Some(e.to_string()));
                Err(e)
            }
        }
    }
}

impl<P: TInputProtocol> TInputProtocol for TracingInputProtocol<P> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        match &self.role {
            Role::Server => {
                let res = self.begin();
                let ctx = match &res {
                    Ok((_, Detected::Context(c))) => Some(*c),
                    _ => None,
                };
                INBOUND.with(|i| {
                    i.set(Inbound {
                        detects: true,
                        context: ctx,
                    })
                });
                res.map(|(ident, _)| ident)
            }
            Role::Client(call) => {
                let call = call.clone();
                self.client_begin(&call)
            }
        }
    }

    fn read_message_end(&mut self) -> thrift::Result<()> {
        let res = self.inner.read_message_end();
        if let Role::Client(call) = &self.role {
            self.watch = Watch::Nothing;
            let error = match &res {
                Err(e) => Some(e.to_string()),
                Ok(()) => self.error.take(),
            };
            call.finish(error);
        }
        res
    }

    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        let f = self.inner.read_field_begin()?;
        if self.watch == Watch::FirstField {
            self.watch = Watch::Nothing;
            if f.field_type != TType::Stop && f.id != Some(0) {
                let id = f.id.unwrap_or(-1);
                self.error = Some(format!("declared exception (result field {id})"));
            }
        }
        Ok(f)
    }

    fn read_string(&mut self) -> thrift::Result<String> {
        let s = self.inner.read_string()?;
        if self.watch == Watch::Message {
            self.watch = Watch::Nothing;
            self.error = Some(s.clone());
        }
        Ok(s)
    }

    fwd_in_rest!(inner);
}

/// Wraps another [`TInputProtocolFactory`] so that every protocol it creates reads through a
/// [`PrefixReader`] and detects the tracing prefix (server role). Use it with
/// [`thrift::server::TServer`] next to a [`TracedProcessor`](crate::TracedProcessor).
#[derive(Debug)]
pub struct TracingInputProtocolFactory<F> {
    inner: F,
}

impl<F> TracingInputProtocolFactory<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        TracingInputProtocolFactory { inner }
    }
}

impl<F: TInputProtocolFactory> TInputProtocolFactory for TracingInputProtocolFactory<F> {
    fn create(&self, transport: Box<dyn TReadTransport + Send>) -> Box<dyn TInputProtocol + Send> {
        let (reader, handle) = PrefixReader::new(transport);
        let inner = self.inner.create(Box::new(reader));
        Box::new(TracingInputProtocol::server(inner, handle))
    }
}

impl<P> std::fmt::Debug for TracingInputProtocol<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingInputProtocol")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
