//! Bolts as real child processes driven through the ShellBolt-side harness.
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::{read_spans, span_file, storm_example};
use tdist_core::propagation::b3;
use tdist_core::{binary, SamplingState, SpanContext, SpanId, TraceId};
use tdist_storm::harness::{Harness, HarnessConfig};
use tdist_storm::protocol::{LogLevel, Tuple};

const T: Duration = Duration::from_secs(20);

fn relay(config: HarnessConfig, args: &[&str], spans: Option<&std::path::Path>) -> Harness {
    let mut cmd = storm_example("relay");
    cmd.args(args).env_remove("TDIST_TRANSPORT");
    match spans {
        Some(p) => cmd.env("TDIST_FILE", p),
        None => cmd.env("TDIST_TRANSPORT", "none"),
    };
    Harness::spawn(cmd, config).expect("spawn relay")
}

fn root() -> SpanContext {
    SpanContext::new(TraceId::random_128(), SpanId::random()).with_sampling(SamplingState::Accept)
}

fn b3_of(ctx: &SpanContext) -> Value {
    Value::from(b3::format_single(ctx, false).as_str())
}

fn ctx_in(v: &Value) -> SpanContext {
    b3::parse_single(v.as_str().expect("a b3 string"))
        .unwrap()
        .context()
        .unwrap()
}

fn run(h: &Harness, t: &Tuple) {
    h.send_tuple(t).unwrap();
    h.wait_settled(&t.id, T).unwrap();
}

#[test]
fn handshake_writes_pid_file_and_replies_pid() {
    let h = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    let pid = h.pid().expect("pid reply");
    let file = h.wait_pid_file(T).unwrap();
    assert_eq!(file.file_name().unwrap().to_str().unwrap(), pid.to_string());
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the pid file is empty"
    );
    h.wait_for(|r| !r.logs.is_empty(), T, "prepare log")
        .unwrap();
    assert_eq!(
        h.records().logs[0],
        (LogLevel::Info, "relay prepared as split".into())
    );
    let status = h.close(T).unwrap().expect("exits when stdin closes");
    assert!(status.success(), "{status:?}");
}

#[test]
fn chain_of_two_traced_bolts_continues_the_trace() {
    let (f1, f2) = (span_file("split"), span_file("count"));
    let split = relay(HarnessConfig::bolt("split"), &[], Some(&f1));
    let count = relay(HarnessConfig::bolt("count"), &[], Some(&f2));
    let parent = root();

    let t1 = split.tuple("spout", vec![json!("hello"), b3_of(&parent)]);
    run(&split, &t1);
    let r1 = split.records();
    assert_eq!(r1.acks, vec![t1.id.clone()]);
    let e1 = &r1.emits[0].emit;
    assert_eq!(e1.anchors, vec![t1.id.clone()], "anchoring kept");
    assert_eq!(e1.values.len(), 2);
    assert_eq!(
        e1.values[0], "HELLO",
        "the bolt saw the values without the trace field"
    );
    let via1 = ctx_in(&e1.values[1]);

    let mut t2 = count.tuple("split", e1.values.clone());
    t2.task = 3;
    run(&count, &t2);
    let e2 = &count.records().emits[0].emit;
    assert_eq!(e2.values[0], "HELLO");
    let via2 = ctx_in(&e2.values[1]);

    assert!(split.close(T).unwrap().unwrap().success());
    assert!(count.close(T).unwrap().unwrap().success());
    let (s1, s2) = (read_spans(&f1), read_spans(&f2));
    assert_eq!((s1.len(), s2.len()), (1, 1), "{s1:?} {s2:?}");
    let trace = parent.trace_id().to_hex().to_string();
    for s in [&s1[0], &s2[0]] {
        assert_eq!(s["traceId"], trace.as_str());
        assert_eq!(s["kind"], "CONSUMER");
    }
    assert_eq!(s1[0]["name"], "split");
    assert_eq!(s1[0]["parentId"], parent.span_id().to_hex().as_str());
    assert_eq!(s1[0]["id"], via1.span_id().to_hex().as_str());
    assert_eq!(s2[0]["name"], "count");
    assert_eq!(s2[0]["parentId"], s1[0]["id"]);
    assert_eq!(s2[0]["id"], via2.span_id().to_hex().as_str());
    assert_eq!(s2[0]["tags"]["storm.source"], "split");
    // Zipkin links messaging spans through their broker: the bolt's CONSUMER names Storm.
    assert_eq!(s2[0]["remoteEndpoint"]["serviceName"], "storm");
    let _ = std::fs::remove_file(f1);
    let _ = std::fs::remove_file(f2);
}

