//! Support code for the tdist examples.

// thrift_service (tdist-thrift): generated comments.thrift code and the spam-check handler.
pub mod spam_check;
pub mod thrift_gen;

// trace_report: Zipkin v2 JSON spans -> trace trees, critical path, contributors, percentiles.
pub mod report;

// comment_pipeline: HTTP → Kafka → Storm bolts → Thrift, one trace per comment.
pub mod pipeline;
