//! Payload framing: tdist-core's binary context frame written before the user's bytes.
//!
//! Pure functions, usable without rdkafka: a Storm spout, a mirror tool or a test can frame and
//! unframe payloads with nothing but byte slices. The frame is 24 bytes (64-bit trace id, no
//! parent) to 40 bytes (128-bit trace id and a parent); see [`tdist_core::binary`] for the
//! layout and why its first bytes cannot start JSON, UTF-8 text, Confluent schema-registry
//! payloads or Zipkin's own span messages.
//!
//! Decoding is strict: anything that is not a valid frame (wrong magic, unknown version,
//! reserved flags, a zero id, truncation, a bad checksum) comes back whole, as an untraced
//! payload. A payload that merely starts with the magic bytes is therefore never truncated.
//!
//! ```
//! use tdist_kafka::frame;
//! use tdist_core::{SpanContext, SpanId, TraceId};
//!
//! let ctx = SpanContext::new(TraceId::random_128(), SpanId::random());
//! let framed = frame::encode(Some(&ctx), b"order 42");
//! let unframed = frame::decode(&framed);
//! assert_eq!(unframed.context, Some(ctx));
//! assert_eq!(unframed.payload, b"order 42");
//!
//! // Untraced, or not a frame at all: the whole input is the payload.
//! let plain = [0xC1, 0xB3, 0x01, 0x00, b'x'];
//! let unframed = frame::decode(&plain);
//! assert_eq!(unframed.context, None);
//! assert_eq!(unframed.payload, &plain[..]);
//! ```

use tdist_core::{binary, SpanContext};

pub use tdist_core::binary::{MAX_LEN, MIN_LEN};

/// A payload with the frame (if any) split off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframed<'a> {
    /// The context carried by the frame; `None` when the input was not framed.
    pub context: Option<SpanContext>,
    /// The user's bytes: after the frame, or the whole input when there was no valid frame.
    pub payload: &'a [u8],
}

impl Unframed<'_> {
    /// Whether a valid frame was found.
    pub fn is_framed(&self) -> bool {
        self.context.is_some()
    }
}

/// Splits a frame off `input`. Never fails: input that is not a valid frame is returned whole.
#[inline]
pub fn decode(input: &[u8]) -> Unframed<'_> {
    let (context, payload) = binary::split(input);
    Unframed { context, payload }
}

/// Appends the frame for `ctx` (nothing when `None`) to `out`; the caller appends the payload.
#[inline]
pub fn write_frame(ctx: Option<&SpanContext>, out: &mut Vec<u8>) {
    if let Some(ctx) = ctx {
        binary::encode_into(ctx, out);
    }
}

/// A new buffer holding the frame for `ctx` (if any) followed by `payload`.
pub fn encode(ctx: Option<&SpanContext>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + if ctx.is_some() { MAX_LEN } else { 0 });
    write_frame(ctx, &mut out);
    out.extend_from_slice(payload);
    out
}

