//! tdist-storm (in progress).
