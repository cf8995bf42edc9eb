//! B3 propagation: the single `b3` header and the `X-B3-*` multi headers.
//!
//! Parsing follows Brave's rules: lower-hex only, exact field lengths in the single form, all-zero
//! ids rejected, an all-zero parent in the single form read as "no parent", and any malformed
//! field rejects the whole value (never a partial context).
//!
//! ```
//! use tdist_core::propagation::b3;
//! use tdist_core::{Extracted, SamplingState};
//!
//! let ctx = b3::parse_single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
//!     .unwrap()
//!     .context()
//!     .unwrap();
//! assert_eq!(ctx.sampling(), SamplingState::Accept);
//! assert_eq!(ctx.parent_id().unwrap().to_hex().as_str(), "05e3ac9a4f6e3b90");
//! assert_eq!(b3::parse_single("0").unwrap(), Extracted::Sampling(SamplingState::Deny));
//! assert!(b3::parse_single("80F198EE56343BA8-e457b5a2e4d86bd1").is_err());
//! ```

use super::{Extractor, Injector, MalformedError};
use crate::context::{Extracted, SamplingState, SpanContext};
use crate::id::{parse_hex_u64, write_hex_u64, SpanId, TraceId};

/// Header name of the single form.
pub const B3: &str = "b3";
/// `X-B3-TraceId`, lower-cased as written on the wire.
pub const TRACE_ID: &str = "x-b3-traceid";
/// `X-B3-SpanId`, lower-cased.
pub const SPAN_ID: &str = "x-b3-spanid";
/// `X-B3-ParentSpanId`, lower-cased.
pub const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
/// `X-B3-Sampled`, lower-cased.
pub const SAMPLED: &str = "x-b3-sampled";
/// `X-B3-Flags`, lower-cased.
pub const FLAGS: &str = "x-b3-flags";

/// The longest valid `b3` value: 32+1+16+1+1+1+16.
pub const MAX_SINGLE_LEN: usize = 68;

/// A formatted `b3` value, kept on the stack.
#[derive(Clone, Copy)]
pub struct B3Single {
    buf: [u8; MAX_SINGLE_LEN],
    len: u8,
}

impl B3Single {
    /// The header value.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    fn push(&mut self, bytes: &[u8]) {
        let start = self.len as usize;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    fn push_u64(&mut self, v: u64) {
        let start = self.len as usize;
        write_hex_u64(v, &mut self.buf[start..start + 16]);
        self.len += 16;
    }
}

