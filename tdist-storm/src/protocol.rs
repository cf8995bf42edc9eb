//! The multilang wire format: framing, the messages Storm sends, and the commands a component
//! sends back.
//!
//! Every message is JSON text, a newline, a line holding exactly `end`, and a newline. Lines are
//! split the way Java's `BufferedReader.readLine` splits them (`\n`, `\r\n` or a lone `\r`), and a
//! message ends only at a line that is exactly `end`, so the JSON may span several lines.
//!
//! ```
//! use tdist_storm::protocol::{MessageReader, write_message};
//!
//! let mut wire = Vec::new();
//! write_message(&mut wire, r#"{"command":"sync"}"#).unwrap();
//! assert_eq!(wire, b"{\"command\":\"sync\"}\nend\n");
//!
//! let mut reader = MessageReader::new(&b"{\"a\":\n1}\r\nend\n"[..]);
//! assert_eq!(reader.read_message().unwrap().as_deref(), Some("{\"a\":\n1}"));
//! assert_eq!(reader.read_message().unwrap(), None); // clean end of input
//! ```
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

/// Stream id of ShellBolt's heartbeat tuples.
pub const HEARTBEAT_STREAM: &str = "__heartbeat";
/// Storm's system task id, the source task of heartbeat and tick tuples.
pub const SYSTEM_TASK_ID: i64 = -1;
/// Component id of the system component (tick tuples).
pub const SYSTEM_COMPONENT: &str = "__system";
/// Stream id of tick tuples.
pub const TICK_STREAM: &str = "__tick";
/// The default stream id.
pub const DEFAULT_STREAM: &str = "default";
/// The largest message [`MessageReader`] accepts by default (Storm sets no limit; a bound keeps
/// a broken peer from exhausting memory).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Why a message could not be read or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Reading the pipe failed.
    #[error("pipe read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The pipe closed in the middle of a message.
    #[error("pipe closed in the middle of a message (no `end` line)")]
    Truncated,
    /// The message is not UTF-8.
    #[error("message is not valid UTF-8")]
    Utf8,
    /// The message is larger than the reader's limit.
    #[error("message longer than {0} bytes")]
    TooLarge(usize),
    /// The message is not JSON.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON does not have the shape the protocol requires.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl ProtocolError {
    pub(crate) fn invalid(msg: impl Into<String>) -> ProtocolError {
        ProtocolError::Invalid(msg.into())
    }
}

/// Reads framed messages from a pipe.
#[derive(Debug)]
pub struct MessageReader<R> {
    input: BufReader<R>,
    line: Vec<u8>,
    /// The last line ended with `\r`: a `\n` right after it (maybe in the next read) belongs
    /// to that line end, as Java's `BufferedReader` skips it.
    skip_lf: bool,
    max: usize,
}

impl<R: Read> MessageReader<R> {
    /// A reader with the default size limit.
    pub fn new(input: R) -> MessageReader<R> {
        MessageReader::with_limit(input, DEFAULT_MAX_MESSAGE)
    }

    /// A reader that rejects messages longer than `max` bytes.
    pub fn with_limit(input: R, max: usize) -> MessageReader<R> {
        MessageReader {
            input: BufReader::with_capacity(64 * 1024, input),
            line: Vec::with_capacity(1024),
            skip_lf: false,
            max,
        }
    }

    /// The next message's text, without the `end` line; `None` at a clean end of input.
    pub fn read_message(&mut self) -> Result<Option<String>, ProtocolError> {
        let mut message: Vec<u8> = Vec::new();
        let mut lines = 0usize;
        loop {
            if !self.read_line()? {
                return if lines == 0 {
                    Ok(None)
                } else {
                    Err(ProtocolError::Truncated)
                };
            }
            if self.line == b"end" {
                if lines > 0 {
                    message.pop(); // the `\n` joining the last line
                }
                return String::from_utf8(message)
                    .map(Some)
                    .map_err(|_| ProtocolError::Utf8);
            }
            message.extend_from_slice(&self.line);
            message.push(b'\n');
            lines += 1;
            if message.len() > self.max {
                return Err(ProtocolError::TooLarge(self.max));
            }
        }
    }

