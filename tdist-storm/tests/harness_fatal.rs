//! The harness treats what ShellBolt/ShellSpout treat as fatal as fatal, against small shell
//! children that misbehave on purpose.
use std::process::Command;
use std::time::Duration;
use tdist_storm::harness::{Harness, HarnessConfig, HarnessError};

const T: Duration = Duration::from_secs(20);

/// A child that completes the handshake, reads one tuple into `$id`, then runs `action`.
fn child(action: &str) -> Command {
    let script = format!(
        r#"read -r hs; read -r e
printf '{{"pid": %d}}\nend\n' $$
read -r t; read -r e
id=$(printf '%s' "$t" | sed 's/.*"id":"\([^"]*\)".*/\1/')
{action}
sleep 10"#
    );
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

fn died_after_one_tuple(action: &str, config: HarnessConfig) -> String {
    let h = Harness::spawn(child(action), config).expect("handshake");
    let t = h.tuple("spout", vec!["x".into()]);
    h.send_tuple(&t).unwrap();
    let reason = h
        .wait_died(T)
        .expect("the harness declares the component dead");
    let err = h.wait_for(|_| false, Duration::ZERO, "").unwrap_err();
    assert!(matches!(err, HarnessError::Died { .. }), "{err}");
    assert!(
        h.send_tuple(&h.tuple("spout", vec![])).is_err(),
        "a dead bolt takes no tuples"
    );
    let status = h.close(T).unwrap();
    assert!(
        status.is_some(),
        "the child is gone (killed, or exited by itself)"
    );
    reason
}

fn quiet_bolt() -> HarnessConfig {
    let mut c = HarnessConfig::bolt("bad");
    c.heartbeat_interval = None;
    c
}

#[test]
fn fatal_cases_of_shellbolt() {
    let cases = [
        (
            r#"printf '{"command":"ack","id":"%s"}\nend\n{"command":"ack","id":"%s"}\nend\n' "$id" "$id""#,
            "already acked",
        ),
        (
            r#"printf '{"command":"ack","id":"%s"}\nend\n{"command":"fail","id":"%s"}\nend\n' "$id" "$id""#,
            "Failed a non-existent or already acked/failed id",
        ),
        (r#"printf '{"id":"%s"}\nend\n' "$id""#, "without `command`"),
        (
            r#"printf '{"command":"emit","tuple":[1],"anchors":["nope"]}\nend\n'"#,
            "Anchored onto nope",
        ),
        (
            r#"printf '{"command":"ack","id":5}\nend\n'"#,
            "is not a string",
        ),
        (
            r#"printf '{"command":"metrics","name":"m","params":1}\nend\n'"#,
            "could not find metric",
        ),
        (r#"printf '{oops\nend\n'"#, "malformed JSON"),
        (
            r#"printf '{"command":"emit","tuple":[],"task":3.0}\nend\n'"#,
            "must be an integer",
        ),
        (
            r#"printf '{"command":"emit","tuple":[],"need_task_ids":1}\nend\n'"#,
            "must be a boolean",
        ),
        (
            r#"printf '{"command":"log","msg":["x"]}\nend\n'"#,
            "`msg` must be a string",
        ),
        ("exit 0", "pipe to subprocess seems to be broken"),
        (
            r#"printf '{"command":"sync"}\n'; exit 0"#,
            "pipe to subprocess seems to be broken",
        ),
    ];
    for (action, expected) in cases {
        let reason = died_after_one_tuple(action, quiet_bolt());
        assert!(reason.contains(expected), "{action}: {reason}");
    }
}

#[test]
fn ignored_commands_are_recorded_not_fatal() {
    let h = Harness::spawn(
        child(r#"printf '{"command":"hello"}\nend\n{"command":"ack","id":"%s"}\nend\n' "$id""#),
        quiet_bolt(),
    )
    .unwrap();
    let t = h.tuple("spout", vec![]);
    h.send_tuple(&t).unwrap();
    h.wait_settled(&t.id, T).unwrap();
    assert_eq!(h.records().unknown_commands, ["hello"]);
}

#[test]
fn silent_child_dies_of_heartbeat_timeout() {
    let mut config = HarnessConfig::bolt("mute");
    config.subprocess_timeout = Duration::from_millis(600);
    config.heartbeat_interval = Some(Duration::from_millis(100));
    let h = Harness::spawn(child(""), config).unwrap();
    assert_eq!(h.wait_died(T).unwrap(), "subprocess heartbeat timeout");
    assert!(
        h.records().heartbeats_sent >= 1,
        "heartbeats went out before the timeout"
    );
}

#[test]
fn bad_handshake_replies_fail_spawn() {
    for reply in [
        r#"printf 'not json\nend\n'"#,
        r#"printf '{"pid":"12"}\nend\n'"#,
        "exit 3",
    ] {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("read -r hs; read -r e; {reply}; sleep 5"));
        let err = Harness::spawn(c, quiet_bolt()).unwrap_err();
        assert!(matches!(err, HarnessError::Died { .. }), "{reply}: {err}");
    }
}

#[test]
fn spout_unknown_command_and_ack_are_fatal() {
    for (action, expected) in [
        (
            r#"printf '{"command":"bogus"}\nend\n'"#,
            "unknown command received: bogus",
        ),
        (
            r#"printf '{"command":"ack","id":"1"}\nend\n'"#,
            "unknown command received: ack",
        ),
    ] {
        let script = format!(
            r#"read -r hs; read -r e
printf '{{"pid": %d}}\nend\n' $$
read -r c; read -r e
{action}
sleep 10"#
        );
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        let h = Harness::spawn(c, HarnessConfig::spout("s")).unwrap();
        let err = h.next(T).unwrap_err();
        let HarnessError::Died { reason, .. } = err else {
            panic!("{err}")
        };
        assert!(reason.contains(expected), "{reason}");
    }
}

#[test]
fn spout_that_never_syncs_times_out() {
    let mut config = HarnessConfig::spout("s");
    config.subprocess_timeout = Duration::from_millis(500);
    config.heartbeat_interval = Some(Duration::from_millis(100));
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("read -r hs; read -r e; printf '{\"pid\": %d}\\nend\\n' $$; sleep 10");
    let h = Harness::spawn(c, config).unwrap();
    std::thread::sleep(Duration::from_millis(800)); // idle between commands: not a timeout
    let err = h.next(T).unwrap_err();
    assert!(
        err.to_string().contains("subprocess heartbeat timeout"),
        "{err}"
    );
}
