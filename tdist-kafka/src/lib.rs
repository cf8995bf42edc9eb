//! tdist-kafka (in progress).