    /// Reads one line into `self.line` the way Java's `readLine` does: it ends at `\n`, `\r\n`
    /// or a lone `\r`, or at the end of input. False at the end of input with nothing read.
    fn read_line(&mut self) -> Result<bool, ProtocolError> {
        self.line.clear();
        let mut read_any = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(read_any);
            }
            if std::mem::take(&mut self.skip_lf) && buf[0] == b'\n' {
                self.input.consume(1);
                continue;
            }
            read_any = true;
            match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.line.extend_from_slice(&buf[..i]);
                    self.skip_lf = buf[i] == b'\r';
                    self.input.consume(i + 1);
                    return Ok(true);
                }
                None => {
                    let n = buf.len();
                    self.line.extend_from_slice(buf);
                    self.input.consume(n);
                    if self.line.len() > self.max {
                        return Err(ProtocolError::TooLarge(self.max));
                    }
                }
            }
        }
    }

    /// The next message parsed as JSON; `None` at a clean end of input.
    pub fn read_json(&mut self) -> Result<Option<Value>, ProtocolError> {
        match self.read_message()? {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }
}

/// Writes one framed message (`json`, `\n`, `end`, `\n`) and flushes.
pub fn write_message(out: &mut dyn Write, json: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(json.len() + 5);
    buf.extend_from_slice(json.as_bytes());
    buf.extend_from_slice(b"\nend\n");
    out.write_all(&buf)?;
    out.flush()
}

/// An input tuple, as Storm sends it to a bolt.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple {
    /// Storm's id for the tuple (a signed 64-bit number written as a string).
    pub id: String,
    /// The component that emitted it (`None` on heartbeats).
    pub component: Option<String>,
    /// The stream it was emitted on.
    pub stream: String,
    /// The task that emitted it (`-1` for heartbeat and tick tuples).
    pub task: i64,
    /// The values.
    pub values: Vec<Value>,
}

impl Tuple {
    /// A tuple from `component`'s default stream, task 1.
    pub fn new(id: impl Into<String>, component: impl Into<String>, values: Vec<Value>) -> Tuple {
        Tuple {
            id: id.into(),
            component: Some(component.into()),
            stream: DEFAULT_STREAM.to_owned(),
            task: 1,
            values,
        }
    }

    /// A ShellBolt heartbeat tuple with the given id.
    pub fn heartbeat(id: impl Into<String>) -> Tuple {
        Tuple {
            id: id.into(),
            component: None,
            stream: HEARTBEAT_STREAM.to_owned(),
            task: SYSTEM_TASK_ID,
            values: Vec::new(),
        }
    }

    /// Whether this is a heartbeat (answer with `sync`, never ack).
    pub fn is_heartbeat(&self) -> bool {
        self.stream == HEARTBEAT_STREAM && self.task == SYSTEM_TASK_ID
    }

    /// Whether this is a tick tuple (an ordinary tuple that must be acked).
    pub fn is_tick(&self) -> bool {
        self.task == SYSTEM_TASK_ID
            && self.stream == TICK_STREAM
            && self.component.as_deref() == Some(SYSTEM_COMPONENT)
    }

    /// The JSON Storm writes for this tuple.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert(
            "comp".into(),
            self.component.clone().map_or(Value::Null, Value::String),
        );
        m.insert("stream".into(), Value::String(self.stream.clone()));
        m.insert("task".into(), Value::from(self.task));
        m.insert("tuple".into(), Value::Array(self.values.clone()));
        Value::Object(m)
    }

    /// Reads a tuple object.
    pub fn from_json(m: Map<String, Value>) -> Result<Tuple, ProtocolError> {
        Tuple::read(m).map_err(|u| u.error)
    }

    /// Reads a tuple object; a failure keeps the tuple's id when Storm can be told to fail it.
    ///
    /// Only a string `id` qualifies (ShellBolt's ids are strings, and failing an id it does not
    /// hold kills the worker), and never one on the heartbeat stream (heartbeats are not in
    /// ShellBolt's map either).
    pub(crate) fn read(mut m: Map<String, Value>) -> Result<Tuple, Unreadable> {
        let heartbeat = m.get("stream").and_then(Value::as_str) == Some(HEARTBEAT_STREAM);
        let (id, failable) = match m.remove("id") {
            Some(Value::String(s)) => (s, !heartbeat),
            Some(Value::Number(n)) => (n.to_string(), false),
            _ => return Err(ProtocolError::invalid("tuple `id` must be a string").into()),
        };
        match Tuple::without_id(m) {
            Ok(t) => Ok(Tuple { id, ..t }),
            Err(error) => Err(Unreadable {
                error,
                tuple_id: failable.then_some(id),
            }),
        }
    }

    /// Every field but `id` (left empty).
    fn without_id(mut m: Map<String, Value>) -> Result<Tuple, ProtocolError> {
        let component = match m.remove("comp") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ProtocolError::invalid("tuple `comp` must be a string")),
        };
        let stream = match m.remove("stream") {
            Some(Value::String(s)) => s,
            None => DEFAULT_STREAM.to_owned(),
            Some(_) => return Err(ProtocolError::invalid("tuple `stream` must be a string")),
        };
        let task = match m.get("task") {
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ProtocolError::invalid("tuple `task` must be an integer"))?,
            None => return Err(ProtocolError::invalid("tuple without `task`")),
        };
        let values = match m.remove("tuple") {
            Some(Value::Array(a)) => a,
            _ => return Err(ProtocolError::invalid("tuple `tuple` must be an array")),
        };
        Ok(Tuple {
            id: String::new(),
            component,
            stream,
            task,
            values,
        })
    }
}