#[test]
fn missing_or_garbage_trace_field_starts_a_new_trace() {
    let f = span_file("new");
    let h = relay(HarnessConfig::bolt("split"), &[], Some(&f));
    let plain = h.tuple("spout", vec![json!("hello")]);
    let garbage = h.tuple("spout", vec![json!("hi"), json!("zz-not-a-context")]);
    let number = h.tuple("spout", vec![json!("yo"), json!(42)]);
    for t in [&plain, &garbage, &number] {
        run(&h, t);
    }
    let r = h.records();
    assert_eq!(r.acks.len(), 3);
    assert_eq!(r.emits[0].emit.values[0], "HELLO");
    assert_eq!(
        r.emits[1].emit.values[..2],
        [json!("HI"), json!("zz-not-a-context")]
    );
    assert_eq!(r.emits[2].emit.values[..2], [json!("YO"), json!(42)]);
    let ids: Vec<SpanContext> = r
        .emits
        .iter()
        .map(|e| ctx_in(e.emit.values.last().unwrap()))
        .collect();
    h.close(T).unwrap();
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 3);
    for (s, ctx) in spans.iter().zip(&ids) {
        assert!(s.get("parentId").is_none(), "a root: {s}");
        assert_eq!(s["id"], ctx.span_id().to_hex().as_str());
    }
    assert_ne!(ids[0].trace_id(), ids[1].trace_id());
    let _ = std::fs::remove_file(f);
}

#[test]
fn untraced_upstream_values_that_look_like_sampling_flags_are_kept() {
    // A Java spout or pystorm bolt knows nothing of traces: its last value may be "0", "1" or
    // "d". The bolt sees it, it reaches the emit, and it decides nothing about sampling.
    let f = span_file("flags");
    let h = relay(HarnessConfig::bolt("split"), &[], Some(&f));
    let tuples: Vec<Tuple> = ["0", "1", "d"]
        .iter()
        .map(|v| h.tuple("legacy-spout", vec![json!("user42"), json!(v)]))
        .collect();
    for t in &tuples {
        run(&h, t);
    }
    let r = h.records();
    for (e, v) in r.emits.iter().zip(["0", "1", "d"]) {
        assert_eq!(e.emit.values.len(), 3, "{:?}", e.emit.values);
        assert_eq!(e.emit.values[..2], [json!("USER42"), json!(v)]);
        ctx_in(&e.emit.values[2]);
    }
    h.close(T).unwrap();
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 3, "\"0\" did not unsample a trace: {spans:?}");
    assert!(spans.iter().all(|s| s.get("parentId").is_none()));
    let _ = std::fs::remove_file(f);
}

