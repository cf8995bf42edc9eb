//! Spouts: the [`Spout`] trait and the synchronous loop Storm's `ShellSpout` drives (`next`,
//! `ack`, `fail`, `activate`, `deactivate`, each answered by `sync`).
//!
//! ```no_run
//! use tdist_storm::bolt::BoltError;
//! use tdist_storm::protocol::Emit;
//! use tdist_storm::spout::{run_spout, Spout, SpoutOutput};
//!
//! struct Numbers(u64);
//!
//! impl Spout for Numbers {
//!     fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
//!         self.0 += 1;
//!         out.emit(Emit::new(vec![self.0.into()]).message_id(self.0))?;
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     let _ = run_spout(Numbers(0));
//! }
//! ```
use crate::bolt::{panic_message, setup_outcome, BoltError};
use crate::connection::{report_fatal, Connection, Event, RuntimeError};
use crate::protocol::{Emit, Handshake, LogLevel, StormMessage};
use serde_json::Value;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A Storm spout. Each call must return well within the subprocess timeout.
pub trait Spout {
    /// Called once after the handshake.
    fn open(
        &mut self,
        _handshake: &Handshake,
        _out: &mut dyn SpoutOutput,
    ) -> Result<(), BoltError> {
        Ok(())
    }
    /// Emits zero or more tuples.
    fn next_tuple(&mut self, out: &mut dyn SpoutOutput) -> Result<(), BoltError>;
    /// A tuple emitted with `message_id` was fully processed.
    fn ack(&mut self, _message_id: Value, _out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        Ok(())
    }
    /// A tuple emitted with `message_id` failed or timed out.
    fn fail(&mut self, _message_id: Value, _out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        Ok(())
    }
    /// The topology was activated.
    fn activate(&mut self, _out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        Ok(())
    }
    /// The topology was deactivated.
    fn deactivate(&mut self, _out: &mut dyn SpoutOutput) -> Result<(), BoltError> {
        Ok(())
    }
}

/// What a spout emits and logs through.
pub trait SpoutOutput {
    /// Emits a tuple (reliable when it has a message id). Returns the task ids when asked for.
    fn emit(&mut self, emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError>;
    /// Writes a line to Storm's log.
    fn log(&mut self, level: LogLevel, msg: &str) -> Result<(), RuntimeError>;
    /// Reports an error to Storm.
    fn report_error(&mut self, msg: &str) -> Result<(), RuntimeError>;
    /// Updates a registered `IShellMetric`.
    fn metrics(&mut self, name: &str, params: Value) -> Result<(), RuntimeError>;
}

/// The spout output writing to Storm.
#[derive(Debug)]
pub struct SpoutCollector {
    conn: Connection,
}

impl SpoutOutput for SpoutCollector {
    fn emit(&mut self, emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError> {
        if !emit.anchors.is_empty() {
            return Err(RuntimeError::Unsupported(
                "a spout emit takes a message id, not anchors",
            ));
        }
        self.conn.emit(&emit)
    }

    fn log(&mut self, level: LogLevel, msg: &str) -> Result<(), RuntimeError> {
        self.conn.log(level, msg)
    }

    fn report_error(&mut self, msg: &str) -> Result<(), RuntimeError> {
        self.conn.error(msg)
    }

    fn metrics(&mut self, name: &str, params: Value) -> Result<(), RuntimeError> {
        self.conn.metrics(name, params)
    }
}

/// Runs `spout` on stdin and stdout until Storm closes the pipe.
pub fn run_spout<S: Spout>(spout: S) -> Result<(), RuntimeError> {
    run_spout_on(spout, std::io::stdin(), std::io::stdout())
}

/// Runs `spout` on the given pipe ends.
pub fn run_spout_on<S: Spout>(
    mut spout: S,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> Result<(), RuntimeError> {
    let (conn, handshake) = Connection::open(input, output)?;
    let mut out = SpoutCollector { conn };
    let opened = catch_unwind(AssertUnwindSafe(|| spout.open(&handshake, &mut out)));
    let result = match setup_outcome("open", opened) {
        Ok(()) => spout_loop(&mut spout, &mut out),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        report_fatal(&out.conn, e);
    }
    result
}

fn spout_loop<S: Spout>(spout: &mut S, out: &mut SpoutCollector) -> Result<(), RuntimeError> {
    while let Some(event) = out.conn.next()? {
        let done = match event {
            Event::Message(StormMessage::Command { name, id }) => {
                let id = id.unwrap_or(Value::Null);
                let call = catch_unwind(AssertUnwindSafe(|| match name.as_str() {
                    "next" => spout.next_tuple(out),
                    "ack" => spout.ack(id, out),
                    "fail" => spout.fail(id, out),
                    "activate" => spout.activate(out),
                    "deactivate" => spout.deactivate(out),
                    other => {
                        out.log(
                            LogLevel::Warn,
                            &format!("ignored unknown command {other:?}"),
                        )?;
                        Ok(())
                    }
                }));
                match call {
                    Ok(r) => r,
                    Err(panic) => {
                        return Err(RuntimeError::Component(format!(
                            "spout panicked in {name:?}: {}",
                            panic_message(&*panic)
                        )))
                    }
                }
            }
            Event::Message(other) => {
                out.report_error(&format!("a spout got a non-command message: {other:?}"))?;
                Ok(())
            }
            Event::Skipped(bad) => {
                // Never `fail` here: ShellSpout dies on a command it does not know.
                let e = bad.error;
                out.conn
                    .report(&format!("skipped an unreadable message from Storm: {e}"))?;
                Ok(())
            }
        };
        if let Err(e) = done {
            let msg = format!("spout failed: {e}");
            out.log(LogLevel::Error, &msg)?;
            out.report_error(&msg)?;
        }
        out.conn.sync()?;
    }
    Ok(())
}
