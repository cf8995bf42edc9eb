//! Support code for the tdist examples.

// thrift_service (tdist-thrift): generated comments.thrift code and the spam-check handler.
pub mod spam_check;
pub mod thrift_gen;
