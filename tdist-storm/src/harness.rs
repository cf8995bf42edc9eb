//! Storm's side of the multilang protocol, for testing bolts and spouts without a cluster.
//!
//! [`Harness`] starts a component as a child process and speaks to it the way Storm's
//! `ShellBolt` and `ShellSpout` do: the handshake (a pid directory, the configuration and a
//! topology context), tuples, heartbeat tuples every second, task-id replies to emits, and the
//! same fatal checks (an ack, fail or anchor naming a tuple that is not pending, a command
//! without `command`, a wrong JSON type, an unregistered metric, malformed JSON, a broken pipe,
//! a heartbeat timeout). A fatal case marks the harness dead, as the worker would die, and kills
//! the child. Everything the child sends is recorded. As in ShellBolt, one writer thread writes
//! to the child's stdin from a queue (task-id replies first) and the reader thread never waits
//! for a write, so a child that writes a lot before it reads again cannot deadlock the harness.
//!
//! ```no_run
//! use std::process::Command;
//! use std::time::Duration;
//! use tdist_storm::harness::{Harness, HarnessConfig};
//!
//! let mut h = Harness::spawn(Command::new("./my_bolt"), HarnessConfig::bolt("split")).unwrap();
//! let t = h.tuple("spout", vec!["a sentence".into()]);
//! h.send_tuple(&t).unwrap();
//! h.wait_settled(&t.id, Duration::from_secs(5)).unwrap();
//! assert!(h.records().acks.contains(&t.id));
//! h.close(Duration::from_secs(5)).unwrap();
//! ```
use crate::protocol::{
    Emit, LogLevel, MessageReader, ProtocolError, ShellMsg, Tuple, DEFAULT_STREAM,
};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How much of the child's stderr a harness keeps at least (the latest), when it writes more.
const STDERR_KEPT: usize = 1 << 20;

/// Which Storm component the harness plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ShellBolt`: asynchronous tuples, heartbeats, acks.
    Bolt,
    /// `ShellSpout`: synchronous `next`/`ack`/`fail`, each answered by `sync`.
    Spout,
}

/// How the harness sets up the component.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Bolt or spout.
    pub mode: Mode,
    /// The component id sent in the context.
    pub component_id: String,
    /// The task id sent in the context.
    pub task_id: i64,
    /// Extra topology configuration (merged over the defaults).
    pub conf: Map<String, Value>,
    /// Declared fields of inputs: (source component, stream) → fields.
    pub input_fields: Vec<((String, String), Vec<String>)>,
    /// Declared output fields per stream.
    pub output_fields: Vec<(String, Vec<String>)>,
    /// `topology.subprocess.timeout.secs`: the child must send something this often.
    pub subprocess_timeout: Duration,
    /// How often heartbeat tuples are sent and the timeout checked (ShellBolt: 1 s; at least
    /// every millisecond: zero is taken as 1 ms). `None` sends none.
    pub heartbeat_interval: Option<Duration>,
    /// The task ids written back to emits that ask for them.
    pub task_ids: Vec<i64>,
    /// Metric names registered as `IShellMetric`; any other name is fatal.
    pub metrics: Vec<String>,
    /// `topology.shellbolt.max.pending`: how many tuples may be in flight.
    pub max_pending: usize,
    /// How long to wait for the `{"pid": N}` reply.
    pub handshake_timeout: Duration,
}

impl HarnessConfig {
    /// Plays a `ShellBolt` for `component_id`.
    pub fn bolt(component_id: impl Into<String>) -> HarnessConfig {
        HarnessConfig {
            mode: Mode::Bolt,
            component_id: component_id.into(),
            task_id: 3,
            conf: Map::new(),
            input_fields: Vec::new(),
            output_fields: Vec::new(),
            subprocess_timeout: Duration::from_secs(30),
            heartbeat_interval: Some(Duration::from_secs(1)),
            task_ids: vec![4],
            metrics: Vec::new(),
            max_pending: 100,
            handshake_timeout: Duration::from_secs(30),
        }
    }

