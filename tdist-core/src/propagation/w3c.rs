//! W3C Trace Context: `traceparent` and `tracestate`.
//!
//! ```
//! use tdist_core::propagation::w3c;
//!
//! let ctx = w3c::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert!(ctx.is_sampled());
//! assert_eq!(w3c::format_traceparent(&ctx).as_str(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! assert!(w3c::parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_err());
//! ```

use super::MalformedError;
use crate::context::{SamplingState, SpanContext};
use crate::id::{parse_hex_u64, write_hex_u64, SpanId, TraceId};

/// Header name of the parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the vendor state.
pub const TRACESTATE: &str = "tracestate";
/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;
/// The most members a `tracestate` may hold.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

const FLAG_SAMPLED: u8 = 0x01;

/// A formatted `traceparent`, on the stack.
#[derive(Clone, Copy)]
pub struct Traceparent([u8; TRACEPARENT_LEN]);

impl Traceparent {
    /// The header value.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::ops::Deref for Traceparent {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Formats `ctx` as version 00. A 64-bit trace id is left-padded with zeros; the parent-id field
/// is this span's id; the sampled flag is set for accept and debug.
pub fn format_traceparent(ctx: &SpanContext) -> Traceparent {
    let mut b = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex_u64(ctx.trace_id().high(), &mut b[3..19]);
    write_hex_u64(ctx.trace_id().low(), &mut b[19..35]);
    write_hex_u64(ctx.span_id().get(), &mut b[36..52]);
    if ctx.is_sampled() {
        b[54] = b'1';
    }
    Traceparent(b)
}

/// Parses one `traceparent` value (spaces and tabs around it are tolerated).
///
/// The returned context's span id is the caller's span (W3C's parent-id); the receiver makes a
/// child of it. Flags: bit 0 set means accept, clear means deny.
pub fn parse_traceparent(value: &str) -> Result<SpanContext, MalformedError> {
    parse_traceparent_bytes(value.as_bytes())
}

/// [`parse_traceparent`] on bytes. Every byte of the version-00 fields is checked, and the
/// spaces and tabs trimmed around them are text; what a later version puts after them is not
/// read, so a caller that needs the value to be text checks that part itself.
#[inline]
pub(crate) fn parse_traceparent_bytes(value: &[u8]) -> Result<SpanContext, MalformedError> {
    const NAME: &str = "traceparent";
    let blank = |c: &u8| *c == b' ' || *c == b'\t';
    let start = value.iter().position(|c| !blank(c)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|c| !blank(c))
        .map_or(start, |i| i + 1);
    let v = &value[start..end];
    if v.len() < TRACEPARENT_LEN {
        return Err(MalformedError::new(NAME, "shorter than 55 characters"));
    }
    let version = parse_hex_byte(&v[0..2]).ok_or(MalformedError::new(NAME, "bad version"))?;
    if version == 0xff {
        return Err(MalformedError::new(NAME, "version ff is forbidden"));
    }
    if version == 0 && v.len() != TRACEPARENT_LEN {
        return Err(MalformedError::new(NAME, "version 00 with trailing data"));
    }
    // Higher versions: parse the version-00 prefix, which must end at 55 or be followed by '-'.
    if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' {
        return Err(MalformedError::new(
            NAME,
            "unknown version not followed by '-'",
        ));
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return Err(MalformedError::new(NAME, "bad separators"));
    }
    let high = parse_hex_u64(&v[3..19]).map_err(|e| MalformedError::id(NAME, "trace-id", e))?;
    let low = parse_hex_u64(&v[19..35]).map_err(|e| MalformedError::id(NAME, "trace-id", e))?;
    let trace_id =
        TraceId::new(high, low).ok_or(MalformedError::new(NAME, "trace-id all zeros"))?;
    let parent = parse_hex_u64(&v[36..52]).map_err(|e| MalformedError::id(NAME, "parent-id", e))?;
    let span_id = SpanId::new(parent).ok_or(MalformedError::new(NAME, "parent-id all zeros"))?;
    let flags = parse_hex_byte(&v[53..55]).ok_or(MalformedError::new(NAME, "bad flags"))?;
    let sampling = if flags & FLAG_SAMPLED != 0 {
        SamplingState::Accept
    } else {
        SamplingState::Deny
    };
    Ok(SpanContext::new(trace_id, span_id).with_sampling(sampling))
}

