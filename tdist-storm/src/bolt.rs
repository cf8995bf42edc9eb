//! Bolts: the [`Bolt`] trait, the [`Collector`] a bolt emits and acks through, and the loop that
//! runs a bolt on stdin/stdout under Storm's `ShellBolt`.
//!
//! ```no_run
//! use tdist_storm::bolt::{run_bolt, Bolt, BoltError, Collector};
//! use tdist_storm::protocol::{Emit, Tuple};
//!
//! struct Upper;
//!
//! impl Bolt for Upper {
//!     fn execute(&mut self, tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
//!         let word = tuple.values.first().and_then(|v| v.as_str()).unwrap_or_default();
//!         out.emit(Emit::new(vec![word.to_uppercase().into()]).anchor(&tuple))?;
//!         out.ack(&tuple.id)?;
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match run_bolt(Upper) {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(_) => std::process::ExitCode::FAILURE, // already reported to Storm
//!     }
//! }
//! ```
use crate::connection::{expect_tuple, report_fatal, Connection, Event, RuntimeError};
use crate::protocol::{Emit, Handshake, LogLevel, StormMessage, Tuple, Unreadable};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An error returned by a component's own code.
pub type BoltError = Box<dyn std::error::Error + Send + Sync>;

/// What a bolt emits, acks and logs through.
pub trait Collector {
    /// Emits a tuple. Returns the task ids it went to when the emit asked for them
    /// ([`Emit::need_task_ids`]), waiting for Storm's reply.
    fn emit(&mut self, emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError>;
    /// Acks an input tuple. Every input except heartbeats must be acked or failed once.
    fn ack(&mut self, tuple_id: &str) -> Result<(), RuntimeError>;
    /// Fails an input tuple (Storm replays it from the spout).
    fn fail(&mut self, tuple_id: &str) -> Result<(), RuntimeError>;
    /// Writes a line to Storm's log (stdout is reserved for the protocol).
    fn log(&mut self, level: LogLevel, msg: &str) -> Result<(), RuntimeError>;
    /// Reports an error to Storm (shown in the UI).
    fn report_error(&mut self, msg: &str) -> Result<(), RuntimeError>;
    /// Updates a metric registered on the Java side as an `IShellMetric`.
    fn metrics(&mut self, name: &str, params: Value) -> Result<(), RuntimeError>;
}

/// A Storm bolt.
pub trait Bolt {
    /// Called once after the handshake.
    fn prepare(
        &mut self,
        _handshake: &Handshake,
        _out: &mut dyn Collector,
    ) -> Result<(), BoltError> {
        Ok(())
    }

    /// Processes one input tuple. The bolt acks or fails it, now or later; if `execute` returns
    /// an error the runtime reports it and fails the tuple if it is still pending.
    fn execute(&mut self, tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError>;
}

impl<B: Bolt + ?Sized> Bolt for Box<B> {
    fn prepare(&mut self, handshake: &Handshake, out: &mut dyn Collector) -> Result<(), BoltError> {
        (**self).prepare(handshake, out)
    }

    fn execute(&mut self, tuple: Tuple, out: &mut dyn Collector) -> Result<(), BoltError> {
        (**self).execute(tuple, out)
    }
}

/// The collector writing to Storm. It refuses acks, fails and anchors that name a tuple that is
/// not pending, since ShellBolt would kill the worker for them.
#[derive(Debug)]
pub struct BoltCollector {
    conn: Connection,
    pending: HashSet<String>,
}

impl BoltCollector {
    /// Whether `tuple_id` was received and is not yet acked or failed.
    pub fn is_pending(&self, tuple_id: &str) -> bool {
        self.pending.contains(tuple_id)
    }

    /// How many inputs are received and not yet acked or failed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn settle(&mut self, command: &str, tuple_id: &str) -> Result<(), RuntimeError> {
        if !self.pending.remove(tuple_id) {
            return Err(RuntimeError::NotPending(tuple_id.to_owned()));
        }
        self.conn.command(command, Value::from(tuple_id))
    }
}

impl Collector for BoltCollector {
    fn emit(&mut self, emit: Emit) -> Result<Option<Vec<i64>>, RuntimeError> {
        if let Some(a) = emit.anchors.iter().find(|a| !self.pending.contains(*a)) {
            return Err(RuntimeError::NotPending(a.clone()));
        }
        if emit.message_id.is_some() {
            return Err(RuntimeError::Unsupported(
                "a bolt emit takes anchors, not a message id",
            ));
        }
        self.conn.emit(&emit)
    }

    fn ack(&mut self, tuple_id: &str) -> Result<(), RuntimeError> {
        self.settle("ack", tuple_id)
    }

    fn fail(&mut self, tuple_id: &str) -> Result<(), RuntimeError> {
        self.settle("fail", tuple_id)
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

/// Runs `bolt` on this process's stdin and stdout until Storm closes the pipe.
///
/// Returns an error after reporting it to Storm (`log` and `error`) when the pipe breaks or
/// Storm sends something unreadable.
pub fn run_bolt<B: Bolt>(bolt: B) -> Result<(), RuntimeError> {
    run_bolt_on(bolt, std::io::stdin(), std::io::stdout())
}

/// Runs `bolt` on the given pipe ends (for tests and embedding).
pub fn run_bolt_on<B: Bolt>(
    mut bolt: B,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> Result<(), RuntimeError> {
    let (conn, handshake) = Connection::open(input, output)?;
    let mut out = BoltCollector {
        conn,
        pending: HashSet::new(),
    };
    let prepared = catch_unwind(AssertUnwindSafe(|| bolt.prepare(&handshake, &mut out)));
    let result = match setup_outcome("prepare", prepared) {
        Ok(()) => bolt_loop(&mut bolt, &mut out),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        report_fatal(&out.conn, e);
    }
    result
}

/// The outcome of `prepare` or `open` (caught panics included) as a runtime error.
pub(crate) fn setup_outcome(
    what: &str,
    outcome: std::thread::Result<Result<(), BoltError>>,
) -> Result<(), RuntimeError> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RuntimeError::Component(format!("{what} failed: {e}"))),
        Err(panic) => Err(RuntimeError::Component(format!(
            "{what} panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

fn bolt_loop<B: Bolt>(bolt: &mut B, out: &mut BoltCollector) -> Result<(), RuntimeError> {
    while let Some(event) = out.conn.next()? {
        let tuple = match event {
            Event::Message(StormMessage::Command { name, .. }) => {
                out.log(LogLevel::Warn, &format!("ignored unknown command {name:?}"))?;
                continue;
            }
            Event::Message(m) => expect_tuple(m)?,
            Event::Skipped(bad) => {
                skip_unreadable(out, bad)?;
                continue;
            }
        };
        let id = tuple.id.clone();
        out.pending.insert(id.clone());
        let outcome = catch_unwind(AssertUnwindSafe(|| bolt.execute(tuple, out)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let msg = format!("execute failed on tuple {id}: {e}");
                out.log(LogLevel::Error, &msg)?;
                out.report_error(&msg)?;
                if out.is_pending(&id) {
                    out.fail(&id)?;
                }
            }
            Err(panic) => {
                // The bolt's state is unknown after a panic: fail the tuple and stop, as
                // multilang libraries do on an exception.
                if out.is_pending(&id) {
                    out.fail(&id)?;
                }
                return Err(RuntimeError::Component(format!(
                    "execute panicked on tuple {id}: {}",
                    panic_message(&*panic)
                )));
            }
        }
    }
    Ok(())
}

/// Reports a message from Storm that is not a valid tuple, and fails its tuple when its id
/// could be read, so Storm replays it now rather than after `topology.message.timeout.secs`.
/// An id the bolt already holds is left to the bolt (Storm never sends one twice).
fn skip_unreadable(out: &mut BoltCollector, bad: Unreadable) -> Result<(), RuntimeError> {
    let error = bad.error;
    match bad.tuple_id {
        Some(id) if !out.is_pending(&id) => {
            out.conn
                .report(&format!("failing tuple {id}, unreadable: {error}"))?;
            out.conn.command("fail", Value::from(id))
        }
        _ => out.conn.report(&format!(
            "skipped an unreadable message from Storm: {error}"
        )),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}