/// A well-framed message that is not a valid message, with the id of the tuple it carried when
/// a bolt can fail that tuple (see [`Tuple::read`]).
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub(crate) error: ProtocolError,
    pub(crate) tuple_id: Option<String>,
}

impl From<ProtocolError> for Unreadable {
    fn from(error: ProtocolError) -> Unreadable {
        Unreadable {
            error,
            tuple_id: None,
        }
    }
}

/// What Storm sends to a running component.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StormMessage {
    /// A tuple for a bolt (heartbeats included).
    Tuple(Tuple),
    /// The task ids an earlier emit went to.
    TaskIds(Vec<i64>),
    /// A command for a spout (`next`, `ack`, `fail`, `activate`, `deactivate`, or another).
    Command {
        /// The command name.
        name: String,
        /// The `id` field of `ack`/`fail` (the spout's message id).
        id: Option<Value>,
    },
}

impl StormMessage {
    /// Classifies one parsed message.
    pub fn from_json(v: Value) -> Result<StormMessage, ProtocolError> {
        StormMessage::read(v).map_err(|u| u.error)
    }

    /// Classifies one parsed message; a tuple that fails keeps its id when it can be failed.
    pub(crate) fn read(v: Value) -> Result<StormMessage, Unreadable> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|t| t.as_i64())
                .collect::<Option<Vec<_>>>()
                .map(StormMessage::TaskIds)
                .ok_or_else(|| ProtocolError::invalid("task-id list holds a non-integer").into()),
            Value::Object(mut m) => match m.remove("command") {
                Some(Value::String(name)) => Ok(StormMessage::Command {
                    name,
                    id: m.remove("id"),
                }),
                Some(_) => Err(ProtocolError::invalid("`command` must be a string").into()),
                None => Tuple::read(m).map(StormMessage::Tuple),
            },
            other => Err(ProtocolError::invalid(format!(
                "expected an object or an array, got {}",
                kind_of(&other)
            ))
            .into()),
        }
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The topology context sent in the handshake (`TopologyContext.toJSONString()`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopologyContext {
    /// This task's id.
    pub task_id: i64,
    /// This component's id.
    pub component_id: String,
    /// Every task of the topology and its component.
    pub task_to_component: HashMap<i64, String>,
    /// Declared output fields of this component, per stream.
    pub output_fields: HashMap<String, Vec<String>>,
    /// Declared fields of this component's inputs, per (source component, stream).
    pub input_fields: HashMap<(String, String), Vec<String>>,
    /// The whole context object as received.
    pub raw: Value,
}

impl TopologyContext {
    /// Reads the context object; missing keys (older Storm versions) are left empty.
    pub fn from_json(v: &Value) -> Result<TopologyContext, ProtocolError> {
        let m = v
            .as_object()
            .ok_or_else(|| ProtocolError::invalid("handshake `context` must be an object"))?;
        let mut ctx = TopologyContext {
            task_id: m.get("taskid").and_then(Value::as_i64).unwrap_or(0),
            component_id: m
                .get("componentid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            raw: v.clone(),
            ..TopologyContext::default()
        };
        if let Some(Value::Object(t)) = m.get("task->component") {
            for (k, c) in t {
                if let (Ok(task), Some(c)) = (k.parse(), c.as_str()) {
                    ctx.task_to_component.insert(task, c.to_owned());
                }
            }
        }
        if let Some(Value::Object(s)) = m.get("stream->outputfields") {
            for (stream, fields) in s {
                ctx.output_fields.insert(stream.clone(), strings(fields));
            }
        }
        if let Some(Value::Object(s)) = m.get("source->stream->fields") {
            for (source, streams) in s {
                for (stream, fields) in streams.as_object().into_iter().flatten() {
                    ctx.input_fields
                        .insert((source.clone(), stream.clone()), strings(fields));
                }
            }
        }
        Ok(ctx)
    }

    /// The declared fields of input stream `stream` from `component`, if known.
    pub fn input_fields(&self, component: &str, stream: &str) -> Option<&[String]> {
        self.input_fields
            .get(&(component.to_owned(), stream.to_owned()))
            .map(Vec::as_slice)
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// The first message Storm sends: where to write the pid file, the topology configuration and
/// the topology context.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// Directory in which to create an empty file named after the process id.
    pub pid_dir: String,
    /// The topology configuration.
    pub conf: Map<String, Value>,
    /// The topology context.
    pub context: TopologyContext,
}

impl Handshake {
    /// Reads the handshake object.
    pub fn from_json(v: &Value) -> Result<Handshake, ProtocolError> {
        let m = v
            .as_object()
            .ok_or_else(|| ProtocolError::invalid("handshake must be a JSON object"))?;
        let pid_dir = m
            .get("pidDir")
            .and_then(Value::as_str)
            .ok_or_else(|| ProtocolError::invalid("handshake without a string `pidDir`"))?
            .to_owned();
        let conf = match m.get("conf") {
            Some(Value::Object(c)) => c.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(ProtocolError::invalid("handshake `conf` must be an object")),
        };
        let context = match m.get("context") {
            Some(c) => TopologyContext::from_json(c)?,
            None => TopologyContext::default(),
        };
        Ok(Handshake {
            pid_dir,
            conf,
            context,
        })
    }
}

/// Log levels of the `log` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// 0
    Trace = 0,
    /// 1
    Debug = 1,
    /// 2 (also any unknown or missing level)
    Info = 2,
    /// 3
    Warn = 3,
    /// 4
    Error = 4,
}

impl LogLevel {
    /// The level for a wire number, as ShellBolt maps it (anything unknown is INFO).
    pub fn from_wire(v: Option<&Value>) -> LogLevel {
        match v.and_then(Value::as_i64) {
            Some(0) => LogLevel::Trace,
            Some(1) => LogLevel::Debug,
            Some(3) => LogLevel::Warn,
            Some(4) => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// An emit: values, stream, anchors (bolts) or message id (spouts), direct task, and whether to
/// wait for the task ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    /// The values.
    pub values: Vec<Value>,
    /// The output stream; `None` is `default`.
    pub stream: Option<String>,
    /// Ids of the input tuples this emit is anchored to (bolts only).
    pub anchors: Vec<String>,
    /// The spout's message id, for a reliable spout emit (spouts only).
    pub message_id: Option<Value>,
    /// Emit directly to this task. Direct emits crash Storm 2.6 and later (a `ClassCastException`
    /// in ShellBolt), so use them only with older Storm.
    pub direct_task: Option<i64>,
    /// Ask Storm for the task ids the tuple went to (Storm's default is true; ours is false,
    /// since waiting for the reply costs a round trip per emit).
    pub need_task_ids: bool,
}

impl Emit {
    /// An unanchored emit of `values` on the default stream.
    pub fn new(values: Vec<Value>) -> Emit {
        Emit {
            values,
            stream: None,
            anchors: Vec::new(),
            message_id: None,
            direct_task: None,
            need_task_ids: false,
        }
    }

    /// Anchors the emit to an input tuple.
    pub fn anchor(mut self, tuple: &Tuple) -> Emit {
        self.anchors.push(tuple.id.clone());
        self
    }

    /// Anchors the emit to an input tuple id.
    pub fn anchor_id(mut self, id: impl Into<String>) -> Emit {
        self.anchors.push(id.into());
        self
    }

    /// Emits on `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Emit {
        self.stream = Some(stream.into());
        self
    }

    /// A reliable spout emit with this message id.
    pub fn message_id(mut self, id: impl Into<Value>) -> Emit {
        self.message_id = Some(id.into());
        self
    }

    /// Emits directly to `task` (see the field's warning).
    pub fn direct(mut self, task: i64) -> Emit {
        self.direct_task = Some(task);
        self
    }

    /// Waits for and returns the task ids this tuple went to.
    pub fn need_task_ids(mut self, yes: bool) -> Emit {
        self.need_task_ids = yes;
        self
    }

    /// Whether Storm will answer this emit with a task-id list.
    pub fn expects_task_ids(&self) -> bool {
        self.need_task_ids && self.direct_task.is_none()
    }

    /// The command's JSON text (written directly, without copying the values).
    pub fn to_json_string(&self) -> String {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(br#"{"command":"emit","tuple":"#);
        write_json(&mut out, &self.values);
        if let Some(s) = &self.stream {
            out.extend_from_slice(br#","stream":"#);
            write_json(&mut out, s);
        }
        if !self.anchors.is_empty() {
            out.extend_from_slice(br#","anchors":"#);
            write_json(&mut out, &self.anchors);
        }
        if let Some(id) = &self.message_id {
            out.extend_from_slice(br#","id":"#);
            write_json(&mut out, id);
        }
        if let Some(t) = self.direct_task {
            out.extend_from_slice(br#","task":"#);
            write_json(&mut out, &t);
        }
        out.extend_from_slice(if self.need_task_ids {
            br#","need_task_ids":true}"#.as_slice()
        } else {
            br#","need_task_ids":false}"#.as_slice()
        });
        // serde_json writes only UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing strings, numbers and `Value`s into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A command sent by a component, as ShellBolt/ShellSpout read it (strict about types, like
/// Java's casts).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ShellMsg {
    /// `emit`.
    Emit(Emit),
    /// `ack` with the input's id (bolts) or message id (spouts do not send it).
    Ack(Value),
    /// `fail`.
    Fail(Value),
    /// `log`.
    Log {
        /// Level (unknown means INFO).
        level: LogLevel,
        /// Text.
        msg: String,
    },
    /// `error`.
    Error(String),
    /// `metrics`.
    Metrics {
        /// The registered metric's name.
        name: String,
        /// Any JSON.
        params: Value,
    },
    /// `sync`.
    Sync,
    /// Any other command (ignored by ShellBolt, fatal for ShellSpout).
    Other(String),
}

impl ShellMsg {
    /// Reads a command the way Storm's `JsonSerializer.readShellMsg` does: a wrong type is an
    /// error (Storm dies with a `ClassCastException`).
    pub fn from_json(v: Value) -> Result<ShellMsg, ProtocolError> {
        let Value::Object(mut m) = v else {
            return Err(ProtocolError::invalid(format!(
                "expected a command object, got {}",
                kind_of(&v)
            )));
        };
        let command = match m.remove("command") {
            Some(Value::String(c)) => c,
            Some(other) => {
                return Err(ProtocolError::invalid(format!(
                    "`command` must be a string, got {}",
                    kind_of(&other)
                )))
            }
            None => return Err(ProtocolError::invalid("message without `command`")),
        };
        Ok(match command.as_str() {
            "emit" => ShellMsg::Emit(read_emit(m)?),
            "ack" => ShellMsg::Ack(m.remove("id").unwrap_or(Value::Null)),
            "fail" => ShellMsg::Fail(m.remove("id").unwrap_or(Value::Null)),
            "log" => ShellMsg::Log {
                level: LogLevel::from_wire(m.get("level")),
                msg: string_field(&mut m, "msg")?,
            },
            "error" => ShellMsg::Error(string_field(&mut m, "msg")?),
            "metrics" => ShellMsg::Metrics {
                name: string_field(&mut m, "name")?,
                params: m.remove("params").unwrap_or(Value::Null),
            },
            "sync" => ShellMsg::Sync,
            _ => ShellMsg::Other(command),
        })
    }
}

fn string_field(m: &mut Map<String, Value>, key: &str) -> Result<String, ProtocolError> {
    match m.remove(key) {
        Some(Value::String(s)) => Ok(s),
        other => Err(ProtocolError::invalid(format!(
            "`{key}` must be a string, got {}",
            other.as_ref().map_or("nothing", kind_of)
        ))),
    }
}

fn read_emit(mut m: Map<String, Value>) -> Result<Emit, ProtocolError> {
    let values = match m.remove("tuple") {
        Some(Value::Array(a)) => a,
        _ => return Err(ProtocolError::invalid("emit `tuple` must be an array")),
    };
    let stream = match m.remove("stream") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ProtocolError::invalid("emit `stream` must be a string")),
    };
    let anchors = match m.remove("anchors") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|x| match x {
                Value::String(s) => Ok(s),
                other => Err(ProtocolError::invalid(format!(
                    "emit anchor must be a string, got {}",
                    kind_of(&other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ProtocolError::invalid("emit `anchors` must be an array")),
    };
    let direct_task = match m.remove("task") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => None,
            Some(t) => Some(t),
            None => return Err(ProtocolError::invalid("emit `task` must be an integer")),
        },
        Some(_) => return Err(ProtocolError::invalid("emit `task` must be an integer")),
    };
    let need_task_ids = match m.remove("need_task_ids") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ProtocolError::invalid(
                "emit `need_task_ids` must be a boolean",
            ))
        }
    };
    Ok(Emit {
        values,
        stream,
        anchors,
        message_id: m.remove("id"),
        direct_task,
        need_task_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_all(input: &[u8]) -> Vec<Result<Option<String>, String>> {
        let mut r = MessageReader::with_limit(input, 1024);
        let mut out = Vec::new();
        loop {
            let m = r.read_message().map_err(|e| e.to_string());
            let stop = !matches!(m, Ok(Some(_)));
            out.push(m);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn end_must_be_exact() {
        let got = read_all(b"{}\n end\nend\n");
        assert_eq!(got[0], Ok(Some("{}\n end".to_owned())));
        assert_eq!(got[1], Ok(None));
    }

    #[test]
    fn lone_carriage_return_ends_a_line() {
        assert_eq!(read_all(b"[1]\rend\r")[0], Ok(Some("[1]".to_owned())));
    }

    #[test]
    fn nothing_after_a_mid_read_end_line_is_lost() {
        // Every message in one physical read, lines ended by a lone `\r`.
        let got = read_all(b"[1]\rend\r[2]\rend\r");
        assert_eq!(
            got,
            [Ok(Some("[1]".into())), Ok(Some("[2]".into())), Ok(None)]
        );
        let got = read_all(b"{}\nend\r{\"x\":1}\r\nend\n[3]\rend");
        let want = [
            Ok(Some("{}".into())),
            Ok(Some("{\"x\":1}".into())),
            Ok(Some("[3]".into())),
            Ok(None),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_split_across_reads_is_one_line_end() {
        // `\r` ends one read and `\n` starts the next: one line end, not an empty line.
        let input = fuzz::Chunked::new(b"[1]\r\n\r\nend\r\n[2]\r\nend\r\n", vec![4, 2, 5, 1, 5, 1]);
        let mut r = MessageReader::new(input);
        assert_eq!(r.read_message().unwrap().as_deref(), Some("[1]\n"));
        assert_eq!(r.read_message().unwrap().as_deref(), Some("[2]"));
        assert_eq!(r.read_message().unwrap(), None);
    }

    #[test]
    fn eof_inside_message_is_truncated() {
        assert!(matches!(
            MessageReader::new(&b"{\"a\":1}\n"[..]).read_message(),
            Err(ProtocolError::Truncated)
        ));
        assert!(matches!(
            MessageReader::new(&b"{\"a\":1}"[..]).read_message(),
            Err(ProtocolError::Truncated)
        ));
    }

    #[test]
    fn oversized_message_is_rejected() {
        let big = vec![b'x'; 5000];
        assert!(matches!(
            MessageReader::with_limit(&big[..], 1024).read_message(),
            Err(ProtocolError::TooLarge(1024))
        ));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert!(matches!(
            MessageReader::new(&b"\xff\nend\n"[..]).read_message(),
            Err(ProtocolError::Utf8)
        ));
    }

    #[test]
    fn heartbeat_and_tick_are_told_apart() {
        let hb = json!({"id":"-6955786537413359385","comp":null,"stream":"__heartbeat","task":-1,"tuple":[]});
        let StormMessage::Tuple(t) = StormMessage::from_json(hb).unwrap() else {
            panic!()
        };
        assert!(t.is_heartbeat() && !t.is_tick());
        let tick = json!({"id":"1","comp":"__system","stream":"__tick","task":-1,"tuple":[5]});
        let StormMessage::Tuple(t) = StormMessage::from_json(tick).unwrap() else {
            panic!()
        };
        assert!(t.is_tick() && !t.is_heartbeat());
    }

    #[test]
    fn task_ids_and_commands() {
        assert_eq!(
            StormMessage::from_json(json!([3, 4])).unwrap(),
            StormMessage::TaskIds(vec![3, 4])
        );
        assert!(StormMessage::from_json(json!([3, "4"])).is_err());
        assert_eq!(
            StormMessage::from_json(json!({"command":"ack","id":7})).unwrap(),
            StormMessage::Command {
                name: "ack".into(),
                id: Some(json!(7))
            }
        );
        assert!(StormMessage::from_json(json!("next")).is_err());
        assert!(StormMessage::from_json(json!({"id":"1","tuple":[]})).is_err());
    }

    #[test]
    fn an_unreadable_tuple_keeps_only_an_id_storm_could_fail() {
        let id_of = |v: Value| StormMessage::read(v).unwrap_err().tuple_id;
        let t = |extra: Value| {
            let mut m = json!({"id":"-7","comp":"s","stream":"default","task":3,"tuple":[1]});
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            m
        };
        for bad in [
            json!({"task": "3"}),
            json!({"task": null}),
            json!({"tuple": "x"}),
            json!({"comp": 5}),
            json!({"stream": ["default"]}),
        ] {
            assert_eq!(id_of(t(bad.clone())).as_deref(), Some("-7"), "{bad}");
        }
        // Storm never writes a number id, and heartbeats are not in ShellBolt's map.
        assert_eq!(id_of(t(json!({"id": -7, "task": "3"}))), None);
        assert_eq!(id_of(t(json!({"stream":"__heartbeat","task":"-1"}))), None);
        assert_eq!(id_of(t(json!({"id": null}))), None);
        assert_eq!(id_of(json!({"command": 1, "id": "-7"})), None);
        assert_eq!(id_of(json!([1, "2"])), None);
        let mut want = Tuple::new("-7", "s", vec![json!(1)]);
        want.task = 3;
        assert_eq!(
            StormMessage::read(t(json!({}))).unwrap(),
            StormMessage::Tuple(want)
        );
    }

    #[test]
    fn handshake_reads_context() {
        let h = Handshake::from_json(&json!({
            "pidDir": "/tmp/x",
            "conf": {"topology.name": "t"},
            "context": {
                "taskid": 3, "componentid": "split",
                "task->component": {"1": "spout", "3": "split", "2": "__acker"},
                "stream->outputfields": {"default": ["word", "_trace"]},
                "source->stream->fields": {"spout": {"default": ["sentence", "_trace"]}}
            }
        }))
        .unwrap();
        assert_eq!(h.context.task_id, 3);
        assert_eq!(h.context.task_to_component[&2], "__acker");
        assert_eq!(
            h.context.input_fields("spout", "default").unwrap(),
            ["sentence", "_trace"]
        );
        assert!(Handshake::from_json(&json!({"conf": {}})).is_err());
    }

    #[test]
    fn shell_msg_is_strict_like_java() {
        let e = ShellMsg::from_json(json!({"command":"emit","tuple":[1],"anchors":"5"})).unwrap();
        let ShellMsg::Emit(e) = e else { panic!() };
        assert_eq!(e.anchors, ["5"]);
        assert!(e.need_task_ids, "Storm's default");
        for bad in [
            json!({"tuple": []}),
            json!({"command": 1}),
            json!({"command":"emit","tuple":[],"task":9.0}),
            json!({"command":"emit","tuple":[],"need_task_ids":"no"}),
            json!({"command":"emit","tuple":[],"anchors":[1]}),
            json!({"command":"log","msg":5}),
            json!({"command":"error"}),
        ] {
            assert!(ShellMsg::from_json(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            ShellMsg::from_json(json!({"command":"log","msg":"m","level":"x"})).unwrap(),
            ShellMsg::Log {
                level: LogLevel::Info,
                msg: "m".into()
            }
        );
    }

    #[test]
    fn emit_round_trips() {
        let e = Emit::new(vec![json!("a"), json!(1)])
            .anchor_id("-12")
            .stream("words")
            .need_task_ids(true);
        let back = ShellMsg::from_json(serde_json::from_str(&e.to_json_string()).unwrap());
        assert_eq!(back.unwrap(), ShellMsg::Emit(e));
    }
}

#[cfg(test)]
pub(crate) mod fuzz {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Exact binary fractions: serde_json's default float parser is not exact for every
            // f64 (subnormals), which is serde_json's matter, not the protocol's.
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![Just("command"), Just("id"), Just("tuple"), Just("end")]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::hash_map(
                    prop_oneof![
                        Just("command".to_owned()),
                        Just("id".to_owned()),
                        Just("tuple".to_owned()),
                        Just("task".to_owned()),
                        Just("stream".to_owned()),
                        Just("comp".to_owned()),
                        Just("anchors".to_owned()),
                        Just("need_task_ids".to_owned()),
                        Just("msg".to_owned()),
                        Just("pidDir".to_owned()),
                        Just("context".to_owned()),
                        ".{0,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn bytes_with_ends() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                any::<u8>().prop_map(|b| vec![b]),
                Just(b"\nend\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"{\"command\":\"sync\"}".to_vec()),
                Just(b"[1,2]".to_vec()),
            ],
            0..64,
        )
        .prop_map(|parts| parts.concat())
    }

    /// A pipe that hands its bytes over in reads of the given sizes (then the rest at once),
    /// so line ends fall across read boundaries.
    #[derive(Debug)]
    pub(crate) struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: std::vec::IntoIter<usize>,
    }

    impl Chunked {
        pub(crate) fn new(data: &[u8], sizes: Vec<usize>) -> Chunked {
            Chunked {
                data: data.to_vec(),
                at: 0,
                sizes: sizes.into_iter(),
            }
        }
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let left = self.data.len() - self.at;
            let n = self
                .sizes
                .next()
                .unwrap_or(left)
                .max(1)
                .min(left)
                .min(buf.len());
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Java's `BufferedReader.readLine` over the whole input: lines end at `\n`, `\r\n` or a
    /// lone `\r`; a last line without an end is still a line.
    fn java_lines(input: &[u8]) -> Vec<&[u8]> {
        let (mut lines, mut start, mut i) = (Vec::new(), 0, 0);
        while i < input.len() {
            match input[i] {
                b'\n' | b'\r' => {
                    lines.push(&input[start..i]);
                    if input[i] == b'\r' && input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    i += 1;
                    start = i;
                }
                _ => i += 1,
            }
        }
        if start < input.len() {
            lines.push(&input[start..]);
        }
        lines
    }

    /// ShellProcess's reading of those lines: join with `\n` until a line is exactly `end`.
    fn java_messages(input: &[u8]) -> Vec<Result<Vec<u8>, ()>> {
        let mut out = Vec::new();
        let mut message: Option<Vec<u8>> = None;
        for line in java_lines(input) {
            if line == b"end" {
                out.push(Ok(message.take().unwrap_or_default()));
                continue;
            }
            let m = message.get_or_insert_with(Vec::new);
            m.extend_from_slice(line);
            m.push(b'\n');
        }
        if message.is_some() {
            out.push(Err(()));
        }
        out
    }

    fn line_ends() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"end".to_vec()),
                Just(b"en".to_vec()),
                Just(b"d".to_vec()),
                Just(b"[1]".to_vec()),
                Just(b"{}".to_vec()),
            ],
            0..48,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn lines_split_as_java_reads_them_whatever_the_reads(
            input in line_ends(),
            sizes in prop::collection::vec(1usize..8, 0..48),
        ) {
            let mut r = MessageReader::new(Chunked::new(&input, sizes));
            for want in java_messages(&input) {
                match (want, r.read_message()) {
                    (Ok(mut m), Ok(Some(got))) => {
                        m.pop(); // the `\n` after the last line
                        prop_assert_eq!(got.as_bytes(), &m[..]);
                    }
                    (Err(()), Err(ProtocolError::Truncated)) => return Ok(()),
                    (want, got) => prop_assert!(false, "want {:?}, got {:?}", want, got),
                }
            }
            prop_assert!(r.read_message().unwrap().is_none());
        }

        #[test]
        fn reader_never_panics_and_terminates(input in bytes_with_ends()) {
            let mut r = MessageReader::with_limit(&input[..], 256);
            for _ in 0..=input.len() {
                match r.read_json() {
                    Ok(Some(v)) => {
                        let _ = StormMessage::from_json(v.clone());
                        let _ = ShellMsg::from_json(v);
                    }
                    Ok(None) => break,
                    Err(ProtocolError::Json(_) | ProtocolError::Invalid(_)) => continue,
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn written_messages_read_back(values in prop::collection::vec(json_value(), 1..5)) {
            let mut wire = Vec::new();
            for v in &values {
                write_message(&mut wire, &v.to_string()).unwrap();
            }
            let mut r = MessageReader::new(&wire[..]);
            for v in &values {
                let back = r.read_json().unwrap().unwrap();
                // serde_json may round floats differently only in their text; compare text.
                prop_assert_eq!(back.to_string(), v.to_string());
            }
            prop_assert!(r.read_json().unwrap().is_none());
        }

        #[test]
        fn arbitrary_json_never_panics(v in json_value()) {
            let _ = StormMessage::from_json(v.clone());
            let _ = ShellMsg::from_json(v.clone());
            let _ = Handshake::from_json(&v);
            let _ = TopologyContext::from_json(&v);
            if let Value::Object(m) = v {
                let _ = Tuple::from_json(m);
            }
        }

        #[test]
        fn emits_round_trip(
            values in prop::collection::vec(json_value(), 0..4),
            stream in proptest::option::of("[a-z_/]{1,8}"),
            anchors in prop::collection::vec("-?[0-9]{1,19}", 0..3),
            task in proptest::option::of(1i64..1000),
            need in any::<bool>(),
        ) {
            let e = Emit { values, stream, anchors, message_id: None, direct_task: task, need_task_ids: need };
            let wire = e.to_json_string();
            let back = ShellMsg::from_json(serde_json::from_str(&wire).unwrap()).unwrap();
            let ShellMsg::Emit(back) = back else { panic!("not an emit") };
            prop_assert_eq!(back.to_json_string(), wire);
        }

        #[test]
        fn tuples_round_trip(
            id in "-?[0-9]{1,19}",
            comp in proptest::option::of("[a-z_]{1,8}"),
            stream in "[a-z_]{1,8}",
            task in any::<i64>(),
            values in prop::collection::vec(json_value(), 0..4),
        ) {
            let t = Tuple { id, component: comp, stream, task, values };
            let Value::Object(m) = t.to_json() else { panic!() };
            prop_assert_eq!(Tuple::from_json(m).unwrap().to_json(), t.to_json());
        }
    }
}
