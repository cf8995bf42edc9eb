//! tdist-http (in progress).