#[test]
fn an_unsampled_decision_travels_as_a_full_context() {
    // A bolt whose sampler says no still writes the ids, with the decision inside (`-0`):
    // the next bolt takes the field, stays unsampled, and keeps the trace id.
    let (f1, f2) = (span_file("deny1"), span_file("deny2"));
    let mut cmd = storm_example("relay");
    cmd.env_remove("TDIST_TRANSPORT")
        .env("TDIST_FILE", &f1)
        .env("OTEL_TRACES_SAMPLER", "always_off");
    let split = Harness::spawn(cmd, HarnessConfig::bolt("split")).unwrap();
    let count = relay(HarnessConfig::bolt("count"), &[], Some(&f2));
    let t1 = split.tuple("spout", vec![json!("hello")]);
    run(&split, &t1);
    let e1 = split.records().emits[0].emit.values.clone();
    assert_eq!(e1.len(), 2);
    let denied = ctx_in(&e1[1]);
    assert_eq!(denied.sampling(), SamplingState::Deny);
    assert!(e1[1].as_str().unwrap().ends_with("-0"), "{}", e1[1]);
    let t2 = count.tuple("split", e1);
    run(&count, &t2);
    let e2 = count.records().emits[0].emit.values.clone();
    assert_eq!(
        e2.len(),
        2,
        "the field was taken, not passed on as data: {e2:?}"
    );
    assert_eq!(e2[0], "HELLO");
    let next = ctx_in(&e2[1]);
    assert_eq!(next.trace_id(), denied.trace_id());
    assert_eq!(next.sampling(), SamplingState::Deny);
    split.close(T).unwrap();
    count.close(T).unwrap();
    assert!(read_spans(&f1).is_empty() && read_spans(&f2).is_empty());
    let _ = std::fs::remove_file(f1);
    let _ = std::fs::remove_file(f2);
}

#[test]
fn named_field_follows_declared_fields() {
    let f = span_file("named");
    let config = HarnessConfig::bolt("split")
        .input("spout", "default", &["_trace", "word"])
        .output("default", &["word", "_trace"]);
    let h = relay(config, &["--field", "_trace"], Some(&f));
    let parent = root();
    let good = h.tuple("spout", vec![b3_of(&parent), json!("a")]);
    let garbage = h.tuple("spout", vec![json!("garbage"), json!("b")]);
    let mut undeclared = h.tuple("other", vec![json!("c")]);
    undeclared.stream = "side".into();
    for t in [&good, &garbage, &undeclared] {
        run(&h, t);
    }
    let r = h.records();
    let values: Vec<&Vec<Value>> = r.emits.iter().map(|e| &e.emit.values).collect();
    assert_eq!(values[0][0], "A");
    assert_eq!(values[1][0], "B", "a declared garbage field is removed");
    assert_eq!(values[2][0], "C");
    assert_eq!(ctx_in(&values[0][1]).trace_id(), parent.trace_id());
    assert_ne!(ctx_in(&values[1][1]).trace_id(), parent.trace_id());
    h.close(T).unwrap();
    assert_eq!(
        read_spans(&f)
            .iter()
            .filter(|s| s.get("parentId").is_some())
            .count(),
        1
    );
    let _ = std::fs::remove_file(f);
}

#[test]
fn w3c_traceparent_field_is_joined_too() {
    let f = span_file("w3c");
    let h = relay(HarnessConfig::bolt("split"), &[], Some(&f));
    let parent = root();
    let tp = tdist_core::propagation::w3c::format_traceparent(&parent);
    let t = h.tuple("spout", vec![json!("x"), json!(tp.as_str())]);
    run(&h, &t);
    let v = h.records().emits[0].emit.values.clone();
    assert_eq!(v.len(), 2);
    assert_eq!(ctx_in(&v[1]).trace_id(), parent.trace_id());
    h.close(T).unwrap();
    let _ = std::fs::remove_file(f);
}

#[test]
fn kafka_payload_frame_is_joined_and_removed() {
    let f = span_file("kafka");
    let h = relay(
        HarnessConfig::bolt("ingest"),
        &["--kafka-payload", "0"],
        Some(&f),
    );
    let parent = root();
    let mut framed = binary::encode(&parent).as_bytes().to_vec();
    framed.extend_from_slice(b"{\"c\":1}");
    let bytes = h.tuple("kafka-spout", vec![json!(framed)]);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&framed);
    let text = h.tuple("kafka-spout", vec![json!(b64)]);
    let plain = h.tuple("kafka-spout", vec![json!(b"{\"c\":1}".to_vec())]);
    for t in [&bytes, &text, &plain] {
        run(&h, t);
    }
    let r = h.records();
    assert_eq!(r.emits[0].emit.values[0], json!(b"{\"c\":1}".to_vec()));
    // The relay upper-cases strings: it saw the unframed payload's base64, "eyJjIjoxfQ==".
    assert_eq!(r.emits[1].emit.values[0], json!("EYJJIJOXFQ=="));
    assert_eq!(r.emits[2].emit.values[0], json!(b"{\"c\":1}".to_vec()));
    let traces: Vec<TraceId> = r
        .emits
        .iter()
        .map(|e| ctx_in(&e.emit.values[1]).trace_id())
        .collect();
    assert_eq!(traces[..2], [parent.trace_id(), parent.trace_id()]);
    assert_ne!(traces[2], parent.trace_id());
    h.close(T).unwrap();
    let _ = std::fs::remove_file(f);
}

