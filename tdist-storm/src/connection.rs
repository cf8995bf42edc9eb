//! The component side of the pipe: a reader thread for stdin and a shared writer for stdout.
//!
//! The reader thread answers heartbeat tuples with `sync` at once, even while the component is
//! busy in `execute`, and queues everything else: tuples and spout commands on one queue,
//! task-id lists on another (they may arrive after the next tuple).
use crate::protocol::{
    write_message, Emit, Handshake, LogLevel, MessageReader, ProtocolError, StormMessage, Tuple,
    Unreadable,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Why a component stopped or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Storm sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// Writing to Storm failed (the pipe is closed).
    #[error("pipe write failed: {0}")]
    Write(std::io::Error),
    /// Creating the pid file failed.
    #[error("cannot create the pid file {path}: {source}")]
    PidFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Storm closed the pipe (normal shutdown) while a reply was awaited.
    #[error("Storm closed the pipe")]
    Closed,
    /// An ack, fail or anchor named a tuple that is not pending (Storm would kill the worker).
    #[error("tuple {0} is not pending (already acked or failed, or never received)")]
    NotPending(String),
    /// The operation is not available to this kind of component.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The component's own code failed.
    #[error("component error: {0}")]
    Component(String),
}

pub(crate) enum Inbound {
    Message(StormMessage),
    /// A well-framed message that is not valid JSON or not a valid message: skipped (a bolt
    /// fails its tuple when the id could be read).
    Skipped(Unreadable),
    /// The pipe itself broke (framing, encoding): the reader stopped.
    Failed(ProtocolError),
}

/// What [`Connection::next`] yields.
#[derive(Debug)]
pub(crate) enum Event {
    Message(StormMessage),
    Skipped(Unreadable),
}

/// The shared, message-at-a-time writer to Storm.
#[derive(Clone)]
pub(crate) struct Writer {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    pub(crate) fn send(&self, json: &str) -> Result<(), RuntimeError> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        write_message(&mut **out, json).map_err(RuntimeError::Write)
    }
}

