//! Sampling: which new traces are recorded, and how an inbound decision is respected.
//!
//! ```
//! use tdist_core::{Sampler, SamplingState, TraceId};
//!
//! let half = Sampler::ratio(0.5);
//! let id = TraceId::random_128();
//! // Deterministic from the trace id: every service makes the same decision.
//! assert_eq!(half.should_sample(id), half.should_sample(id));
//! // Parent-based by default: the caller's decision wins, debug forces sampling.
//! assert_eq!(Sampler::never().decide(SamplingState::Debug, id), SamplingState::Debug);
//! assert_eq!(Sampler::always().decide(SamplingState::Deny, id), SamplingState::Deny);
//! ```

use crate::context::SamplingState;
use crate::id::TraceId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Root {
    Always,
    Never,
    /// Sample when the low 63 bits of the trace id fall under this bound.
    Ratio(u64, f64),
    RateLimited(Arc<RateLimiter>),
}

/// Decides whether a trace is recorded.
#[derive(Debug, Clone)]
pub struct Sampler {
    root: Root,
    parent_based: bool,
    trust_debug: bool,
}

impl Default for Sampler {
    /// Parent-based, always on for new traces.
    fn default() -> Sampler {
        Sampler::always()
    }
}

impl Sampler {
    fn with_root(root: Root) -> Sampler {
        Sampler {
            root,
            parent_based: true,
            trust_debug: true,
        }
    }

    /// Records every new trace.
    pub fn always() -> Sampler {
        Sampler::with_root(Root::Always)
    }

    /// Records no new trace.
    pub fn never() -> Sampler {
        Sampler::with_root(Root::Never)
    }

    /// Records a fraction of new traces, decided from the trace id so that every service that
    /// uses the same ratio agrees. Clamped to 0..=1.
    pub fn ratio(ratio: f64) -> Sampler {
        let r = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let bound = if r >= 1.0 {
            u64::MAX
        } else {
            (r * (1u64 << 63) as f64) as u64
        };
        Sampler::with_root(Root::Ratio(bound, r))
    }

    /// Records at most `per_second` new traces each second.
    pub fn rate_limited(per_second: u32) -> Sampler {
        Sampler::with_root(Root::RateLimited(Arc::new(RateLimiter::new(per_second))))
    }

    /// Whether the caller's decision is respected (on by default). Off, the root sampler
    /// decides every trace, as OpenTelemetry's non-parent-based samplers do.
    pub fn parent_based(mut self, on: bool) -> Sampler {
        self.parent_based = on;
        self
    }

    /// Whether an inbound debug flag forces sampling (on by default). Turn it off at a trust
    /// boundary so outside callers cannot force recording: their debug flag is then ignored and
    /// the decision made here.
    pub fn trust_inbound_debug(mut self, trust: bool) -> Sampler {
        self.trust_debug = trust;
        self
    }

    /// Whether inbound debug flags are honoured.
    pub fn trusts_inbound_debug(&self) -> bool {
        self.trust_debug
    }

    /// The root sampler's decision for a new trace.
    pub fn should_sample(&self, trace_id: TraceId) -> bool {
        match &self.root {
            Root::Always => true,
            Root::Never => false,
            Root::Ratio(bound, _) => {
                *bound == u64::MAX || (trace_id.low() & (u64::MAX >> 1)) < *bound
            }
            Root::RateLimited(l) => l.try_acquire(),
        }
    }

    /// The decision for a span whose caller sent `inbound` (Defer for a new trace).
    #[inline]
    pub fn decide(&self, inbound: SamplingState, trace_id: TraceId) -> SamplingState {
        let decide_here = |s: &Sampler| {
            if s.should_sample(trace_id) {
                SamplingState::Accept
            } else {
                SamplingState::Deny
            }
        };
        match inbound {
            SamplingState::Debug if self.trust_debug => SamplingState::Debug,
            SamplingState::Debug => decide_here(self),
            SamplingState::Accept | SamplingState::Deny if self.parent_based => inbound,
            _ => decide_here(self),
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        let root = match &self.root {
            Root::Always => "always_on".to_owned(),
            Root::Never => "always_off".to_owned(),
            Root::Ratio(_, r) => format!("traceidratio({r})"),
            Root::RateLimited(l) => format!("ratelimited({}/s)", l.per_second),
        };
        if self.parent_based {
            format!("parentbased_{root}")
        } else {
            root
        }
    }
}

/// A lock-free per-second budget: the current second and the count taken in it, in one word.
#[derive(Debug)]
struct RateLimiter {
    per_second: u32,
    state: AtomicU64,
}

impl RateLimiter {
    fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            state: AtomicU64::new(0),
        }
    }

    fn try_acquire(&self) -> bool {
        let second = crate::clock::now_us() / 1_000_000;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s == second & 0xffff_ffff {
                if n >= u64::from(self.per_second) {
                    return false;
                }
                cur + 1
            } else {
                ((second & 0xffff_ffff) << 32) | 1
            };
            if self.per_second == 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_close_and_deterministic() {
        let s = Sampler::ratio(0.25);
        let ids: Vec<TraceId> = (0..20_000).map(|_| TraceId::random_128()).collect();
        let n = ids.iter().filter(|id| s.should_sample(**id)).count();
        assert!((4_000..6_000).contains(&n), "{n}");
        assert!(ids
            .iter()
            .all(|id| s.should_sample(*id) == s.should_sample(*id)));
        assert!(ids.iter().all(|id| Sampler::ratio(1.0).should_sample(*id)));
        assert!(!ids.iter().any(|id| Sampler::ratio(0.0).should_sample(*id)));
    }

    #[test]
    fn rate_limit_caps_a_second() {
        let s = Sampler::rate_limited(10);
        let id = TraceId::random_64();
        let n = (0..1000).filter(|_| s.should_sample(id)).count();
        // At most two windows can be touched if the second rolls over mid-loop.
        assert!((10..=20).contains(&n), "{n}");
        assert!(!Sampler::rate_limited(0).should_sample(id));
    }

    #[test]
    fn parent_based_and_debug_rules() {
        let id = TraceId::random_64();
        let never = Sampler::never();
        assert_eq!(
            never.decide(SamplingState::Accept, id),
            SamplingState::Accept
        );
        assert_eq!(never.decide(SamplingState::Defer, id), SamplingState::Deny);
        let always = Sampler::always();
        assert_eq!(always.decide(SamplingState::Deny, id), SamplingState::Deny);
        assert_eq!(
            always
                .clone()
                .parent_based(false)
                .decide(SamplingState::Deny, id),
            SamplingState::Accept
        );
        let boundary = Sampler::never().trust_inbound_debug(false);
        assert_eq!(
            boundary.decide(SamplingState::Debug, id),
            SamplingState::Deny
        );
    }
}
