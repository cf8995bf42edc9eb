//! # tdist-thrift
//!
//! Trace context across Apache Thrift calls, compatible both ways with plain Thrift peers.
//!
//! * A traced call carries the caller's context as a short **prefix** in front of the Thrift
//!   message: `tdist_core::binary`'s context frame, 24–40 bytes starting `0xC1`, a byte that
//!   never starts a plain binary (strict or not), compact or JSON message, or a frame
//!   ([`prefix`]). It is written into the same buffer or frame as the message.
//! * **Servers** read through a [`PrefixReader`](prefix::PrefixReader) and a
//!   [`TracingInputProtocol`] that detect the prefix and otherwise put the peeked byte back;
//!   a [`TracedProcessor`] around any `TProcessor` records a SERVER span, makes it current while
//!   the handler runs and answers in kind: plain requests get byte-identical plain replies.
//! * **Clients** use a [`TracingOutputProtocol`] / [`TracingInputProtocol`] pair: a CLIENT span
//!   per call, ended when the reply is read, exceptions tagged as errors.
//! * **Upgrade in any order**: a [`Connector`] probes each new connection once with
//!   [`PROBE_METHOD`] (as Finagle does with `__can__finagle__trace__v3__`) and sends prefixes
//!   only to servers that answered. Plain servers answer `UNKNOWN_METHOD` or close the
//!   connection; either way the client reconnects, remembers, and talks plain Thrift.
//!
//! ```
//! use std::net::TcpListener;
//! use tdist_core::export::InMemory;
//! use tdist_core::{Kind, Tracer};
//! use tdist_thrift::{Connector, Framing, Protocol, Server, ServerOptions, TracedProcessor};
//! use thrift::protocol::{TInputProtocol, TOutputProtocol, TMessageIdentifier, TMessageType, TStructIdentifier, TType};
//! use thrift::server::TProcessor;
//!
//! // A hand-written processor for a void method `ping()` (generated processors work the same).
//! struct Ping;
//! impl TProcessor for Ping {
//!     fn process(&self, i: &mut dyn TInputProtocol, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
//!         let call = i.read_message_begin()?;
//!         i.skip(TType::Struct)?;
//!         i.read_message_end()?;
//!         o.write_message_begin(&TMessageIdentifier::new(call.name, TMessageType::Reply, call.sequence_number))?;
//!         o.write_struct_begin(&TStructIdentifier::new("ping_result"))?;
//!         o.write_field_stop()?;
//!         o.write_struct_end()?;
//!         o.write_message_end()?;
//!         o.flush()
//!     }
//! }
//!
//! let sink = InMemory::new();
//! let tracer = Tracer::builder().service_name("svc").transport(sink.clone()).build().unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let server = Server::spawn(
//!     listener,
//!     TracedProcessor::new(tracer.clone(), Ping),
//!     ServerOptions::traced(Framing::Framed, Protocol::Binary),
//! ).unwrap();
//!
//! let conn = Connector::new(tracer.clone()).connect(server.local_addr()).unwrap();
//! assert!(conn.is_traced());
//! let (mut i, mut o) = conn.into_protocols();
//! o.write_message_begin(&TMessageIdentifier::new("ping", TMessageType::Call, 1)).unwrap();
//! o.write_struct_begin(&TStructIdentifier::new("ping_args")).unwrap();
//! o.write_field_stop().unwrap();
//! o.write_struct_end().unwrap();
//! o.write_message_end().unwrap();
//! o.flush().unwrap();
//! assert_eq!(i.read_message_begin().unwrap().message_type, TMessageType::Reply);
//! i.skip(TType::Struct).unwrap();
//! i.read_message_end().unwrap();
//!
//! tracer.flush().unwrap();
//! let spans = sink.spans();
//! assert_eq!(spans.len(), 2);
//! assert!(spans.iter().any(|s| s.kind() == Some(Kind::Client)));
//! assert!(spans.iter().all(|s| s.trace_id() == spans[0].trace_id()));
//! server.shutdown();
//! ```
#![forbid(unsafe_code)]

#[macro_use]
mod fwd;

mod call;
mod client;
mod input;
mod output;
pub mod prefix;
mod processor;
mod server;
mod stack;

pub use client::{client_protocols, ClientInput, ClientOutput, Connection, Connector, Upgrade};
pub use input::{TracingInputProtocol, TracingInputProtocolFactory};
pub use output::TracingOutputProtocol;
pub use processor::TracedProcessor;
pub use server::{Server, ServerOptions};
pub use stack::{protocols, BoxedInput, BoxedOutput, Framing, Protocol};

/// The method name of the upgrade probe a negotiating client sends first on each connection.
/// A traced server answers it with an empty REPLY; any other server with `UNKNOWN_METHOD` (or by
/// closing the connection).
pub const PROBE_METHOD: &str = "__tdist__can__trace__v1__";
