//! Serializer and deserializer wrappers that carry the trace context inside the payload.
//!
//! [`Serializer`] writes a value into a byte buffer; [`TracingSerializer`] writes the current
//! context's frame into the same buffer first, so the wrapped serializer's bytes are never
//! copied. [`TracingDeserializer`] splits a valid frame off and hands the rest, a borrowed
//! slice of the input, to the wrapped [`Deserializer`]; input without a valid frame goes to
//! the wrapped deserializer whole. Consumers can therefore be upgraded before producers.
//!
//! ```
//! use tdist_kafka::codec::{Deserializer, Serializer, TracingDeserializer, TracingSerializer, Utf8};
//! use tdist_core::{set_current, SpanContext, SpanId, TraceId};
//!
//! let producer_ctx = SpanContext::new(TraceId::random_128(), SpanId::random());
//! let ser = TracingSerializer::new(Utf8);
//! let mut bytes = Vec::new();
//! {
//!     let _in_span = set_current(Some(producer_ctx));
//!     ser.serialize("hello", &mut bytes).unwrap();
//! }
//!
//! let de = TracingDeserializer::new(Utf8);
//! let traced = de.deserialize(&bytes).unwrap();
//! assert_eq!(traced.context, Some(producer_ctx));
//! assert_eq!(traced.value, "hello");
//!
//! // An old producer's message: no frame, same deserializer.
//! let traced = de.deserialize(b"plain").unwrap();
//! assert_eq!((traced.context, traced.value.as_str()), (None, "plain"));
//! ```

use crate::frame;
use std::convert::Infallible;
use tdist_core::{current, SpanContext};

/// Turns a value into bytes, appending them to `out`.
pub trait Serializer<T: ?Sized> {
    /// Why a value could not be serialized.
    type Error;

    /// Appends the bytes of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Self::Error>;
}

/// Turns bytes into a value.
pub trait Deserializer<T> {
    /// Why the bytes could not be deserialized.
    type Error;

    /// Reads a value from `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, Self::Error>;
}

impl<T: ?Sized, S: Serializer<T> + ?Sized> Serializer<T> for &S {
    type Error = S::Error;
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), Self::Error> {
        (**self).serialize(value, out)
    }
}

impl<T, D: Deserializer<T> + ?Sized> Deserializer<T> for &D {
    type Error = D::Error;
    fn deserialize(&self, bytes: &[u8]) -> Result<T, Self::Error> {
        (**self).deserialize(bytes)
    }
}

/// Raw bytes, written and read as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Serializer<[u8]> for Bytes {
    type Error = Infallible;
    fn serialize(&self, value: &[u8], out: &mut Vec<u8>) -> Result<(), Infallible> {
        out.extend_from_slice(value);
        Ok(())
    }
}

impl Serializer<Vec<u8>> for Bytes {
    type Error = Infallible;
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), Infallible> {
        out.extend_from_slice(value);
        Ok(())
    }
}

impl Deserializer<Vec<u8>> for Bytes {
    type Error = Infallible;
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, Infallible> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serializer<str> for Utf8 {
    type Error = Infallible;
    fn serialize(&self, value: &str, out: &mut Vec<u8>) -> Result<(), Infallible> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
}

impl Serializer<String> for Utf8 {
    type Error = Infallible;
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), Infallible> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
}

impl Deserializer<String> for Utf8 {
    type Error = std::str::Utf8Error;
    fn deserialize(&self, bytes: &[u8]) -> Result<String, Self::Error> {
        std::str::from_utf8(bytes).map(str::to_owned)
    }
}

/// A serializer made of a closure `Fn(&T, &mut Vec<u8>) -> Result<(), E>`.
#[derive(Clone, Copy)]
pub struct SerializeFn<F>(pub F);

impl<F> std::fmt::Debug for SerializeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerializeFn")
    }
}

impl<T: ?Sized, E, F: Fn(&T, &mut Vec<u8>) -> Result<(), E>> Serializer<T> for SerializeFn<F> {
    type Error = E;
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), E> {
        (self.0)(value, out)
    }
}

/// A deserializer made of a closure `Fn(&[u8]) -> Result<T, E>`.
#[derive(Clone, Copy)]
pub struct DeserializeFn<F>(pub F);

impl<F> std::fmt::Debug for DeserializeFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeserializeFn")
    }
}

impl<T, E, F: Fn(&[u8]) -> Result<T, E>> Deserializer<T> for DeserializeFn<F> {
    type Error = E;
    fn deserialize(&self, bytes: &[u8]) -> Result<T, E> {
        (self.0)(bytes)
    }
}

/// Frames the wrapped serializer's output with the current context (the producer span's,
/// when called inside it). With no current context the output is the wrapped serializer's
/// alone, exactly as without tracing.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSerializer<S> {
    inner: S,
}

