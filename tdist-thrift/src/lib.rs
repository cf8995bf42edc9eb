//! tdist-thrift (in progress).
