"""Server-to-client requests (sampling, elicitation) that a legacy upstream makes mid-call reach the
client through moat: relayed on the call's own stream in a 2025-11-25 session, and bridged as
input_required rounds (MRTR) for a 2026-07-28 client, whose retry resumes the parked upstream call.
server-everything speaks 2025-11-25 only, so the 2026-07-28 case exercises the bridge."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import types

from conftest import MODES, Gateway, mcp_error_in, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_reaches_the_client(gateway: Gateway, mode: str) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async with gateway.client("/mcp", mode, elicitation_callback=on_elicit) as client:
        result = await client.call_tool("everything__trigger-elicitation-request", {})
    assert len(asked) == 1 and "Please provide inputs" in asked[0], asked
    assert not result.is_error, text_of(result)
    assert "Ada Lovelace" in text_of(result)


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_reaches_the_client(gateway: Gateway, mode: str) -> None:
    prompts: list[Any] = []

    async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        prompts.append(params.messages)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-answer-42"),
            model="interop-model",
            stop_reason="endTurn",
        )

    async with gateway.client("/mcp", mode, sampling_callback=on_sample) as client:
        result = await client.call_tool("everything__trigger-sampling-request", {"prompt": "hello", "maxTokens": 10})
    assert len(prompts) == 1, prompts
    assert not result.is_error, text_of(result)
    assert "sampled-answer-42" in text_of(result)


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_capability_gets_a_clean_failure(gateway: Gateway, mode: str) -> None:
    # No elicitation callback: the client declares no elicitation capability, so moat refuses the
    # upstream's request instead of sending it, and the call ends (it must not hang).
    async with gateway.client("/mcp", mode) as client:
        try:
            result = await client.call_tool("everything__trigger-elicitation-request", {})
        except Exception as exc:  # noqa: BLE001 - either shape of failure is acceptable
            assert mcp_error_in(exc) is not None, repr(exc)
            return
    assert result.is_error, text_of(result)
