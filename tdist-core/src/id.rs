//! Trace and span identifiers, their lower-hex form, and a fast per-thread id generator.
//!
//! ```
//! use tdist_core::{SpanId, TraceId};
//!
//! let trace = TraceId::from_hex("80f198ee56343ba864fe8b2a57d3eff7").unwrap();
//! assert!(trace.is_128());
//! assert_eq!(trace.to_hex().as_str(), "80f198ee56343ba864fe8b2a57d3eff7");
//! // A 32-character id whose high half is zero is the 64-bit id.
//! assert_eq!(TraceId::from_hex("000000000000000064fe8b2a57d3eff7").unwrap().to_hex().as_str(), "64fe8b2a57d3eff7");
//! assert!(SpanId::from_hex("0000000000000000").is_err());
//! ```

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroU64;

/// Why a lower-hex identifier was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The value does not have one of the lengths allowed for this identifier.
    #[error("identifier has length {0}, expected {1}")]
    Length(usize, &'static str),
    /// A character other than `0-9` or `a-f` (upper case is rejected).
    #[error("identifier contains a character that is not lower-case hex")]
    NotLowerHex,
    /// Every digit is zero, which no B3, W3C or Zipkin peer accepts.
    #[error("identifier is all zeros")]
    AllZeros,
}

/// A trace identifier: 64 bits, or 128 bits when the high half is non-zero.
///
/// The high half is zero for a 64-bit id; like Brave and Zipkin, a 128-bit id whose high half is
/// zero is the same trace as the 64-bit id with that low half.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId {
    high: u64,
    low: u64,
}

impl TraceId {
    /// A trace id from its halves; `None` when both are zero.
    pub const fn new(high: u64, low: u64) -> Option<TraceId> {
        if high == 0 && low == 0 {
            None
        } else {
            Some(TraceId { high, low })
        }
    }

    /// The high 64 bits (zero for a 64-bit id).
    pub const fn high(self) -> u64 {
        self.high
    }

    /// The low 64 bits.
    pub const fn low(self) -> u64 {
        self.low
    }

    /// Whether this id needs 128 bits (its high half is non-zero).
    pub const fn is_128(self) -> bool {
        self.high != 0
    }

    /// A new random 128-bit trace id from the per-thread generator.
    #[inline]
    pub fn random_128() -> TraceId {
        TraceId {
            high: random_non_zero(),
            low: random_non_zero(),
        }
    }

    /// A new random 64-bit trace id from the per-thread generator.
    #[inline]
    pub fn random_64() -> TraceId {
        TraceId {
            high: 0,
            low: random_non_zero(),
        }
    }

    /// Parses 16 or 32 lower-hex characters.
    pub fn from_hex(s: &str) -> Result<TraceId, IdError> {
        TraceId::from_hex_bytes(s.as_bytes())
    }

    /// [`TraceId::from_hex`] on bytes, which it checks one by one.
    pub(crate) fn from_hex_bytes(b: &[u8]) -> Result<TraceId, IdError> {
        let (high, low) = match b.len() {
            16 => (0, parse_hex_u64(b)?),
            32 => (parse_hex_u64(&b[..16])?, parse_hex_u64(&b[16..])?),
            n => return Err(IdError::Length(n, "16 or 32")),
        };
        TraceId::new(high, low).ok_or(IdError::AllZeros)
    }

    /// The lower-hex form: 32 characters when 128-bit, else 16. No allocation.
    pub fn to_hex(self) -> HexId {
        let mut out = HexId::empty();
        if self.high != 0 {
            out.push_u64(self.high);
        }
        out.push_u64(self.low);
        out
    }

