//! Shared helpers: building the component binaries and reading span files back.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../examples/tests/support/cargo_build.rs"]
mod cargo_build;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds the example binaries once (a no-op when cargo already built them) and returns the
/// path of `name`. `package` is `tdist-storm` or `tdist-examples`.
pub fn example(package: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<Vec<(String, String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, p)) = built.iter().find(|(pk, n, _)| pk == package && n == name) {
        return p.clone();
    }
    let path = cargo_build::build_example(package, name);
    built.push((package.to_owned(), name.to_owned(), path.clone()));
    path
}

/// A command for one of tdist-storm's example components.
pub fn storm_example(name: &str) -> Command {
    Command::new(example("tdist-storm", name))
}

/// A fresh, empty temporary file path for a child's spans.
pub fn span_file(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::env::temp_dir().join(format!(
        "tdist-storm-spans-{}-{tag}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Every span written to a JSON-lines file (Zipkin v2 JSON objects).
pub fn read_spans(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a span line is JSON"))
        .collect()
}
