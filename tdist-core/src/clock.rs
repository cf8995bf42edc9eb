//! Wall-clock time in epoch nanoseconds from the TSC where it is reliable (one anchor against
//! the system clock per process), else from the system clock.

use std::sync::OnceLock;

fn anchor() -> &'static fastant::Anchor {
    static ANCHOR: OnceLock<fastant::Anchor> = OnceLock::new();
    ANCHOR.get_or_init(fastant::Anchor::new)
}

/// Now, in nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn now_ns() -> u64 {
    fastant::Instant::now().as_unix_nanos(anchor())
}

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    now_ns() / 1_000
}

/// A span's start or end: a raw clock reading taken on the request path, turned into epoch time
/// only when the span is read (by the reporter thread, off the request path), or an epoch time
/// the application gave explicitly.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stamp {
    /// A reading of the TSC-based clock (or its fallback).
    Read(fastant::Instant),
    /// Nanoseconds since the Unix epoch.
    UnixNs(u64),
}

impl Stamp {
    /// Now, as a raw reading: no conversion on the request path.
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp::Read(fastant::Instant::now())
    }

    /// Nanoseconds since the Unix epoch.
    pub(crate) fn unix_ns(self) -> u64 {
        match self {
            Stamp::Read(at) => at.as_unix_nanos(anchor()),
            Stamp::UnixNs(ns) => ns,
        }
    }

    /// Nanoseconds from `earlier` to `self`; zero if `self` is earlier.
    pub(crate) fn ns_since(self, earlier: Stamp) -> u64 {
        match (self, earlier) {
            (Stamp::Read(end), Stamp::Read(start)) => {
                u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
            }
            _ => self.unix_ns().saturating_sub(earlier.unix_ns()),
        }
    }
}
