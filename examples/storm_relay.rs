//! The Rust bolts of the real Apache Storm topology in `peers/storm/` (run by Storm's own
//! `ShellBolt`, see `.ci/storm-cluster.sh`). One binary, two roles chosen by the first argument:
//!
//! - `split`: splits the sentence in the first field into lower-case words, one anchored emit
//!   per word, then acks the sentence.
//! - `count`: counts each word and emits `[word, count]` anchored to it, then acks. A word
//!   `sleep=N` makes it work N seconds before acking (longer than a lowered
//!   `topology.subprocess.timeout.secs`: the runtime keeps answering Storm's heartbeats).
//!
//! Both are wrapped in `TracedBolt`: the trace context is a B3 single value in the last field of
//! every tuple, each input gets a CONSUMER span named after the component, and every emit carries
//! that span's context as its last field. Spans go to `TDIST_FILE` (JSON lines); stdout belongs to
//! the multilang protocol.
//!
//! Test only: `TDIST_STORM_RELAY_NAIVE=1` runs `count` on a single-threaded loop that does its
//! work where it reads stdin, so Storm's heartbeats go unanswered while it works (what the
//! tdist runtime avoids). Set it for a run of tdist-storm's `storm_cluster` test to see Storm kill
//! such a bolt ("subprocess heartbeat timeout") and the test fail.
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use tdist_core::Tracer;
use tdist_storm::bolt::{run_bolt, Bolt, BoltError, Collector};
use tdist_storm::protocol::{
    write_message, Emit, Handshake, LogLevel, MessageReader, StormMessage, Tuple,
};
use tdist_storm::traced::TracedBolt;

struct Split;

impl Bolt for Split {
    fn execute(&mut self, tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let Some(sentence) = tuple.values.first().and_then(|v| v.as_str()) else {
            out.log(
                LogLevel::Warn,
                &format!("tuple {} has no sentence", tuple.id),
            )?;
            out.fail(&tuple.id)?;
            return Ok(());
        };
        for word in sentence.split_whitespace() {
            out.emit(Emit::new(vec![word.to_lowercase().into()]).anchor(&tuple))?;
        }
        out.ack(&tuple.id)?;
        Ok(())
    }
}

#[derive(Default)]
struct Count {
    counts: HashMap<String, u64>,
}

impl Bolt for Count {
    fn execute(&mut self, tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        let Some(word) = tuple.values.first().and_then(|v| v.as_str()) else {
            out.log(LogLevel::Warn, &format!("tuple {} has no word", tuple.id))?;
            out.fail(&tuple.id)?;
            return Ok(());
        };
        if let Some(secs) = word
            .strip_prefix("sleep=")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.log(
                LogLevel::Info,
                &format!("working {secs}s on tuple {}", tuple.id),
            )?;
            std::thread::sleep(Duration::from_secs(secs.min(120)));
        }
        let n = self.counts.entry(word.to_owned()).or_insert(0);
        *n += 1;
        let emit = Emit::new(vec![word.into(), (*n).into()]).anchor(&tuple);
        out.emit(emit)?;
        out.ack(&tuple.id)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    if std::env::var("TDIST_TRANSPORT").is_ok_and(|t| t.trim() == "stdout") {
        eprintln!("storm_relay: stdout carries the multilang protocol; use TDIST_FILE instead");
        return ExitCode::from(2);
    }
    let role = std::env::args().nth(1).unwrap_or_default();
    let mut builder = match Tracer::from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("storm_relay: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.service_name(format!("storm-{role}"));
    }
    let tracer = match builder.build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("storm_relay: {e}");
            return ExitCode::from(2);
        }
    };
    if role == "count" && std::env::var_os("TDIST_STORM_RELAY_NAIVE").is_some() {
        return naive_count();
    }
    let result = match role.as_str() {
        "split" => run_bolt(TracedBolt::new(Split, tracer.clone())),
        "count" => run_bolt(TracedBolt::new(Count::default(), tracer.clone())),
        other => {
            eprintln!("storm_relay: unknown role {other:?} (expected split or count)");
            return ExitCode::from(2);
        }
    };
    let _ = tracer.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE, // already reported to Storm through `error`
    }
}

/// The `count` role without the tdist runtime: one thread that reads a message, works on it and
/// only then reads the next, so heartbeats wait while it sleeps. No tracing.
fn naive_count() -> ExitCode {
    let mut input = MessageReader::new(std::io::stdin().lock());
    let mut out = std::io::stdout().lock();
    let Ok(Some(first)) = input.read_json() else {
        return ExitCode::FAILURE;
    };
    let Ok(handshake) = Handshake::from_json(&first) else {
        return ExitCode::FAILURE;
    };
    let pid = std::process::id();
    let _ = std::fs::File::create(std::path::Path::new(&handshake.pid_dir).join(pid.to_string()));
    if write_message(&mut out, &format!("{{\"pid\":{pid}}}")).is_err() {
        return ExitCode::FAILURE;
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    while let Ok(Some(v)) = input.read_json() {
        let Ok(StormMessage::Tuple(t)) = StormMessage::from_json(v) else {
            continue;
        };
        let sent = if t.is_heartbeat() {
            write_message(&mut out, r#"{"command":"sync"}"#)
        } else {
            let word = t
                .values
                .first()
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            if let Some(secs) = word
                .strip_prefix("sleep=")
                .and_then(|s| s.parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_secs(secs.min(120)));
            }
            let n = counts.entry(word.clone()).or_insert(0);
            *n += 1;
            let trace = t.values.last().cloned().unwrap_or_default();
            let emit = Emit::new(vec![word.into(), (*n).into(), trace]).anchor(&t);
            write_message(&mut out, &emit.to_json_string()).and_then(|()| {
                let ack = serde_json::json!({"command": "ack", "id": t.id});
                write_message(&mut out, &ack.to_string())
            })
        };
        if sent.is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
