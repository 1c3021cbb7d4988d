"""Cancellation is relayed: a client that gives up on a call makes moat cancel it upstream
(notifications/cancelled on 2025-11-25; an aborted request on 2026-07-28)."""

from __future__ import annotations

import uuid

import anyio
import pytest

from conftest import MODES, Gateway

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", ["pyhttp", "pystdio"])
async def test_cancelled_call_is_cancelled_upstream(gateway: Gateway, mode: str, server: str) -> None:
    label = f"{server}-{mode}-{uuid.uuid4().hex[:8]}"
    async with gateway.client("/mcp", mode) as client:
        # Warm up first: the point is that a cancel reaches a running call, not how long a first
        # call takes to start the upstream (a legacy session may need its own legacy connection).
        await client.call_tool(f"{server}__cancelled_calls", {})
        with anyio.move_on_after(1.5) as scope:
            await client.call_tool(f"{server}__wait_for_cancel", {"label": label, "seconds": 30})
        assert scope.cancelled_caught, "the 30-second call returned early"

        seen: list[str] = []
        with anyio.move_on_after(10):
            while label not in seen:
                result = await client.call_tool(f"{server}__cancelled_calls", {})
                seen = (result.structured_content or {}).get("result", [])
                await anyio.sleep(0.2)
    assert label in seen, f"{server} never saw the call {label} cancelled (it saw {seen})"
