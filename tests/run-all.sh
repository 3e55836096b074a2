#!/usr/bin/env bash
# Every test of the workspace (pvegate and the simulator crate, pvegate-sim): formatting, lints,
# unit and integration tests (including the client suites and the schema coverage test), the
# doc build, and a check that the proxy builds without the simulator (`--no-default-features`).
# This is the command the README and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p pvegate --no-default-features --lib --bins --quiet -- -D warnings
cargo test --workspace --all-targets
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
