//! # tdist-storm
//!
//! Rust bolts and spouts for Apache Storm, on Storm's multilang protocol (JSON messages ended by
//! a line `end`, over the child process's stdin and stdout), with tracing that follows every
//! tuple through every bolt.
//!
//! - [`protocol`]: framing and the messages of both sides.
//! - [`bolt`] and [`spout`]: the component runtime. A reader thread answers heartbeats with
//!   `sync` while the bolt is busy; stdout carries only protocol messages.
//! - [`traced`]: [`TracedBolt`](traced::TracedBolt) joins the trace each tuple carries (a B3
//!   field, or a binary frame at the start of a Kafka payload) and its collector puts the
//!   context on every emit, ending the span on ack or fail.
//! - [`harness`]: Storm's side (`ShellBolt`/`ShellSpout`) for tests.
//!
//! Under a real topology the bolt binary is the command of a `ShellBolt`:
//!
//! ```text
//! public class TracedBolt extends ShellBolt implements IRichBolt {
//!     public TracedBolt() { super("/opt/bolts/storm_bolt"); changeChildCWD(false); }
//!     public void declareOutputFields(OutputFieldsDeclarer d) { d.declare(new Fields("word", "_trace")); }
//!     public Map<String, Object> getComponentConfiguration() { return null; }
//! }
//! ```
//!
//! ```
//! use tdist_storm::protocol::{Emit, StormMessage, Tuple};
//!
//! let hb: serde_json::Value = serde_json::from_str(
//!     r#"{"id":"-42","comp":null,"stream":"__heartbeat","task":-1,"tuple":[]}"#,
//! ).unwrap();
//! let StormMessage::Tuple(t) = StormMessage::from_json(hb).unwrap() else { unreachable!() };
//! assert!(t.is_heartbeat()); // answered with sync by the runtime, never acked
//!
//! let emit = Emit::new(vec!["word".into()]).anchor_id("-7");
//! assert_eq!(
//!     emit.to_json_string(),
//!     r#"{"command":"emit","tuple":["word"],"anchors":["-7"],"need_task_ids":false}"#
//! );
//! ```
#![forbid(unsafe_code)]

pub mod bolt;
mod connection;
pub mod harness;
pub mod protocol;
pub mod spout;
pub mod traced;
mod traced_spout;

pub use connection::RuntimeError;
