#!/bin/sh
# Cargo `runner` for the QEMU suites (see .cargo/config.toml):
#   qemu/runner.sh <machine> <elf> [test-name filter]
# Builds (once) and runs qemu/runner, a front end to xtask/src/qemu.rs.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
exec cargo run --quiet --manifest-path "$root/qemu/runner/Cargo.toml" -- "$@"
