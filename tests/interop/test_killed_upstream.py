"""Failure isolation: when an upstream dies, only the calls routed to it fail, with an error that
names it, while every other upstream keeps serving (both eras)."""

from __future__ import annotations

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from conftest import MODES, Gateway, mcp_error_in, text_of

pytestmark = pytest.mark.anyio


async def call_error(gateway: Gateway, mode: str, tool: str, arguments: dict) -> str:
    """The error text of a call that must fail: a JSON-RPC error or an isError result."""
    async with gateway.client("/mcp", mode) as client:
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as err:
            return f"{err.error.code}: {err.error.message} {err.error.data or ''}"
    assert result.is_error, f"{tool} succeeded although its upstream is dead: {text_of(result)}"
    return text_of(result)


async def test_killed_http_upstream_fails_alone(gateway: Gateway) -> None:
    for mode in MODES:
        async with gateway.client("/mcp", mode) as client:
            assert "42" in text_of(await client.call_tool("pyhttp__add", {"a": 40, "b": 2}))

    gateway.procs["pyhttp"].kill_hard()

    for mode in MODES:
        message = await call_error(gateway, mode, "pyhttp__add", {"a": 1, "b": 1})
        assert "pyhttp" in message, f"the error does not name the dead server: {message!r}"

        async with gateway.client("/mcp", mode) as client:
            echoed = await client.call_tool("everything__echo", {"message": "still alive"})
            assert "still alive" in text_of(echoed)
            added = await client.call_tool("pystdio__add", {"a": 2, "b": 2})
            assert "4" in text_of(added)
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "everything__echo" in names, "tools/list broke because one upstream died"

    try:
        async with gateway.client("/mcp/pyhttp", "legacy") as client:
            result = await client.call_tool("add", {"a": 1, "b": 1})
    except Exception as exc:  # the SDK wraps errors raised during connect in an ExceptionGroup
        err = mcp_error_in(exc)
        if err is None:
            raise
        message = err.error.message
    else:
        assert result.is_error, "a call to the dead upstream succeeded"
        message = text_of(result)
    assert "pyhttp" in message, f"the error does not name the dead server: {message!r}"

    assert gateway.procs["moat"].alive(), "moat died with its upstream"
    assert httpx2.get(gateway.url("/healthz"), timeout=5.0).status_code == 200
