//! Transport and protocol stacks over a TCP stream.

use crate::prefix::{PrefixHandle, PrefixReader};
use std::io::{self, Read};
use std::net::TcpStream;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TOutputProtocol,
};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport,
};

/// A boxed input protocol, as the stacks here build them.
pub type BoxedInput = Box<dyn TInputProtocol + Send>;
/// A boxed output protocol, as the stacks here build them.
pub type BoxedOutput = Box<dyn TOutputProtocol + Send>;

/// How messages are delimited on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// `TFramedTransport`: a 4-byte length in front of each message (the prefix is inside the frame).
    #[default]
    Framed,
    /// `TBufferedTransport`: messages back to back on the stream.
    Buffered,
}

/// The Thrift encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `TBinaryProtocol`: writes strict, reads strict and non-strict.
    #[default]
    Binary,
    /// `TCompactProtocol`.
    Compact,
}

/// Builds the input and output protocols for `stream` (which is cloned for the output side).
/// With `detect`, the input reads through a [`PrefixReader`] whose handle is returned.
pub fn protocols(
    stream: &TcpStream,
    framing: Framing,
    protocol: Protocol,
    detect: bool,
) -> io::Result<(BoxedInput, Option<PrefixHandle>, BoxedOutput)> {
    let read = stream.try_clone()?;
    let write = stream.try_clone()?;
    let transport: Box<dyn Read + Send> = match framing {
        Framing::Framed => Box::new(TFramedReadTransport::new(read)),
        Framing::Buffered => Box::new(TBufferedReadTransport::new(read)),
    };
    let (transport, handle): (Box<dyn Read + Send>, _) = if detect {
        let (r, h) = PrefixReader::new(transport);
        (Box::new(r), Some(h))
    } else {
        (transport, None)
    };
    let input: BoxedInput = match protocol {
        Protocol::Binary => Box::new(TBinaryInputProtocol::new(transport, false)),
        Protocol::Compact => Box::new(TCompactInputProtocol::new(transport)),
    };
    let output: BoxedOutput = match (framing, protocol) {
        (Framing::Framed, Protocol::Binary) => Box::new(TBinaryOutputProtocol::new(
            TFramedWriteTransport::new(write),
            true,
        )),
        (Framing::Framed, Protocol::Compact) => Box::new(TCompactOutputProtocol::new(
            TFramedWriteTransport::new(write),
        )),
        (Framing::Buffered, Protocol::Binary) => Box::new(TBinaryOutputProtocol::new(
            TBufferedWriteTransport::new(write),
            true,
        )),
        (Framing::Buffered, Protocol::Compact) => Box::new(TCompactOutputProtocol::new(
            TBufferedWriteTransport::new(write),
        )),
    };
    Ok((input, handle, output))
}
