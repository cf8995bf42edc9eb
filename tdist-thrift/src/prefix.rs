//! The tracing prefix on the wire: writing it in front of a message, and detecting it on read
//! with a one-byte peek buffer (the `thrift` crate's transports cannot unread).
//!
//! The prefix is `tdist_core::binary`'s context frame (24–40 bytes, first byte `0xC1`). No plain
//! Thrift message or frame starts with `0xC1`: strict binary starts `0x80`, compact `0x82`, and
//! non-strict binary, JSON, framed lengths and THeader all start `0x00`–`0x7F`.
//!
//! ```
//! use std::io::Read;
//! use tdist_core::{binary, SpanContext, SpanId, TraceId};
//! use tdist_thrift::prefix::{Detected, PrefixReader};
//!
//! let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
//! let mut wire = binary::encode(&ctx).as_bytes().to_vec();
//! wire.extend_from_slice(&[0x80, 0x01, 0x00, 0x01]);
//!
//! let (mut reader, handle) = PrefixReader::new(&wire[..]);
//! handle.arm();
//! let mut message = Vec::new();
//! reader.read_to_end(&mut message).unwrap();
//! assert_eq!(message, [0x80, 0x01, 0x00, 0x01]);
//! assert_eq!(handle.take(), Detected::Context(ctx));
//!
//! // Plain Thrift: the peeked byte is put back.
//! let (mut reader, handle) = PrefixReader::new(&[0x80u8, 0x01, 0x00, 0x01][..]);
//! handle.arm();
//! let mut message = Vec::new();
//! reader.read_to_end(&mut message).unwrap();
//! assert_eq!(message, [0x80, 0x01, 0x00, 0x01]);
//! assert_eq!(handle.take(), Detected::Absent);
//! ```

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tdist_core::binary::{self, NoFrame, HEADER_LEN, MAGIC, MAX_LEN};
use tdist_core::SpanContext;
use thrift::protocol::TOutputProtocol;

/// What the reader found in front of the last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detected {
    /// Detection was not armed, or nothing has been read since.
    #[default]
    Unknown,
    /// No prefix: plain Thrift (the peeked byte was put back).
    Absent,
    /// A valid prefix carrying this context.
    Context(SpanContext),
    /// The first byte was the prefix magic but the prefix is invalid.
    Invalid(NoFrame),
}

#[derive(Debug, Default)]
struct Shared {
    armed: AtomicBool,
    found: Mutex<Detected>,
}

/// The protocol's side of a [`PrefixReader`]: arms detection before a message and takes the
/// result after.
#[derive(Debug, Clone)]
pub struct PrefixHandle(Arc<Shared>);

impl PrefixHandle {
    /// Detect a prefix at the next byte read (the start of the next message).
    pub fn arm(&self) {
        *self.lock() = Detected::Unknown;
        self.0.armed.store(true, Ordering::Relaxed);
    }

    /// Takes what was found since [`arm`](Self::arm), leaving [`Detected::Unknown`].
    pub fn take(&self) -> Detected {
        self.0.armed.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.lock())
    }

    fn set(&self, d: Detected) {
        *self.lock() = d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Detected> {
        self.0.found.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A read transport that, when armed, looks at the first byte of the next message: a prefix is
/// consumed and decoded, anything else is handed on untouched. Sits directly above the framing
/// transport (inside the frame when framed, on the stream otherwise) and below the protocol.
pub struct PrefixReader<R> {
    inner: R,
    handle: PrefixHandle,
}

impl<R: Read> PrefixReader<R> {
    /// Wraps `inner`; the handle goes to the protocol that arms detection.
    pub fn new(inner: R) -> (PrefixReader<R>, PrefixHandle) {
        let handle = PrefixHandle(Arc::new(Shared::default()));
        let reader = PrefixReader {
            inner,
            handle: handle.clone(),
        };
        (reader, handle)
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    fn detect(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut first = [0u8; 1];
        if read_some(&mut self.inner, &mut first)? == 0 {
            return Ok(0);
        }
        if first[0] != MAGIC[0] {
            self.handle.set(Detected::Absent);
            buf[0] = first[0];
            return Ok(1);
        }
        let mut frame = [0u8; MAX_LEN];
        frame[0] = first[0];
        self.inner.read_exact(&mut frame[1..HEADER_LEN])?;
        let len = binary::frame_len(&frame[..HEADER_LEN]).map_err(|e| self.invalid(e))?;
        self.inner.read_exact(&mut frame[HEADER_LEN..len])?;
        let (ctx, _) = binary::decode(&frame[..len]).map_err(|e| self.invalid(e))?;
        self.handle.set(Detected::Context(ctx));
        self.inner.read(buf)
    }

    fn invalid(&self, e: NoFrame) -> io::Error {
        self.handle.set(Detected::Invalid(e));
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid tracing prefix: {e}"),
        )
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl<R: Read> Read for PrefixReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.handle.0.armed.load(Ordering::Relaxed) {
            self.handle.0.armed.store(false, Ordering::Relaxed);
            return self.detect(buf);
        }
        self.inner.read(buf)
    }
}

/// Writes the prefix for `ctx` through `o`'s raw byte writes, into the same buffer or frame as
/// the message that follows (no extra socket write).
///
/// `o` must write [`write_byte`](TOutputProtocol::write_byte) as one raw byte, as the `thrift`
/// crate's binary and compact protocols do.
pub fn write_prefix(
    o: &mut (impl TOutputProtocol + ?Sized),
    ctx: &SpanContext,
) -> thrift::Result<()> {
    for &b in binary::encode(ctx).as_bytes() {
        o.write_byte(b)?;
    }
    Ok(())
}

/// The protocol error returned for an invalid prefix.
pub(crate) fn prefix_error(e: NoFrame) -> thrift::Error {
    thrift::Error::Protocol(thrift::ProtocolError::new(
        thrift::ProtocolErrorKind::InvalidData,
        format!("invalid tracing prefix: {e}"),
    ))
}

impl<R> std::fmt::Debug for PrefixReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixReader")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}