impl std::fmt::Debug for B3Single {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::ops::Deref for B3Single {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

fn sampling_char(s: SamplingState) -> Option<u8> {
    match s {
        SamplingState::Defer => None,
        SamplingState::Deny => Some(b'0'),
        SamplingState::Accept => Some(b'1'),
        SamplingState::Debug => Some(b'd'),
    }
}

/// Formats `ctx` as a `b3` value. `with_parent` is false for messaging, where consumers always
/// make a child (Brave's `SINGLE_NO_PARENT`).
pub fn format_single(ctx: &SpanContext, with_parent: bool) -> B3Single {
    let mut out = B3Single {
        buf: [0; MAX_SINGLE_LEN],
        len: 0,
    };
    let trace = ctx.trace_id();
    if trace.is_128() {
        out.push_u64(trace.high());
    }
    out.push_u64(trace.low());
    out.push(b"-");
    out.push_u64(ctx.span_id().get());
    if let Some(c) = sampling_char(ctx.sampling()) {
        out.push(&[b'-', c]);
    }
    if let (true, Some(p)) = (with_parent, ctx.parent_id()) {
        out.push(b"-");
        out.push_u64(p.get());
    }
    out
}

/// Parses a `b3` value.
pub fn parse_single(value: &str) -> Result<Extracted, MalformedError> {
    parse_single_bytes(value.as_bytes())
}

/// [`parse_single`] on bytes: every byte of a value it accepts is checked (lower-hex ids, `-`,
/// a sampling character), so an accepted value is always visible ASCII.
#[inline]
pub(crate) fn parse_single_bytes(b: &[u8]) -> Result<Extracted, MalformedError> {
    match b.len() {
        0 => return Err(MalformedError::new("b3", "empty")),
        1 => {
            return parse_sampling_field(b[0])
                .map(Extracted::Sampling)
                .ok_or(MalformedError::new(
                    "b3",
                    "single character is not 0, 1 or d",
                ))
        }
        n if n > MAX_SINGLE_LEN => return Err(MalformedError::new("b3", "too long")),
        _ => {}
    }
    // Positions are fixed: the trace id ends at 16 or 32, the span id 16 later.
    let t_len = match b.iter().position(|&c| c == b'-') {
        Some(n @ (16 | 32)) => n,
        Some(0) => return Err(MalformedError::new("b3", "empty trace id")),
        Some(_) => {
            return Err(MalformedError::new(
                "b3",
                "trace id is not 16 or 32 characters",
            ))
        }
        None => return Err(MalformedError::new("b3", "missing span id")),
    };
    let trace_id = TraceId::from_hex_bytes(&b[..t_len])
        .map_err(|e| MalformedError::id("b3", "trace id", e))?;
    let rest = &b[t_len + 1..];
    let span_end = rest.iter().position(|&c| c == b'-').unwrap_or(rest.len());
    if span_end != 16 {
        return Err(MalformedError::new("b3", "span id is not 16 characters"));
    }
    let span_id = SpanId::new(
        parse_hex_u64(&rest[..16]).map_err(|e| MalformedError::id("b3", "span id", e))?,
    )
    .ok_or(MalformedError::new("b3", "span id is all zeros"))?;
    let (sampling, parent) = match &rest[16..] {
        [] => (SamplingState::Defer, None),
        [b'-'] | [b'-', b'-', ..] => return Err(MalformedError::new("b3", "empty field")),
        [b'-', c] => (sampling_field(*c)?, None),
        // `{t}-{s}-{p}`: a third field longer than one character is the parent.
        [b'-', p @ ..] if p.len() == 16 => (SamplingState::Defer, Some(p)),
        [b'-', c, b'-', p @ ..] => (sampling_field(*c)?, Some(p)),
        [b'-', ..] => {
            return Err(MalformedError::new(
                "b3",
                "sampling or parent field has the wrong length",
            ))
        }
        _ => return Err(MalformedError::new("b3", "span id is not 16 characters")),
    };
    let parent_id = match parent {
        None => None,
        Some(p) => {
            if p.len() != 16 {
                return Err(MalformedError::new("b3", "parent id is not 16 characters"));
            }
            // An all-zero parent in the single form means "no parent".
            SpanId::new(parse_hex_u64(p).map_err(|e| MalformedError::id("b3", "parent id", e))?)
        }
    };
    Ok(Extracted::Context(
        SpanContext::new(trace_id, span_id)
            .with_parent(parent_id)
            .with_sampling(sampling),
    ))
}

fn sampling_field(c: u8) -> Result<SamplingState, MalformedError> {
    parse_sampling_field(c).ok_or(MalformedError::new("b3", "sampling field is not 0, 1 or d"))
}

fn parse_sampling_field(c: u8) -> Option<SamplingState> {
    match c {
        b'0' => Some(SamplingState::Deny),
        b'1' => Some(SamplingState::Accept),
        b'd' => Some(SamplingState::Debug),
        _ => None,
    }
}

/// Writes `ctx` as `X-B3-*` headers, as Brave's multi injector does: parent only when present,
/// `X-B3-Flags: 1` (and no `X-B3-Sampled`) for debug, `X-B3-Sampled` only when decided.
pub fn inject_multi(ctx: &SpanContext, carrier: &mut dyn Injector) {
    carrier.set(TRACE_ID, &ctx.trace_id().to_hex());
    carrier.set(SPAN_ID, &ctx.span_id().to_hex());
    if let Some(p) = ctx.parent_id() {
        carrier.set(PARENT_SPAN_ID, &p.to_hex());
    }
    match ctx.sampling() {
        SamplingState::Debug => carrier.set(FLAGS, "1"),
        SamplingState::Accept => carrier.set(SAMPLED, "1"),
        SamplingState::Deny => carrier.set(SAMPLED, "0"),
        SamplingState::Defer => {}
    }
}

/// Reads `X-B3-*` headers. `Ok(None)` when none is present.
///
/// Each field is read as bytes ([`Extractor::get_bytes`]) and checked once, by the parser that
/// accepts it; only a value no parser accepts is read again as text, to tell a malformed field
/// from one the carrier cannot read (which counts as absent, as with [`Extractor::get`]).
#[inline]
pub fn extract_multi<E: Extractor + ?Sized>(
    carrier: &E,
) -> Result<Option<Extracted>, MalformedError> {
    let trace = field(carrier, TRACE_ID, parse_lenient_trace);
    let span = field(carrier, SPAN_ID, |v| parse_lenient_span(v, SPAN_ID));
    let parent = field(carrier, PARENT_SPAN_ID, |v| {
        parse_lenient_span(v, PARENT_SPAN_ID)
    });
    let sampled = field(carrier, SAMPLED, |v| match v {
        b"1" => Ok(true),
        b"0" => Ok(false),
        v if v.eq_ignore_ascii_case(b"true") => Ok(true),
        v if v.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => Err(MalformedError::new("x-b3-sampled", "expected 0 or 1")),
    });
    // Any value but `1` is not debug, but still a field that is present.
    let flags = field(carrier, FLAGS, |v| match v {
        b"1" => Ok(()),
        _ => Err(MalformedError::new("x-b3-flags", "not 1")),
    });
    if trace.is_none() && span.is_none() && parent.is_none() && sampled.is_none() && flags.is_none()
    {
        return Ok(None);
    }
    let sampled = sampled.transpose()?;
    let debug = matches!(flags, Some(Ok(())));
    let sampling = match (debug, sampled) {
        (true, _) => SamplingState::Debug,
        (false, Some(true)) => SamplingState::Accept,
        (false, Some(false)) => SamplingState::Deny,
        (false, None) => SamplingState::Defer,
    };
    let Some(trace_id) = trace.transpose()? else {
        return Ok(Some(match sampling {
            SamplingState::Defer => Extracted::Empty,
            s => Extracted::Sampling(s),
        }));
    };
    let span_id = span
        .ok_or(MalformedError::new("x-b3-spanid", "missing"))??
        .ok_or(MalformedError::new("x-b3-spanid", "all zeros"))?;
    let parent_id = match parent.transpose()? {
        None => None,
        // In the multi form an all-zero parent is malformed.
        Some(p) => Some(p.ok_or(MalformedError::new("x-b3-parentspanid", "all zeros"))?),
    };
    Ok(Some(Extracted::Context(
        SpanContext::new(trace_id, span_id)
            .with_parent(parent_id)
            .with_sampling(sampling),
    )))
}

/// Field `key` of the multi form: `None` when absent, else what `parse` makes of it. Bytes
/// `parse` accepts are lower-hex digits or short words, which every carrier can read; bytes it
/// rejects are malformed only if the carrier can read them as text at all, since
/// [`Extractor::get_bytes`] may hand over a value [`Extractor::get`] refuses.
#[inline(always)]
fn field<E: Extractor + ?Sized, T>(
    carrier: &E,
    key: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, MalformedError>,
) -> Option<Result<T, MalformedError>> {
    match parse(carrier.get_bytes(key)?) {
        Ok(v) => Some(Ok(v)),
        Err(e) => carrier.get(key).map(|_| Err(e)),
    }
}

/// Brave accepts 2 to 32 lower-hex characters in `X-B3-TraceId`; the right-most 16 are the low half.
fn parse_lenient_trace(b: &[u8]) -> Result<TraceId, MalformedError> {
    if !(2..=32).contains(&b.len()) {
        return Err(MalformedError::new("x-b3-traceid", "length not in 2..=32"));
    }
    let split = b.len().saturating_sub(16);
    let high = if split > 0 {
        parse_hex_u64(&b[..split]).map_err(|e| MalformedError::id("x-b3-traceid", "high", e))?
    } else {
        0
    };
    let low =
        parse_hex_u64(&b[split..]).map_err(|e| MalformedError::id("x-b3-traceid", "low", e))?;
    TraceId::new(high, low).ok_or(MalformedError::new("x-b3-traceid", "all zeros"))
}

fn parse_lenient_span(b: &[u8], name: &'static str) -> Result<Option<SpanId>, MalformedError> {
    if !(2..=16).contains(&b.len()) {
        return Err(MalformedError::new(name, "length not in 2..=16"));
    }
    let n = parse_hex_u64(b).map_err(|e| MalformedError::id(name, "id", e))?;
    Ok(SpanId::new(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ctx(s: &str) -> SpanContext {
        parse_single(s).unwrap().context().unwrap()
    }

    #[test]
    fn spec_examples_parse_and_round_trip() {
        for v in [
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0",
            "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1",
        ] {
            assert_eq!(format_single(&ctx(v), true).as_str(), v, "{v}");
        }
        let debug = ctx("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d-05e3ac9a4f6e3b90");
        assert_eq!(debug.sampling(), SamplingState::Debug);
    }

    #[test]
    fn sampling_only_forms() {
        assert_eq!(
            parse_single("1").unwrap(),
            Extracted::Sampling(SamplingState::Accept)
        );
        assert_eq!(
            parse_single("d").unwrap(),
            Extracted::Sampling(SamplingState::Debug)
        );
        assert!(parse_single("-").is_err());
        assert!(parse_single("x").is_err());
        assert!(parse_single("").is_err());
    }

    #[test]
    fn parent_without_decision() {
        let c = ctx("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90");
        assert_eq!(c.sampling(), SamplingState::Defer);
        assert_eq!(c.parent_id().unwrap().get(), 0x05e3ac9a4f6e3b90);
        assert_eq!(
            format_single(&c, true).as_str(),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90"
        );
    }

    #[test]
    fn all_zero_parent_is_absent_in_single_form() {
        let c = ctx("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000000");
        assert_eq!(c.parent_id(), None);
    }

    #[test]
    fn left_padded_trace_id_equals_64_bit() {
        let a = ctx("000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1");
        let b = ctx("64fe8b2a57d3eff7-e457b5a2e4d86bd1");
        assert_eq!(a.trace_id(), b.trace_id());
    }

    #[test]
    fn malformed_single_values() {
        for v in [
            "80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1--05e3ac9a4f6e3b90",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-x-05e3ac9a4f6e3b90",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b9",
            "-e457b5a2e4d86bd1",
            "00000000000000000000000000000000-e457b5a2e4d86bd1",
            "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90x",
            "80f198ee56343ba864fe8b2a57d3eff7",
            "80f198ee56343ba864fe8b2a57d3eff7-é457b5a2e4d86bd",
        ] {
            assert!(parse_single(v).is_err(), "{v} should be malformed");
        }
    }

    struct Map(HashMap<&'static str, &'static str>);
    impl Extractor for Map {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).copied()
        }
    }
    fn multi(pairs: &[(&'static str, &'static str)]) -> Result<Option<Extracted>, MalformedError> {
        extract_multi(&Map(pairs.iter().copied().collect()))
    }

    #[test]
    fn multi_rules() {
        let full = multi(&[
            (TRACE_ID, "463ac35c9f6413ad48485a3953bb6124"),
            (SPAN_ID, "a2fb4a1d1a96d312"),
            (PARENT_SPAN_ID, "0020000000000001"),
            (SAMPLED, "1"),
        ])
        .unwrap()
        .unwrap()
        .context()
        .unwrap();
        assert_eq!(full.sampling(), SamplingState::Accept);
        assert_eq!(full.parent_id().unwrap().get(), 0x0020000000000001);
        assert_eq!(multi(&[]).unwrap(), None);
        assert_eq!(
            multi(&[(SAMPLED, "0")]).unwrap(),
            Some(Extracted::Sampling(SamplingState::Deny))
        );
        assert_eq!(
            multi(&[(FLAGS, "1")]).unwrap(),
            Some(Extracted::Sampling(SamplingState::Debug))
        );
        // Debug wins over an explicit Sampled and implies accept.
        let d = multi(&[
            (TRACE_ID, "463ac35c9f6413ad"),
            (SPAN_ID, "a2fb4a1d1a96d312"),
            (SAMPLED, "0"),
            (FLAGS, "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(d.sampling(), SamplingState::Debug);
        // Absent sampled means defer, not deny.
        let defer = multi(&[
            (TRACE_ID, "463ac35c9f6413ad"),
            (SPAN_ID, "a2fb4a1d1a96d312"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(defer.sampling(), SamplingState::Defer);
        // Legacy true/false are read.
        assert!(multi(&[
            (TRACE_ID, "463ac35c9f6413ad"),
            (SPAN_ID, "a2fb4a1d1a96d312"),
            (SAMPLED, "True")
        ])
        .is_ok());
    }

    #[test]
    fn multi_malformed_gives_no_partial_context() {
        for pairs in [
            vec![
                (TRACE_ID, "463ac35c9f6413ad"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
                (SAMPLED, ""),
            ],
            vec![
                (TRACE_ID, "463ac35c9f6413ad"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
                (SAMPLED, "d"),
            ],
            vec![
                (TRACE_ID, "463ac35c9f6413ad"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
                (PARENT_SPAN_ID, "-"),
            ],
            vec![
                (TRACE_ID, "463ac35c9f6413ad"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
                (PARENT_SPAN_ID, "0000000000000000"),
            ],
            vec![
                (TRACE_ID, "463AC35C9F6413AD"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
            ],
            vec![
                (TRACE_ID, "0000000000000000"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
            ],
            vec![(TRACE_ID, "463ac35c9f6413ad")],
            vec![
                (TRACE_ID, "463ac35c9f6413ad"),
                (SPAN_ID, "0000000000000000"),
            ],
            vec![
                (TRACE_ID, "463ac35c9f6413ad463ac35c9f6413ad0"),
                (SPAN_ID, "a2fb4a1d1a96d312"),
            ],
        ] {
            assert!(multi(&pairs).is_err(), "{pairs:?}");
        }
    }

    #[test]
    fn messaging_form_has_no_parent() {
        let c = ctx("463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-05e3ac9a4f6e3b90");
        assert_eq!(
            format_single(&c, false).as_str(),
            "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"
        );
    }
}
