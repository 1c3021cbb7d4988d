"""Who may talk to moat: 401 without or with a bad key, 403 for a foreign Origin or Host,
and the per-server anonymous opt-in (`allow_anonymous`) that reaches one server only."""

from __future__ import annotations

import re

import httpx2
import pytest

from conftest import Gateway, parse_jsonrpc_body

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}},
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
BAD_CREDENTIALS = [
    "Bearer moat_" + "A" * 52,  # the shape of a key, but no such key
    "Bearer not-a-moat-key",
    "Bearer",  # the scheme without a token
]


def assert_challenge(response: httpx2.Response, gateway: Gateway) -> None:
    assert response.status_code == 401, f"HTTP {response.status_code} {response.text[:300]}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), f"WWW-Authenticate: {challenge!r}"
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found, f"WWW-Authenticate lacks resource_metadata: {challenge!r}"
    assert found.group(1).startswith(f"{gateway.base}/.well-known/oauth-protected-resource"), found.group(1)


@pytest.mark.parametrize("path", ["/mcp", "/mcp/pyhttp", "/mcp/everything"])
def test_401_without_key(gateway: Gateway, path: str) -> None:
    response = httpx2.post(gateway.url(path), json=INIT, headers=ACCEPT, timeout=30.0)
    assert_challenge(response, gateway)


@pytest.mark.parametrize("credential", BAD_CREDENTIALS, ids=["unknown-moat-key", "garbage", "empty"])
@pytest.mark.parametrize("path", ["/mcp", "/mcp/pyhttp"])
def test_401_with_bad_key(gateway: Gateway, path: str, credential: str) -> None:
    headers = {**ACCEPT, "Authorization": credential}
    response = httpx2.post(gateway.url(path), json=INIT, headers=headers, timeout=30.0)
    assert_challenge(response, gateway)


def test_401_on_legacy_sse_without_key(gateway: Gateway) -> None:
    with httpx2.stream("GET", gateway.url("/sse"), headers={"Accept": "text/event-stream"}, timeout=30.0) as response:
        assert_challenge(response, gateway)


def test_401_with_a_valid_key_in_the_wrong_scheme(gateway: Gateway) -> None:
    headers = {**ACCEPT, "Authorization": f"Basic {gateway.key}"}
    response = httpx2.post(gateway.url("/mcp"), json=INIT, headers=headers, timeout=30.0)
    assert_challenge(response, gateway)


def test_valid_key_is_accepted(gateway: Gateway) -> None:
    response = httpx2.post(gateway.url("/mcp"), json=INIT, headers={**ACCEPT, **gateway.auth()}, timeout=30.0)
    assert response.status_code == 200, f"HTTP {response.status_code} {response.text[:300]}"
    (message,) = parse_jsonrpc_body(response)
    assert "result" in message, message


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1.evil.example", "null"])
def test_403_for_foreign_origin(gateway: Gateway, origin: str) -> None:
    headers = {**ACCEPT, **gateway.auth(), "Origin": origin}
    response = httpx2.post(gateway.url("/mcp"), json=INIT, headers=headers, timeout=30.0)
    assert response.status_code == 403, f"Origin {origin}: HTTP {response.status_code} {response.text[:300]}"


def test_403_for_foreign_origin_even_on_anonymous_server(gateway: Gateway) -> None:
    headers = {**ACCEPT, "Origin": "http://evil.example"}
    response = httpx2.post(gateway.url("/mcp/pyanon"), json=INIT, headers=headers, timeout=30.0)
    assert response.status_code == 403, f"HTTP {response.status_code} {response.text[:300]}"


def test_403_for_foreign_host(gateway: Gateway) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    port = gateway.base.rsplit(":", 1)[1]
    headers = {**ACCEPT, **gateway.auth(), "Host": f"evil.example:{port}"}
    response = httpx2.post(gateway.url("/mcp"), json=INIT, headers=headers, timeout=30.0)
    assert response.status_code in (403, 421), f"Host evil.example: HTTP {response.status_code} {response.text[:300]}"


@pytest.mark.parametrize("own", ["{base}", "http://localhost:{port}"])
def test_own_origin_is_allowed(gateway: Gateway, own: str) -> None:
    port = gateway.base.rsplit(":", 1)[1]
    origin = own.format(base=gateway.base, port=port)
    headers = {**ACCEPT, **gateway.auth(), "Origin": origin}
    response = httpx2.post(gateway.url("/mcp"), json=INIT, headers=headers, timeout=30.0)
    assert response.status_code == 200, f"Origin {origin}: HTTP {response.status_code} {response.text[:300]}"


def test_anonymous_server_needs_no_key(gateway: Gateway) -> None:
    response = httpx2.post(gateway.url("/mcp/pyanon"), json=INIT, headers=ACCEPT, timeout=30.0)
    assert response.status_code == 200, f"HTTP {response.status_code} {response.text[:300]}"
    (message,) = parse_jsonrpc_body(response)
    assert "result" in message, message


def test_anonymous_opt_in_does_not_open_the_aggregate(gateway: Gateway) -> None:
    """allow_anonymous opens /mcp/pyanon only: the aggregate and other servers still want a key."""
    for path in ("/mcp", "/mcp/pystdio"):
        response = httpx2.post(gateway.url(path), json=INIT, headers=ACCEPT, timeout=30.0)
        assert_challenge(response, gateway)
