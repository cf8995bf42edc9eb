//! A traced Storm bolt in Rust: splits each sentence into words, one emit per word, anchored
//! to the input, then acks. Each tuple's trace (a B3 value in its last field) continues
//! through the bolt, and every emitted word carries the bolt's span context in its last field.
//!
//! Spans are configured from the environment (`OTEL_SERVICE_NAME`, `TDIST_FILE` for
//! JSON lines, or another transport from an adapter) and flushed when Storm closes the pipe.
//! stdout belongs to the multilang protocol, so `TDIST_TRANSPORT=stdout` is refused.
//!
//! Under the harness (see tdist-storm's tests) or under a real topology, as the command of a
//! `ShellBolt`:
//!
//! ```text
//! cargo build --release -p tdist-examples --example storm_bolt
//!
//! public class SplitSentence extends ShellBolt implements IRichBolt {
//!     public SplitSentence() {
//!         super("/abs/path/to/target/release/examples/storm_bolt");
//!         changeChildCWD(false); // or ship the binary in the topology jar's resources/
//!         setEnv(Map.of("TDIST_FILE", "/var/log/storm/spans.jsonl"));
//!     }
//!     public void declareOutputFields(OutputFieldsDeclarer d) {
//!         d.declare(new Fields("word", "_trace")); // the trace field is last
//!     }
//!     public Map<String, Object> getComponentConfiguration() { return null; }
//! }
//! ```
//!
//! Upstream spouts and bolts declare the same last `_trace` field (a B3 single value); a tuple
//! without one starts a new trace.
use std::process::ExitCode;
use tdist_core::Tracer;
use tdist_storm::bolt::{run_bolt, Bolt, BoltError, Collector};
use tdist_storm::protocol::{Emit, LogLevel, Tuple};
use tdist_storm::traced::TracedBolt;

struct SplitSentence;

impl Bolt for SplitSentence {
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

fn main() -> ExitCode {
    if std::env::var("TDIST_TRANSPORT").is_ok_and(|t| t.trim() == "stdout") {
        eprintln!("storm_bolt: stdout carries the multilang protocol; use TDIST_FILE instead");
        return ExitCode::from(2);
    }
    let mut builder = match Tracer::from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("storm_bolt: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.service_name("storm-bolt");
    }
    let tracer = match builder.build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("storm_bolt: {e}");
            return ExitCode::from(2);
        }
    };
    let result = run_bolt(TracedBolt::new(SplitSentence, tracer.clone()));
    let _ = tracer.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE, // already reported to Storm through `error`
    }
}
