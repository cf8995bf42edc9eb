//! What the harness writes, byte for byte, and its ShellBolt-like back-pressure.
mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use tdist_storm::harness::{Harness, HarnessConfig};

const T: Duration = Duration::from_secs(20);

/// A child that copies the handshake and the next message to stderr.
fn recorder() -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(
        r#"read -r hs; read -r e; printf '%s\n' "$hs" >&2
printf '{"pid": %d}\nend\n' $$
read -r m; read -r e; printf '%s\n' "$m" >&2
printf '{"command":"sync"}\nend\n'
sleep 10"#,
    );
    c
}

#[test]
fn handshake_and_heartbeat_are_written_as_storm_writes_them() {
    let mut config = HarnessConfig::bolt("split").input("spout", "default", &["line"]);
    config.heartbeat_interval = Some(Duration::from_millis(50));
    let h = Harness::spawn(recorder(), config).unwrap();
    h.wait_for(|r| r.syncs >= 1, T, "sync").unwrap();
    // The child wrote both lines to stderr before its sync, but the harness reads stderr on
    // its own thread: the sync may be recorded first.
    let deadline = std::time::Instant::now() + T;
    while h.stderr().lines().count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stderr = h.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains(r#"\/"#),
        "json-smart escapes '/': {}",
        lines[0]
    );
    let hs: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        hs["pidDir"].as_str().unwrap(),
        h.pid_dir().to_str().unwrap()
    );
    assert_eq!(hs["context"]["taskid"], 3);
    assert_eq!(hs["context"]["componentid"], "split");
    assert_eq!(
        hs["context"]["task->component"]["3"], "split",
        "string task keys"
    );
    assert_eq!(
        hs["context"]["source->stream->fields"]["spout"]["default"],
        json!(["line"])
    );
    assert_eq!(hs["conf"]["topology.shellbolt.max.pending"], 100);
    let hb: Value = serde_json::from_str(lines[1]).unwrap();
    let obj = hb.as_object().unwrap();
    assert_eq!(obj.len(), 5);
    assert!(
        obj["id"].as_str().unwrap().parse::<i64>().is_ok(),
        "a Long as a string"
    );
    assert_eq!(obj["comp"], Value::Null);
    assert_eq!(obj["stream"], "__heartbeat");
    assert_eq!(obj["task"], -1);
    assert_eq!(obj["tuple"], json!([]));
}

#[test]
fn send_blocks_at_max_pending_like_shellbolt() {
    let mut config = HarnessConfig::bolt("slow");
    config.max_pending = 2;
    let mut cmd = support::storm_example("relay");
    cmd.args(["--untraced", "--sleep-ms", "200"]);
    let h = Harness::spawn(cmd, config).unwrap();
    let tuples: Vec<_> = (0..3).map(|i| h.tuple("spout", vec![json!(i)])).collect();
    h.send_tuple(&tuples[0]).unwrap();
    h.send_tuple(&tuples[1]).unwrap();
    assert!(h.records().acks.is_empty());
    h.send_tuple(&tuples[2]).unwrap(); // waits for room
    assert!(
        !h.records().acks.is_empty(),
        "the third tuple went out only after an ack"
    );
    h.wait_settled(&tuples[2].id, T).unwrap();
    assert_eq!(h.records().acks.len(), 3);
}

/// A child that, while Storm is writing it a big tuple it has not read yet, asks for task ids
/// and then writes more than a pipe holds before it reads stdin again (as a bolt that emits a
/// batch does). Storm's reader keeps reading meanwhile; it writes the reply from another thread.
fn writes_before_reading() -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(
        r#"read -r hs; read -r e
printf '{"pid": %d}\nend\n' $$
sleep 1
printf '{"command":"emit","tuple":["a"]}\nend\n'
pad=$(printf '%1000s' | tr ' ' x)
i=0
while [ $i -lt 200 ]; do
  printf '{"command":"log","msg":"%s","level":2}\nend\n' "$pad"
  i=$((i+1))
done
cat >/dev/null"#,
    );
    c
}