    /// Plays a `ShellSpout` for `component_id`.
    pub fn spout(component_id: impl Into<String>) -> HarnessConfig {
        HarnessConfig {
            mode: Mode::Spout,
            task_id: 1,
            ..HarnessConfig::bolt(component_id)
        }
    }

    /// Declares the fields of an input stream.
    pub fn input(mut self, source: &str, stream: &str, fields: &[&str]) -> HarnessConfig {
        self.input_fields.push((
            (source.to_owned(), stream.to_owned()),
            fields.iter().map(|f| (*f).to_owned()).collect(),
        ));
        self
    }

    /// Declares the fields of an output stream.
    pub fn output(mut self, stream: &str, fields: &[&str]) -> HarnessConfig {
        self.output_fields.push((
            stream.to_owned(),
            fields.iter().map(|f| (*f).to_owned()).collect(),
        ));
        self
    }

    fn context(&self) -> Value {
        let mut tasks = Map::new();
        tasks.insert(
            self.task_id.to_string(),
            Value::from(self.component_id.clone()),
        );
        tasks.insert("2".into(), Value::from("__acker"));
        let mut next = 10;
        let mut sources: HashMap<String, Map<String, Value>> = HashMap::new();
        for ((source, stream), fields) in &self.input_fields {
            if !tasks.values().any(|c| c == source) {
                tasks.insert(next.to_string(), Value::from(source.clone()));
                next += 1;
            }
            sources
                .entry(source.clone())
                .or_default()
                .insert(stream.clone(), json!(fields));
        }
        let outputs: Map<String, Value> = self
            .output_fields
            .iter()
            .map(|(s, f)| (s.clone(), json!(f)))
            .collect();
        json!({
            "task->component": tasks,
            "taskid": self.task_id,
            "componentid": self.component_id,
            "streams": outputs.keys().collect::<Vec<_>>(),
            "stream->outputfields": outputs,
            "stream->target->grouping": {},
            "source->stream->grouping": {},
            "source->stream->fields": sources,
        })
    }

    fn full_conf(&self) -> Value {
        let mut conf = Map::new();
        conf.insert("topology.name".into(), json!("tdist-harness"));
        conf.insert("supervisor.worker.timeout.secs".into(), json!(30));
        conf.insert(
            "topology.subprocess.timeout.secs".into(),
            json!(self.subprocess_timeout.as_secs().max(1)),
        );
        conf.insert(
            "topology.shellbolt.max.pending".into(),
            json!(self.max_pending),
        );
        conf.insert(
            "topology.multilang.serializer".into(),
            json!("org.apache.storm.multilang.JsonSerializer"),
        );
        for (k, v) in &self.conf {
            conf.insert(k.clone(), v.clone());
        }
        Value::Object(conf)
    }
}

/// Why the harness stopped or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Starting the child failed.
    #[error("cannot start the component: {0}")]
    Spawn(std::io::Error),
    /// Writing to the child failed.
    #[error("cannot write to the component: {0}")]
    Write(std::io::Error),
    /// The component died or did something Storm treats as fatal.
    #[error("component died: {reason}; stderr: {stderr}")]
    Died {
        /// What Storm would report.
        reason: String,
        /// What the child wrote to stderr.
        stderr: String,
    },
    /// Nothing happened within the time given.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The operation does not apply to this mode (a tuple sent to a spout).
    #[error("{0}")]
    WrongMode(&'static str),
}

/// An emit the component sent, with the task ids written back.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitRecord {
    /// The emit as received.
    pub emit: Emit,
    /// The task-id list written back, if one was.
    pub task_ids: Option<Vec<i64>>,
}

