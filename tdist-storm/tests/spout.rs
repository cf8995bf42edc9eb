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
