"""The legacy HTTP+SSE transport (GET /sse, POST /messages?sessionId=…) with the SDK's sse_client."""

from __future__ import annotations

import pytest

from conftest import PY_TOOLS, Gateway, all_tools, text_of

pytestmark = pytest.mark.anyio


async def test_sse_lists_aggregated_tools(gateway: Gateway) -> None:
    async with gateway.sse_client("/sse") as client:
        names, _ = await all_tools(client)
    assert "everything__echo" in names
    assert {f"pyhttp__{tool}" for tool in PY_TOOLS} <= set(names), sorted(names)


async def test_sse_calls_tools(gateway: Gateway) -> None:
    async with gateway.sse_client("/sse") as client:
        echoed = await client.call_tool("everything__echo", {"message": "over sse"})
        assert "over sse" in text_of(echoed)
        added = await client.call_tool("pystdio__add", {"a": 1, "b": 2})
        assert "3" in text_of(added)


async def test_sse_progress(gateway: Gateway) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with gateway.sse_client("/sse") as client:
        result = await client.call_tool(
            "pyhttp__slow_progress", {"steps": 3, "delay_ms": 100}, progress_callback=on_progress
        )
    assert text_of(result) == "finished 3 steps"
    assert seen == [1, 2, 3], seen
