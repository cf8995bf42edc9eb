//! Support code for the tdist examples.

// thrift_service (tdist-thrift): generated comments.thrift code and the spam-check handler.
pub mod spam_check;
pub mod thrift_gen;

// trace_report: Zipkin v2 JSON spans -> trace trees, critical path, contributors, percentiles.
pub mod report;

// comment_pipeline: HTTP → Kafka → Storm bolts → Thrift, one trace per comment.
pub mod pipeline;

/// Ctrl-C, or SIGTERM (as a service manager or `kill` stops a process): the long-running
/// examples then stop serving and flush their spans before they exit.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
