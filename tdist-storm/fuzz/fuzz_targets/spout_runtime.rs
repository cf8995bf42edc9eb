//! A traced Rust spout under the multilang runtime, fed what Storm's `ShellSpout` might send,
//! with what it writes back checked the way `ShellSpout` reads it.
//!
//! After the handshake, the input is a sequence of messages built from bytes: `next`, `ack` and
//! `fail` (with message ids of any JSON type), `activate`, `deactivate`, unknown commands,
//! task-id lists, messages a spout should never get (a tuple), malformed JSON, and raw bytes
//! that break the framing. The spout emits with message ids (sometimes asking for task ids) and
//! sometimes fails.
//!
//! `ShellSpout` sends one command at a time and reads until `sync`; any command it does not
//! know is fatal. So everything written must be an emit without anchors, a log, an error, a
//! metric or a `sync`, and when the input ends cleanly there is exactly one `sync` per message
//! the spout was sent.
#![no_main]

mod common;

use common::{break_framing, pid_dir, run_and_read};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tdist_core::Tracer;
use tdist_storm::bolt::BoltError;
use tdist_storm::protocol::{write_message, Emit, ShellMsg};
use tdist_storm::spout::{run_spout_on, Spout, SpoutOutput};
use tdist_storm::traced::TracedSpout;

/// Emits numbered tuples; every third `next` fails, every fifth asks for task ids.
struct Numbers(u64);

impl Spout for Numbers {
    fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        self.0 += 1;
        if self.0.is_multiple_of(3) {
            return Err("no tuple this time".into());
        }
        out.emit(
            Emit::new(vec![json!(self.0)])
                .message_id(self.0)
                .need_task_ids(self.0.is_multiple_of(5)),
        )?;
        Ok(())
    }

    fn fail(&mut self, id: Value, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        // Replay, unreliably.
        out.emit(Emit::new(vec![id]).need_task_ids(false))?;
        Ok(())
    }
}

/// What Storm sent: the bytes, and how many messages a `sync` answers.
struct Sent {
    input: Vec<u8>,
    answered: usize,
    broken: bool,
}

fn storm_input(data: &[u8]) -> Sent {
    let mut sent = Sent {
        input: Vec::new(),
        answered: 0,
        broken: false,
    };
    let message = |sent: &mut Sent, v: Value, answered: bool| {
        write_message(&mut sent.input, &v.to_string()).expect("writing to memory");
        sent.answered += usize::from(answered);
    };
    message(
        &mut sent,
        json!({"conf": {}, "pidDir": pid_dir(), "context": {"taskid": 1, "componentid": "numbers"}}),
        false,
    );
    for c in data.chunks(2) {
        let (op, arg) = (c[0], c.get(1).copied().unwrap_or(0));
        let id = match arg % 4 {
            0 => json!(arg),
            1 => json!(format!("m{arg}")),
            2 => json!([arg, "x"]),
            _ => Value::Null,
        };
        match op % 10 {
            0..=2 => message(&mut sent, json!({"command": "next"}), true),
            3 => message(&mut sent, json!({"command": "ack", "id": id}), true),
            4 => message(&mut sent, json!({"command": "fail", "id": id}), true),
            5 => message(
                &mut sent,
                json!({"command": (["activate", "deactivate", "bogus"][usize::from(arg % 3)])}),
                true,
            ),
            6 => message(&mut sent, json!([arg, 2]), false),
            7 => message(
                &mut sent,
                json!({"id": "9", "comp": "s", "stream": "default", "task": 1, "tuple": [1]}),
                true,
            ),
            8 => {
                write_message(&mut sent.input, "{\"command\": ").expect("writing to memory");
                sent.answered += 1;
            }
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
        run_spout_on(TracedSpout::new(Numbers(0), Tracer::noop()), input, output)
    });
    let mut syncs = 0;
    for (v, m) in commands {
        match m {
            ShellMsg::Emit(e) => assert!(e.anchors.is_empty(), "a spout anchored: {v}"),
            ShellMsg::Sync => syncs += 1,
            ShellMsg::Log { .. } | ShellMsg::Error(_) | ShellMsg::Metrics { .. } => {}
            other => panic!("ShellSpout dies on {other:?}"),
        }
    }
    assert!(
        syncs <= sent.answered,
        "{syncs} syncs for {} messages",
        sent.answered
    );
    if clean && !sent.broken {
        assert_eq!(syncs, sent.answered, "messages left unanswered");
    }
});
