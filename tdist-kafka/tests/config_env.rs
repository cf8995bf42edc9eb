//! `KafkaTransport::from_env` and `configure` read the real process environment; this file is
//! its own test process with one test, so setting variables here races with nothing.
#![cfg(unix)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use tdist_core::Tracer;
use tdist_kafka::KafkaTransport;

/// A value that is not valid Unicode is a `ConfigError` naming the variable, not a variable
/// left unset (which would leave the Kafka transport out without a word).
#[test]
fn a_value_that_is_not_unicode_names_its_variable() {
    let latin1 = |s: &[u8]| OsString::from_vec(s.to_vec());
    // CI runs the Kafka suites with a real broker named in the environment.
    for var in [
        "TDIST_KAFKA_BOOTSTRAP_SERVERS",
        "TDIST_KAFKA_TOPIC",
        "TDIST_TRANSPORT",
    ] {
        std::env::remove_var(var);
    }
    // Only what the transport reads counts: without a broker it reads no topic.
    std::env::set_var("TDIST_KAFKA_TOPIC", latin1(b"caf\xe9"));
    assert!(KafkaTransport::from_env().unwrap().is_none());
    std::env::remove_var("TDIST_KAFKA_TOPIC");
    for (var, broker) in [
        ("TDIST_KAFKA_BOOTSTRAP_SERVERS", None),
        ("TDIST_KAFKA_TOPIC", Some("127.0.0.1:9")),
    ] {
        if let Some(broker) = broker {
            std::env::set_var("TDIST_KAFKA_BOOTSTRAP_SERVERS", broker);
        }
        std::env::set_var(var, latin1(b"caf\xe9"));
        let from_env = KafkaTransport::from_env().map(|_| ());
        let configured = KafkaTransport::configure(Tracer::builder()).map(|_| ());
        std::env::remove_var(var);
        std::env::remove_var("TDIST_KAFKA_BOOTSTRAP_SERVERS");
        for result in [from_env, configured] {
            let err = result.expect_err(var);
            assert_eq!(err.variable(), var);
            assert!(err.to_string().contains("Unicode"), "{err}");
        }
    }
}