#[test]
fn heartbeats_are_answered_while_the_bolt_is_busy() {
    let mut config = HarnessConfig::bolt("slow");
    config.subprocess_timeout = Duration::from_secs(1);
    config.heartbeat_interval = Some(Duration::from_millis(100));
    let h = relay(config, &["--sleep-ms", "2500"], None);
    let t = h.tuple("spout", vec![json!("slow")]);
    h.send_tuple(&t).unwrap();
    // Busy for 2.5 s against a 1 s timeout: only the reader thread's syncs keep it alive.
    h.wait_for(|r| r.syncs >= 5 && r.acks.is_empty(), T, "syncs while busy")
        .unwrap();
    h.wait_settled(&t.id, T)
        .expect("not killed for missed heartbeats");
    let r = h.records();
    assert!(
        r.heartbeats_sent >= r.syncs,
        "a sync per heartbeat, never more"
    );
    assert_eq!(r.acks, vec![t.id.clone()], "heartbeats are never acked");
    assert!(r.died.is_none());
}

#[test]
fn acks_fails_task_ids_direct_and_metrics() {
    let mut config = HarnessConfig::bolt("split");
    config.metrics = vec!["seen".into()];
    let h = relay(
        config,
        &["--task-ids", "--fail-on", "bad", "--metric", "seen"],
        None,
    );
    let ok = h.tuple("spout", vec![json!("good")]);
    let bad = h.tuple("spout", vec![json!("bad")]);
    let tick = Tuple {
        id: "77".into(),
        component: Some("__system".into()),
        stream: "__tick".into(),
        task: -1,
        values: vec![json!(5)],
    };
    for t in [&ok, &bad, &tick] {
        run(&h, t);
    }
    let r = h.records();
    assert_eq!(
        r.acks,
        [ok.id.clone(), "77".into()],
        "tick tuples are acked"
    );
    assert_eq!(r.fails, vec![bad.id.clone()]);
    assert_eq!(r.emits[0].task_ids, Some(vec![4]));
    assert!(r.emits[0].emit.need_task_ids);
    assert!(
        r.logs.iter().any(|(_, m)| m == "task ids [4]"),
        "{:?}",
        r.logs
    );
    assert_eq!(
        r.metrics,
        [("seen".to_owned(), json!(1)), ("seen".to_owned(), json!(1))]
    );

    let d = relay(
        HarnessConfig::bolt("d"),
        &["--untraced", "--direct", "7", "--task-ids"],
        None,
    );
    let t = d.tuple("spout", vec![json!("x")]);
    run(&d, &t);
    let e = d.records().emits[0].clone();
    assert_eq!(
        (e.emit.direct_task, e.task_ids),
        (Some(7), None),
        "direct emits get no reply"
    );
}

#[test]
fn bolt_errors_and_double_acks_are_reported_not_fatal() {
    let h = relay(
        HarnessConfig::bolt("split"),
        &["--error-on", "boom", "--double-ack"],
        None,
    );
    let boom = h.tuple("spout", vec![json!("boom")]);
    let next = h.tuple("spout", vec![json!("fine")]);
    run(&h, &boom);
    run(&h, &next);
    h.wait_for(
        |r| r.logs.iter().any(|(_, m)| m.contains("second ack refused")),
        T,
        "log",
    )
    .unwrap();
    let r = h.records();
    assert_eq!(
        r.fails,
        vec![boom.id.clone()],
        "a failing execute fails its tuple"
    );
    assert!(r
        .errors
        .iter()
        .any(|e| e.contains("execute failed") && e.contains("boom")));
    assert_eq!(
        r.acks,
        vec![next.id.clone()],
        "exactly one ack reached Storm"
    );
    assert!(r
        .logs
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("second ack refused")));
    assert!(r.died.is_none());
}

