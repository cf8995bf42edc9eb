//! What the runtime targets share: capturing what a component writes, the pid directory, and
//! waiting for the runtime's reader thread.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// What the runtime writes, shared with the target.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

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
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// Waits (at most a second) until the runtime's reader thread has ended, so that libFuzzer's
/// leak check does not count the thread's own memory while it is still exiting.
pub fn wait_for_threads(before: usize) {
    let start = std::time::Instant::now();
    while threads() > before && start.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}