/// The open pipe to Storm after the handshake.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) writer: Writer,
    inbound: Receiver<Inbound>,
    task_ids: Receiver<Vec<i64>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inbound::Message(m) => write!(f, "{m:?}"),
            Inbound::Skipped(u) => write!(f, "{}", u.error),
            Inbound::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl Connection {
    /// Reads the handshake, writes the pid file, answers `{"pid": N}` and starts the reader.
    pub(crate) fn open(
        input: impl Read + Send + 'static,
        output: impl Write + Send + 'static,
    ) -> Result<(Connection, Handshake), RuntimeError> {
        let mut reader = MessageReader::new(input);
        let writer = Writer {
            out: Arc::new(Mutex::new(Box::new(output))),
        };
        let first = reader.read_json()?.ok_or(RuntimeError::Closed)?;
        let handshake = Handshake::from_json(&first)?;
        let pid = std::process::id();
        let path = std::path::Path::new(&handshake.pid_dir).join(pid.to_string());
        std::fs::File::create(&path).map_err(|source| RuntimeError::PidFile {
            path: path.display().to_string(),
            source,
        })?;
        writer.send(&json!({ "pid": pid }).to_string())?;
        let (in_tx, inbound) = channel();
        let (ids_tx, task_ids) = channel();
        let w = writer.clone();
        std::thread::Builder::new()
            .name("storm-stdin".into())
            .spawn(move || read_loop(reader, w, in_tx, ids_tx))
            .map_err(RuntimeError::Write)?;
        Ok((
            Connection {
                writer,
                inbound,
                task_ids,
            },
            handshake,
        ))
    }

    /// The next tuple or command; `Ok(None)` when Storm closed the pipe.
    pub(crate) fn next(&self) -> Result<Option<Event>, RuntimeError> {
        match self.inbound.recv() {
            Ok(i) => event(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn emit(&self, emit: &Emit) -> Result<Option<Vec<i64>>, RuntimeError> {
        self.writer.send(&emit.to_json_string())?;
        if !emit.expects_task_ids() {
            return Ok(None);
        }
        self.task_ids
            .recv()
            .map(Some)
            .map_err(|_| RuntimeError::Closed)
    }

    pub(crate) fn command(&self, name: &str, id: Value) -> Result<(), RuntimeError> {
        self.writer
            .send(&json!({"command": name, "id": id}).to_string())
    }

    pub(crate) fn log(&self, level: LogLevel, msg: &str) -> Result<(), RuntimeError> {
        self.writer
            .send(&json!({"command": "log", "msg": msg, "level": level as i64}).to_string())
    }

    pub(crate) fn error(&self, msg: &str) -> Result<(), RuntimeError> {
        self.writer
            .send(&json!({"command": "error", "msg": msg}).to_string())
    }

    pub(crate) fn metrics(&self, name: &str, params: Value) -> Result<(), RuntimeError> {
        self.writer
            .send(&json!({"command": "metrics", "name": name, "params": params}).to_string())
    }

    pub(crate) fn sync(&self) -> Result<(), RuntimeError> {
        self.writer.send(SYNC)
    }

    /// Logs `msg` at ERROR and reports it through `error` (shown in Storm's UI).
    pub(crate) fn report(&self, msg: &str) -> Result<(), RuntimeError> {
        self.log(LogLevel::Error, msg)?;
        self.error(msg)
    }
}

fn event(i: Inbound) -> Result<Event, RuntimeError> {
    match i {
        Inbound::Message(m) => Ok(Event::Message(m)),
        Inbound::Skipped(e) => Ok(Event::Skipped(e)),
        Inbound::Failed(e) => Err(e.into()),
    }
}

const SYNC: &str = r#"{"command":"sync"}"#;

fn read_loop(
    mut reader: MessageReader<impl Read>,
    writer: Writer,
    inbound: Sender<Inbound>,
    task_ids: Sender<Vec<i64>>,
) {
    loop {
        let parsed = match reader.read_json() {
            Ok(None) => return,
            Ok(Some(v)) => StormMessage::read(v),
            Err(e) => Err(e.into()),
        };
        match parsed {
            Ok(StormMessage::Tuple(t)) if t.is_heartbeat() => {
                if writer.send(SYNC).is_err() {
                    return;
                }
            }
            Ok(StormMessage::TaskIds(ids)) => {
                let _ = task_ids.send(ids);
            }
            Ok(m) => {
                if inbound.send(Inbound::Message(m)).is_err() {
                    return;
                }
            }
            Err(
                u @ Unreadable {
                    error: ProtocolError::Json(_) | ProtocolError::Invalid(_),
                    ..
                },
            ) => {
                // The frame was read whole: skip it and keep reading.
                if inbound.send(Inbound::Skipped(u)).is_err() {
                    return;
                }
            }
            Err(u) => {
                // After a framing error the stream position is unknown: stop reading.
                let _ = inbound.send(Inbound::Failed(u.error));
                return;
            }
        }
    }
}

/// Logs through the `log` command and reports through `error`; shared by bolts and spouts.
pub(crate) fn report_fatal(conn: &Connection, e: &RuntimeError) {
    let _ = conn.report(&format!("tdist-storm component stopping: {e}"));
}

/// A tuple as a `Tuple`, or an error for anything a bolt should not receive.
pub(crate) fn expect_tuple(m: StormMessage) -> Result<Tuple, RuntimeError> {
    match m {
        StormMessage::Tuple(t) => Ok(t),
        StormMessage::Command { name, .. } => Err(RuntimeError::Protocol(ProtocolError::invalid(
            format!("unexpected command {name:?} sent to a bolt"),
        ))),
        StormMessage::TaskIds(_) => Err(RuntimeError::Protocol(ProtocolError::invalid(
            "unexpected task-id list",
        ))),
    }
}