#[test]
fn malformed_input_and_unknown_commands_do_not_panic() {
    let h = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    h.send_raw(b"{not json\nend\n").unwrap();
    h.send_raw(b"{\"command\":\"bogus\"}\nend\n").unwrap();
    h.send_raw(b"\"a string\"\nend\n").unwrap();
    let t = h.tuple("spout", vec![json!("after")]);
    run(&h, &t);
    let r = h.records();
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(r.errors[0].contains("malformed JSON"), "{}", r.errors[0]);
    assert!(r
        .logs
        .iter()
        .any(|(_, m)| m.contains("ignored unknown command \"bogus\"")));
    // A message cut off by the end of input is fatal: reported, then a clean exit code 1.
    h.send_raw(b"{\"id\":\"1\",").unwrap();
    let h2 = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    h2.send_raw(b"\xff\xfe\nend\n").unwrap();
    h2.wait_for(|r| !r.errors.is_empty(), T, "error report")
        .unwrap();
    assert!(h2.records().errors[0].contains("UTF-8"));
    let stderr = h2.stderr();
    let status = h2.close(T).unwrap().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stderr = h.stderr();
    let status = h.close(T).unwrap().unwrap();
    assert_eq!(status.code(), Some(1), "truncated message is fatal");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A well-framed tuple with bad content is failed at once when its id can be read (Storm
/// replays it now, not after its message timeout); without a usable id it is skipped. Either
/// way it is logged and reported, and no id ShellBolt does not hold is failed (that is fatal).
#[test]
fn unreadable_tuples_are_failed_by_id_or_skipped() {
    let h = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    let bad_task = r#"{"id":"-9","comp":"spout","stream":"default","task":"9","tuple":["x"]}"#;
    h.mark_pending("-9");
    let unreadable = [
        r#"{"comp":"spout","stream":"default","task":9,"tuple":["no id"]}"#,
        r#"{"id":-8,"comp":"spout","stream":"default","task":"9","tuple":[]}"#,
        r#"{"id":"-7","comp":null,"stream":"__heartbeat","task":"-1","tuple":[]}"#,
        bad_task,
    ];
    for m in unreadable {
        h.send_raw(format!("{m}\nend\n").as_bytes()).unwrap();
    }
    h.wait_settled("-9", T).unwrap();
    run(&h, &h.tuple("spout", vec![json!("after")]));
    let r = h.records();
    assert!(r.died.is_none(), "{:?}", r.died);
    assert_eq!(r.fails, ["-9"]);
    assert_eq!(r.errors.len(), 4, "{:?}", r.errors);
    assert!(r.errors[..3]
        .iter()
        .all(|e| e.starts_with("skipped an unreadable message")));
    assert!(
        r.errors[3].contains("failing tuple -9") && r.errors[3].contains("`task`"),
        "{}",
        r.errors[3]
    );
    let logged = r.logs.iter().filter(|(l, _)| *l == LogLevel::Error);
    assert_eq!(
        logged.map(|(_, m)| m).collect::<Vec<_>>(),
        r.errors.iter().collect::<Vec<_>>()
    );
    assert!(h.close(T).unwrap().unwrap().success());
}

#[test]
fn span_is_current_during_execute_and_failures_are_marked() {
    let f = span_file("current");
    let h = relay(
        HarnessConfig::bolt("split"),
        &["--log-current", "--fail-on", "bad", "--error-on", "boom"],
        Some(&f),
    );
    let ok = h.tuple("spout", vec![json!("ok"), b3_of(&root())]);
    let bad = h.tuple("spout", vec![json!("bad")]);
    let boom = h.tuple("spout", vec![json!("boom")]);
    for t in [&ok, &bad, &boom] {
        run(&h, t);
    }
    let r = h.records();
    let emitted = ctx_in(&r.emits[0].emit.values[1])
        .span_id()
        .to_hex()
        .to_string();
    let current: Vec<&str> = r
        .logs
        .iter()
        .filter_map(|(_, m)| m.strip_prefix("current "))
        .collect();
    assert_eq!(current.len(), 3);
    assert_eq!(
        current[0],
        format!("Some({emitted:?})"),
        "the emit's span was current"
    );
    assert!(current.iter().all(|c| c.starts_with("Some(")));
    h.close(T).unwrap();
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 3);
    let by_id = |id: &str| spans.iter().find(|s| s["id"] == id).cloned();
    assert!(by_id(&emitted).unwrap()["tags"].get("error").is_none());
    let errors: Vec<&Value> = spans
        .iter()
        .filter_map(|s| s["tags"].get("error"))
        .collect();
    assert_eq!(errors.len(), 2, "{spans:?}");
    assert!(errors.contains(&&json!("tuple failed")));
    assert!(errors
        .iter()
        .any(|e| e.as_str().unwrap().contains("refusing")));
    let _ = std::fs::remove_file(f);
}

#[test]
fn spans_wait_for_a_later_ack_and_multi_anchor_emits_keep_every_anchor() {
    let f = span_file("batch");
    let h = relay(HarnessConfig::bolt("join"), &["--batch", "3"], Some(&f));
    let parents = [root(), root(), root()];
    let tuples: Vec<Tuple> = parents
        .iter()
        .zip(["a", "b", "c"])
        .map(|(p, w)| h.tuple("spout", vec![json!(w), b3_of(p)]))
        .collect();
    for t in &tuples[..2] {
        h.send_tuple(t).unwrap();
    }
    h.send_heartbeat().unwrap();
    h.wait_for(|r| r.syncs >= 1, T, "sync").unwrap();
    assert!(h.records().acks.is_empty(), "held, not acked yet");
    h.send_tuple(&tuples[2]).unwrap();
    for t in &tuples {
        h.wait_settled(&t.id, T).unwrap();
    }
    let r = h.records();
    assert_eq!(r.emits.len(), 1);
    let e = &r.emits[0].emit;
    assert_eq!(e.values[0], "a b c");
    let ids: Vec<String> = tuples.iter().map(|t| t.id.clone()).collect();
    assert_eq!(e.anchors, ids, "every anchor, in order");
    let carried = ctx_in(&e.values[1]);
    assert_eq!(
        carried.trace_id(),
        parents[0].trace_id(),
        "the first anchor's trace"
    );
    h.close(T).unwrap();
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 3, "each input's span ends at its ack");
    for p in &parents {
        let s = spans
            .iter()
            .find(|s| s["traceId"] == p.trace_id().to_hex().as_str())
            .unwrap();
        assert_eq!(s["parentId"], p.span_id().to_hex().as_str());
    }
    let _ = std::fs::remove_file(f);
}

