//! What the runtime targets share: running a component on in-memory pipes and reading back
//! what it wrote, the pid directory, and waiting for the runtime's reader thread.

use serde_json::Value;
use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex, OnceLock};
use tdist_storm::protocol::{MessageReader, ShellMsg};

/// What the runtime writes, shared with the target.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A directory for the pid files the handshake asks for (one file per fuzzing process).
pub fn pid_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join("tdist-fuzz-pids");
        std::fs::create_dir_all(&d).expect("pid directory");
        d.display().to_string()
    })
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// Waits (at most a second) until the runtime's reader thread has ended, so that libFuzzer's
/// leak check does not count the thread's own memory while it is still exiting.
fn wait_for_threads(before: usize) {
    let start = std::time::Instant::now();
    while threads() > before && start.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// Runs a component on `input` and returns whether it ended cleanly, and every command it wrote
/// after the `pid` answer, each as ShellBolt and ShellSpout read it (a command they cannot read
/// fails the target).
pub fn run_and_read<E>(
    input: &[u8],
    run: impl FnOnce(Cursor<Vec<u8>>, Capture) -> Result<(), E>,
) -> (bool, Vec<(Value, ShellMsg)>) {
    let before = threads();
    let out = Capture::default();
    let clean = run(Cursor::new(input.to_vec()), out.clone()).is_ok();
    wait_for_threads(before);
    let written = out.0.lock().unwrap().clone();
    let mut reader = MessageReader::new(&written[..]);
    let first = reader.read_json().expect("framed").expect("the pid answer");
    assert!(first["pid"].is_u64(), "{first}");
    let mut commands = Vec::new();
    while let Some(v) = reader.read_json().expect("framed JSON") {
        let m = ShellMsg::from_json(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        commands.push((v, m));
    }
    (clean, commands)
}

/// Appends bytes that end the framing (a line with no `end` after it): the runtime must stop
/// reading there.
pub fn break_framing(input: &mut Vec<u8>, bytes: &[u8]) {
    input.extend_from_slice(bytes);
    input.push(b'\n');
}
