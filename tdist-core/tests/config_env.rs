//! `TracerBuilder::from_env` reads the real process environment; this file is its own test
//! process with one test, so setting variables here races with nothing.
#![cfg(unix)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use tdist_core::TracerBuilder;

/// A value that is not valid Unicode (Latin-1 `é`) is a `ConfigError` naming the variable.
/// Before, it read as unset: a `TDIST_FILE` path in a Latin-1 locale left the tracer with no
/// transport, every span dropped without a word, and a bad number took the default silently.
#[test]
fn a_value_that_is_not_unicode_names_its_variable() {
    let latin1 = |s: &[u8]| OsString::from_vec(s.to_vec());
    for (var, value) in [
        ("TDIST_FILE", latin1(b"/tmp/spans-caf\xe9.json")),
        ("OTEL_BSP_MAX_QUEUE_SIZE", latin1(b"2048\xe9")),
        ("OTEL_SERVICE_NAME", latin1(b"caf\xe9")),
        ("TDIST_TRANSPORT", latin1(b"fil\xe9")),
    ] {
        std::env::set_var(var, &value);
        let result = TracerBuilder::from_env();
        std::env::remove_var(var);
        let err = result.expect_err(var);
        assert_eq!(err.variable(), var);
        assert!(err.to_string().contains("Unicode"), "{err}");
    }
    // Shared with other programs and ignored when malformed, as the specification says.
    std::env::set_var("OTEL_RESOURCE_ATTRIBUTES", latin1(b"service.name=caf\xe9"));
    let b = TracerBuilder::from_env();
    std::env::remove_var("OTEL_RESOURCE_ATTRIBUTES");
    b.unwrap();
}
