"""Progress notifications of a long-running upstream call reach the client through moat."""

from __future__ import annotations

import pytest

from conftest import MODES, Gateway, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool", ["pyhttp__slow_progress", "pystdio__slow_progress"])
async def test_progress_from_python_upstream(gateway: Gateway, mode: str, tool: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with gateway.client("/mcp", mode) as client:
        result = await client.call_tool(tool, {"steps": 4, "delay_ms": 150}, progress_callback=on_progress)
    assert text_of(result) == "finished 4 steps"
    assert [progress for progress, _, _ in seen] == [1, 2, 3, 4], f"progress seen: {seen}"
    assert all(total == 4 for _, total, _ in seen)


@pytest.mark.parametrize("mode", MODES)
async def test_progress_from_server_everything(gateway: Gateway, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with gateway.client("/mcp", mode) as client:
        result = await client.call_tool(
            "everything__trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    assert len(seen) >= 3 and seen == sorted(seen), f"progress seen: {seen}"
