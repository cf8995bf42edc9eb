//! The binary context frame, for carriers without headers: a Kafka payload prefix, a Thrift
//! message prefix, a Storm tuple carrying a raw Kafka payload.
//!
//! # Layout (version 1), all integers big-endian
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0xC1 0xB3` |
//! | 2 | 1 | version, `0x01` |
//! | 3 | 1 | flags: bits 0–1 sampling (0 defer, 1 deny, 2 accept, 3 debug); bit 2 the trace id is 128-bit; bit 3 a parent id follows; bits 4–7 reserved, must be 0 |
//! | 4 | 8 or 16 | trace id (high half first when 128-bit; the high half is then non-zero) |
//! | +0 | 8 | span id, non-zero |
//! | +8 | 8 | parent span id, non-zero, only when flag bit 3 is set |
//! | end−4 | 4 | CRC-32 (IEEE) of every preceding byte of the frame |
//!
//! A frame is 24 bytes (64-bit trace, no parent) to 40 bytes (128-bit trace and a parent).
//!
//! # Why these first bytes
//! `0xC1` never starts a plain Thrift message or frame (strict binary starts `0x80`, compact
//! `0x82`, everything else `0x00`–`0x7F`), a JSON document (ASCII), a schema-registry payload
//! (`0x00`/`0x01`), a protobuf message such as Zipkin's ListOfSpans (`0x0A`), or UTF-8 text (it is
//! never a valid UTF-8 byte), and MessagePack never uses it. Opaque payloads may start with
//! anything, so the decoder is strict: wrong magic, unknown version, reserved flag bits, a zero
//! id, a short input or a bad checksum all answer "no frame", and the caller keeps the whole
//! input. A random payload passes the magic, version and flag checks with probability below
//! 2⁻²⁶ and the checksum with 2⁻³² on top.
//!
//! ```
//! use tdist_core::binary;
//! use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
//!
//! let ctx = SpanContext::new(TraceId::random_128(), SpanId::random())
//!     .with_parent(Some(SpanId::random()))
//!     .with_sampling(SamplingState::Accept);
//! let mut message = binary::encode(&ctx).as_bytes().to_vec();
//! message.extend_from_slice(b"{\"comment\":\"hi\"}");
//! let (found, payload) = binary::split(&message);
//! assert_eq!(found, Some(ctx));
//! assert_eq!(payload, b"{\"comment\":\"hi\"}");
//!
//! // Not a frame: the input comes back whole.
//! let plain = [0xC1, 0xB3, 0x01, 0x00, 1, 2, 3];
//! assert_eq!(binary::split(&plain), (None, &plain[..]));
//! ```

use crate::context::{SamplingState, SpanContext};
use crate::id::{SpanId, TraceId};

/// The two magic bytes.
pub const MAGIC: [u8; 2] = [0xC1, 0xB3];
/// The only version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes needed to know a frame's length: magic, version, flags.
pub const HEADER_LEN: usize = 4;
/// The shortest frame.
pub const MIN_LEN: usize = 24;
/// The longest frame.
pub const MAX_LEN: usize = 40;

const FLAG_128: u8 = 0b0100;
const FLAG_PARENT: u8 = 0b1000;
const FLAG_RESERVED: u8 = 0xF0;

/// Why a byte string is not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoFrame {
    /// Fewer bytes than the frame needs.
    #[error("too short for a context frame")]
    TooShort,
    /// The first two bytes are not the magic.
    #[error("no context-frame magic")]
    Magic,
    /// A version this crate does not know.
    #[error("unknown context-frame version {0}")]
    Version(u8),
    /// Reserved flag bits are set.
    #[error("reserved context-frame flags set")]
    Flags,
    /// An id is zero, or a 128-bit flag with a zero high half.
    #[error("context frame holds an invalid id")]
    Id,
    /// The checksum does not match.
    #[error("context-frame checksum mismatch")]
    Checksum,
}

/// An encoded frame, on the stack.
#[derive(Clone, Copy)]
pub struct Frame {
    buf: [u8; MAX_LEN],
    len: u8,
}

