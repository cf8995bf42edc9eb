//! A traced Rust bolt under the multilang runtime, fed what Storm might send, with what it
//! writes back checked the way Storm's `ShellBolt` reads it.
//!
//! After the handshake, the input is a sequence of messages built from bytes: tuples (with a
//! trace context or without), heartbeats, tick tuples, task-id lists, tuples Storm holds but
//! the runtime cannot read, malformed JSON, a spout's command, and raw bytes that break the
//! framing. Tuple ids are
//! unique, as Storm's are. The bolt emits anchored to its input (sometimes asking for task
//! ids), then acks, fails, returns an error, or acks twice.
//!
//! Whatever happens, everything the runtime writes must be a message Storm can read, and it must
//! never do what makes `ShellBolt` kill the worker: ack or fail an id Storm does not hold (or
//! already settled), or anchor onto one. When the input ends cleanly, every heartbeat was
//! answered with `sync` and every tuple Storm holds was acked or failed.
#![no_main]

mod common;

use common::{break_framing, pid_dir, run_and_read};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::HashSet;
use tdist_core::Tracer;
use tdist_storm::bolt::{run_bolt_on, Bolt, BoltError, Collector};
use tdist_storm::protocol::{write_message, Emit, ShellMsg, Tuple};
use tdist_storm::traced::TracedBolt;

/// Emits anchored to each input, then settles it in a way its first value chooses.
struct Echo;

impl Bolt for Echo {
    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let how = t.values.first().and_then(Value::as_u64).unwrap_or(0);
        let emit = Emit::new(vec![json!("seen")])
            .anchor(&t)
            .need_task_ids(how & 1 == 1);
        out.emit(emit)?;
        match how >> 1 & 3 {
            0 => out.ack(&t.id)?,
            1 => out.fail(&t.id)?,
            2 => return Err("the bolt gave up".into()),
            _ => {
                out.ack(&t.id)?;
                // A second ack must be refused, not sent.
                if out.ack(&t.id).is_ok() {
                    panic!("a second ack of {} was accepted", t.id);
                }
            }
        }
        Ok(())
    }
}

/// What Storm sent, as its side keeps it.
#[derive(Default)]
struct Sent {
    input: Vec<u8>,
    /// Ids of tuples Storm holds (readable or not), in order.
    held: Vec<String>,
    heartbeats: usize,
    /// The framing was broken on purpose: the runtime stops there.
    broken: bool,
}

impl Sent {
    fn message(&mut self, v: &Value) {
        write_message(&mut self.input, &v.to_string()).expect("writing to memory");
    }
}

fn storm_input(data: &[u8]) -> Sent {
    let mut sent = Sent::default();
    sent.message(&json!({
        "conf": {"topology.name": "fuzz"},
        "pidDir": pid_dir(),
        "context": {"taskid": 3, "componentid": "echo", "task->component": {"1": "spout", "3": "echo"}},
    }));
    for (n, c) in data.chunks(2).enumerate() {
        let (op, arg) = (c[0], c.get(1).copied().unwrap_or(0));
        let id = format!("{}", 1_000 + n);
        let context = match arg % 4 {
            0 => json!("463ac35c9f6413ad-a2fb4a1d1a96d312-1"),
            1 => json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            2 => json!("not a context"),
            _ => json!(arg),
        };
        match op % 9 {
            0 | 1 => {
                sent.held.push(id.clone());
                sent.message(
                    &json!({"id": id, "comp": "spout", "stream": "default", "task": 1,
                    "tuple": [arg >> 2, "text", context]}),
                );
            }
            2 => {
                sent.heartbeats += 1;
                sent.message(&json!({"id": format!("-{id}"), "stream": "__heartbeat", "task": -1, "tuple": []}));
            }
            3 => {
                sent.held.push(id.clone());
                sent.message(&json!({"id": id, "comp": "__system", "stream": "__tick", "task": -1, "tuple": [30]}));
            }
            4 => sent.message(&json!([1, 2])),
            5 => {
                // Held by Storm, unreadable here (no task): the runtime fails it.
                sent.held.push(id.clone());
                sent.message(&json!({"id": id, "comp": "spout", "stream": "default", "tuple": []}));
            }
            6 => write_message(&mut sent.input, "{\"id\": ").expect("writing to memory"),
            // A spout's command: a bolt stops on it.
            7 => sent.message(&json!({"command": "next"})),
            _ => {
                break_framing(&mut sent.input, &c[1..]);
                sent.broken = true;
                break;
            }
        }
    }
    sent
}

fuzz_target!(|data: &[u8]| {
    let sent = storm_input(data);
    let (clean, commands) = run_and_read(&sent.input, |input, output| {
        run_bolt_on(TracedBolt::new(Echo, Tracer::noop()), input, output)
    });

    let held: HashSet<&str> = sent.held.iter().map(String::as_str).collect();
    let mut settled: HashSet<String> = HashSet::new();
    let mut syncs = 0;
    for (v, m) in commands {
        match m {
            ShellMsg::Ack(id) | ShellMsg::Fail(id) => {
                let id = id
                    .as_str()
                    .unwrap_or_else(|| panic!("non-string id in {v}"));
                assert!(held.contains(id), "settled {id}, which Storm does not hold");
                assert!(settled.insert(id.to_owned()), "settled {id} twice");
            }
            ShellMsg::Emit(e) => {
                for a in &e.anchors {
                    assert!(held.contains(a.as_str()), "anchored onto {a}, not held");
                    assert!(
                        !settled.contains(a),
                        "anchored onto {a} after it was settled"
                    );
                }
            }
            ShellMsg::Sync => syncs += 1,
            ShellMsg::Log { .. } | ShellMsg::Error(_) => {}
            other => panic!("unexpected command {other:?}"),
        }
    }
    if clean && !sent.broken {
        assert_eq!(syncs, sent.heartbeats, "heartbeats unanswered");
        assert_eq!(settled.len(), held.len(), "tuples left unsettled");
    }
});
