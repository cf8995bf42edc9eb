//! Shared by the examples' integration tests.
#![allow(dead_code)]

mod cargo_build;

use std::path::PathBuf;

/// Builds the example `name` of this package and returns the path of its executable.
pub(crate) fn build_example(name: &str) -> PathBuf {
    cargo_build::build_example("tdist-examples", name)
}
