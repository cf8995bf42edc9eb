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