/// The bytes a frame for `ctx` adds to a payload.
pub fn overhead(ctx: &SpanContext) -> usize {
    binary::encode(ctx).as_bytes().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tdist_core::{SamplingState, SpanId, TraceId};

    fn ctx(t128: bool, parent: bool) -> SpanContext {
        let t = if t128 {
            TraceId::random_128()
        } else {
            TraceId::random_64()
        };
        SpanContext::new(t, SpanId::random())
            .with_parent(parent.then(SpanId::random))
            .with_sampling(SamplingState::Accept)
    }

    #[test]
    fn round_trip_every_shape() {
        for (t128, parent) in [(false, false), (false, true), (true, false), (true, true)] {
            let c = ctx(t128, parent);
            let framed = encode(Some(&c), b"payload");
            let u = decode(&framed);
            assert_eq!(u.context, Some(c));
            assert_eq!(u.payload, b"payload");
            assert_eq!(framed.len(), overhead(&c) + 7);
        }
    }

    #[test]
    fn overhead_is_at_most_40_bytes() {
        assert_eq!(overhead(&ctx(true, true)), 40);
        assert_eq!(overhead(&ctx(false, false)), 24);
    }

    #[test]
    fn empty_payload_and_empty_input() {
        let c = ctx(true, false);
        let framed = encode(Some(&c), b"");
        assert_eq!(
            decode(&framed),
            Unframed {
                context: Some(c),
                payload: b""
            }
        );
        assert_eq!(
            decode(b""),
            Unframed {
                context: None,
                payload: b""
            }
        );
        assert_eq!(encode(None, b"abc"), b"abc");
    }

    #[test]
    fn corrupted_frames_come_back_whole() {
        let c = ctx(true, true);
        let framed = encode(Some(&c), b"body");
        for i in 0..overhead(&c) {
            for bit in 0..8 {
                let mut bad = framed.clone();
                bad[i] ^= 1 << bit;
                let u = decode(&bad);
                assert_eq!(u.context, None, "byte {i} bit {bit}");
                assert_eq!(u.payload, &bad[..]);
            }
        }
        for cut in 0..overhead(&c) {
            let u = decode(&framed[..cut]);
            assert_eq!(
                u,
                Unframed {
                    context: None,
                    payload: &framed[..cut]
                }
            );
        }
    }

    fn arb_ctx() -> impl Strategy<Value = SpanContext> {
        (
            any::<u64>(),
            1..=u64::MAX,
            1..=u64::MAX,
            proptest::option::of(1..=u64::MAX),
            0u8..4,
        )
            .prop_map(|(hi, lo, span, parent, s)| {
                let sampling = [
                    SamplingState::Defer,
                    SamplingState::Deny,
                    SamplingState::Accept,
                    SamplingState::Debug,
                ][s as usize];
                SpanContext::new(TraceId::new(hi, lo).unwrap(), SpanId::new(span).unwrap())
                    .with_parent(parent.and_then(SpanId::new))
                    .with_sampling(sampling)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Arbitrary input never panics; either it is a frame that re-encodes to exactly its
        /// prefix, or it comes back whole.
        #[test]
        fn fuzz_arbitrary_input(input in proptest::collection::vec(any::<u8>(), 0..80)) {
            let u = decode(&input);
            match u.context {
                Some(c) => {
                    let n = overhead(&c);
                    prop_assert_eq!(&encode(Some(&c), u.payload)[..], &input[..]);
                    prop_assert_eq!(u.payload, &input[n..]);
                }
                None => prop_assert_eq!(u.payload, &input[..]),
            }
        }

        /// Inputs that start with the magic (the interesting case for a random fuzzer).
        #[test]
        fn fuzz_magic_prefixed(rest in proptest::collection::vec(any::<u8>(), 0..60), v in 0u8..3, f in any::<u8>()) {
            let mut input = vec![0xC1, 0xB3, v, f];
            input.extend_from_slice(&rest);
            let u = decode(&input);
            if u.context.is_none() {
                prop_assert_eq!(u.payload, &input[..]);
            } else {
                prop_assert_eq!(&encode(u.context.as_ref(), u.payload)[..], &input[..]);
            }
        }

        /// Valid frames with one byte of the frame changed are rejected and returned whole
        /// (CRC-32 detects every single-byte error).
        #[test]
        fn fuzz_mutated_frames(c in arb_ctx(), payload in proptest::collection::vec(any::<u8>(), 0..40),
                               at in any::<prop::sample::Index>(), xor in 1u8..=255) {
            let mut framed = encode(Some(&c), &payload);
            let i = at.index(overhead(&c));
            framed[i] ^= xor;
            let u = decode(&framed);
            prop_assert_eq!(u.context, None);
            prop_assert_eq!(u.payload, &framed[..]);
        }

        #[test]
        fn round_trip_any_context(c in arb_ctx(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let framed = encode(Some(&c), &payload);
            let u = decode(&framed);
            prop_assert_eq!(u.context, Some(c));
            prop_assert_eq!(u.payload, &payload[..]);
        }
    }
}