impl Frame {
    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// Writes the frame for `ctx` at the start of `buf` (at least [`MAX_LEN`] bytes) and returns
/// its length. The header is one 4-byte store and each id one 8-byte store, so that the
/// checksum's loads, each inside one of them, are served from the store buffer (loads spanning
/// several smaller stores stall until they complete).
#[inline]
fn write(ctx: &SpanContext, buf: &mut [u8]) -> usize {
    let trace = ctx.trace_id();
    let mut flags = match ctx.sampling() {
        SamplingState::Defer => 0,
        SamplingState::Deny => 1,
        SamplingState::Accept => 2,
        SamplingState::Debug => 3,
    };
    let mut ids = [0u64; 4];
    let mut n = 0;
    if trace.is_128() {
        flags |= FLAG_128;
        ids[n] = trace.high();
        n += 1;
    }
    ids[n] = trace.low();
    ids[n + 1] = ctx.span_id().get();
    n += 2;
    if let Some(p) = ctx.parent_id() {
        flags |= FLAG_PARENT;
        ids[n] = p.get();
        n += 1;
    }
    buf[..HEADER_LEN].copy_from_slice(&[MAGIC[0], MAGIC[1], VERSION, flags]);
    for (i, id) in ids[..n].iter().enumerate() {
        let at = HEADER_LEN + 8 * i;
        buf[at..at + 8].copy_from_slice(&id.to_be_bytes());
    }
    let at = HEADER_LEN + 8 * n;
    let crc = crc32fast::hash(&buf[..at]);
    buf[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    at + 4
}

/// Encodes `ctx` (the `shared` flag is local and not carried).
#[inline]
pub fn encode(ctx: &SpanContext) -> Frame {
    let mut buf = [0u8; MAX_LEN];
    let len = write(ctx, &mut buf);
    Frame {
        buf,
        len: len as u8,
    }
}

/// Appends the frame for `ctx` to `out`, written in place (no intermediate copy).
#[inline]
pub fn encode_into(ctx: &SpanContext, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + MAX_LEN, 0);
    let len = write(ctx, &mut out[start..]);
    out.truncate(start + len);
}

/// The total frame length announced by the first [`HEADER_LEN`] bytes, for stream readers that
/// must know how much to read before [`decode`]. Checks magic, version and reserved flags.
#[inline]
pub fn frame_len(header: &[u8]) -> Result<usize, NoFrame> {
    if header.len() < HEADER_LEN {
        return Err(if header.is_empty() || header[0] == MAGIC[0] {
            NoFrame::TooShort
        } else {
            NoFrame::Magic
        });
    }
    if header[..2] != MAGIC {
        return Err(NoFrame::Magic);
    }
    if header[2] != VERSION {
        return Err(NoFrame::Version(header[2]));
    }
    let flags = header[3];
    if flags & FLAG_RESERVED != 0 {
        return Err(NoFrame::Flags);
    }
    let trace = if flags & FLAG_128 != 0 { 16 } else { 8 };
    let parent = if flags & FLAG_PARENT != 0 { 8 } else { 0 };
    Ok(HEADER_LEN + trace + 8 + parent + 4)
}

/// Decodes a frame at the start of `input`; returns the context and the bytes after it.
#[inline]
pub fn decode(input: &[u8]) -> Result<(SpanContext, &[u8]), NoFrame> {
    let len = frame_len(input)?;
    if input.len() < len {
        return Err(NoFrame::TooShort);
    }
    let (frame, rest) = input.split_at(len);
    let body = &frame[..len - 4];
    let crc = u32::from_be_bytes([
        frame[len - 4],
        frame[len - 3],
        frame[len - 2],
        frame[len - 1],
    ]);
    if crc32fast::hash(body) != crc {
        return Err(NoFrame::Checksum);
    }
    let flags = frame[3];
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&frame[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let mut at = HEADER_LEN;
    let high = if flags & FLAG_128 != 0 {
        at += 8;
        let h = u64_at(HEADER_LEN);
        if h == 0 {
            return Err(NoFrame::Id);
        }
        h
    } else {
        0
    };
    let trace_id = TraceId::new(high, u64_at(at)).ok_or(NoFrame::Id)?;
    let span_id = SpanId::new(u64_at(at + 8)).ok_or(NoFrame::Id)?;
    let parent = if flags & FLAG_PARENT != 0 {
        Some(SpanId::new(u64_at(at + 16)).ok_or(NoFrame::Id)?)
    } else {
        None
    };
    let sampling = match flags & 0b11 {
        0 => SamplingState::Defer,
        1 => SamplingState::Deny,
        2 => SamplingState::Accept,
        _ => SamplingState::Debug,
    };
    let ctx = SpanContext::new(trace_id, span_id)
        .with_parent(parent)
        .with_sampling(sampling);
    Ok((ctx, rest))
}

/// The context and payload when `input` starts with a valid frame; otherwise `None` and the
/// whole input, untouched.
#[inline]
pub fn split(input: &[u8]) -> (Option<SpanContext>, &[u8]) {
    match decode(input) {
        Ok((ctx, rest)) => (Some(ctx), rest),
        Err(_) => (None, input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(t128: bool, parent: bool, s: SamplingState) -> SpanContext {
        let trace = if t128 {
            TraceId::random_128()
        } else {
            TraceId::random_64()
        };
        SpanContext::new(trace, SpanId::random())
            .with_parent(parent.then(SpanId::random))
            .with_sampling(s)
    }

    #[test]
    fn sizes_and_round_trip() {
        for t128 in [false, true] {
            for parent in [false, true] {
                for s in [
                    SamplingState::Defer,
                    SamplingState::Deny,
                    SamplingState::Accept,
                    SamplingState::Debug,
                ] {
                    let c = ctx(t128, parent, s);
                    let f = encode(&c);
                    let expect = 24 + if t128 { 8 } else { 0 } + if parent { 8 } else { 0 };
                    assert_eq!(f.as_bytes().len(), expect);
                    assert_eq!(frame_len(f.as_bytes()), Ok(expect));
                    assert_eq!(decode(f.as_bytes()), Ok((c, &[][..])));
                    let mut out = b"before".to_vec();
                    encode_into(&c, &mut out);
                    assert_eq!(&out[..6], b"before");
                    assert_eq!(&out[6..], f.as_bytes());
                }
            }
        }
    }

    #[test]
    fn first_byte_never_starts_known_formats() {
        let b = MAGIC[0];
        assert!(
            b != 0x80 && b != 0x82 && b >= 0x80,
            "thrift binary/compact/non-strict/JSON/framed"
        );
        assert!(b != 0x00 && b != 0x01 && b != 0x0A && b != b'[' && b != b'{');
        assert!(std::str::from_utf8(&[b]).is_err());
    }

    #[test]
    fn every_corruption_is_no_frame() {
        let f = encode(&ctx(true, true, SamplingState::Accept));
        let bytes = f.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut m = bytes.to_vec();
                m[i] ^= 1 << bit;
                m.extend_from_slice(b"payload");
                let (c, rest) = split(&m);
                assert!(c.is_none(), "flip byte {i} bit {bit}");
                assert_eq!(rest, &m[..]);
            }
        }
        for n in 0..bytes.len() {
            assert_eq!(split(&bytes[..n]), (None, &bytes[..n]));
        }
    }

    #[test]
    fn unknown_version_is_no_frame() {
        let mut m = encode(&ctx(false, false, SamplingState::Defer))
            .as_bytes()
            .to_vec();
        m[2] = 2;
        assert_eq!(decode(&m), Err(NoFrame::Version(2)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn arbitrary_input_never_panics_and_non_frames_come_back_whole(input in proptest::collection::vec(any::<u8>(), 0..96)) {
            let (c, rest) = split(&input);
            match c {
                None => prop_assert_eq!(rest, &input[..]),
                Some(_) => prop_assert!(rest.len() + MIN_LEN <= input.len()),
            }
        }

        #[test]
        fn magic_prefixed_noise_is_not_a_frame(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut input = vec![0xC1, 0xB3, 0x01];
            input.extend_from_slice(&tail);
            let (c, rest) = split(&input);
            prop_assert!(c.is_none());
            prop_assert_eq!(rest, &input[..]);
        }
    }
}