#[test]
fn multi_line_json_and_crlf_from_storm_are_read() {
    let h = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    h.mark_pending("-5");
    h.send_raw(b"{\r\n  \"id\": \"-5\",\r\n  \"comp\": \"spout\",\r\n  \"stream\": \"default\",\r\n  \"task\": 9,\r\n  \"tuple\": [\"x\\/y\"]\r\n}\r\nend\r\n")
        .unwrap();
    h.wait_settled("-5", T).unwrap();
    let r = h.records();
    assert_eq!(r.acks, ["-5"]);
    assert_eq!(
        r.emits[0].emit.values,
        [json!("X/Y")],
        "json-smart's \\/ read as /"
    );
}

#[test]
fn messages_after_a_lone_cr_end_in_the_same_read_are_all_read() {
    let h = relay(HarnessConfig::bolt("split"), &["--untraced"], None);
    for id in ["-1", "-2", "-3"] {
        h.mark_pending(id);
    }
    let tuple = |id: &str| {
        format!(r#"{{"id":"{id}","comp":"spout","stream":"default","task":9,"tuple":["w{id}"]}}"#)
    };
    let wire = format!(
        "{}\rend\r{}\rend\r{}\r\nend\r",
        tuple("-1"),
        tuple("-2"),
        tuple("-3")
    );
    h.send_raw(wire.as_bytes()).unwrap();
    for id in ["-1", "-2", "-3"] {
        h.wait_settled(id, T).unwrap();
    }
    let r = h.records();
    assert_eq!(r.acks, ["-1", "-2", "-3"]);
    let words: Vec<&Value> = r.emits.iter().map(|e| &e.emit.values[0]).collect();
    assert_eq!(words, [&json!("W-1"), &json!("W-2"), &json!("W-3")]);
}

#[test]
fn a_panicking_bolt_fails_its_tuple_reports_and_exits() {
    let h = relay(HarnessConfig::bolt("split"), &["--panic-on", "oops"], None);
    let t = h.tuple("spout", vec![json!("oops")]);
    h.send_tuple(&t).unwrap();
    h.wait_settled(&t.id, T).unwrap();
    h.wait_for(|r| !r.errors.is_empty(), T, "error report")
        .unwrap();
    let r = h.records();
    assert_eq!(r.fails, vec![t.id.clone()]);
    assert!(r.errors[0].contains("execute panicked") && r.errors[0].contains("asked to panic"));
    let reason = h.wait_died(T).unwrap();
    assert!(reason.contains("broken"), "the process ended: {reason}");
    assert_eq!(h.close(T).unwrap().unwrap().code(), Some(1));
}

#[test]
fn a_panic_in_prepare_is_reported_and_exits_1() {
    let h = relay(HarnessConfig::bolt("split"), &["--panic-in-prepare"], None);
    h.wait_for(|r| !r.errors.is_empty(), T, "error report")
        .unwrap();
    let r = h.records();
    assert!(
        r.errors[0].contains("prepare panicked") && r.errors[0].contains("asked to panic"),
        "{:?}",
        r.errors
    );
    assert!(r
        .logs
        .iter()
        .any(|(l, m)| *l == LogLevel::Error && m.contains("prepare panicked")));
    h.wait_died(T).unwrap();
    assert_eq!(h.close(T).unwrap().unwrap().code(), Some(1));
}

#[test]
fn a_panicking_traced_bolt_reports_its_span_as_an_error() {
    let f = span_file("panic");
    let h = relay(
        HarnessConfig::bolt("split"),
        &["--panic-on", "oops"],
        Some(&f),
    );
    let ok = h.tuple("spout", vec![json!("fine"), b3_of(&root())]);
    run(&h, &ok);
    let oops = h.tuple("spout", vec![json!("oops"), b3_of(&root())]);
    run(&h, &oops);
    h.wait_died(T).unwrap();
    assert_eq!(h.close(T).unwrap().unwrap().code(), Some(1));
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let trace_of = |t: &Tuple| ctx_in(&t.values[1]).trace_id().to_hex().to_string();
    let span_of = |t: &Tuple| {
        spans
            .iter()
            .find(|s| s["traceId"] == trace_of(t).as_str())
            .unwrap()
    };
    assert!(span_of(&ok)["tags"].get("error").is_none());
    let failed = span_of(&oops);
    let error = failed["tags"]["error"].as_str().expect("an error tag");
    assert!(
        error.contains("execute panicked") && error.contains("asked to panic"),
        "{failed}"
    );
    assert_eq!(failed["annotations"][0]["value"], "storm.fail");
    let _ = std::fs::remove_file(f);
}

#[test]
fn spans_of_tuples_pending_at_shutdown_are_reported_as_errors() {
    let f = span_file("pending");
    let h = relay(HarnessConfig::bolt("join"), &["--batch", "3"], Some(&f));
    for w in ["a", "b"] {
        h.send_tuple(&h.tuple("spout", vec![json!(w), b3_of(&root())]))
            .unwrap();
    }
    h.send_heartbeat().unwrap();
    h.wait_for(|r| r.syncs >= 1, T, "sync").unwrap();
    assert!(h.close(T).unwrap().unwrap().success());
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 2, "{spans:?}");
    for s in &spans {
        assert_eq!(s["tags"]["error"], "not acked before shutdown", "{s}");
        assert_eq!(s["annotations"][0]["value"], "storm.unacked");
    }
    let _ = std::fs::remove_file(f);
}