fn parse_hex_byte(b: &[u8]) -> Option<u8> {
    if b.len() != 2 {
        return None;
    }
    parse_hex_u64(b).ok().map(|v| v as u8)
}

/// A validated `tracestate`: at most 32 `key=value` members, unique keys, leftmost newest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// Parses one or more `tracestate` header values (joined in order with `,`, as RFC 9110
    /// combines fields). Empty members are allowed; a bad key or value, a duplicate key or more
    /// than 32 members rejects the whole header.
    pub fn parse<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<TraceState, MalformedError> {
        const NAME: &str = "tracestate";
        let mut members: Vec<(String, String)> = Vec::new();
        for value in values {
            for member in value.split(',') {
                let m = member.trim_matches(|c| c == ' ' || c == '\t');
                if m.is_empty() {
                    continue;
                }
                let (k, val) = m
                    .split_once('=')
                    .ok_or(MalformedError::new(NAME, "member without '='"))?;
                if !valid_key(k) {
                    return Err(MalformedError::new(NAME, "invalid key"));
                }
                if !valid_value(val) {
                    return Err(MalformedError::new(NAME, "invalid value"));
                }
                if members.iter().any(|(have, _)| have == k) {
                    return Err(MalformedError::new(NAME, "duplicate key"));
                }
                members.push((k.to_owned(), val.to_owned()));
                if members.len() > MAX_TRACESTATE_MEMBERS {
                    return Err(MalformedError::new(NAME, "more than 32 members"));
                }
            }
        }
        Ok(TraceState { members })
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` and moves it to the left, as the spec requires for a modified member. The
    /// rightmost member is dropped when the list is full.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), MalformedError> {
        if !valid_key(key) || !valid_value(value) {
            return Err(MalformedError::new("tracestate", "invalid member"));
        }
        self.members.retain(|(k, _)| k != key);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        self.members.truncate(MAX_TRACESTATE_MEMBERS);
        Ok(())
    }

    /// Whether no member is present.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The header value, members joined by `,`.
    pub fn header_value(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }
}

/// Level 2 key grammar: `[a-z0-9][a-z0-9_\-*/@]{0,255}` (a superset of the Level 1 forms).
fn valid_key(k: &str) -> bool {
    let b = k.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        _ => return false,
    }
    b.len() <= 256
        && b[1..].iter().all(|&c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

/// Up to 256 printable ASCII characters except `,` and `=`, not ending in a space.
fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn spec_example() {
        let c = parse_traceparent(VALID).unwrap();
        assert_eq!(
            c.trace_id().to_hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(c.span_id().to_hex().as_str(), "00f067aa0ba902b7");
        assert_eq!(c.sampling(), SamplingState::Accept);
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(unsampled.sampling(), SamplingState::Deny);
        // Flags are tested bit by bit: 03 is sampled.
        assert!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
                .unwrap()
                .is_sampled()
        );
        // Surrounding whitespace is tolerated.
        assert!(
            parse_traceparent(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t ")
                .is_ok()
        );
    }

    #[test]
    fn invalid_inputs_from_the_test_suite() {
        for v in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(parse_traceparent(v).is_err(), "{v}");
        }
    }

    #[test]
    fn future_versions() {
        assert!(parse_traceparent(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like"
        )
        .is_ok());
        assert!(
            parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_ok()
        );
        assert!(
            parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what")
                .is_err()
        );
    }

    #[test]
    fn sixty_four_bit_ids_are_padded() {
        let ctx = SpanContext::new(TraceId::new(0, 0xabc).unwrap(), SpanId::new(1).unwrap());
        assert_eq!(
            format_traceparent(&ctx).as_str(),
            "00-00000000000000000000000000000abc-0000000000000001-00"
        );
    }

    #[test]
    fn tracestate_rules() {
        let ts = TraceState::parse(["congo=t61rcWkgMzE", " rojo=00f067aa0ba902b7 ,,"]).unwrap();
        assert_eq!(ts.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(ts.header_value(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert!(TraceState::parse(["a=1,a=2"]).is_err());
        assert!(TraceState::parse(["A=1"]).is_err());
        assert!(TraceState::parse(["a=b=c"]).is_err());
        assert!(TraceState::parse(["tenant@system=x"]).is_ok());
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse([many.join(",").as_str()]).is_err());
        let mut ts = ts;
        ts.insert("rojo", "1").unwrap();
        assert_eq!(ts.header_value(), "rojo=1,congo=t61rcWkgMzE");
    }
}
