"""Tools through moat, in both protocol eras: listing (aggregated and per server), calls, pagination."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from conftest import MODES, PY_TOOLS, Gateway, all_tools, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_aggregated_list_prefixes_every_upstream(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        names, _pages = await all_tools(client)
    assert len(names) == len(set(names)), f"duplicate tool names in the aggregated listing: {sorted(names)}"
    assert "everything__echo" in names
    for server in ("pyhttp", "pystdio"):
        missing = {f"{server}__{tool}" for tool in PY_TOOLS} - set(names)
        assert not missing, f"/mcp ({mode}) lacks {sorted(missing)} (every page of {server} must be merged)"
    unprefixed = [name for name in names if "__" not in name]
    assert not unprefixed, f"unprefixed names on /mcp: {unprefixed}"


@pytest.mark.parametrize("mode", MODES)
async def test_single_server_endpoint_lists_unprefixed(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp/everything", mode) as client:
        names, _ = await all_tools(client)
    assert "echo" in names and not any("__" in name for name in names), names

    async with gateway.client("/mcp/pystdio", mode) as client:
        names, _ = await all_tools(client)
    assert set(names) == PY_TOOLS


@pytest.mark.parametrize("mode", MODES)
async def test_pagination_passes_a_real_cursor(gateway: Gateway, mode: str) -> None:
    """py_server lists 15 tools, 5 a page: the client must follow nextCursor through moat and get all."""
    async with gateway.client("/mcp/pyhttp", mode) as client:
        first = await client.list_tools()
        names, pages = await all_tools(client)
    assert first.next_cursor, "the first page through /mcp/pyhttp carries no nextCursor: pagination was lost"
    assert pages >= 2
    assert sorted(names) == sorted(PY_TOOLS), f"after {pages} page(s): {sorted(names)}"


@pytest.mark.parametrize("mode", MODES)
async def test_call_tools_of_every_upstream(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        echoed = await client.call_tool("everything__echo", {"message": "hello through moat"})
        assert not echoed.is_error, text_of(echoed)
        assert "hello through moat" in text_of(echoed)

        for server, transport in (("pyhttp", "http"), ("pystdio", "stdio")):
            added = await client.call_tool(f"{server}__add", {"a": 2, "b": 40})
            assert not added.is_error, text_of(added)
            assert "42" in text_of(added)
            assert added.structured_content in (None, {"result": 42})
            which = await client.call_tool(f"{server}__transport", {})
            assert text_of(which) == f"py_server over {transport}"


@pytest.mark.parametrize("mode", MODES)
async def test_call_on_single_server_endpoint(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp/pyhttp", mode) as client:
        added = await client.call_tool("add", {"a": 20, "b": 22})
        assert "42" in text_of(added)
    async with gateway.client("/mcp/everything", mode) as client:
        echoed = await client.call_tool("echo", {"message": "direct"})
        assert "direct" in text_of(echoed)


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_tool_is_an_error_not_a_crash(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        try:
            result = await client.call_tool("nosuchserver__nosuchtool", {})
        except MCPError as err:
            assert err.error.message
        else:
            assert result.is_error, "calling an unknown tool must fail"
        echoed = await client.call_tool("everything__echo", {"message": "still here"})
        assert "still here" in text_of(echoed)
