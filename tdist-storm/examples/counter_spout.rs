//! A spout for tdist-storm's tests: `next` emits the next number with itself as message id
//! (with the task ids when `--task-ids`); a failed number is emitted again on the next `next`;
//! acks and fails are logged. `--limit N` stops emitting after N numbers; `--traced` starts a
//! trace per tuple (spans where `TDIST_FILE` says), with `--max-pending N` spans waiting for
//! their ack; `--redeliver` emits every number twice in a row, as a source that delivers again
//! before the ack; `--panic-in-open` panics in `open`.
use serde_json::Value;
use std::process::ExitCode;
use tdist_core::Tracer;
use tdist_storm::bolt::BoltError;
use tdist_storm::protocol::{Emit, Handshake, LogLevel};
use tdist_storm::spout::{run_spout, Spout, SpoutOutput};
use tdist_storm::traced::TracedSpout;

struct Counter {
    next: u64,
    limit: u64,
    replay: Vec<u64>,
    redeliver: bool,
    task_ids: bool,
    panic_in_open: bool,
}

impl Spout for Counter {
    fn open(&mut self, _: &Handshake, _: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        if self.panic_in_open {
            panic!("asked to panic in open");
        }
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        let n = match self.replay.pop() {
            Some(n) => n,
            None if self.next < self.limit => {
                self.next += 1;
                if self.redeliver {
                    self.replay.push(self.next);
                }
                self.next
            }
            None => return Ok(()),
        };
        let emit = Emit::new(vec![Value::from(n)])
            .message_id(n)
            .need_task_ids(self.task_ids);
        if let Some(ids) = out.emit(emit)? {
            out.log(LogLevel::Info, &format!("task ids {ids:?}"))?;
        }
        Ok(())
    }

    fn ack(&mut self, id: Value, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        out.log(LogLevel::Info, &format!("acked {id}"))?;
        Ok(())
    }

    fn fail(&mut self, id: Value, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        let n = id
            .as_u64()
            .ok_or_else(|| format!("unknown message id {id}"))?;
        self.replay.push(n);
        out.log(LogLevel::Warn, &format!("failed {id}, will replay"))?;
        Ok(())
    }

    fn activate(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        out.log(LogLevel::Info, "activated")?;
        Ok(())
    }

    fn deactivate(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        out.log(LogLevel::Info, "deactivated")?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut spout = Counter {
        next: 0,
        limit: u64::MAX,
        replay: Vec::new(),
        redeliver: false,
        task_ids: false,
        panic_in_open: false,
    };
    let mut traced = false;
    let mut max_pending = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--limit" => spout.limit = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--task-ids" => spout.task_ids = true,
            "--traced" => traced = true,
            "--max-pending" => max_pending = args.next().and_then(|v| v.parse().ok()),
            "--redeliver" => spout.redeliver = true,
            "--panic-in-open" => spout.panic_in_open = true,
            other => {
                eprintln!("counter_spout: unknown flag {other}");
                return ExitCode::from(2);
            }
        }
    }
    let result = if traced {
        let tracer = match Tracer::from_env().and_then(|b| b.service_name("counter").build()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("counter_spout: {e}");
                return ExitCode::from(2);
            }
        };
        let mut spout = TracedSpout::new(spout, tracer.clone());
        if let Some(n) = max_pending {
            spout = spout.with_max_pending(n);
        }
        let r = run_spout(spout);
        let _ = tracer.flush();
        r
    } else {
        run_spout(spout)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
