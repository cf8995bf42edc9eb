//! A spout as a real child process driven through the ShellSpout-side harness.
mod support;

use serde_json::json;
use std::time::Duration;
use support::storm_example;
use tdist_storm::harness::{Harness, HarnessConfig};

const T: Duration = Duration::from_secs(20);

#[test]
fn spout_emits_and_receives_ack_and_fail() {
    let h = Harness::spawn(
        storm_example("counter_spout"),
        HarnessConfig::spout("numbers"),
    )
    .unwrap();
    h.wait_pid_file(T).unwrap();
    assert!(h.spout_command("activate", None, T).unwrap().is_empty());
    let first = h.next(T).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].emit.values, [json!(1)]);
    assert_eq!(first[0].emit.message_id, Some(json!(1)));
    assert_eq!(h.next(T).unwrap()[0].emit.values, [json!(2)]);
    h.spout_command("ack", Some(json!(1)), T).unwrap();
    h.spout_command("fail", Some(json!(2)), T).unwrap();
    let replayed = h.next(T).unwrap();
    assert_eq!(
        replayed[0].emit.message_id,
        Some(json!(2)),
        "failed tuple replayed"
    );
    assert!(
        h.spout_command("bogus", None, T).unwrap().is_empty(),
        "unknown command: sync"
    );
    h.spout_command("deactivate", None, T).unwrap();
    let r = h.records();
    let logs: Vec<&str> = r.logs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        logs[..4],
        [
            "activated",
            "acked 1",
            "failed 2, will replay",
            "ignored unknown command \"bogus\""
        ]
    );
    assert_eq!(logs[4], "deactivated");
    assert_eq!(r.syncs, 8);
    assert!(h.close(T).unwrap().unwrap().success());
}

#[test]
fn spout_task_ids_and_exhaustion() {
    let mut cmd = storm_example("counter_spout");
    cmd.args(["--limit", "1", "--task-ids"]);
    let h = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    let e = h.next(T).unwrap();
    assert_eq!(e[0].task_ids, Some(vec![4]));
    assert!(h.next(T).unwrap().is_empty(), "nothing left: just sync");
    assert!(h.records().logs.iter().any(|(_, m)| m == "task ids [4]"));
}

/// spout → bolt → bolt, all traced, each a child process: one trace, a chain of three spans.
#[test]
fn traced_spout_starts_the_trace_two_bolts_continue_it() {
    use support::{read_spans, span_file};
    let files = [span_file("spout"), span_file("b1"), span_file("b2")];
    let mut cmd = storm_example("counter_spout");
    cmd.arg("--traced")
        .env("TDIST_FILE", &files[0])
        .env_remove("TDIST_TRANSPORT");
    let spout = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    let bolt = |name: &str, f: &std::path::Path| {
        let mut cmd = storm_example("relay");
        cmd.env("TDIST_FILE", f).env_remove("TDIST_TRANSPORT");
        Harness::spawn(cmd, HarnessConfig::bolt(name)).unwrap()
    };
    let (b1, b2) = (bolt("b1", &files[1]), bolt("b2", &files[2]));

    let emitted = spout.next(T).unwrap().remove(0).emit;
    assert_eq!(emitted.values.len(), 2, "the number and the trace field");
    let t1 = b1.tuple("numbers", emitted.values.clone());
    b1.send_tuple(&t1).unwrap();
    b1.wait_settled(&t1.id, T).unwrap();
    let t2 = b2.tuple("b1", b1.records().emits[0].emit.values.clone());
    b2.send_tuple(&t2).unwrap();
    b2.wait_settled(&t2.id, T).unwrap();
    // The tuple tree is complete: Storm acks the spout's message id, which ends its span.
    spout
        .spout_command("ack", emitted.message_id.clone(), T)
        .unwrap();

    for h in [spout, b1, b2] {
        assert!(h.close(T).unwrap().unwrap().success());
    }
    let spans: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let s = read_spans(f);
            let _ = std::fs::remove_file(f);
            assert_eq!(s.len(), 1, "{s:?}");
            s[0].clone()
        })
        .collect();
    assert_eq!(spans[0]["kind"], "PRODUCER");
    assert_eq!(spans[0]["name"], "numbers");
    assert!(
        spans[0].get("parentId").is_none(),
        "the spout starts the trace"
    );
    assert_eq!(spans[1]["parentId"], spans[0]["id"]);
    assert_eq!(spans[2]["parentId"], spans[1]["id"]);
    assert!(spans.iter().all(|s| s["traceId"] == spans[0]["traceId"]));
}

#[test]
fn traced_spout_marks_failed_tuples() {
    use support::{read_spans, span_file};
    let f = span_file("spout-fail");
    let mut cmd = storm_example("counter_spout");
    cmd.arg("--traced")
        .env("TDIST_FILE", &f)
        .env_remove("TDIST_TRANSPORT");
    let spout = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    let e = spout.next(T).unwrap().remove(0).emit;
    spout
        .spout_command("fail", e.message_id.clone(), T)
        .unwrap();
    let replay = spout.next(T).unwrap().remove(0).emit;
    assert_eq!(replay.message_id, e.message_id);
    assert_ne!(replay.values[1], e.values[1], "a replay is a new trace");
    spout
        .spout_command("ack", replay.message_id.clone(), T)
        .unwrap();
    spout.close(T).unwrap();
    let spans = read_spans(&f);
    let _ = std::fs::remove_file(&f);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["tags"]["error"], "tuple failed or timed out");
    assert!(spans[1]["tags"].get("error").is_none());
}

