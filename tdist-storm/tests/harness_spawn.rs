//! The harness leaves nothing behind when it cannot start its child (alone in its own test
//! binary, so no other harness's pid directory is around).
use std::process::Command;
use tdist_storm::harness::{Harness, HarnessConfig, HarnessError};

fn pid_dirs() -> Vec<String> {
    let prefix = format!("tdist-storm-pids-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn a_command_that_cannot_start_leaves_no_pid_directory() {
    let missing = Command::new("/nonexistent/tdist-storm-no-such-bolt");
    let err = Harness::spawn(missing, HarnessConfig::bolt("b")).unwrap_err();
    assert!(matches!(err, HarnessError::Spawn(_)), "{err}");
    assert_eq!(pid_dirs(), Vec::<String>::new());
}
