//! The span context that crosses process boundaries: ids, sampling state, `shared`.
//!
//! ```
//! use tdist_core::{SamplingState, SpanContext, SpanId, TraceId};
//!
//! let root = SpanContext::new(TraceId::random_128(), SpanId::random())
//!     .with_sampling(SamplingState::Accept);
//! let child = root.new_child();
//! assert_eq!(child.trace_id(), root.trace_id());
//! assert_eq!(child.parent_id(), Some(root.span_id()));
//! assert_eq!(child.sampling(), SamplingState::Accept);
//! ```

use crate::id::{SpanId, TraceId};

/// The sampling decision carried with a trace (B3's four states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SamplingState {
    /// No decision yet: the receiver decides.
    #[default]
    Defer,
    /// Not sampled: propagate ids, record nothing.
    Deny,
    /// Sampled.
    Accept,
    /// Sampled and flagged for debug: every span is reported with `debug: true`.
    Debug,
}

impl SamplingState {
    /// `Some(true)` for accept and debug, `Some(false)` for deny, `None` when deferred.
    pub const fn decision(self) -> Option<bool> {
        match self {
            SamplingState::Defer => None,
            SamplingState::Deny => Some(false),
            SamplingState::Accept | SamplingState::Debug => Some(true),
        }
    }

    /// Whether spans of this trace are recorded.
    pub const fn is_sampled(self) -> bool {
        matches!(self, SamplingState::Accept | SamplingState::Debug)
    }
}

/// Identifies one span of one trace, plus what must travel with it. `Copy`, 48 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    sampling: SamplingState,
    shared: bool,
}

impl SpanContext {
    /// A context with no parent, a deferred decision and `shared` off.
    pub const fn new(trace_id: TraceId, span_id: SpanId) -> SpanContext {
        SpanContext {
            trace_id,
            span_id,
            parent_id: None,
            sampling: SamplingState::Defer,
            shared: false,
        }
    }

    /// Sets the parent span id.
    pub const fn with_parent(mut self, parent: Option<SpanId>) -> SpanContext {
        self.parent_id = parent;
        self
    }

    /// Sets the sampling state.
    pub const fn with_sampling(mut self, sampling: SamplingState) -> SpanContext {
        self.sampling = sampling;
        self
    }

    /// Marks the context as shared: this side reports a span whose id another tracer started
    /// (a B3 RPC server reusing the client's span id).
    pub const fn with_shared(mut self, shared: bool) -> SpanContext {
        self.shared = shared;
        self
    }

    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id.
    pub const fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The parent's span id; `None` on a root.
    pub const fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// The sampling state.
    pub const fn sampling(&self) -> SamplingState {
        self.sampling
    }

    /// Whether the span id is shared with the remote side.
    pub const fn shared(&self) -> bool {
        self.shared
    }

    /// Whether spans of this trace are recorded.
    pub const fn is_sampled(&self) -> bool {
        self.sampling.is_sampled()
    }

    /// A child: same trace and sampling, a new random span id, this span as parent.
    pub fn new_child(&self) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(self.span_id),
            sampling: self.sampling,
            shared: false,
        }
    }
}

/// An optional context as five plain words, for the current-context slots: saving and restoring
/// it is a few register moves, where the enum layout of `Option<SpanContext>` is copied field
/// by field. Flags: sampling in bits 0–7, `shared` bit 8, "a context is present" bit 9; bit 10
/// is left to the slot's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Packed {
    trace_high: u64,
    trace_low: u64,
    span_id: u64,
    parent_id: u64,
    flags: u64,
}

const PRESENT: u64 = 1 << 9;
const SHARED: u64 = 1 << 8;

impl Packed {
    /// No context, no owner flag.
    pub(crate) const NONE: Packed = Packed {
        trace_high: 0,
        trace_low: 0,
        span_id: 0,
        parent_id: 0,
        flags: 0,
    };

