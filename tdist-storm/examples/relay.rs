//! A configurable bolt for tdist-storm's tests and benchmark: emits each tuple's first value
//! upper-cased (anchored to the input), then acks.
//!
//! Flags: `--untraced`, `--sleep-ms N`, `--fail-on WORD`, `--error-on WORD`, `--panic-on WORD`,
//! `--panic-in-prepare`, `--task-ids`,
//! `--direct TASK`, `--field NAME` (a declared trace field), `--kafka-payload INDEX`,
//! `--double-ack`, `--metric NAME`, `--log-current` (logs the current span id), `--batch N`
//! (holds N tuples, emits one tuple anchored to all, then acks them). Spans go where `TDIST_FILE`/`TDIST_TRANSPORT` say.
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use tdist_core::Tracer;
use tdist_storm::bolt::{run_bolt, Bolt, BoltError, Collector};
use tdist_storm::protocol::{Emit, Handshake, LogLevel, Tuple};
use tdist_storm::traced::{TraceField, TracedBolt};

#[derive(Default)]
struct Relay {
    sleep: Duration,
    fail_on: Option<String>,
    error_on: Option<String>,
    panic_on: Option<String>,
    panic_in_prepare: bool,
    task_ids: bool,
    direct: Option<i64>,
    double_ack: bool,
    metric: Option<String>,
    log_current: bool,
    batch: usize,
    held: Vec<Tuple>,
}

impl Bolt for Relay {
    fn prepare(&mut self, h: &Handshake, out: &mut dyn Collector) -> Result<(), BoltError> {
        if self.panic_in_prepare {
            panic!("asked to panic in prepare");
        }
        out.log(
            LogLevel::Info,
            &format!("relay prepared as {}", h.context.component_id),
        )?;
        Ok(())
    }

    fn execute(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        std::thread::sleep(self.sleep);
        if self.log_current {
            let current = tdist_core::current().map(|c| c.span_id().to_hex().to_string());
            out.log(LogLevel::Info, &format!("current {current:?}"))?;
        }
        if self.batch > 1 {
            return self.hold(t, out);
        }
        let first = t.values.first().cloned().unwrap_or(Value::Null);
        let word = first.as_str().map(str::to_owned);
        if word.is_some() && word == self.fail_on {
            out.fail(&t.id)?;
            return Ok(());
        }
        if word.is_some() && word == self.panic_on {
            panic!("asked to panic on {first}");
        }
        if word.is_some() && word == self.error_on {
            return Err(format!("refusing {first}").into());
        }
        let mut values = t.values.clone();
        if let Some(w) = &word {
            values[0] = Value::from(w.to_uppercase());
        }
        let mut emit = Emit::new(values).anchor(&t).need_task_ids(self.task_ids);
        if let Some(task) = self.direct {
            emit = emit.direct(task);
        }
        if let Some(ids) = out.emit(emit)? {
            out.log(LogLevel::Info, &format!("task ids {ids:?}"))?;
        }
        if let Some(m) = &self.metric {
            out.metrics(m, Value::from(1))?;
        }
        out.ack(&t.id)?;
        if self.double_ack {
            if let Err(e) = out.ack(&t.id) {
                out.log(LogLevel::Warn, &format!("second ack refused: {e}"))?;
            }
        }
        Ok(())
    }
}

impl Relay {
    /// Holds tuples until `batch` arrived, then emits one tuple anchored to all and acks them.
    fn hold(&mut self, t: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        self.held.push(t);
        if self.held.len() < self.batch {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let words: Vec<&str> = held
            .iter()
            .filter_map(|t| t.values.first()?.as_str())
            .collect();
        let mut emit = Emit::new(vec![Value::from(words.join(" "))]);
        for t in &held {
            emit = emit.anchor(t);
        }
        out.emit(emit)?;
        for t in &held {
            out.ack(&t.id)?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let mut relay = Relay::default();
    let mut traced = true;
    let mut field = TraceField::Last;
    let mut payload = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--untraced" => traced = false,
            "--sleep-ms" => relay.sleep = Duration::from_millis(val().parse().unwrap_or(0)),
            "--fail-on" => relay.fail_on = Some(val()),
            "--error-on" => relay.error_on = Some(val()),
            "--panic-on" => relay.panic_on = Some(val()),
            "--panic-in-prepare" => relay.panic_in_prepare = true,
            "--task-ids" => relay.task_ids = true,
            "--direct" => relay.direct = val().parse().ok(),
            "--field" => field = TraceField::Named(val()),
            "--kafka-payload" => payload = val().parse().ok(),
            "--double-ack" => relay.double_ack = true,
            "--metric" => relay.metric = Some(val()),
            "--log-current" => relay.log_current = true,
            "--batch" => relay.batch = val().parse().unwrap_or(1),
            other => {
                eprintln!("relay: unknown flag {other}");
                return ExitCode::from(2);
            }
        }
    }
    let result = if traced {
        let tracer = match Tracer::from_env().and_then(|b| b.service_name("relay").build()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("relay: tracer configuration: {e}");
                return ExitCode::from(2);
            }
        };
        let mut bolt = TracedBolt::new(relay, tracer.clone()).with_field(field);
        if let Some(i) = payload {
            bolt = bolt.with_kafka_payload(i);
        }
        let r = run_bolt(bolt);
        let _ = tracer.flush();
        r
    } else {
        run_bolt(relay)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
