"""Credential injection through moat with the real SDK client: a credential stored with
`moat credential set` (value on stdin) reaches the upstream process as an environment variable
(server-everything's `get-env` lists it), and the value the upstream echoes back is redacted before
the client sees it, in both protocol eras and over the legacy HTTP+SSE transport."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid

import pytest

from conftest import MODES, Gateway, text_of
from harness import child_env, moat_bin

pytestmark = pytest.mark.anyio

SECRET = f"moat-interop-{uuid.uuid4().hex}"


def moat_cli(gateway: Gateway, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = child_env() | {"MOAT_URL": gateway.base, "MOAT_API_KEY": gateway.key}
    return subprocess.run(
        [str(moat_bin()), *args], input=stdin, env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture(scope="module")
def stored(gateway: Gateway) -> str:
    run = moat_cli(
        gateway, "credential", "set", "--server", "everything", "--scope", "personal", "--env", "IT_VENDOR_TOKEN",
        stdin=SECRET + "\n",
    )
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    listed = moat_cli(gateway, "credential", "list", "--json")
    assert listed.returncode == 0 and SECRET not in listed.stdout, listed.stderr
    return run.stdout.strip()


@pytest.mark.parametrize("mode", MODES)
async def test_injected_env_is_used_and_its_echo_redacted(gateway: Gateway, stored: str, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        result = await client.call_tool("everything__get-env", {})
    text = text_of(result)
    assert "IT_VENDOR_TOKEN" in text, "the credential reached the upstream's environment"
    assert SECRET not in text and base64.b64encode(SECRET.encode()).decode() not in text
    assert "[REDACTED]" in text


async def test_legacy_sse_transport_is_redacted_too(gateway: Gateway, stored: str) -> None:
    async with gateway.sse_client("/sse/everything") as client:
        result = await client.call_tool("get-env", {})
    text = text_of(result)
    assert "IT_VENDOR_TOKEN" in text and SECRET not in text and "[REDACTED]" in text


async def test_no_log_or_audit_record_holds_the_value(gateway: Gateway, stored: str) -> None:
    deadline = time.monotonic() + 10  # the audit trail is written in the background
    while True:
        audit = moat_cli(gateway, "audit", "list", "--json", "--limit", "500")
        assert audit.returncode == 0, audit.stderr
        if "credential.use" in audit.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "credential.store" in audit.stdout and "credential.use" in audit.stdout
    assert SECRET not in audit.stdout
    assert SECRET not in gateway.logs()