impl<S> TracingSerializer<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> TracingSerializer<S> {
        TracingSerializer { inner }
    }

    /// The wrapped serializer.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Serializes `value` framed with `ctx` (none: no frame) instead of the current context.
    /// On error `out` is left as it was.
    pub fn serialize_with<T: ?Sized>(
        &self,
        ctx: Option<&SpanContext>,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), S::Error>
    where
        S: Serializer<T>,
    {
        let start = out.len();
        frame::write_frame(ctx, out);
        self.inner
            .serialize(value, out)
            .inspect_err(|_| out.truncate(start))
    }
}

impl<T: ?Sized, S: Serializer<T>> Serializer<T> for TracingSerializer<S> {
    type Error = S::Error;
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), S::Error> {
        self.serialize_with(current().as_ref(), value, out)
    }
}

/// A value read from a payload, with the context its frame carried (none: untraced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced<T> {
    /// The producer's context, when the payload was framed.
    pub context: Option<SpanContext>,
    /// The deserialized value.
    pub value: T,
}

/// Splits a frame off the payload if there is a valid one, and hands the rest (a borrowed
/// slice, no copy) to the wrapped deserializer; anything else goes to it whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDeserializer<D> {
    inner: D,
}

impl<D> TracingDeserializer<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> TracingDeserializer<D> {
        TracingDeserializer { inner }
    }

    /// The wrapped deserializer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// Unwraps.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<T, D: Deserializer<T>> Deserializer<Traced<T>> for TracingDeserializer<D> {
    type Error = D::Error;
    fn deserialize(&self, bytes: &[u8]) -> Result<Traced<T>, D::Error> {
        let u = frame::decode(bytes);
        Ok(Traced {
            context: u.context,
            value: self.inner.deserialize(u.payload)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tdist_core::{set_current, SpanId, TraceId};

    #[derive(Debug, PartialEq)]
    struct Order(u32);

    fn order_ser() -> SerializeFn<impl Fn(&Order, &mut Vec<u8>) -> Result<(), &'static str>> {
        SerializeFn(|o: &Order, out: &mut Vec<u8>| {
            if o.0 == 0 {
                return Err("zero order");
            }
            out.extend_from_slice(&o.0.to_be_bytes());
            Ok(())
        })
    }

    fn order_de() -> DeserializeFn<impl Fn(&[u8]) -> Result<Order, &'static str>> {
        DeserializeFn(|b: &[u8]| {
            <[u8; 4]>::try_from(b)
                .map(|a| Order(u32::from_be_bytes(a)))
                .map_err(|_| "length")
        })
    }

    #[test]
    fn no_current_context_writes_exactly_the_inner_bytes() {
        let mut out = Vec::new();
        TracingSerializer::new(order_ser())
            .serialize(&Order(7), &mut out)
            .unwrap();
        assert_eq!(out, 7u32.to_be_bytes());
    }

    #[test]
    fn framed_round_trip_through_wrappers() {
        let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
        let mut out = Vec::new();
        {
            let _g = set_current(Some(ctx));
            TracingSerializer::new(order_ser())
                .serialize(&Order(9), &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 24 + 4);
        let t = TracingDeserializer::new(order_de())
            .deserialize(&out)
            .unwrap();
        assert_eq!(
            t,
            Traced {
                context: Some(ctx),
                value: Order(9)
            }
        );
    }

    #[test]
    fn serializer_error_leaves_buffer_untouched() {
        let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
        let mut out = b"keep".to_vec();
        let err =
            TracingSerializer::new(order_ser()).serialize_with(Some(&ctx), &Order(0), &mut out);
        assert_eq!(err, Err("zero order"));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn inner_error_is_passed_through_and_non_frames_reach_inner_whole() {
        let de = TracingDeserializer::new(order_de());
        assert_eq!(de.deserialize(b"abc"), Err("length"));
        // Starts with the magic but is not a frame: the inner deserializer sees all 4 bytes.
        let t = de.deserialize(&[0xC1, 0xB3, 0x01, 0x00]).unwrap();
        assert_eq!(t.context, None);
        assert_eq!(t.value, Order(u32::from_be_bytes([0xC1, 0xB3, 0x01, 0x00])));
    }

    #[test]
    fn bytes_and_utf8() {
        let mut out = Vec::new();
        Bytes.serialize(&b"ab"[..], &mut out).unwrap();
        Utf8.serialize("cd", &mut out).unwrap();
        assert_eq!(
            Deserializer::<Vec<u8>>::deserialize(&Bytes, &out).unwrap(),
            b"abcd"
        );
        assert!(Utf8.deserialize(&[0xC1]).is_err());
    }
}