/// Everything the component sent so far.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// The pid it reported.
    pub pid: Option<u32>,
    /// Emits in order.
    pub emits: Vec<EmitRecord>,
    /// Acked input ids, in order (bolts).
    pub acks: Vec<String>,
    /// Failed input ids, in order (bolts).
    pub fails: Vec<String>,
    /// `log` commands.
    pub logs: Vec<(LogLevel, String)>,
    /// `error` commands.
    pub errors: Vec<String>,
    /// `metrics` commands.
    pub metrics: Vec<(String, Value)>,
    /// `sync` commands.
    pub syncs: usize,
    /// Commands ShellBolt ignores.
    pub unknown_commands: Vec<String>,
    /// Heartbeat tuples sent.
    pub heartbeats_sent: usize,
    /// Why the component is considered dead.
    pub died: Option<String>,
}

struct State {
    records: Records,
    pending: HashSet<String>,
    last_heard: Instant,
    waiting_on_subprocess: bool,
    closed: bool,
}

/// What waits to be written to the child's stdin. One writer thread writes it, as ShellBolt's
/// does: senders (tuples, heartbeats, spout commands, the reader thread's task-id replies) only
/// queue, so the reader never waits for a write and keeps draining the child's stdout while a
/// big tuple is on its way in. Task-id replies go first, as `ShellBoltMessageQueue` sends them.
#[derive(Default)]
struct Outbox {
    replies: VecDeque<Vec<u8>>,
    messages: VecDeque<Vec<u8>>,
    /// Nothing more is queued; the writer closes stdin once the queue is empty.
    closing: bool,
    /// Why writing failed; later sends fail with it.
    broken: Option<std::io::ErrorKind>,
}

struct Shared {
    config: HarnessConfig,
    outbox: Mutex<Outbox>,
    queued: Condvar,
    child: Mutex<Child>,
    state: Mutex<State>,
    changed: Condvar,
    stderr: Mutex<Vec<u8>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one message the way Storm's json-smart does (escaping `/`).
    fn write(&self, v: &Value) -> Result<(), HarnessError> {
        self.queue(frame(v), false)
    }

    /// Queues bytes for the writer thread; a reply jumps ahead of queued messages.
    fn queue(&self, bytes: Vec<u8>, reply: bool) -> Result<(), HarnessError> {
        let mut o = self.outbox();
        if let Some(kind) = o.broken {
            return Err(HarnessError::Write(kind.into()));
        }
        if o.closing {
            return Err(HarnessError::Write(std::io::ErrorKind::BrokenPipe.into()));
        }
        if reply {
            o.replies.push_back(bytes);
        } else {
            o.messages.push_back(bytes);
        }
        drop(o);
        self.queued.notify_one();
        Ok(())
    }