#[test]
fn a_task_id_reply_never_waits_for_a_tuple_being_written() {
    let mut config = HarnessConfig::bolt("batcher");
    config.heartbeat_interval = None;
    let h = Harness::spawn(writes_before_reading(), config).unwrap();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // 1 MB the child reads only at the end: the write blocks until then.
        let t = h.tuple("spout", vec![json!("x".repeat(1 << 20))]);
        let h = std::sync::Arc::new(h);
        let sender = h.clone();
        std::thread::spawn(move || sender.send_tuple(&t));
        let logged = h.wait_for(|r| r.logs.len() == 200, T, "the child's 200 logs");
        let _ = done_tx.send((logged.map_err(|e| e.to_string()), h.records()));
    });
    let (logged, r) = done
        .recv_timeout(T + Duration::from_secs(10))
        .expect("the harness hung");
    logged.expect("the harness kept reading the child's output");
    assert_eq!(r.emits.len(), 1);
    assert_eq!(r.emits[0].task_ids, Some(vec![4]));
}

/// A child that acks every tuple it reads.
fn acker() -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(
        r#"read -r hs; read -r e
dir=$(printf '%s' "$hs" | sed 's/.*"pidDir":"\([^"]*\)".*/\1/; s/\\\//\//g')
: > "$dir/$$"
printf '{"pid": %d}\nend\n' $$
while read -r t && read -r e; do
  id=$(printf '%s' "$t" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  printf '{"command":"ack","id":"%s"}\nend\n' "$id"
done"#,
    );
    c
}

#[test]
fn timeouts_of_duration_max_mean_no_limit() {
    // `Instant::now() + Duration::MAX` once panicked in every wait of the harness.
    let mut config = HarnessConfig::bolt("patient");
    config.heartbeat_interval = None;
    config.subprocess_timeout = Duration::MAX;
    config.handshake_timeout = Duration::MAX;
    config.max_pending = 1;
    let h = Harness::spawn(acker(), config).unwrap();
    let (a, b) = (
        h.tuple("spout", vec![json!(1)]),
        h.tuple("spout", vec![json!(2)]),
    );
    h.send_tuple(&a).unwrap();
    h.send_tuple(&b).unwrap(); // waits for room at max_pending
    h.wait_settled(&b.id, Duration::MAX).unwrap();
    h.wait_pid_file(Duration::MAX).unwrap();
    assert!(h.close(Duration::MAX).unwrap().is_some());
}

/// A child that writes 5 MiB to stderr before its handshake: the harness keeps the latest
/// part of it, not all of it, however long a chatty child runs.
#[test]
fn a_chatty_child_s_stderr_is_kept_to_its_latest_part() {
    let mut c = Command::new("sh");
    c.arg("-c").arg(
        r#"i=0; while [ $i -lt 5120 ]; do printf '%01023d\n' $i >&2; i=$((i+1)); done
echo last-line >&2
read -r hs; read -r e
dir=$(printf '%s' "$hs" | sed 's/.*"pidDir":"\([^"]*\)".*/\1/; s/\\\//\//g')
: > "$dir/$$"
printf '{"pid": %d}\nend\n' $$
while read -r t && read -r e; do :; done"#,
    );
    let mut config = HarnessConfig::bolt("chatty");
    config.heartbeat_interval = None;
    let h = Harness::spawn(c, config).unwrap();
    h.wait_pid_file(T).unwrap();
    let deadline = std::time::Instant::now() + T;
    while !h.stderr().ends_with("last-line\n") {
        assert!(std::time::Instant::now() < deadline, "stderr never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    let kept = h.stderr().len();
    assert!((1 << 20..=2 << 20).contains(&kept), "{kept} bytes kept");
    let _ = h.close(T);
}
