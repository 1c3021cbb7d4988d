"""Helpers for the OAuth 2.1 authorization-server tests (test_oauth.py).

`start_oauth_gateway()` runs a `moat serve` of its own with an `[oauth]` section (and optionally
the upstreams `everything` and `pyhttp`, and an OpenID Provider from oidc.py set as the default
tenant's identity provider, so humans can log in). `OAuthGateway.cli()` runs admin commands
against it with the owner key; the small functions below build and check OAuth requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from harness import (
    EVERYTHING,
    FIXTURES,
    NODE22,
    PYTHON,
    Proc,
    child_env,
    free_port,
    moat_bin,
    moat_init,
    moat_serve,
    toml_array,
    toml_string,
    wait_for_port,
)
from oidc import OidcProvider, oidc_provider

MCP_SCOPES = "mcp:tools mcp:resources mcp:prompts"
IDP_CLIENT_ID = "moat"
ACCOUNTS = {
    "alice": {"sub": "alice-sub", "email": "alice@example.com", "name": "Alice", "groups": ["admins"]},
    "bob": {"sub": "bob-sub", "email": "bob@example.com", "name": "Bob", "groups": []},
}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return toml_array([str(v) for v in value])
    return toml_string(str(value))


@dataclass
class OAuthGateway:
    """A running `moat serve` with an [oauth] section, its owner key and what runs beside it."""

    base: str
    key: str
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    op: OidcProvider | None = None
    stack: ExitStack = field(default_factory=ExitStack)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.base

    def url(self, path: str = "/mcp") -> str:
        return f"{self.base}{path}"

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`moat ARGS…` against this gateway with the owner key."""
        env = {**child_env(), "MOAT_URL": self.base, "MOAT_API_KEY": self.key}
        done = subprocess.run(
            [str(moat_bin()), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"moat {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def create_client(
        self,
        name: str,
        kind: str = "service",
        redirect_uris: list[str] = (),  # type: ignore[assignment]
        scopes: list[str] = (),  # type: ignore[assignment]
        origins: list[str] = (),  # type: ignore[assignment]
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """`moat client create … --json`: {"client": {...}, "client_id": ..., "client_secret": ...}."""
        args = ["client", "create", "--name", name, "--kind", kind]
        for uri in redirect_uris:
            args += ["--redirect-uri", uri]
        for scope in scopes:
            args += ["--scope", scope]
        for origin in origins:
            args += ["--allowed-origin", origin]
        if tenant:
            args += ["--tenant", tenant]
        return self.cli_json(*args)

    def logs(self) -> str:
        parts = [f"--- {name} ({proc.log})\n{proc.tail()}" for name, proc in self.procs.items()]
        if self.op is not None:
            parts.append(f"--- oidc-provider\n{self.op.logs()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if "moat" in self.procs:
            self.procs["moat"].stop()
        for name, proc in self.procs.items():
            if name != "moat":
                proc.stop()
        self.stack.close()


def start_oauth_gateway(
    workdir: Path,
    oauth: dict[str, Any],
    upstreams: bool = True,
    idp: bool = False,
    top: dict[str, Any] | None = None,
) -> OAuthGateway:
    """A gateway with `[oauth]` = `oauth` (allow_private_urls is always on: the IdP is on loopback);
    `upstreams`: `everything` (stdio) and `pyhttp` (Streamable HTTP); `idp`: an oidc-provider as the
    default tenant's identity provider, with the accounts alice (group admins) and bob."""
    binary = moat_bin()
    if not binary.is_file():
        raise RuntimeError(f"moat binary not found at {binary}: set MOAT_BIN")
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    key = moat_init(binary, data_dir)
    gw = OAuthGateway(base="", key=key, workdir=workdir)
    try:
        lines = [f"{k} = {_toml_value(v)}" for k, v in (top or {}).items()]
        if upstreams:
            py_port = free_port()
            gw.procs["pyhttp"] = Proc.start(
                "pyhttp", [str(PYTHON), str(FIXTURES / "py_server.py"), "http", str(py_port)], workdir / "pyhttp.log"
            )
            wait_for_port(gw.procs["pyhttp"], py_port)
            lines += [
                "[[servers]]",
                'name = "everything"',
                'tenant = "default"',
                'transport = "stdio"',
                f"command = {toml_array([str(NODE22), str(EVERYTHING), 'stdio'])}",
                "[[servers]]",
                'name = "pyhttp"',
                'tenant = "default"',
                'transport = "streamable-http"',
                f"url = {toml_string(f'http://127.0.0.1:{py_port}/mcp')}",
            ]
        lines.append("[oauth]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in {"allow_private_urls": True, **oauth}.items()]
        config = workdir / "moat.toml"
        config.write_text("\n".join(lines) + "\n")
        gw.procs["moat"], gw.base = moat_serve(binary, data_dir, config, workdir)
        if idp:
            secret = "idp-secret-" + secrets.token_hex(12)
            gw.op = gw.stack.enter_context(
                oidc_provider(
                    clients=[
                        {
                            "client_id": IDP_CLIENT_ID,
                            "client_secret": secret,
                            "redirect_uris": [f"{gw.base}/oauth/callback"],
                        }
                    ],
                    accounts=ACCOUNTS,
                    auto_consent=True,  # the IdP's own consent is not under test; moat's is
                )
            )
            gw.cli(
                "identity",
                "set-idp",
                "--issuer",
                gw.op.issuer,
                "--client-id",
                IDP_CLIENT_ID,
                "--client-secret-stdin",
                "--scopes",
                "openid email profile groups",
                "--admin-group",
                "admins",
                stdin=secret + "\n",
            )
    except BaseException:
        gw.stop()
        raise
    return gw


# ---------------------------------------------------------------- OAuth requests


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_url(gw: OAuthGateway, client_id: str, redirect_uri: str, **params: str | None) -> tuple[str, str, str]:
    """An authorization URL with PKCE S256 and a state (override or drop any parameter with None);
    returns (url, verifier, state)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    query: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": MCP_SCOPES,
        "resource": f"{gw.base}/mcp",
        **params,
    }
    clean = {k: v for k, v in query.items() if v is not None}
    return f"{gw.base}/oauth/authorize?{urlencode(clean)}", verifier, state


def query_of(url: str) -> dict[str, str]:
    """The query of a redirect, one value per name (a repeated one fails the test)."""
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name, values in parsed.items():
        assert len(values) == 1, f"{name} repeated in {url}"
    return {name: values[0] for name, values in parsed.items()}


def token_request(
    gw: OAuthGateway, data: dict[str, str], auth: tuple[str, str] | None = None, path: str = "/oauth/token"
) -> httpx2.Response:
    return httpx2.post(gw.url(path), data=data, auth=auth, timeout=30.0)


def exchange_code(
    gw: OAuthGateway,
    client_id: str,
    code: str,
    verifier: str,
    redirect_uri: str,
    secret: str | None = None,
    resource: str | None = None,
) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri}
    if resource:
        data["resource"] = resource
    if secret is None:
        data["client_id"] = client_id
        return token_request(gw, data)
    return token_request(gw, data, auth=(client_id, secret))


def refresh(gw: OAuthGateway, client_id: str, refresh_token: str, secret: str | None = None) -> httpx2.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if secret is None:
        data["client_id"] = client_id
        return token_request(gw, data)
    return token_request(gw, data, auth=(client_id, secret))


def client_credentials(
    gw: OAuthGateway, client_id: str, secret: str, resource: str | None = None, scope: str | None = None
) -> httpx2.Response:
    data = {"grant_type": "client_credentials"}
    if resource:
        data["resource"] = resource
    if scope:
        data["scope"] = scope
    return token_request(gw, data, auth=(client_id, secret))


def access_token(response: httpx2.Response) -> str:
    assert response.status_code == 200, f"token request: HTTP {response.status_code} {response.text[:400]}"
    assert "no-store" in response.headers.get("cache-control", ""), response.headers
    body = response.json()
    assert body["token_type"].lower() == "bearer", body
    return str(body["access_token"])


def oauth_error(response: httpx2.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, (
        f"expected {status} {error}: HTTP {response.status_code} {response.text[:400]}"
    )
    body = response.json()
    assert body.get("error") == error, body
    return body


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS, unverified."""

    def part(segment: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    header, payload, _ = token.split(".")
    return part(header), part(payload)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def mcp_post(
    gw: OAuthGateway, token: str | None, path: str = "/mcp", headers: dict[str, str] | None = None
) -> httpx2.Response:
    """One `initialize` POST with a bearer token: 200 when the token is accepted for `path`."""
    merged = {**MCP_HEADERS, **(headers or {})}
    if token is not None:
        merged["Authorization"] = f"Bearer {token}"
    return httpx2.post(gw.url(path), json=INIT, headers=merged, timeout=30.0)


def assert_accepted(response: httpx2.Response, what: str = "") -> None:
    assert response.status_code == 200, f"{what}: HTTP {response.status_code} {response.text[:300]}"


def assert_invalid_token(gw: OAuthGateway, response: httpx2.Response, path: str = "/mcp", what: str = "") -> None:
    """401 with the RFC 9728 / RFC 6750 challenge, error=invalid_token."""
    assert response.status_code == 401, f"{what}: HTTP {response.status_code} {response.text[:300]}"
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    found = re.search(r'resource_metadata="([^"]+)"', challenge)
    assert found and found.group(1) == f"{gw.base}/.well-known/oauth-protected-resource{path}", challenge
    assert 'error="invalid_token"' in challenge, challenge


@asynccontextmanager
async def mcp_client(
    gw: OAuthGateway, token: str, path: str = "/mcp", mode: str = "legacy", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An SDK `Client` over Streamable HTTP with `Authorization: Bearer <token>`."""
    timeout = httpx2.Timeout(30.0, read=60.0)
    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}", **(headers or {})}, timeout=timeout
    ) as http:
        transport = streamable_http_client(gw.url(path), http_client=http)
        async with Client(transport, mode=mode, cache=None, read_timeout_seconds=60) as client:
            yield client