    /// The 16 big-endian bytes of the full 128-bit value.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.high.to_be_bytes());
        b[8..].copy_from_slice(&self.low.to_be_bytes());
        b
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A span identifier: 64 bits, never zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// A span id; `None` for zero.
    pub const fn new(id: u64) -> Option<SpanId> {
        match NonZeroU64::new(id) {
            Some(v) => Some(SpanId(v)),
            None => None,
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// A new random span id from the per-thread generator.
    #[inline]
    pub fn random() -> SpanId {
        SpanId(NonZeroU64::new(random_non_zero()).expect("generator never yields zero"))
    }

    /// Parses exactly 16 lower-hex characters.
    pub fn from_hex(s: &str) -> Result<SpanId, IdError> {
        let b = s.as_bytes();
        if b.len() != 16 {
            return Err(IdError::Length(b.len(), "16"));
        }
        SpanId::new(parse_hex_u64(b)?).ok_or(IdError::AllZeros)
    }

    /// The 16-character lower-hex form. No allocation.
    pub fn to_hex(self) -> HexId {
        let mut out = HexId::empty();
        out.push_u64(self.get());
        out
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The lower-hex text of an id, kept on the stack (at most 32 characters).
#[derive(Clone, Copy)]
pub struct HexId {
    buf: [u8; 32],
    len: u8,
}

impl HexId {
    const fn empty() -> HexId {
        HexId {
            buf: [0; 32],
            len: 0,
        }
    }

    fn push_u64(&mut self, v: u64) {
        let start = self.len as usize;
        write_hex_u64(v, &mut self.buf[start..start + 16]);
        self.len += 16;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into the buffer.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl std::ops::Deref for HexId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `v` as 16 lower-hex digits into `out[..16]`.
pub(crate) fn write_hex_u64(v: u64, out: &mut [u8]) {
    for (i, byte) in v.to_be_bytes().iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 0xf) as usize];
    }
}

/// Lower-hex digit values; 0xFF marks every other byte (upper case included).
const UNHEX: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses 1 to 16 lower-hex digits. Upper case and every other character is an error.
///
/// Full groups of eight digits are checked and converted eight at a time inside a `u64`
/// ([`parse_hex8`]); a shorter tail goes through the table.
#[inline]
pub(crate) fn parse_hex_u64(b: &[u8]) -> Result<u64, IdError> {
    match b.len() {
        16 => {
            let (hi, lo) = b.split_at(8);
            let (hi, hi_bad) = hex_lanes(be_u64(hi));
            let (lo, lo_bad) = hex_lanes(be_u64(lo));
            // One test for both halves: most ids are valid.
            if hi_bad | lo_bad != 0 {
                return Err(IdError::NotLowerHex);
            }
            Ok(fold_lanes(hi) << 32 | fold_lanes(lo))
        }
        8 => Ok(u64::from(parse_hex8(b)?)),
        1..=15 => parse_hex_tail(b),
        n => Err(IdError::Length(n, "1 to 16")),
    }
}

/// Byte `b` in every byte of a `u64`.
const fn lanes(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Eight bytes (`b.len() == 8`) as a big-endian `u64`: the first lands in the top byte.
#[inline(always)]
fn be_u64(b: &[u8]) -> u64 {
    let mut chunk = [0u8; 8];
    chunk.copy_from_slice(b);
    u64::from_be_bytes(chunk)
}

/// Exactly eight lower-hex digits (`b.len() == 8`), converted inside one `u64`.
#[inline]
fn parse_hex8(b: &[u8]) -> Result<u32, IdError> {
    match hex_lanes(be_u64(b)) {
        (n, 0) => Ok(fold_lanes(n) as u32),
        _ => Err(IdError::NotLowerHex),
    }
}

/// Eight bytes classified and converted at once: each byte's digit value, and a word that is
/// zero exactly when every byte is a lower-hex digit.
///
/// With every byte below 0x80, adding `0x80 - lo` to a byte sets its top bit exactly when the
/// byte is at least `lo`, and adding `0x7f - hi` exactly when it is above `hi`; no sum carries
/// into the next byte. So each byte is classified as a digit or a letter `a`–`f` at once, and
/// its value is its low nibble, plus 9 for a letter. (A byte from 0x80 up may carry into its
/// neighbour, but then its own top bit already marks the word bad.)
#[inline(always)]
fn hex_lanes(v: u64) -> (u64, u64) {
    let top = lanes(0x80);
    let at_least = |lo: u8| v.wrapping_add(lanes(0x80 - lo));
    let above = |hi: u8| v.wrapping_add(lanes(0x7f - hi));
    let digit = at_least(b'0') & !above(b'9');
    let letter = at_least(b'a') & !above(b'f');
    let bad = (v | !(digit | letter)) & top;
    let letter = (letter & top) >> 7;
    ((v & lanes(0x0f)) + letter * 9, bad)
}

/// One digit value per byte (the first in the top byte), folded into the 32-bit number they
/// spell: pairs, then quads, then the whole eight.
#[inline(always)]
fn fold_lanes(n: u64) -> u64 {
    let n = (n | n >> 4) & 0x00ff_00ff_00ff_00ff;
    let n = (n | n >> 8) & 0x0000_ffff_0000_ffff;
    (n | n >> 16) & 0x0000_0000_ffff_ffff
}

/// 1 to 15 digits, one at a time through the table.
fn parse_hex_tail(b: &[u8]) -> Result<u64, IdError> {
    let mut v: u64 = 0;
    let mut bad = 0u8;
    for &c in b {
        let d = UNHEX[c as usize];
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0F);
    }
    if bad & 0xF0 != 0 {
        return Err(IdError::NotLowerHex);
    }
    Ok(v)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A seed from the OS-keyed hasher, the thread and the time, so threads never share a sequence.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    std::thread::current().id().hash(&mut h);
    h.finish() | 1
}

use std::hash::Hash;

/// One step of wyrand (one multiply per value, passes BigCrush) on `state`.
#[inline]
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

/// The next non-zero value of wyrand on `state` (ids are never zero).
#[inline]
fn wyrand_non_zero(state: &mut u64) -> u64 {
    loop {
        let v = wyrand(state);
        if v != 0 {
            return v;
        }
    }
}

/// Runs `f` on this thread's generator state: one visit to the thread-local however many
/// values `f` draws.
#[inline]
fn with_rng<T>(f: impl FnOnce(&mut u64) -> T) -> T {
    RNG.with(|s| {
        let mut state = s.get();
        let out = f(&mut state);
        s.set(state);
        out
    })
}

/// The next value of this thread's generator.
#[inline]
fn next_u64() -> u64 {
    with_rng(wyrand)
}

/// A new trace's ids, 128-bit or 64-bit, and its root span id, from one visit to the generator.
#[inline]
pub(crate) fn random_trace_and_span(trace_128: bool) -> (TraceId, SpanId) {
    with_rng(|state| {
        let high = if trace_128 { wyrand_non_zero(state) } else { 0 };
        let low = wyrand_non_zero(state);
        let span = wyrand_non_zero(state);
        (
            TraceId { high, low },
            SpanId(NonZeroU64::new(span).expect("never zero")),
        )
    })
}

/// The next non-zero value of this thread's generator.
#[inline]
fn random_non_zero() -> u64 {
    with_rng(wyrand_non_zero)
}

/// A random `u64` from the per-thread generator (for jitter and sampling tests).
pub fn random_u64() -> u64 {
    next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_at_a_time_agrees_with_the_table_for_every_byte_in_every_place() {
        let bases: [&[u8; 8]; 3] = [b"00000000", b"fedcba98", b"a1b2c3d4"];
        for base in bases {
            for place in 0..8 {
                for byte in 0..=255u8 {
                    let mut chunk = *base;
                    chunk[place] = byte;
                    assert_eq!(
                        parse_hex8(&chunk).map(u64::from),
                        parse_hex_tail(&chunk),
                        "{chunk:?}"
                    );
                }
            }
        }
        assert_eq!(parse_hex8(b"ffffffff"), Ok(u32::MAX));
        assert_eq!(parse_hex8(b"0123abcd"), Ok(0x0123_abcd));
    }

    proptest::proptest! {
        #[test]
        fn hex_parsing_agrees_with_the_table(
            s in "[0-9a-f]{0,17}",
            corrupt in proptest::option::of((0usize..17, proptest::num::u8::ANY)),
        ) {
            let mut b = s.into_bytes();
            if let Some((at, byte)) = corrupt {
                if let Some(c) = b.get_mut(at) {
                    *c = byte;
                }
            }
            let table = if (1..=16).contains(&b.len()) {
                b.iter().try_fold(0u64, |v, &c| match c {
                    b'0'..=b'9' => Some(v << 4 | u64::from(c - b'0')),
                    b'a'..=b'f' => Some(v << 4 | u64::from(c - b'a' + 10)),
                    _ => None,
                })
            } else {
                None
            };
            proptest::prop_assert_eq!(parse_hex_u64(&b).ok(), table);
        }
    }

    #[test]
    fn trace_id_lengths() {
        assert_eq!(
            TraceId::from_hex("463ac35c9f6413ad").unwrap(),
            TraceId::new(0, 0x463ac35c9f6413ad).unwrap()
        );
        assert!(TraceId::from_hex("463ac35c9f6413a").is_err());
        assert!(TraceId::from_hex("463ac35c9f6413ad4").is_err());
        assert_eq!(
            TraceId::from_hex("463AC35C9F6413AD"),
            Err(IdError::NotLowerHex)
        );
        assert_eq!(
            TraceId::from_hex("00000000000000000000000000000000"),
            Err(IdError::AllZeros)
        );
        // Right-padded 128-bit (high set, low zero) is a valid id.
        let t = TraceId::from_hex("463ac35c9f6413ad0000000000000000").unwrap();
        assert_eq!(t.to_hex().as_str(), "463ac35c9f6413ad0000000000000000");
    }

    #[test]
    fn span_id_rules() {
        assert_eq!(
            SpanId::from_hex("a2fb4a1d1a96d312").unwrap().get(),
            0xa2fb4a1d1a96d312
        );
        assert!(SpanId::from_hex("a2fb4a1d1a96d31").is_err());
        assert!(SpanId::from_hex("a2fb4a1d1a96d31g").is_err());
        assert!(SpanId::new(0).is_none());
    }

    #[test]
    fn random_ids_differ_and_round_trip() {
        let a = TraceId::random_128();
        let b = TraceId::random_128();
        assert_ne!(a, b);
        assert_eq!(TraceId::from_hex(&a.to_hex()).unwrap(), a);
        let s = SpanId::random();
        assert_eq!(SpanId::from_hex(&s.to_hex()).unwrap(), s);
    }

    #[test]
    fn threads_get_different_sequences() {
        let a = std::thread::spawn(SpanId::random).join().unwrap();
        let b = std::thread::spawn(SpanId::random).join().unwrap();
        assert_ne!(a, b);
    }
}