    #[inline]
    pub(crate) fn new(ctx: Option<SpanContext>) -> Packed {
        match ctx {
            None => Packed::NONE,
            Some(c) => Packed {
                trace_high: c.trace_id.high(),
                trace_low: c.trace_id.low(),
                span_id: c.span_id.get(),
                parent_id: c.parent_id.map_or(0, SpanId::get),
                flags: PRESENT | c.sampling as u64 | if c.shared { SHARED } else { 0 },
            },
        }
    }

    #[inline]
    pub(crate) fn get(self) -> Option<SpanContext> {
        if self.flags & PRESENT == 0 {
            return None;
        }
        Some(SpanContext {
            trace_id: TraceId::new(self.trace_high, self.trace_low)?,
            span_id: SpanId::new(self.span_id)?,
            parent_id: SpanId::new(self.parent_id),
            sampling: match self.flags & 0xff {
                0 => SamplingState::Defer,
                1 => SamplingState::Deny,
                2 => SamplingState::Accept,
                _ => SamplingState::Debug,
            },
            shared: self.flags & SHARED != 0,
        })
    }

    /// Whether owner flag `bit` (10 and up) is set.
    #[inline]
    pub(crate) const fn has(self, bit: u64) -> bool {
        self.flags & bit != 0
    }

    /// With owner flag `bit` set.
    #[inline]
    pub(crate) const fn with(mut self, bit: u64) -> Packed {
        self.flags |= bit;
        self
    }
}

/// What an extractor found on a carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extracted {
    /// A full, valid context.
    Context(SpanContext),
    /// Only a sampling decision (`b3: 0`, `X-B3-Sampled: 1` with no ids, ...).
    Sampling(SamplingState),
    /// Nothing usable: absent, or malformed (never a partial context).
    #[default]
    Empty,
}

impl Extracted {
    /// The context, if one was found.
    pub const fn context(&self) -> Option<SpanContext> {
        match self {
            Extracted::Context(c) => Some(*c),
            _ => None,
        }
    }

    /// The sampling state carried, with or without ids.
    pub const fn sampling(&self) -> SamplingState {
        match self {
            Extracted::Context(c) => c.sampling(),
            Extracted::Sampling(s) => *s,
            Extracted::Empty => SamplingState::Defer,
        }
    }

    /// Whether nothing was found.
    pub const fn is_empty(&self) -> bool {
        matches!(self, Extracted::Empty)
    }
}

impl From<SpanContext> for Extracted {
    fn from(c: SpanContext) -> Extracted {
        Extracted::Context(c)
    }
}

impl From<Option<SpanContext>> for Extracted {
    fn from(c: Option<SpanContext>) -> Extracted {
        c.map_or(Extracted::Empty, Extracted::Context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_round_trips_every_field() {
        assert_eq!(Packed::new(None).get(), None);
        assert_eq!(Packed::NONE.with(1 << 10).get(), None);
        let trace = TraceId::new(0x463a_c35c_9f64_13ad, 0x4848_5a39_53bb_6124).unwrap();
        for sampling in [
            SamplingState::Defer,
            SamplingState::Deny,
            SamplingState::Accept,
            SamplingState::Debug,
        ] {
            for shared in [false, true] {
                for parent in [None, SpanId::new(7)] {
                    let ctx = SpanContext::new(trace, SpanId::new(u64::MAX).unwrap())
                        .with_parent(parent)
                        .with_sampling(sampling)
                        .with_shared(shared);
                    assert_eq!(Packed::new(Some(ctx)).get(), Some(ctx));
                    let owned = Packed::new(Some(ctx)).with(1 << 10);
                    assert!(owned.has(1 << 10));
                    assert_eq!(owned.get(), Some(ctx));
                }
            }
        }
        let short = SpanContext::new(TraceId::new(0, 1).unwrap(), SpanId::new(1).unwrap());
        assert_eq!(Packed::new(Some(short)).get(), Some(short));
    }
}
