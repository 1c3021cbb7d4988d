#!/usr/bin/env bash
# Builds release `moat`, `moat-bench` and `bench-upstream`, then runs
# `moat-bench run` with the given arguments (see `moat-bench run --help`):
# it starts bench-upstream and a throw-away moat in a temporary directory,
# measures the upstream directly, through bench-proxy (a bare proxy: the
# floor) and through moat, and stops them all.
#
#   crates/moat-bench/run.sh --clients 64 --rate 2000 --duration 20 --warmup 5
#   crates/moat-bench/run.sh --clients 64 --duration 20 --json-out max.json   # closed loop
#
# CARGO_TARGET_DIR is honoured (default: ./target).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
# Two invocations, so that moat is built with exactly its own features.
cargo build --release -p moat
cargo build --release -p moat-bench
exec "$target/release/moat-bench" run --moat "$target/release/moat" --upstream "$target/release/bench-upstream" "$@"
