#!/usr/bin/env bash
# The interop suite: the real moat binary between real MCP peers.
#   1. setup.sh           installs the pinned peers (fast when already installed)
#   2. pytest             the Python SDK client talks through moat to server-everything and py_server
#   3. conformance.py     the official conformance suite, directly against the fixture and through moat
# The binary is $MOAT_BIN, else $CARGO_TARGET_DIR/release/moat, else target/release/moat.
# Exits non-zero when any part fails; runs every part regardless, so one report shows everything.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ -z "${MOAT_BIN:-}" ]]; then
    MOAT_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/moat"
fi
export MOAT_BIN
if [[ ! -x "$MOAT_BIN" ]]; then
    echo "run.sh: no moat binary at $MOAT_BIN (cargo build --release -p moat, or set MOAT_BIN)" >&2
    exit 1
fi

bash "$here/setup.sh"
python="$here/.venv/bin/python"

status=0
echo "== interop: pytest (moat at $MOAT_BIN)"
"$python" -m pytest -q --tb=short "$here" </dev/null || status=$?
if [[ $status -ne 0 ]]; then
    echo "run.sh: pytest failed (exit $status)" >&2
fi

echo "== interop: MCP conformance suite"
if ! "$python" "$here/conformance.py" --moat "$MOAT_BIN" </dev/null; then
    echo "run.sh: conformance failed" >&2
    status=1
fi
exit "$status"