    /// Lets the writer close stdin once everything queued is written (as Storm does on
    /// shutdown, after its last message).
    fn close_stdin(&self) {
        self.outbox().closing = true;
        self.queued.notify_one();
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// The next bytes to write, waiting for some; `None` once closing with nothing left.
    fn next_to_write(&self) -> Option<Vec<u8>> {
        let mut o = self.outbox();
        loop {
            if let Some(bytes) = o.replies.pop_front().or_else(|| o.messages.pop_front()) {
                return Some(bytes);
            }
            if o.closing || o.broken.is_some() {
                return None;
            }
            o = self.queued.wait(o).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Marks the component dead (as ShellBolt's `die`) and kills it.
    fn die(&self, reason: String) {
        {
            let mut s = self.lock();
            if s.records.died.is_some() || s.closed {
                return;
            }
            s.records.died = Some(reason);
        }
        let _ = self.child.lock().unwrap_or_else(|p| p.into_inner()).kill();
        self.changed.notify_all();
    }

    fn died_error(&self, reason: &str) -> HarnessError {
        HarnessError::Died {
            reason: reason.to_owned(),
            stderr: self.stderr_text(),
        }
    }
}

/// A component running as a child process, with Storm's side of the pipe.
pub struct Harness {
    shared: Arc<Shared>,
    pid_dir: PathBuf,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("mode", &self.shared.config.mode)
            .field("pid_dir", &self.pid_dir)
            .finish_non_exhaustive()
    }
}

static DIRS: AtomicU64 = AtomicU64::new(0);

impl Harness {
    /// Starts `command` with piped stdio, sends the handshake and waits for the pid.
    pub fn spawn(mut command: Command, config: HarnessConfig) -> Result<Harness, HarnessError> {
        let pid_dir = std::env::temp_dir().join(format!(
            "tdist-storm-pids-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&pid_dir).map_err(HarnessError::Spawn)?;
        let spawned = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                // No `Harness` owns the directory yet to remove it on drop.
                let _ = std::fs::remove_dir_all(&pid_dir);
                return Err(HarnessError::Spawn(e));
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let shared = Arc::new(Shared {
            config,
            outbox: Mutex::new(Outbox::default()),
            queued: Condvar::new(),
            child: Mutex::new(child),
            state: Mutex::new(State {
                records: Records::default(),
                pending: HashSet::new(),
                last_heard: Instant::now(),
                waiting_on_subprocess: false,
                closed: false,
            }),
            changed: Condvar::new(),
            stderr: Mutex::new(Vec::new()),
        });
        let harness = Harness { shared, pid_dir };
        if let Some(stdin) = stdin {
            let s = harness.shared.clone();
            std::thread::spawn(move || writer(s, stdin));
        }
        if let Some(mut err) = stderr {
            let s = harness.shared.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    let mut kept = s.stderr.lock().unwrap_or_else(|p| p.into_inner());
                    kept.extend_from_slice(&buf[..n]);
                    // A chatty child over a long run: the latest output is what explains a
                    // failure, so the oldest goes (in steps, not on every read).
                    if kept.len() > 2 * STDERR_KEPT {
                        let cut = kept.len() - STDERR_KEPT;
                        kept.drain(..cut);
                    }
                }
            });
        }
        let handshake = json!({
            "pidDir": harness.pid_dir.display().to_string(),
            "conf": harness.shared.config.full_conf(),
            "context": harness.shared.config.context(),
        });
        harness.shared.write(&handshake)?;
        if let Some(out) = stdout {
            let s = harness.shared.clone();
            std::thread::spawn(move || reader(s, out));
        }
        let timeout = harness.shared.config.handshake_timeout;
        harness.wait_for(|r| r.pid.is_some(), timeout, "the pid reply")?;
        if let Some(every) = harness.shared.config.heartbeat_interval {
            let s = Arc::downgrade(&harness.shared);
            // Zero would make the heartbeat thread spin, queueing heartbeats without end.
            let every = every.max(Duration::from_millis(1));
            std::thread::spawn(move || heartbeats(s, every));
        }
        Ok(harness)
    }

    /// The pid the component reported.
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().records.pid
    }

    /// The pid directory sent in the handshake.
    pub fn pid_dir(&self) -> &Path {
        &self.pid_dir
    }

    /// Waits until the pid file exists (some libraries write it after replying).
    pub fn wait_pid_file(&self, timeout: Duration) -> Result<PathBuf, HarnessError> {
        let pid = self.pid().ok_or(HarnessError::Timeout("the pid".into()))?;
        let path = self.pid_dir.join(pid.to_string());
        let deadline = Deadline::after(timeout);
        while !path.exists() {
            if deadline.passed() {
                return Err(HarnessError::Timeout(format!("{}", path.display())));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(path)
    }

    /// A tuple from `source`'s default stream with a random id, as Storm makes them.
    pub fn tuple(&self, source: &str, values: Vec<Value>) -> Tuple {
        Tuple {
            id: (tdist_core::random_u64() as i64).to_string(),
            component: Some(source.to_owned()),
            stream: DEFAULT_STREAM.to_owned(),
            task: 10,
            values,
        }
    }

    /// Sends a tuple to a bolt, waiting while `max_pending` tuples are in flight. The tuple is
    /// queued for the writer thread; an error means the component died or writing to it failed
    /// earlier.
    pub fn send_tuple(&self, tuple: &Tuple) -> Result<(), HarnessError> {
        if self.shared.config.mode != Mode::Bolt {
            return Err(HarnessError::WrongMode("tuples go to bolts"));
        }
        let max = self.shared.config.max_pending;
        let timeout = self.shared.config.subprocess_timeout;
        {
            let deadline = Deadline::after(timeout);
            let mut s = self.shared.lock();
            while s.pending.len() >= max && s.records.died.is_none() {
                s = match deadline.wait(&self.shared.changed, s) {
                    Some(s) => s,
                    None => return Err(HarnessError::Timeout("room in max pending".into())),
                };
            }
            if let Some(reason) = s.records.died.clone() {
                drop(s);
                return Err(self.shared.died_error(&reason));
            }
            s.pending.insert(tuple.id.clone());
        }
        self.shared.write(&tuple.to_json())
    }

    /// Sends a heartbeat tuple now (the background timer also sends them).
    pub fn send_heartbeat(&self) -> Result<(), HarnessError> {
        send_heartbeat(&self.shared)
    }

    /// Declares `id` pending, as if sent by [`Harness::send_tuple`] (for tuples written with
    /// [`Harness::send_raw`]).
    pub fn mark_pending(&self, id: &str) {
        self.shared.lock().pending.insert(id.to_owned());
    }

    /// Writes raw bytes to the child's stdin (to test malformed input), in order with the
    /// messages queued before them.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.shared.queue(bytes.to_vec(), false)
    }

    /// Sends a spout command (`next`, `ack`, `fail`, `activate`, `deactivate`) and waits for
    /// its `sync`; returns the emits made in between.
    pub fn spout_command(
        &self,
        command: &str,
        id: Option<Value>,
        timeout: Duration,
    ) -> Result<Vec<EmitRecord>, HarnessError> {
        if self.shared.config.mode != Mode::Spout {
            return Err(HarnessError::WrongMode("spout commands go to spouts"));
        }
        let (syncs, emits) = {
            let mut s = self.shared.lock();
            s.waiting_on_subprocess = true;
            s.last_heard = Instant::now();
            (s.records.syncs, s.records.emits.len())
        };
        let mut msg = json!({ "command": command });
        if let Some(id) = id {
            msg["id"] = id;
        }
        self.shared.write(&msg)?;
        let r = self.wait_for(
            |r| r.syncs > syncs,
            timeout,
            &format!("sync after {command}"),
        );
        self.shared.lock().waiting_on_subprocess = false;
        r?;
        Ok(self.shared.lock().records.emits[emits..].to_vec())
    }

    /// Sends `next` and waits for `sync`.
    pub fn next(&self, timeout: Duration) -> Result<Vec<EmitRecord>, HarnessError> {
        self.spout_command("next", None, timeout)
    }

    /// A copy of everything recorded so far.
    pub fn records(&self) -> Records {
        self.shared.lock().records.clone()
    }

    /// Returns everything recorded so far and starts afresh (pid and death are kept), so
    /// long runs do not accumulate records.
    pub fn take_records(&self) -> Records {
        let mut s = self.shared.lock();
        let keep = Records {
            pid: s.records.pid,
            died: s.records.died.clone(),
            ..Records::default()
        };
        std::mem::replace(&mut s.records, keep)
    }

    /// Whether input `id` is still waiting for its ack or fail.
    pub fn is_pending(&self, id: &str) -> bool {
        self.shared.lock().pending.contains(id)
    }

    /// What the child wrote to stderr so far: its last 1 to 2 MiB when it wrote more.
    pub fn stderr(&self) -> String {
        self.shared.stderr_text()
    }

    /// Waits until `done` holds for the records; fails as soon as it does not and the
    /// component died.
    pub fn wait_for(
        &self,
        done: impl Fn(&Records) -> bool,
        timeout: Duration,
        what: &str,
    ) -> Result<(), HarnessError> {
        let deadline = Deadline::after(timeout);
        let mut s = self.shared.lock();
        loop {
            if done(&s.records) {
                return Ok(());
            }
            if let Some(reason) = &s.records.died {
                let reason = reason.clone();
                drop(s);
                return Err(self.shared.died_error(&reason));
            }
            s = match deadline.wait(&self.shared.changed, s) {
                Some(s) => s,
                None => return Err(HarnessError::Timeout(what.to_owned())),
            };
        }
    }

    /// Waits until input `id` is acked or failed.
    pub fn wait_settled(&self, id: &str, timeout: Duration) -> Result<(), HarnessError> {
        self.wait_for(
            |r| r.acks.iter().chain(&r.fails).any(|a| a == id),
            timeout,
            &format!("ack or fail of {id}"),
        )
    }

    /// Waits until the component is considered dead; returns the reason.
    pub fn wait_died(&self, timeout: Duration) -> Result<String, HarnessError> {
        match self.wait_for(|_| false, timeout, "the component to die") {
            Err(HarnessError::Died { reason, .. }) => Ok(reason),
            Err(e) => Err(e),
            Ok(()) => unreachable!("the predicate never holds"),
        }
    }

    /// Closes the child's stdin (as Storm does on shutdown) and waits for it to exit, killing
    /// it after `timeout`. Returns its exit status, or `None` if it had to be killed.
    pub fn close(self, timeout: Duration) -> Result<Option<ExitStatus>, HarnessError> {
        self.shared.lock().closed = true;
        self.shared.close_stdin();
        let deadline = Deadline::after(timeout);
        loop {
            let mut child = self.shared.child.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(status) = child.try_wait().map_err(HarnessError::Write)? {
                return Ok(Some(status));
            }
            if deadline.passed() {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            drop(child);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.close_stdin();
        let mut child = self.shared.child.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
        drop(child);
        let _ = std::fs::remove_dir_all(&self.pid_dir);
    }
}

/// The end of a wait; `None` when the timeout reaches past what an `Instant` holds
/// (`Duration::MAX`: no limit), where `now + timeout` would panic.
#[derive(Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() > d)
    }

    /// Waits on `cv` until notified or the deadline; `None` once the deadline has passed.
    fn wait<'a>(self, cv: &Condvar, guard: MutexGuard<'a, State>) -> Option<MutexGuard<'a, State>> {
        let Some(deadline) = self.0 else {
            return Some(cv.wait(guard).unwrap_or_else(|p| p.into_inner()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(
            cv.wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0,
        )
    }
}

fn send_heartbeat(shared: &Shared) -> Result<(), HarnessError> {
    let id = (tdist_core::random_u64() as i64).to_string();
    shared.write(&Tuple::heartbeat(id).to_json())?;
    shared.lock().records.heartbeats_sent += 1;
    Ok(())
}

/// One framed message as Storm's json-smart writes it (escaping `/`).
fn frame(v: &Value) -> Vec<u8> {
    let mut buf = v.to_string().replace('/', "\\/").into_bytes();
    buf.extend_from_slice(b"\nend\n");
    buf
}

/// ShellBolt's writer thread: the only one writing to the child's stdin. After a failed write
/// (the child closed stdin or exited; the reader reports its death) later sends fail.
fn writer(shared: Arc<Shared>, mut stdin: ChildStdin) {
    while let Some(bytes) = shared.next_to_write() {
        if let Err(e) = stdin.write_all(&bytes).and_then(|()| stdin.flush()) {
            let mut o = shared.outbox();
            o.broken = Some(e.kind());
            o.replies.clear();
            o.messages.clear();
            return;
        }
    }
    // Dropping stdin here is the end of input the child sees at shutdown.
}

/// ShellBolt's heartbeat timer: check the timeout, then send a heartbeat tuple.
fn heartbeats(shared: std::sync::Weak<Shared>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (stop, silent) = {
            let s = shared.lock();
            let stop = s.closed || s.records.died.is_some();
            let watched = shared.config.mode == Mode::Bolt || s.waiting_on_subprocess;
            (
                stop,
                watched && s.last_heard.elapsed() > shared.config.subprocess_timeout,
            )
        };
        if stop {
            return;
        }
        if silent {
            shared.die("subprocess heartbeat timeout".into());
            return;
        }
        if shared.config.mode == Mode::Bolt && send_heartbeat(&shared).is_err() {
            return;
        }
    }
}

/// ShellBolt's reader: every message from the child, handled as Storm handles it.
fn reader(shared: Arc<Shared>, out: impl Read) {
    let mut input = MessageReader::new(out);
    let first = match input.read_json() {
        Ok(Some(v)) => v,
        Ok(None) => return shared.die("pipe to subprocess seems to be broken: no pid".into()),
        Err(e) => return shared.die(format!("bad handshake reply: {e}")),
    };
    match first.get("pid").and_then(Value::as_u64) {
        Some(pid) => {
            let mut s = shared.lock();
            s.records.pid = u32::try_from(pid).ok();
            s.last_heard = Instant::now();
        }
        None => return shared.die(format!("handshake reply without a numeric pid: {first}")),
    }
    shared.changed.notify_all();
    loop {
        let msg = match input.read_json() {
            Ok(Some(v)) => ShellMsg::from_json(v),
            Ok(None) => Err(ProtocolError::Truncated),
            Err(e) => Err(e),
        };
        let outcome = match msg {
            Ok(m) => handle(&shared, m),
            Err(ProtocolError::Truncated) => {
                Err("pipe to subprocess seems to be broken (end of output)".to_owned())
            }
            Err(e) => Err(e.to_string()),
        };
        shared.changed.notify_all();
        if let Err(reason) = outcome {
            let closing = shared.lock().closed;
            if !closing {
                shared.die(reason);
            }
            return;
        }
    }
}

fn handle(shared: &Shared, msg: ShellMsg) -> Result<(), String> {
    let bolt = shared.config.mode == Mode::Bolt;
    let mut reply = None;
    {
        let mut s = shared.lock();
        s.last_heard = Instant::now();
        match msg {
            ShellMsg::Emit(emit) => {
                if let Some(a) = emit.anchors.iter().find(|a| !s.pending.contains(*a)) {
                    if bolt {
                        return Err(format!("Anchored onto {a} after ack/fail"));
                    }
                }
                let task_ids = emit
                    .expects_task_ids()
                    .then(|| shared.config.task_ids.clone());
                reply.clone_from(&task_ids);
                s.records.emits.push(EmitRecord { emit, task_ids });
            }
            ShellMsg::Ack(id) | ShellMsg::Fail(id) if !bolt => {
                return Err(format!(
                    "ShellSpout: unknown command received: ack/fail {id}"
                ));
            }
            ShellMsg::Ack(id) => {
                let id = settle(&mut s, id, "Acked")?;
                s.records.acks.push(id);
            }
            ShellMsg::Fail(id) => {
                let id = settle(&mut s, id, "Failed")?;
                s.records.fails.push(id);
            }
            ShellMsg::Log { level, msg } => s.records.logs.push((level, msg)),
            ShellMsg::Error(msg) => s.records.errors.push(msg),
            ShellMsg::Metrics { name, params } => {
                if name.is_empty() || !shared.config.metrics.contains(&name) {
                    return Err(format!("could not find metric by name[{name}]"));
                }
                s.records.metrics.push((name, params));
            }
            ShellMsg::Sync => s.records.syncs += 1,
            ShellMsg::Other(c) if !bolt => {
                return Err(format!("ShellSpout: unknown command received: {c}"));
            }
            ShellMsg::Other(c) => s.records.unknown_commands.push(c),
        }
    }
    if let Some(ids) = reply {
        // Queued, never written here: this thread must keep reading the child's output.
        shared
            .queue(frame(&json!(ids)), true)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn settle(s: &mut State, id: Value, verb: &str) -> Result<String, String> {
    let Value::String(id) = id else {
        return Err(format!(
            "ClassCastException: {verb} id {id} is not a string"
        ));
    };
    if !s.pending.remove(&id) {
        return Err(format!(
            "{verb} a non-existent or already acked/failed id: {id}"
        ));
    }
    Ok(id)
}
