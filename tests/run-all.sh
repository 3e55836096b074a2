#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests (including the client suites and
# the schema coverage test), and the doc build. This is the command the README and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
