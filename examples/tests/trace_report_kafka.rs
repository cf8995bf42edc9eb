//! `trace_report --kafka`: spans published by tdist-kafka's transport to librdkafka's mock
//! cluster (real sockets on 127.0.0.1) are read back by the example binary in its own process.

mod support;

use std::process::{Command, Output};
use std::time::Duration;
use tdist_core::{Kind, Tracer};
use tdist_kafka::KafkaTransport;

use support::build_example as example_binary;

fn report(args: &[&str]) -> Output {
    Command::new(example_binary("trace_report"))
        .args(args)
        .output()
        .expect("run trace_report")
}

/// A SERVER span with a CLIENT child and a local child, published in `batches` flushes.
fn publish(bootstrap: &str, topic: &str, traces: usize) -> Vec<String> {
    let transport = KafkaTransport::builder(bootstrap)
        .topic(topic)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("kafka transport");
    let tracer = Tracer::builder()
        .service_name("kafka-report-test")
        .transport(transport)
        .build()
        .expect("tracer");
    let mut ids = Vec::new();
    for i in 0..traces {
        let mut root = tracer.root_span("get /item");
        root.set_kind(Kind::Server);
        ids.push(root.context().trace_id().to_string());
        {
            let _g = root.enter();
            let mut c = tracer.span("lookup");
            c.set_kind(Kind::Client);
            c.tag("i", i as i64);
            std::thread::sleep(Duration::from_millis(2));
            drop(c);
            let _local = tracer.span("render");
        }
        drop(root);
        // One flush per trace: one record (a JSON list) per flush at least.
        let stats = tracer.flush().expect("flush to kafka");
        assert_eq!(stats.failed, 0, "{stats:?}");
    }
    let stats = tracer.stats();
    assert_eq!(stats.sent, 3 * traces as u64, "{stats:?}");
    ids
}

#[test]
fn kafka_report_reads_every_record_on_the_topic() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    mock.create_topic("zipkin", 2, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let ids = publish(&bootstrap, "zipkin", 4);

    let out = report(&["--kafka", &bootstrap, "--topic", "zipkin"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.starts_with("4 traces, 12 spans, 0 input problems"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kafka-report-test: get /item [SERVER]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kafka-report-test: lookup [CLIENT]"),
        "{stdout}"
    );
    assert!(stderr.contains("records from zipkin"), "{stderr}");

    // One named trace, by id; the default topic is `zipkin`.
    let out = report(&["--kafka", &bootstrap, "--trace", &ids[2]]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("trace {}: 3 spans", ids[2])),
        "{stdout}"
    );
}

#[test]
fn kafka_report_of_an_empty_topic_and_bad_arguments() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    mock.create_topic("empty", 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let out = report(&["--kafka", &bootstrap, "--topic", "empty"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 records from empty"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("0 traces, 0 spans, 0 input problems"),
        "{stdout}"
    );

    let out = report(&["some.jsonl", "--kafka", &bootstrap]);
    assert_eq!(out.status.code(), Some(2));
    let out = report(&["some.jsonl", "--topic", "zipkin"]);
    assert_eq!(out.status.code(), Some(2));
    let out = report(&["--kafka"]);
    assert_eq!(out.status.code(), Some(2));
}
