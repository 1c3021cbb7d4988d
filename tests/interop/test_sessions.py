"""The 2025-11-25 session lifecycle on moat's own endpoint, and the stateless 2026-07-28 entry.

Raw HTTP, because the SDK hides the session id and never reuses one after DELETE.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from conftest import Gateway, parse_jsonrpc_body

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


def post(gateway: Gateway, path: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
    return httpx2.post(
        gateway.url(path),
        json=body,
        headers={**gateway.auth(), "Accept": ACCEPT, "Content-Type": "application/json", **headers},
        timeout=30.0,
    )


def initialize(gateway: Gateway, path: str = "/mcp") -> str:
    response = post(
        gateway,
        path,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "moat-interop", "version": "1.0.0"},
            },
        },
    )
    assert response.status_code == 200, f"initialize: HTTP {response.status_code} {response.text[:300]}"
    session = response.headers.get("mcp-session-id")
    assert session, f"initialize answered without Mcp-Session-Id (headers: {dict(response.headers)})"
    assert all(0x21 <= ord(char) <= 0x7E for char in session), f"session id has invisible characters: {session!r}"
    (message,) = parse_jsonrpc_body(response)
    assert message["result"]["protocolVersion"] == LEGACY, message

    notified = post(
        gateway,
        path,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        **{"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY},
    )
    assert notified.status_code == 202, f"notifications/initialized: HTTP {notified.status_code} {notified.text[:300]}"
    return session


def list_tools(gateway: Gateway, session: str, path: str = "/mcp", request_id: int = 2) -> httpx2.Response:
    return post(
        gateway,
        path,
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {}},
        **{"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY},
    )


@pytest.mark.parametrize("path", ["/mcp", "/mcp/pyhttp"])
def test_delete_ends_the_session_and_later_requests_get_404(gateway: Gateway, path: str) -> None:
    session = initialize(gateway, path)

    listed = list_tools(gateway, session, path)
    assert listed.status_code == 200, f"tools/list in a live session: HTTP {listed.status_code} {listed.text[:300]}"
    (message,) = [m for m in parse_jsonrpc_body(listed) if m.get("id") == 2]
    assert message["result"]["tools"], message

    deleted = httpx2.delete(
        gateway.url(path),
        headers={**gateway.auth(), "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY},
        timeout=30.0,
    )
    assert 200 <= deleted.status_code < 300, f"DELETE {path}: HTTP {deleted.status_code} {deleted.text[:300]}"

    again = list_tools(gateway, session, path, request_id=3)
    assert again.status_code == 404, f"request with the ended session id {session!r}: HTTP {again.status_code}"


def test_unknown_session_id_gets_404(gateway: Gateway) -> None:
    response = list_tools(gateway, "no-such-session-0123456789")
    assert response.status_code == 404, f"HTTP {response.status_code} {response.text[:300]}"


def test_get_stream_of_a_session(gateway: Gateway) -> None:
    session = initialize(gateway)
    headers = {
        **gateway.auth(),
        "Accept": "text/event-stream",
        "Mcp-Session-Id": session,
        "MCP-Protocol-Version": LEGACY,
    }
    with httpx2.stream("GET", gateway.url("/mcp"), headers=headers, timeout=10.0) as response:
        # 405 is the spec's answer for a server that offers no GET stream; moat offers one.
        assert response.status_code == 200, f"GET /mcp: HTTP {response.status_code}"
        assert response.headers.get("content-type", "").startswith("text/event-stream")


def test_stateless_discover(gateway: Gateway) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "moat-interop", "version": "1.0.0"},
    }
    response = post(
        gateway,
        "/mcp",
        {"jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": {"_meta": meta}},
        **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"},
    )
    assert response.status_code == 200, f"server/discover: HTTP {response.status_code} {response.text[:300]}"
    assert "mcp-session-id" not in response.headers, "a 2026-07-28 request must not open a session"
    (message,) = parse_jsonrpc_body(response)
    assert message["id"] == 7
    assert MODERN in message["result"]["supportedVersions"], message


def test_stateless_unknown_method_is_404(gateway: Gateway) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    response = post(
        gateway,
        "/mcp",
        {"jsonrpc": "2.0", "id": 8, "method": "no/such-method", "params": {"_meta": meta}},
        **{"MCP-Protocol-Version": MODERN, "Mcp-Method": "no/such-method"},
    )
    assert response.status_code == 404, f"HTTP {response.status_code} {response.text[:300]}"
    (message,) = parse_jsonrpc_body(response)
    assert message["error"]["code"] == -32601 and message["id"] == 8, message
