//! Building a workspace package's example from an integration test. Shared through `#[path]` by
//! the tests of tdist-examples, tdist-http and tdist-storm, whose directories all sit beside the
//! workspace manifest.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds example `name` of workspace package `package` in this test's profile (a no-op when
/// cargo already did, as `cargo test` does) and returns the path of its executable.
pub(crate) fn build_example(package: &str, name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json",
        "--manifest-path",
    ])
    .arg(manifest)
    .args(["-p", package, "--example", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "building example {name} of {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name} of {package}"))
}
