//! The global tracer `install` sets (its own test process: the global is process-wide).

use tdist_core::export::NoopTransport;
use tdist_core::Tracer;

fn global_service() -> Option<String> {
    Tracer::global()
        .local_endpoint()
        .service_name()
        .map(str::to_owned)
}

/// Replacing an installed tracer (`guard = builder.install()?`, as a configuration reload
/// does) installs the new one before the old guard drops: that drop must leave the new tracer
/// global. Before, it made the global tracer a no-op, and every span after the reload was lost.
#[test]
fn dropping_an_older_guard_leaves_the_newer_tracer_global() {
    let install = |name: &'static str| {
        Tracer::builder()
            .service_name(name)
            .transport(NoopTransport)
            .install()
            .unwrap()
    };
    let first = install("first");
    assert_eq!(global_service().as_deref(), Some("first"));
    let second = install("second");
    drop(first);
    assert_eq!(global_service().as_deref(), Some("second"));
    drop(second);
    assert_eq!(global_service().as_deref(), Some("unknown_service"));
    assert!(!Tracer::global().root_span("after").is_recording());
}