/// A message id emitted again while its span waits (a source delivering again before the ack)
/// ends the older span as a replay even when the pending map is full, so the ack ends the newer
/// span and every span ends once; the map keeps its bound (here 1).
#[test]
fn traced_spout_reemission_ends_the_older_span() {
    use support::{read_spans, span_file};
    let f = span_file("spout-reemit");
    let mut cmd = storm_example("counter_spout");
    cmd.args(["--traced", "--redeliver", "--max-pending", "1"])
        .env("TDIST_FILE", &f)
        .env_remove("TDIST_TRANSPORT");
    let h = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    let emit = || h.next(T).unwrap().remove(0).emit;
    let (first, again, second) = (emit(), emit(), emit());
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(second.message_id, Some(json!(2)));
    h.spout_command("ack", first.message_id.clone(), T).unwrap();
    h.spout_command("ack", second.message_id.clone(), T)
        .unwrap();
    assert!(h.close(T).unwrap().unwrap().success());
    let spans = read_spans(&f);
    let _ = std::fs::remove_file(&f);
    assert_eq!(spans.len(), 3, "each span ends once: {spans:?}");
    let annotations = |e: &tdist_storm::protocol::Emit| {
        let id = e.values[1].as_str().unwrap().split('-').nth(1).unwrap();
        let s = spans.iter().find(|s| s["id"] == id).expect("its span");
        assert!(s["tags"].get("error").is_none(), "{s}");
        let a = s["annotations"].as_array().cloned().unwrap_or_default();
        a.iter().map(|a| a["value"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(annotations(&first), [json!("storm.replayed")]);
    assert!(annotations(&again).is_empty(), "ended by the ack");
    assert_eq!(
        annotations(&second),
        [json!("storm.unacked")],
        "over the bound"
    );
}

#[test]
fn spout_reports_malformed_input_and_keeps_going() {
    let h = Harness::spawn(
        storm_example("counter_spout"),
        HarnessConfig::spout("numbers"),
    )
    .unwrap();
    h.send_raw(b"{\"command\":\n\"next\"\nend\n").unwrap(); // truncated JSON inside a frame
    h.wait_for(
        |r| r.syncs == 1 && !r.errors.is_empty(),
        T,
        "error and sync",
    )
    .unwrap();
    assert!(
        h.records().errors[0].contains("malformed JSON"),
        "{:?}",
        h.records().errors
    );
    h.send_raw(
        b"{\"id\":\"1\",\"comp\":\"x\",\"stream\":\"default\",\"task\":1,\"tuple\":[]}\nend\n",
    )
    .unwrap();
    h.wait_for(|r| r.syncs == 2 && r.errors.len() == 2, T, "second error")
        .unwrap();
    assert!(h.records().errors[1].contains("non-command"));
    assert_eq!(
        h.next(T).unwrap()[0].emit.values,
        [json!(1)],
        "still working"
    );
    assert!(
        h.send_tuple(&h.tuple("x", vec![])).is_err(),
        "tuples go to bolts"
    );
    assert!(h.close(T).unwrap().unwrap().success());
}

#[test]
fn a_panic_in_open_is_reported_and_exits_1() {
    let mut cmd = storm_example("counter_spout");
    cmd.arg("--panic-in-open");
    let h = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    h.wait_for(|r| !r.errors.is_empty(), T, "error report")
        .unwrap();
    let errors = h.records().errors;
    assert!(
        errors[0].contains("open panicked") && errors[0].contains("asked to panic"),
        "{errors:?}"
    );
    assert_eq!(h.close(T).unwrap().unwrap().code(), Some(1));
}

#[test]
fn traced_spout_spans_unacked_at_shutdown_are_reported_as_errors() {
    use support::{read_spans, span_file};
    let f = span_file("spout-pending");
    let mut cmd = storm_example("counter_spout");
    cmd.arg("--traced")
        .env("TDIST_FILE", &f)
        .env_remove("TDIST_TRANSPORT");
    let h = Harness::spawn(cmd, HarnessConfig::spout("numbers")).unwrap();
    h.next(T).unwrap();
    h.next(T).unwrap();
    h.spout_command("ack", Some(json!(1)), T).unwrap();
    assert!(h.close(T).unwrap().unwrap().success());
    let spans = read_spans(&f);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let acked = spans.iter().filter(|s| s["tags"].get("error").is_none());
    assert_eq!(acked.count(), 1);
    let errors: Vec<_> = spans
        .iter()
        .filter_map(|s| s["tags"].get("error"))
        .collect();
    assert_eq!(errors, [&json!("not acked before shutdown")]);
    let _ = std::fs::remove_file(f);
}
