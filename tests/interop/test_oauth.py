"""moat's OAuth 2.1 authorization server, driven by real clients.

Peers: authlib (client credentials, authorization code + PKCE, refresh), the MCP Python SDK's
`OAuthClientProvider` (discovery, dynamic registration, PKCE, refresh), PyJWT + cryptography
(JWKS verification, forged tokens), a real OpenID Provider (oidc.py, `oidc-provider` on Node 22)
that humans log in at, the scripted browser (browser.py) and the official MCP conformance
suite's authorization-server scenarios.

Gateways, one each per module (see oauth_support.py):
    gw        RS256; upstreams `everything` and `pyhttp`; the OpenID Provider as the default
              tenant's IdP (alice in group admins -> admin; bob -> member); two origins allowed
              in the config for the origin-binding test; a tenant `acme` once `acme` is used.
    ec_gw     ES256, access tokens of 10 s, no upstreams; issues a token when it starts, which
              test_expired_token_is_refused (the last test) checks once it has expired.
    limits_gw failures_per_minute = 3 and dynamic_registration = false.
The failure budget is per source address: the rate-limit tests send their failures from 127.0.0.2
and 127.0.0.3 (loopback too) so that the owner's CLI on 127.0.0.1 keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from browser import Browser, parse_forms
from conftest import mcp_error_in, text_of
from harness import INTEROP, NODE22, Proc, free_port
from oauth_support import (
    MCP_HEADERS,
    MCP_SCOPES,
    OAuthGateway,
    access_token,
    assert_accepted,
    assert_invalid_token,
    authorize_url,
    b64url,
    client_credentials,
    exchange_code,
    jwt_parts,
    mcp_client,
    mcp_post,
    oauth_error,
    query_of,
    refresh,
    start_oauth_gateway,
    token_request,
)

pytestmark = pytest.mark.timeout(120)

APP_A = "http://app-a.example"
APP_B = "http://app-b.example"
CONFORMANCE = INTEROP / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
CODE_TTL_S = 3
REGISTRATIONS_PER_HOUR = 5
REQUESTS_PER_MINUTE = 20  # a burst of 20/4 + 1 = 6
LEEWAY_S = 30
"""Clock-skew leeway moat allows on `exp` (crates/moat-gateway/src/identity/service.rs, LEEWAY_S)."""


# ---------------------------------------------------------------- gateways and clients


@pytest.fixture(scope="module")
def workroot() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="moat-interop-oauth-"))
    yield root
    if os.environ.get("MOAT_INTEROP_KEEP") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gw(workroot: Path) -> Iterator[OAuthGateway]:
    gateway = start_oauth_gateway(
        workroot / "main",
        # Short codes, so that test_expired_code_is_invalid_grant waits 3.5 s instead of 60 s.
        {"failures_per_minute": 100000, "requests_per_minute": 100000, "code_ttl_s": CODE_TTL_S},
        upstreams=True,
        idp=True,
        top={"allowed_origins": [APP_A, APP_B]},
    )
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def ec_gw(workroot: Path) -> Iterator[OAuthGateway]:
    gateway = start_oauth_gateway(
        workroot / "ec",
        {"signing_alg": "ES256", "access_token_ttl_s": 10, "registrations_per_hour": REGISTRATIONS_PER_HOUR},
        upstreams=False,
    )
    try:
        client = gateway.create_client("expiring")
        token = access_token(client_credentials(gateway, client["client_id"], client["client_secret"]))
        gateway.extra["expiring"] = token
        gateway.extra["expiring_client"] = client
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def limits_gw(workroot: Path) -> Iterator[OAuthGateway]:
    gateway = start_oauth_gateway(
        workroot / "limits",
        {"failures_per_minute": 3, "dynamic_registration": False, "requests_per_minute": REQUESTS_PER_MINUTE},
        upstreams=False,
    )
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def svc(gw: OAuthGateway) -> dict[str, Any]:
    """A service client of the default tenant (client credentials)."""
    return gw.create_client("ci-bot")


@pytest.fixture(scope="module")
def acme(gw: OAuthGateway) -> dict[str, Any]:
    """Tenant `acme` with a service client of its own."""
    gw.cli("tenant", "create", "acme")
    client = gw.create_client("acme-bot", tenant="acme")
    client["tid"] = client["client"]["tenant_id"]
    return client


@pytest.fixture(scope="module")
def app(gw: OAuthGateway) -> dict[str, Any]:
    """An admin-created public client (code + PKCE) with a loopback redirect URI."""
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    client = gw.create_client("desktop-app", kind="public", redirect_uris=[redirect])
    client["redirect_uri"] = redirect
    return client


def metadata(gw: OAuthGateway) -> dict[str, Any]:
    response = httpx2.get(gw.url("/.well-known/oauth-authorization-server"), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def jwks(gw: OAuthGateway, tenant: str = "default") -> dict[str, Any]:
    response = httpx2.get(gw.url(f"/t/{tenant}/.well-known/jwks.json"), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def login(
    gw: OAuthGateway,
    client_id: str,
    redirect_uri: str,
    browser: Browser | None = None,
    user: str | None = "alice",
    consent: str = "allow",
    choose: dict[str, str] | None = None,
    **params: str | None,
) -> tuple[dict[str, str], str, str]:
    """Walks an authorization request in a browser; returns (redirect query, verifier, state)."""
    url, verifier, state = authorize_url(gw, client_id, redirect_uri, **params)
    own = browser is None
    browser = browser or Browser()
    try:
        final = browser.authorize(
            url, stop_prefix=redirect_uri.split("?")[0], login=user, consent=consent, choose=choose
        )
    finally:
        if own:
            browser.close()
    return query_of(final), verifier, state


def code_tokens(
    gw: OAuthGateway, client: dict[str, Any], browser: Browser | None = None, **params: str | None
) -> dict[str, Any]:
    """Authorization code + PKCE for a public client, in a browser, then the token request."""
    query, verifier, state = login(gw, client["client_id"], client["redirect_uri"], browser, **params)
    assert query.get("state") == state and "code" in query, query
    resource = params.get("resource", f"{gw.base}/mcp")
    response = exchange_code(
        gw, client["client_id"], query["code"], verifier, client["redirect_uri"], resource=resource
    )
    access_token(response)
    return response.json()


def assert_html_error_page(response: httpx2.Response, what: str) -> None:
    """400, an HTML page, and no redirect anywhere."""
    assert response.status_code == 400, f"{what}: HTTP {response.status_code} {response.headers.get('location')}"
    assert "location" not in response.headers, f"{what}: redirected to {response.headers['location']}"
    assert response.headers.get("content-type", "").startswith("text/html"), response.headers


def assert_redirect_error(response: httpx2.Response, redirect_uri: str, error: str, state: str) -> dict[str, str]:
    assert response.status_code in (302, 303), f"HTTP {response.status_code} {response.text[:300]}"
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = query_of(location)
    assert query.get("error") == error and query.get("state") == state, query
    assert "code" not in query, query
    return query


def resign_payload(token: str, **changes: Any) -> str:
    """The token with claims changed and the original signature kept (a tampered token)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}.{signature}"


# ---------------------------------------------------------------- 1. discovery


@pytest.mark.parametrize("path", ["/mcp", "/mcp/pyhttp", "/mcp/everything"])
def test_protected_resource_metadata_and_challenge(gw: OAuthGateway, path: str) -> None:
    # The 401 names the metadata document of exactly this resource (RFC 9728 §5.1).
    response = mcp_post(gw, None, path)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    prm_url = f"{gw.base}/.well-known/oauth-protected-resource{path}"
    assert challenge.startswith("Bearer "), challenge
    assert f'resource_metadata="{prm_url}"' in challenge, challenge
    assert f'scope="{MCP_SCOPES}"' in challenge, challenge
    assert "error=" not in challenge, "no token was sent: no error code (RFC 6750 §3.1)"

    doc = httpx2.get(prm_url, timeout=10).json()
    assert doc["resource"] == f"{gw.base}{path}", doc
    assert doc["authorization_servers"] == [gw.issuer], doc
    assert set(doc["scopes_supported"]) == set(MCP_SCOPES.split()), doc

    # A bad token: the same challenge, with error="invalid_token".
    assert_invalid_token(gw, mcp_post(gw, "not-a-token", path), path)


def test_protected_resource_metadata_for_the_admin_api(gw: OAuthGateway) -> None:
    response = httpx2.get(gw.url("/api/v1/whoami"), timeout=10)
    assert response.status_code == 401
    found = re.search(r'resource_metadata="([^"]+)"', response.headers["www-authenticate"])
    assert found, response.headers
    doc = httpx2.get(found.group(1), timeout=10).json()
    assert doc["resource"].startswith(f"{gw.base}/api"), doc
    assert doc["authorization_servers"] == [gw.issuer]
    assert set(doc["scopes_supported"]) == {"admin:read", "admin:write"}, doc


def test_authorization_server_metadata(gw: OAuthGateway) -> None:
    meta = metadata(gw)
    assert meta["issuer"] == gw.base and not meta["issuer"].endswith("/")
    assert meta["authorization_endpoint"] == f"{gw.base}/oauth/authorize"
    assert meta["token_endpoint"] == f"{gw.base}/oauth/token"
    assert meta["registration_endpoint"] == f"{gw.base}/oauth/register"
    assert meta["revocation_endpoint"] == f"{gw.base}/oauth/revoke"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert set(MCP_SCOPES.split()) <= set(meta["scopes_supported"])


def test_legacy_endpoint_aliases(gw: OAuthGateway, svc: dict[str, Any], app: dict[str, Any]) -> None:
    """The 2025-03-26 revision's default endpoints at the root: /register, /token, /authorize."""
    registered = httpx2.post(
        gw.url("/register"),
        json={
            "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "none",
            "client_name": "legacy",
        },
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["client_id"] and "client_secret" not in registered.json()

    token = access_token(
        token_request(
            gw, {"grant_type": "client_credentials"}, auth=(svc["client_id"], svc["client_secret"]), path="/token"
        )
    )
    assert_accepted(mcp_post(gw, token), "token from /token")

    url, _, state = authorize_url(gw, app["client_id"], app["redirect_uri"], code_challenge=None)
    legacy = httpx2.get(url.replace("/oauth/authorize", "/authorize"), timeout=10)
    assert_redirect_error(legacy, app["redirect_uri"], "invalid_request", state)


def verify_with_jwks(gw: OAuthGateway, token: str, alg: str, audience: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == alg, header
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks(gw)).keys}
    assert header["kid"] in keys, f"kid {header['kid']} not in the JWKS ({list(keys)})"
    claims = jwt.decode(
        token,
        keys[header["kid"]].key,
        algorithms=[alg],
        audience=audience,
        issuer=gw.issuer,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    return claims


def test_client_credentials_jwt_verifies_against_jwks_rs256(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    token = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp/"))
    claims = verify_with_jwks(gw, token, "RS256", f"{gw.base}/mcp")  # canonical: no trailing slash
    assert claims["aud"] == f"{gw.base}/mcp"
    assert claims["exp"] - claims["iat"] == 900 and claims["nbf"] <= claims["iat"] + 1
    assert claims["client_id"] == svc["client_id"]
    assert claims["sub"] == svc["client"]["user_id"]
    assert claims["tid"] == svc["client"]["tenant_id"] and claims["tenant"] == "default"
    assert claims["kind"] == "service" and claims["role"] == "member"
    assert set(claims["scope"].split()) == set(MCP_SCOPES.split())
    assert "sid" not in claims, "a client-credentials token belongs to no grant"
    jwk = next(k for k in jwks(gw)["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"])
    assert jwk["kty"] == "RSA" and "d" not in jwk and "p" not in jwk, "the JWKS must hold public keys only"

    assert httpx2.get(gw.url("/t/no-such-tenant/.well-known/jwks.json"), timeout=10).status_code == 404

    # Without a resource, the audience is the whole gateway.
    whole = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"]))
    assert verify_with_jwks(gw, whole, "RS256", gw.base)["aud"] == gw.base


def test_client_credentials_jwt_verifies_against_jwks_es256(ec_gw: OAuthGateway) -> None:
    token = ec_gw.extra["expiring"]  # issued when the gateway started (checked again, expired, at the end)
    claims = verify_with_jwks(ec_gw, token, "ES256", ec_gw.base)
    assert claims["exp"] - claims["iat"] == 10, "oauth.access_token_ttl_s = 10"
    (key,) = jwks(ec_gw)["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and "d" not in key, key
    assert_accepted(mcp_post(ec_gw, token), "fresh ES256 token")


# ---------------------------------------------------------------- 2. client credentials (authlib)


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_authlib_client_credentials_then_mcp_sdk(gw: OAuthGateway, svc: dict[str, Any], method: str) -> None:
    meta = metadata(gw)
    sent: list[Any] = []
    with OAuth2Session(svc["client_id"], svc["client_secret"], token_endpoint_auth_method=method) as session:
        session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials", resource=f"{gw.base}/mcp")
    request = sent[-1]
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    if method == "client_secret_basic":
        assert request.headers["Authorization"].startswith("Basic ") and "client_secret" not in body
    else:
        assert "Authorization" not in request.headers and "client_secret=" in body
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 900
    assert "refresh_token" not in token, "client credentials get no refresh token"

    async with mcp_client(gw, token["access_token"]) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        assert "pyhttp__add" in names and "everything__echo" in names, names
        result = await client.call_tool("pyhttp__add", {"a": 2, "b": 40})
        assert text_of(result) == "42" and not result.is_error


def test_wrong_client_secret_is_invalid_client(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    basic = client_credentials(gw, svc["client_id"], svc["client_secret"] + "x")
    oauth_error(basic, 401, "invalid_client")
    assert basic.headers.get("www-authenticate", "").startswith("Basic"), basic.headers
    post = token_request(
        gw, {"grant_type": "client_credentials", "client_id": svc["client_id"], "client_secret": "moat_cs_wrong"}
    )
    oauth_error(post, 401, "invalid_client")
    oauth_error(token_request(gw, {"grant_type": "client_credentials"}), 401, "invalid_client")


def test_service_client_never_gets_admin_scopes(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    oauth_error(
        client_credentials(gw, svc["client_id"], svc["client_secret"], scope="admin:read"), 400, "invalid_scope"
    )
    oauth_error(
        client_credentials(gw, svc["client_id"], svc["client_secret"], scope="mcp:tools admin:write"),
        400,
        "invalid_scope",
    )
    refused = gw.cli("client", "create", "--name", "greedy-bot", "--scope", "admin:read", check=False)
    assert refused.returncode == 1 and refused.stdout == "", (refused.returncode, refused.stdout, refused.stderr)


def test_service_token_cannot_use_the_admin_api(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    mcp_token = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp"))
    response = httpx2.get(gw.url("/api/v1/whoami"), headers={"Authorization": f"Bearer {mcp_token}"}, timeout=10)
    assert_invalid_token(gw, response, "/api/v1", "an /mcp token on /api/v1")

    whole = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"]))  # aud = the gateway
    assert_accepted(mcp_post(gw, whole, "/mcp/pyhttp"), "a token for the whole gateway on one server")
    response = httpx2.get(gw.url("/api/v1/whoami"), headers={"Authorization": f"Bearer {whole}"}, timeout=10)
    assert response.status_code == 403, response.text
    assert 'error="insufficient_scope"' in response.headers.get("www-authenticate", ""), response.headers


@pytest.mark.anyio
async def test_token_audience_is_per_server(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    token = access_token(
        client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp/pyhttp")
    )
    assert jwt_parts(token)[1]["aud"] == f"{gw.base}/mcp/pyhttp"
    assert_invalid_token(gw, mcp_post(gw, token, "/mcp/everything"), "/mcp/everything", "pyhttp token on everything")
    assert_invalid_token(gw, mcp_post(gw, token, "/mcp"), "/mcp", "pyhttp token on the aggregate")
    assert_invalid_token(gw, mcp_post(gw, token, "/mcp/pyhttpx"), "/mcp/pyhttpx", "pyhttp token on a longer name")
    async with mcp_client(gw, token, "/mcp/pyhttp") as client:
        assert "add" in [tool.name for tool in (await client.list_tools()).tools]


def test_resource_outside_the_gateway_is_invalid_target(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    for resource in (
        "https://evil.example/mcp",
        f"{gw.base}/mcp?x=1",
        f"{gw.base}/mcp#f",
        "http://127.0.0.1:1/mcp",
        gw.base.replace("127.0.0.1", "localhost") + "/mcp",
        gw.base.replace("http://", "http://user:pw@") + "/mcp",
        "not a url",
    ):
        response = client_credentials(gw, svc["client_id"], svc["client_secret"], resource=resource)
        oauth_error(response, 400, "invalid_target")


def test_tampered_token_is_refused(gw: OAuthGateway, svc: dict[str, Any], acme: dict[str, Any]) -> None:
    token = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp"))
    assert_accepted(mcp_post(gw, token), "the untouched token")
    for changes in ({"tid": acme["tid"]}, {"aud": gw.base}, {"scope": "admin:write " + MCP_SCOPES}, {"kind": "human"}):
        assert_invalid_token(gw, mcp_post(gw, resign_payload(token, **changes)), "/mcp", f"tampered {changes}")


def test_token_signed_with_a_foreign_key_is_refused(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    genuine = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp"))
    header, claims = jwt_parts(genuine)
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + 600, jti=secrets.token_hex(8))
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, mine, algorithm="RS256", headers={"kid": header["kid"], "typ": "at+jwt"})
    assert_invalid_token(gw, mcp_post(gw, forged), "/mcp", "RS256 with our own key and moat's kid")

    signing_input = lambda h: f"{b64url(json.dumps(h).encode())}.{b64url(json.dumps(claims).encode())}"  # noqa: E731
    none_header = {"alg": "none", "typ": "at+jwt", "kid": header["kid"]}
    assert_invalid_token(gw, mcp_post(gw, signing_input(none_header) + "."), "/mcp", "alg none")
    hs_header = {"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}
    jwk = next(k for k in jwks(gw)["keys"] if k["kid"] == header["kid"])
    mac = hmac.new(json.dumps(jwk).encode(), signing_input(hs_header).encode(), hashlib.sha256).digest()
    assert_invalid_token(gw, mcp_post(gw, f"{signing_input(hs_header)}.{b64url(mac)}"), "/mcp", "HS256 confusion")


@pytest.mark.anyio
async def test_mcp_method_needs_its_scope(gw: OAuthGateway) -> None:
    reader = gw.create_client("resource-reader", scopes=["mcp:resources"])
    token = access_token(
        client_credentials(gw, reader["client_id"], reader["client_secret"], resource=f"{gw.base}/mcp")
    )
    assert jwt_parts(token)[1]["scope"] == "mcp:resources"
    async with mcp_client(gw, token) as client:
        await client.list_resources()
        with pytest.raises(BaseException) as refused:
            await client.list_tools()
        error = mcp_error_in(refused.value)
        assert error is not None and error.error.code == -32003, repr(refused.value)
    oauth_error(
        client_credentials(gw, reader["client_id"], reader["client_secret"], scope="mcp:tools"), 400, "invalid_scope"
    )


def test_revoked_access_token_stops_working(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    token = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp"))
    other = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=f"{gw.base}/mcp"))
    assert_accepted(mcp_post(gw, token), "before revocation")
    revoked = httpx2.post(
        gw.url("/oauth/revoke"), data={"token": token}, auth=(svc["client_id"], svc["client_secret"]), timeout=10
    )
    assert revoked.status_code == 200, revoked.text
    assert_invalid_token(gw, mcp_post(gw, token), "/mcp", "after RFC 7009 revocation")
    assert_accepted(mcp_post(gw, other), "another token of the same client")
    # Revocation needs the client's authentication (RFC 7009 §2.1).
    unauthenticated = httpx2.post(gw.url("/oauth/revoke"), data={"token": other}, timeout=10)
    oauth_error(unauthenticated, 401, "invalid_client")
    assert_accepted(mcp_post(gw, other), "after an unauthenticated revocation attempt")


def test_deleted_service_client_gets_no_more_tokens(gw: OAuthGateway) -> None:
    doomed = gw.create_client("doomed-bot")
    assert access_token(client_credentials(gw, doomed["client_id"], doomed["client_secret"]))
    gw.cli("client", "delete", "doomed-bot")
    oauth_error(client_credentials(gw, doomed["client_id"], doomed["client_secret"]), 401, "invalid_client")
    assert all(c["name"] != "doomed-bot" or c["revoked_at"] for c in gw.cli_json("client", "list"))


def test_deleted_service_client_tokens_stop_working(gw: OAuthGateway) -> None:
    doomed = gw.create_client("doomed-bot-2")
    token = access_token(
        client_credentials(gw, doomed["client_id"], doomed["client_secret"], resource=f"{gw.base}/mcp")
    )
    assert_accepted(mcp_post(gw, token), "before deletion")
    gw.cli("client", "delete", "doomed-bot-2")
    assert_invalid_token(gw, mcp_post(gw, token), "/mcp", "a token of a deleted service client")


def test_deleted_public_client_loses_its_grants(gw: OAuthGateway) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    doomed = gw.create_client("doomed-app", kind="public", redirect_uris=[redirect])
    doomed["redirect_uri"] = redirect
    tokens = code_tokens(gw, doomed)
    assert_accepted(mcp_post(gw, tokens["access_token"]), "before deletion")
    gw.cli("client", "delete", "doomed-app")
    assert_invalid_token(gw, mcp_post(gw, tokens["access_token"]), "/mcp", "a token of a deleted public client")
    oauth_error(refresh(gw, doomed["client_id"], tokens["refresh_token"]), 401, "invalid_client")
    url, _, _ = authorize_url(gw, doomed["client_id"], redirect)
    assert_html_error_page(httpx2.get(url, timeout=10), "authorize for a deleted client")


def test_client_secret_rotation_and_text_output(gw: OAuthGateway) -> None:
    created = gw.cli("client", "create", "--name", "rotating-bot").stdout.splitlines()
    assert len(created) == 2 and created[1].startswith("moat_cs_"), created
    client_id, old_secret = created
    assert_accepted(mcp_post(gw, access_token(client_credentials(gw, client_id, old_secret)), "/mcp/pyhttp"))
    rotated = gw.cli("client", "rotate", "rotating-bot").stdout.splitlines()
    new_secret = rotated[-1]
    assert new_secret.startswith("moat_cs_") and new_secret != old_secret, rotated
    oauth_error(client_credentials(gw, client_id, old_secret), 401, "invalid_client")
    assert access_token(client_credentials(gw, client_id, new_secret))
    shown = gw.cli("client", "show", "rotating-bot", "--json").stdout
    assert old_secret not in shown and new_secret not in shown, "a secret is shown once only"
    public = gw.cli(
        "client", "create", "--name", "cli-public", "--kind", "public", "--redirect-uri", "http://127.0.0.1:9/cb"
    )
    assert len(public.stdout.splitlines()) == 1, public.stdout


def test_client_rotate_prints_only_the_secret(gw: OAuthGateway) -> None:
    gw.cli("client", "create", "--name", "rotating-bot-2")
    rotated = gw.cli("client", "rotate", "rotating-bot-2").stdout.splitlines()
    assert len(rotated) == 1 and rotated[0].startswith("moat_cs_"), rotated


def test_public_client_cannot_use_client_credentials(gw: OAuthGateway, app: dict[str, Any]) -> None:
    response = token_request(gw, {"grant_type": "client_credentials", "client_id": app["client_id"]})
    oauth_error(response, 400, "unauthorized_client")
    response = token_request(
        gw, {"grant_type": "client_credentials", "client_id": app["client_id"], "client_secret": "moat_cs_guess"}
    )
    oauth_error(response, 401, "invalid_client")


# ---------------------------------------------------------------- 3. the MCP SDK's OAuth client


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@pytest.mark.anyio
async def test_mcp_sdk_oauth_flow_end_to_end(gw: OAuthGateway) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    storage = MemoryStorage()
    seen: dict[str, str] = {}
    browser = Browser()

    async def redirect_handler(url: str) -> None:
        seen["authorization_url"] = url
        seen["final"] = await anyio.to_thread.run_sync(
            lambda: browser.authorize(url, stop_prefix=redirect_uri, login="alice")
        )

    async def callback_handler() -> AuthorizationCodeResult:
        query = query_of(seen["final"])
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    provider = OAuthClientProvider(
        server_url=gw.url("/mcp"),
        client_metadata=OAuthClientMetadata(
            client_name="mcp-sdk-interop",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def list_tools() -> list[str]:
        async with httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30.0, read=60.0)) as http:
            async with Client(
                streamable_http_client(gw.url("/mcp"), http_client=http), mode="legacy", cache=None
            ) as client:
                return [tool.name for tool in (await client.list_tools()).tools]

    try:
        names = await list_tools()
        assert "pyhttp__add" in names, names

        # Discovery, registration, PKCE and the redirect as the SDK did them.
        assert provider.context.protected_resource_metadata is not None
        assert str(provider.context.protected_resource_metadata.resource).rstrip("/") == gw.url("/mcp")
        assert provider.context.auth_server_url is not None and provider.context.auth_server_url.rstrip("/") == gw.base
        assert storage.client_info is not None and storage.client_info.client_id
        assert storage.client_info.client_secret is None, "token_endpoint_auth_method none: a public client"
        asked = query_of(seen["authorization_url"])
        assert seen["authorization_url"].startswith(f"{gw.base}/oauth/authorize?")
        assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
        assert asked["resource"] == gw.url("/mcp") and asked["client_id"] == storage.client_info.client_id
        returned = query_of(seen["final"])
        assert returned["iss"] == gw.issuer and returned["state"] == asked["state"]
        assert any(m == "POST" and u.endswith("/oauth/consent") for m, u, _ in browser.hops), browser.hops

        first = storage.tokens
        assert first is not None and first.refresh_token and first.refresh_token.startswith("moat_rt_")
        claims = jwt_parts(first.access_token)[1]
        assert claims["aud"] == gw.url("/mcp") and claims["client_id"] == storage.client_info.client_id
        assert claims["kind"] == "human" and claims["sid"], claims

        # Force a refresh: the SDK rotates the refresh token and uses the new access token.
        provider.context.token_expiry_time = time.time() - 1
        names = await list_tools()
        assert "pyhttp__add" in names
        second = storage.tokens
        assert second is not None and second.access_token != first.access_token
        assert second.refresh_token and second.refresh_token != first.refresh_token
        assert jwt_parts(second.access_token)[1]["sid"] == claims["sid"], "same grant"
        assert_accepted(mcp_post(gw, second.access_token), "the refreshed access token")

        # The old refresh token is spent: presenting it again revokes the whole family.
        reused = refresh(gw, storage.client_info.client_id, first.refresh_token)
        oauth_error(reused, 400, "invalid_grant")
        assert_invalid_token(gw, mcp_post(gw, second.access_token), "/mcp", "newest access token after reuse")
        oauth_error(refresh(gw, storage.client_info.client_id, second.refresh_token), 400, "invalid_grant")
    finally:
        browser.close()


# ---------------------------------------------------------------- 4. authorization code with authlib


def authlib_code_flow(
    gw: OAuthGateway, client_id: str, redirect_uri: str, secret: str | None, method: str
) -> tuple[OAuth2Session, dict[str, Any]]:
    meta = metadata(gw)
    session = OAuth2Session(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,
        redirect_uri=redirect_uri,
        scope=MCP_SCOPES,
        code_challenge_method="S256",
    )
    verifier = generate_token(64)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, resource=gw.url("/mcp")
    )
    with Browser() as browser:
        final = browser.authorize(url, stop_prefix=redirect_uri, login="bob")
    query = query_of(final)
    assert query["state"] == state and query["iss"] == meta["issuer"] == gw.issuer, query
    token = session.fetch_token(
        meta["token_endpoint"],
        authorization_response=final,
        state=state,
        code_verifier=verifier,
        resource=gw.url("/mcp"),
    )
    assert token["token_type"].lower() == "bearer" and token["refresh_token"].startswith("moat_rt_")
    claims = jwt_parts(token["access_token"])[1]
    assert claims["aud"] == gw.url("/mcp") and claims["client_id"] == client_id
    assert claims["kind"] == "human" and claims["role"] == "member", claims
    assert_accepted(mcp_post(gw, token["access_token"]), "code-grant token")

    # Refresh rotation: a new pair; the new one works; the old refresh token is spent.
    old_refresh = token["refresh_token"]
    renewed = session.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    assert renewed["refresh_token"] != old_refresh and renewed["access_token"] != token["access_token"]
    assert_accepted(mcp_post(gw, renewed["access_token"]), "refreshed token")
    return session, {"first": token, "renewed": renewed}


def test_authlib_code_flow_admin_created_public_client(gw: OAuthGateway) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    created = gw.create_client("authlib-public", kind="public", redirect_uris=[redirect_uri])
    assert "client_secret" not in created or created["client_secret"] is None
    authlib_code_flow(gw, created["client_id"], redirect_uri, None, "none")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_code_flow_dynamically_registered_confidential_client(gw: OAuthGateway, method: str) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    registered = httpx2.post(
        metadata(gw)["registration_endpoint"],
        json={
            "client_name": "authlib-confidential",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
        },
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    info = registered.json()
    assert info["client_secret"] and info["redirect_uris"] == [redirect_uri]
    assert info["token_endpoint_auth_method"] == method
    session, tokens = authlib_code_flow(gw, info["client_id"], redirect_uri, info["client_secret"], method)
    # The secret is required: the same refresh without it is refused.
    unauthenticated = refresh(gw, info["client_id"], tokens["renewed"]["refresh_token"])
    oauth_error(unauthenticated, 401, "invalid_client")


def test_registration_rejects_bad_metadata(gw: OAuthGateway) -> None:
    register = gw.url("/oauth/register")
    for body, error in [
        ({}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        (
            {"redirect_uris": ["https://app.example/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
        ),
        (
            {"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
    ]:
        response = httpx2.post(register, json=body, timeout=10)
        oauth_error(response, 400, error)


# ---------------------------------------------------------------- 5. failing closed


def test_authorize_without_pkce_is_refused(gw: OAuthGateway, app: dict[str, Any]) -> None:
    url, _, state = authorize_url(
        gw, app["client_id"], app["redirect_uri"], code_challenge=None, code_challenge_method=None
    )
    assert_redirect_error(httpx2.get(url, timeout=10), app["redirect_uri"], "invalid_request", state)
    # A challenge without its method is refused too (no silent `plain`).
    url, _, state = authorize_url(gw, app["client_id"], app["redirect_uri"], code_challenge_method=None)
    assert_redirect_error(httpx2.get(url, timeout=10), app["redirect_uri"], "invalid_request", state)


def test_authorize_with_plain_pkce_is_refused(gw: OAuthGateway, app: dict[str, Any]) -> None:
    verifier = secrets.token_urlsafe(48)
    url, _, state = authorize_url(
        gw, app["client_id"], app["redirect_uri"], code_challenge=verifier, code_challenge_method="plain"
    )
    query = assert_redirect_error(httpx2.get(url, timeout=10), app["redirect_uri"], "invalid_request", state)
    assert query["iss"] == gw.issuer


def test_wrong_code_verifier_is_invalid_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    wrong = exchange_code(gw, app["client_id"], query["code"], secrets.token_urlsafe(48), app["redirect_uri"])
    oauth_error(wrong, 400, "invalid_grant")


def test_reused_code_is_invalid_grant_and_revokes_its_tokens(gw: OAuthGateway, app: dict[str, Any]) -> None:
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    first = exchange_code(gw, app["client_id"], query["code"], verifier, app["redirect_uri"])
    token = access_token(first)
    assert_accepted(mcp_post(gw, token), "the first redemption's token")
    again = exchange_code(gw, app["client_id"], query["code"], verifier, app["redirect_uri"])
    oauth_error(again, 400, "invalid_grant")
    assert_invalid_token(gw, mcp_post(gw, token), "/mcp", "token of a replayed code")
    oauth_error(refresh(gw, app["client_id"], first.json()["refresh_token"]), 400, "invalid_grant")


def test_expired_code_is_invalid_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    time.sleep(CODE_TTL_S + 0.5)
    oauth_error(exchange_code(gw, app["client_id"], query["code"], verifier, app["redirect_uri"]), 400, "invalid_grant")


def test_code_of_another_client_is_invalid_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    other = gw.create_client("other-app", kind="public", redirect_uris=[app["redirect_uri"]])
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    stolen = exchange_code(gw, other["client_id"], query["code"], verifier, app["redirect_uri"])
    oauth_error(stolen, 400, "invalid_grant")


def test_login_and_consent_are_bound_to_the_browser(gw: OAuthGateway, app: dict[str, Any]) -> None:
    """The IdP's answer and the consent form only work in the browser that started the request."""
    url, _, state = authorize_url(gw, app["client_id"], app["redirect_uri"])
    with Browser() as victim, Browser() as attacker:
        callback = attacker.authorize(url, stop_prefix=f"{gw.base}/oauth/callback", login="bob")
        planted = victim.get(callback)  # login CSRF: the attacker's callback URL in the victim's browser
        assert_html_error_page(planted, "IdP callback in another browser")
        assert "moat_session" not in {c.name for c in victim.cookies.jar}

        consent_page = attacker.get(callback)
        assert consent_page.status_code == 200, consent_page.text
        form = next(f for f in parse_forms(consent_page.text) if f.action == "/oauth/consent")
        handle = next(f.value for f in form.fields if f.name == "request")
        forged = victim.post_form(f"{gw.base}/oauth/consent", {"request": handle, "decision": "allow"})
        assert forged.status_code in (400, 403) and "location" not in forged.headers, forged.status_code
        # Without the Origin of moat itself, a cross-site form post is refused too.
        cross = attacker.post_form(
            f"{gw.base}/oauth/consent", {"request": handle, "decision": "allow"}, origin="https://evil.example"
        )
        assert cross.status_code == 403 and "location" not in cross.headers, cross.status_code

        answered = attacker.post_form(f"{gw.base}/oauth/consent", {"request": handle, "decision": "allow"})
        assert answered.status_code == 302, answered.text
        query = query_of(answered.headers["location"])
        assert query["state"] == state and query["code"].startswith("moat_ac_")
        # The request is answered once.
        again = attacker.post_form(f"{gw.base}/oauth/consent", {"request": handle, "decision": "allow"})
        assert again.status_code >= 400 and "location" not in again.headers, again.status_code


def test_wrong_redirect_uri_at_authorize_shows_a_page(gw: OAuthGateway, app: dict[str, Any]) -> None:
    for redirect in (
        "https://evil.example/callback",
        app["redirect_uri"].replace("/callback", "/elsewhere"),
        app["redirect_uri"] + "?next=https://evil.example",
    ):
        url, _, _ = authorize_url(gw, app["client_id"], redirect)
        assert_html_error_page(httpx2.get(url, timeout=10), redirect)


def test_wrong_redirect_uri_at_token_is_invalid_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    other_port = app["redirect_uri"].replace(app["redirect_uri"].split(":")[2].split("/")[0], str(free_port()))
    oauth_error(exchange_code(gw, app["client_id"], query["code"], verifier, other_port), 400, "invalid_grant")
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"])
    missing = token_request(
        gw,
        {
            "grant_type": "authorization_code",
            "code": query["code"],
            "code_verifier": verifier,
            "client_id": app["client_id"],
        },
    )
    oauth_error(missing, 400, "invalid_grant")


def test_loopback_redirect_port_may_vary(gw: OAuthGateway, app: dict[str, Any]) -> None:
    """RFC 8252 §7.3: a native app's loopback redirect URI on another port is the same URI."""
    other = f"http://127.0.0.1:{free_port()}/callback"
    assert other != app["redirect_uri"]
    query, verifier, state = login(gw, app["client_id"], other)
    assert query["state"] == state and query["iss"] == gw.issuer
    assert_accepted(mcp_post(gw, access_token(exchange_code(gw, app["client_id"], query["code"], verifier, other))))
    # Only the port: another loopback host name is another URI.
    url, _, _ = authorize_url(gw, app["client_id"], other.replace("127.0.0.1", "localhost"))
    assert_html_error_page(httpx2.get(url, timeout=10), "localhost instead of 127.0.0.1")


def test_wrong_audience_is_refused(gw: OAuthGateway, app: dict[str, Any]) -> None:
    # At authorization: a resource outside the gateway.
    url, _, state = authorize_url(gw, app["client_id"], app["redirect_uri"], resource="https://evil.example/mcp")
    assert_redirect_error(httpx2.get(url, timeout=10), app["redirect_uri"], "invalid_target", state)
    # At the token endpoint: another resource than the authorized one.
    query, verifier, _ = login(gw, app["client_id"], app["redirect_uri"], resource=gw.url("/mcp/pyhttp"))
    other = exchange_code(gw, app["client_id"], query["code"], verifier, app["redirect_uri"], resource=gw.url("/mcp"))
    oauth_error(other, 400, "invalid_target")
    # In use: a token for one server on another.
    tokens = code_tokens(gw, app, resource=gw.url("/mcp/pyhttp"))
    assert jwt_parts(tokens["access_token"])[1]["aud"] == gw.url("/mcp/pyhttp")
    assert_accepted(mcp_post(gw, tokens["access_token"], "/mcp/pyhttp"))
    assert_invalid_token(gw, mcp_post(gw, tokens["access_token"], "/mcp/everything"), "/mcp/everything")
    assert_invalid_token(gw, mcp_post(gw, tokens["access_token"], "/mcp"), "/mcp")


def test_reused_refresh_token_revokes_the_family(gw: OAuthGateway, app: dict[str, Any]) -> None:
    tokens = code_tokens(gw, app)
    rotated = refresh(gw, app["client_id"], tokens["refresh_token"])
    newest = access_token(rotated)
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    assert_accepted(mcp_post(gw, newest), "after rotation")
    oauth_error(refresh(gw, app["client_id"], tokens["refresh_token"]), 400, "invalid_grant")
    assert_invalid_token(gw, mcp_post(gw, newest), "/mcp", "newest access token after a replay")
    assert_invalid_token(gw, mcp_post(gw, tokens["access_token"]), "/mcp", "first access token after a replay")
    oauth_error(refresh(gw, app["client_id"], rotated.json()["refresh_token"]), 400, "invalid_grant")


def test_mcp_session_is_bound_to_the_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    """A 2025-11-25 session opened with a token survives its refresh (same grant), and is not
    found with a token of another grant."""
    tokens = code_tokens(gw, app)
    opened = mcp_post(gw, tokens["access_token"])
    assert_accepted(opened, "initialize")
    session = opened.headers["mcp-session-id"]
    headers = {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}

    def call(token: str, method: str, rpc_id: int | None) -> httpx2.Response:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if rpc_id is not None:
            body["id"] = rpc_id
        return httpx2.post(
            gw.url("/mcp"),
            json=body,
            headers={**MCP_HEADERS, **headers, "Authorization": f"Bearer {token}"},
            timeout=30,
        )

    assert call(tokens["access_token"], "notifications/initialized", None).status_code in (200, 202)
    assert_accepted(call(tokens["access_token"], "tools/list", 2), "tools/list in the session")
    renewed = access_token(refresh(gw, app["client_id"], tokens["refresh_token"]))
    assert_accepted(call(renewed, "tools/list", 3), "the same session after a refresh")
    other = code_tokens(gw, app)["access_token"]
    assert call(other, "tools/list", 4).status_code == 404, "another grant's token in this session"


def test_refresh_token_of_another_client_is_refused(gw: OAuthGateway, app: dict[str, Any]) -> None:
    tokens = code_tokens(gw, app)
    thief = gw.create_client("thief-app", kind="public", redirect_uris=["http://127.0.0.1:9/cb"])
    # Another client can neither revoke nor redeem it.
    revoked = httpx2.post(
        gw.url("/oauth/revoke"), data={"token": tokens["refresh_token"], "client_id": thief["client_id"]}, timeout=10
    )
    oauth_error(revoked, 400, "unauthorized_client")  # RFC 7009 §2.1: not issued to this client
    assert_accepted(mcp_post(gw, tokens["access_token"]), "after another client's revocation attempt")
    oauth_error(refresh(gw, thief["client_id"], tokens["refresh_token"]), 400, "invalid_grant")


def test_revoking_a_refresh_token_ends_the_grant(gw: OAuthGateway, app: dict[str, Any]) -> None:
    tokens = code_tokens(gw, app)
    assert_accepted(mcp_post(gw, tokens["access_token"]), "before revocation")
    # A public client identifies itself with its client_id (RFC 7009 §2.1).
    revoked = httpx2.post(
        gw.url("/oauth/revoke"),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": app["client_id"]},
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    oauth_error(refresh(gw, app["client_id"], tokens["refresh_token"]), 400, "invalid_grant")
    assert_invalid_token(gw, mcp_post(gw, tokens["access_token"]), "/mcp", "access token of a revoked grant")
    # An unknown token is not an error (RFC 7009 §2.2).
    unknown = httpx2.post(
        gw.url("/oauth/revoke"), data={"token": "moat_rt_nothing", "client_id": app["client_id"]}, timeout=10
    )
    assert unknown.status_code == 200, unknown.text


def test_token_bound_to_an_origin(gw: OAuthGateway) -> None:
    bound = gw.create_client("browser-bot", origins=[APP_A])
    token = access_token(client_credentials(gw, bound["client_id"], bound["client_secret"], resource=gw.url("/mcp")))
    assert jwt_parts(token)[1]["allowed_origins"] == [APP_A]
    assert_accepted(mcp_post(gw, token, headers={"Origin": APP_A}), "bound token from its origin")
    assert_accepted(mcp_post(gw, token), "bound token without Origin")
    refused = mcp_post(gw, token, headers={"Origin": APP_B})
    assert refused.status_code == 403, f"bound token from another allowed origin: HTTP {refused.status_code}"
    for origin in (APP_A, APP_B):  # both pass moat's own Origin guard: the refusal above is the token's
        assert_accepted(mcp_post(gw, gw.key, headers={"Origin": origin}), f"API key from {origin}")


@pytest.mark.anyio
async def test_other_tenants_token_reaches_nothing_here(
    gw: OAuthGateway, svc: dict[str, Any], acme: dict[str, Any]
) -> None:
    token = access_token(client_credentials(gw, acme["client_id"], acme["client_secret"], resource=gw.url("/mcp")))
    claims = verify_with_jwks_of(gw, token, "acme")
    assert claims["tid"] == acme["tid"] != svc["client"]["tenant_id"] and claims["tenant"] == "acme"
    # The default tenant's keys do not verify it.
    default_kids = {k["kid"] for k in jwks(gw)["keys"]}
    assert jwt.get_unverified_header(token)["kid"] not in default_kids
    # It is acme's: none of the default tenant's servers are there.
    async with mcp_client(gw, token) as client:
        assert (await client.list_tools()).tools == []
    for server in ("everything", "pyhttp"):
        response = mcp_post(gw, token, f"/mcp/{server}")
        assert response.status_code == 404, f"/mcp/{server} with acme's token: HTTP {response.status_code}"
    # Pretending to be the default tenant breaks the signature.
    forged = resign_payload(token, tid=svc["client"]["tenant_id"], tenant="default")
    assert_invalid_token(gw, mcp_post(gw, forged), "/mcp", "acme's token with the default tid")
    # acme's client cannot act through the default tenant's token endpoint identity either.
    default_token = access_token(
        client_credentials(gw, svc["client_id"], svc["client_secret"], resource=gw.url("/mcp"))
    )
    assert_invalid_token(
        gw, mcp_post(gw, resign_payload(default_token, tid=acme["tid"])), "/mcp", "default token, acme tid"
    )


def verify_with_jwks_of(gw: OAuthGateway, token: str, tenant: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks(gw, tenant)).keys}
    assert header["kid"] in keys, (header, list(keys))
    return jwt.decode(
        token, keys[header["kid"]].key, algorithms=[header["alg"]], audience=gw.url("/mcp"), issuer=gw.issuer
    )


def test_unknown_client_id_shows_a_page(gw: OAuthGateway, app: dict[str, Any]) -> None:
    for client_id in ("no-such-client", "01a20a3d-0000-7000-8000-000000000000", ""):
        url, _, _ = authorize_url(gw, client_id, app["redirect_uri"])
        assert_html_error_page(httpx2.get(url, timeout=10), f"client_id {client_id!r}")
    oauth_error(
        token_request(
            gw,
            {"grant_type": "authorization_code", "client_id": "no-such-client", "code": "x", "code_verifier": "y" * 43},
        ),
        401,
        "invalid_client",
    )


def test_no_redirect_to_an_unregistered_host(gw: OAuthGateway, app: dict[str, Any]) -> None:
    """Whatever else is wrong with the request, an unverified redirect URI is never redirected to."""
    port = app["redirect_uri"].split(":")[2].split("/")[0]
    evil = [
        "https://evil.example/callback",
        f"http://127.0.0.1.evil.example:{port}/callback",
        f"http://evil.example:{port}/callback",
        f"http://127.0.0.1:{port}@evil.example/callback",
        "//evil.example/callback",
        f"https://127.0.0.1:{port}/callback",
    ]
    for redirect in evil:
        for extra in ({}, {"response_type": "token"}, {"code_challenge": None}, {"scope": "bogus"}):
            url, _, _ = authorize_url(gw, app["client_id"], redirect, **extra)
            assert_html_error_page(httpx2.get(url, timeout=10), f"{redirect} {extra}")
    # A repeated redirect_uri is refused the same way (RFC 6749 §3.1).
    url, _, _ = authorize_url(gw, app["client_id"], app["redirect_uri"])
    assert_html_error_page(httpx2.get(url + "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", timeout=10), "repeated")


def test_tenant_chooser_and_hint(gw: OAuthGateway, acme: dict[str, Any]) -> None:
    """A dynamically registered client belongs to no tenant: with two tenants that have an IdP,
    the user picks one (the chooser page, or `tenant=` on the request)."""
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    registered = httpx2.post(
        gw.url("/oauth/register"), json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}, timeout=10
    )
    client = {**registered.json(), "redirect_uri": redirect}
    assert gw.op is not None
    idp_secret = next(c["client_secret"] for c in gw.op.config["clients"] if c["client_id"] == "moat")
    gw.cli(
        "identity",
        "set-idp",
        "--tenant",
        "acme",
        "--issuer",
        gw.op.issuer,
        "--client-id",
        "moat",
        "--client-secret-stdin",
        "--scopes",
        "openid email profile groups",
        stdin=idp_secret + "\n",
    )
    try:
        url, _, _ = authorize_url(gw, client["client_id"], redirect)
        page = httpx2.get(url, timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.status_code
        (form,) = [f for f in parse_forms(page.text) if f.action == "/oauth/login"]
        assert {f.name for f in form.fields} >= {"request", "tenant"}

        with Browser() as browser:
            query, verifier, _ = login(gw, client["client_id"], redirect, browser, choose={"tenant": "acme"})
        token = access_token(exchange_code(gw, client["client_id"], query["code"], verifier, redirect))
        claims = jwt_parts(token)[1]
        assert claims["tid"] == acme["tid"] and claims["tenant"] == "acme", claims

        tokens = code_tokens(gw, client, tenant="default")
        assert jwt_parts(tokens["access_token"])[1]["tenant"] == "default"
    finally:
        gw.cli("identity", "remove-idp", "--tenant", "acme")


@pytest.fixture
def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """A static web server on 127.0.0.1 serving JSON documents: (base URL, path -> document)."""
    served: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            doc = served.get(self.path)
            body = json.dumps(doc).encode() if doc is not None else b"{}"
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_client_id_metadata_document(gw: OAuthGateway, documents: tuple[str, dict[str, Any]]) -> None:
    """The client id is the URL of its metadata document (allow_private_urls lets it be on loopback)."""
    base, served = documents
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    client_id = f"{base}/oauth/client.json"
    served["/oauth/client.json"] = {
        "client_id": client_id,
        "client_name": "CIMD app",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    client = {"client_id": client_id, "redirect_uri": redirect}
    tokens = code_tokens(gw, client)
    assert jwt_parts(tokens["access_token"])[1]["client_id"] == client_id
    assert_accepted(mcp_post(gw, tokens["access_token"]), "CIMD client's token")

    # A document that names another client id, or carries a secret, is refused (no redirect).
    liar_id = f"{base}/oauth/liar.json"
    served["/oauth/liar.json"] = {**served["/oauth/client.json"], "client_id": client_id}
    url, _, _ = authorize_url(gw, liar_id, redirect)
    assert_html_error_page(httpx2.get(url, timeout=10), "document with another client_id")
    secret_id = f"{base}/oauth/secret.json"
    served["/oauth/secret.json"] = {**served["/oauth/client.json"], "client_id": secret_id, "client_secret": "x"}
    url, _, _ = authorize_url(gw, secret_id, redirect)
    assert_html_error_page(httpx2.get(url, timeout=10), "document with a secret")
    # Its redirect URIs are the only ones.
    url, _, _ = authorize_url(gw, client_id, "https://evil.example/cb")
    assert_html_error_page(httpx2.get(url, timeout=10), "CIMD client, foreign redirect")

    # The tenant can refuse such clients.
    gw.cli("identity", "set", "--metadata-clients", "off")
    try:
        query, _, state = login(gw, client_id, redirect)
        assert query.get("error") == "access_denied" and query.get("state") == state and "code" not in query, query
    finally:
        gw.cli("identity", "set", "--metadata-clients", "on")


# ---------------------------------------------------------------- 6. consent and roles


def test_consent_is_shown_once_per_user_and_client(gw: OAuthGateway) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    client = gw.create_client("consent-app", kind="public", redirect_uris=[redirect])
    client["redirect_uri"] = redirect
    with Browser() as browser:
        query, _, _ = login(gw, client["client_id"], redirect, browser)
        assert "code" in query
        consent_posts = [u for m, u, _ in browser.hops if m == "POST" and u.endswith("/oauth/consent")]
        assert len(consent_posts) == 1, browser.hops
        cookie = next(c for c in browser.cookies.jar if c.name == "moat_session")
        assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly"), "moat_session: Secure; HttpOnly"
        assert (cookie.get_nonstandard_attr("SameSite") or "").lower() == "lax", cookie.__dict__

        start = len(browser.hops)
        query, _, _ = login(gw, client["client_id"], redirect, browser, user=None)
        assert "code" in query, query
        again = browser.hops[start:]
        assert [(m, urlpath(u)) for m, u, _ in again] == [("GET", "/oauth/authorize")], again


def urlpath(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]


def test_consent_denied(gw: OAuthGateway) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    client = gw.create_client("denied-app", kind="public", redirect_uris=[redirect])
    query, _, state = login(gw, client["client_id"], redirect, consent="deny")
    assert query["error"] == "access_denied" and query["state"] == state and query["iss"] == gw.issuer
    assert "code" not in query


@pytest.fixture(scope="module")
def admin_app(gw: OAuthGateway) -> dict[str, Any]:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    client = gw.create_client(
        "admin-console",
        kind="public",
        redirect_uris=[redirect],
        scopes=["mcp:tools", "admin:read", "admin:write"],
    )
    client["redirect_uri"] = redirect
    return client


def admin_get(gw: OAuthGateway, token: str, path: str = "/api/v1/whoami") -> httpx2.Response:
    return httpx2.get(gw.url(path), headers={"Authorization": f"Bearer {token}"}, timeout=10)


def admin_post_team(gw: OAuthGateway, token: str, name: str) -> httpx2.Response:
    return httpx2.post(
        gw.url("/api/v1/teams"), json={"name": name}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_member_asking_for_admin_scope_gets_none(gw: OAuthGateway, admin_app: dict[str, Any]) -> None:
    query, _, state = login(gw, admin_app["client_id"], admin_app["redirect_uri"], user="bob", scope="admin:read")
    assert query.get("error") == "invalid_scope" and query.get("state") == state and "code" not in query, query
    tokens = code_tokens(gw, admin_app, user="bob", scope="mcp:tools admin:read", resource=gw.base)
    assert tokens["scope"].split() == ["mcp:tools"], tokens["scope"]
    claims = jwt_parts(tokens["access_token"])[1]
    assert claims["role"] == "member" and "admin" not in claims["scope"]
    response = admin_get(gw, tokens["access_token"])
    assert response.status_code == 403 and 'error="insufficient_scope"' in response.headers.get("www-authenticate", "")
    # Refreshing cannot widen it.
    oauth_error(
        token_request(
            gw,
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": admin_app["client_id"],
                "scope": "admin:read",
            },
        ),
        400,
        "invalid_scope",
    )


def test_admin_user_token_reaches_the_admin_api(gw: OAuthGateway, admin_app: dict[str, Any]) -> None:
    with Browser() as browser:
        read = code_tokens(gw, admin_app, browser, scope="mcp:tools admin:read", resource=gw.url("/api"))
        assert set(read["scope"].split()) == {"mcp:tools", "admin:read"}
        claims = jwt_parts(read["access_token"])[1]
        assert claims["role"] == "admin" and claims["aud"] == gw.url("/api")
        whoami = admin_get(gw, read["access_token"])
        assert whoami.status_code == 200, whoami.text
        assert claims["sub"] in json.dumps(whoami.json()), whoami.json()
        denied = admin_post_team(gw, read["access_token"], "readers-cannot-write")
        assert denied.status_code == 403, denied.text
        assert 'scope="admin:write"' in denied.headers.get("www-authenticate", ""), denied.headers
        # An /api token is not an MCP token.
        assert_invalid_token(gw, mcp_post(gw, read["access_token"]), "/mcp", "/api token on /mcp")

        write = code_tokens(gw, admin_app, browser, scope="admin:read admin:write", resource=gw.base)
        created = admin_post_team(gw, write["access_token"], "oauth-team")
        assert created.status_code in (200, 201), created.text
        # Its audience covers /mcp, but it carries no MCP scope: 403 naming what to ask for.
        no_mcp = mcp_post(gw, write["access_token"])
        assert no_mcp.status_code == 403, no_mcp.text
        challenge = no_mcp.headers.get("www-authenticate", "")
        assert 'error="insufficient_scope"' in challenge and f'scope="{MCP_SCOPES}"' in challenge, challenge


# ---------------------------------------------------------------- 10. registration switches


def test_tenant_switch_refuses_dynamic_clients_at_authorization(gw: OAuthGateway, acme: dict[str, Any]) -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    registered = httpx2.post(
        gw.url("/oauth/register"), json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}, timeout=10
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    gw.cli("identity", "set", "--dynamic-registration", "off")
    try:
        assert gw.cli_json("identity", "show")["allow_registration"] is False
        # acme still accepts them, so registration stays open ...
        still = httpx2.post(
            gw.url("/oauth/register"),
            json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"},
            timeout=10,
        )
        assert still.status_code == 201, still.text
        # ... but the default tenant's users cannot authorize them.
        query, _, state = login(gw, client_id, redirect)
        assert query.get("error") == "access_denied" and query.get("state") == state and "code" not in query, query
        # Admin-created clients are not affected.
        admin_created = gw.create_client("after-switch", kind="public", redirect_uris=[redirect])
        query, _, _ = login(gw, admin_created["client_id"], redirect)
        assert "code" in query, query
        # With every tenant closed, registration itself is refused.
        gw.cli("identity", "set", "--dynamic-registration", "off", "--tenant", "acme")
        closed = httpx2.post(
            gw.url("/oauth/register"),
            json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"},
            timeout=10,
        )
        oauth_error(closed, 403, "access_denied")
    finally:
        gw.cli("identity", "set", "--dynamic-registration", "on", "--tenant", "acme")
        gw.cli("identity", "set", "--dynamic-registration", "on")
    reopened = httpx2.post(
        gw.url("/oauth/register"), json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}, timeout=10
    )
    assert reopened.status_code == 201, reopened.text


def test_registration_switch_single_tenant(ec_gw: OAuthGateway) -> None:
    body = {"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    assert httpx2.post(ec_gw.url("/oauth/register"), json=body, timeout=10).status_code == 201
    ec_gw.cli("identity", "set", "--dynamic-registration", "off")
    try:
        oauth_error(httpx2.post(ec_gw.url("/oauth/register"), json=body, timeout=10), 403, "access_denied")
        oauth_error(httpx2.post(ec_gw.url("/register"), json=body, timeout=10), 403, "access_denied")
    finally:
        ec_gw.cli("identity", "set", "--dynamic-registration", "on")
    assert httpx2.post(ec_gw.url("/oauth/register"), json=body, timeout=10).status_code == 201


def test_registrations_are_limited_per_address(ec_gw: OAuthGateway) -> None:
    body = {"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    with client_from("127.0.0.5") as http:
        statuses = [
            http.post(ec_gw.url("/oauth/register"), json=body).status_code for _ in range(REGISTRATIONS_PER_HOUR)
        ]
        assert statuses == [201] * REGISTRATIONS_PER_HOUR, statuses
        refused = http.post(ec_gw.url("/oauth/register"), json=body)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, refused.text
    # Another address has its own budget.
    assert httpx2.post(ec_gw.url("/oauth/register"), json=body, timeout=10).status_code == 201


def test_deployment_switch_turns_registration_off(limits_gw: OAuthGateway) -> None:
    meta = metadata(limits_gw)
    assert "registration_endpoint" not in meta, meta
    body = {"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"}
    oauth_error(httpx2.post(limits_gw.url("/oauth/register"), json=body, timeout=10), 403, "access_denied")


# ---------------------------------------------------------------- 9. abuse limits


def client_from(address: str) -> httpx2.Client:
    """An HTTP client whose connections come from another loopback address."""
    return httpx2.Client(transport=httpx2.HTTPTransport(local_address=address), timeout=10)


def test_oauth_requests_are_limited_per_address(limits_gw: OAuthGateway) -> None:
    with client_from("127.0.0.6") as http:
        statuses = []
        for _ in range(REQUESTS_PER_MINUTE):
            response = http.get(limits_gw.url("/oauth/authorize?client_id=nobody"))
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[0] == 400 and statuses[-1] == 429 and len(statuses) <= REQUESTS_PER_MINUTE // 4 + 2, statuses
        assert int(response.headers["retry-after"]) >= 1
        token = http.post(limits_gw.url("/oauth/token"), data={"grant_type": "client_credentials"})
        assert token.status_code == 429, token.text
        # Only /oauth/*: discovery and the rest of the gateway answer.
        assert http.get(limits_gw.url("/.well-known/oauth-authorization-server")).status_code == 200
        assert http.get(limits_gw.url("/healthz")).status_code == 200


def test_failed_client_authentication_is_rate_limited(limits_gw: OAuthGateway) -> None:
    bot = limits_gw.create_client("limited-bot")
    statuses = []
    with client_from("127.0.0.2") as http:
        for _ in range(6):
            response = http.post(
                limits_gw.url("/oauth/token"),
                data={"grant_type": "client_credentials"},
                auth=(bot["client_id"], "moat_cs_wrong"),
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
        assert int(response.headers["retry-after"]) >= 1, response.headers
        # Once spent, the right secret is refused too, from this address ...
        right = http.post(
            limits_gw.url("/oauth/token"),
            data={"grant_type": "client_credentials"},
            auth=(bot["client_id"], bot["client_secret"]),
        )
        assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1, right.text
    # ... and for this client from any address (the budget is per client as well).
    with client_from("127.0.0.4") as http:
        right = http.post(
            limits_gw.url("/oauth/token"),
            data={"grant_type": "client_credentials"},
            auth=(bot["client_id"], bot["client_secret"]),
        )
        assert right.status_code == 429, right.text
    # Another client from a clean address is not affected.
    other = limits_gw.create_client("unlimited-bot")
    assert client_credentials(limits_gw, other["client_id"], other["client_secret"]).status_code == 200


def test_failed_bearer_authentication_is_rate_limited(limits_gw: OAuthGateway) -> None:
    bot = limits_gw.create_client("bearer-bot")
    good = access_token(client_credentials(limits_gw, bot["client_id"], bot["client_secret"]))
    statuses = []
    with client_from("127.0.0.3") as http:
        for n in range(6):
            response = http.post(limits_gw.url("/mcp"), json={}, headers={"Authorization": f"Bearer bad-token-{n}"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
        assert int(response.headers["retry-after"]) >= 1, response.headers
        ok = http.post(limits_gw.url("/mcp"), json={}, headers={"Authorization": f"Bearer {good}", **MCP_ACCEPT})
        assert ok.status_code == 429, f"a good token from a blocked address: HTTP {ok.status_code}"
        api = http.get(limits_gw.url("/api/v1/whoami"), headers={"Authorization": f"Bearer {limits_gw.key}"})
        assert api.status_code == 429, f"the admin API from a blocked address: HTTP {api.status_code}"
    # 127.0.0.1 has its own budget.
    assert_accepted(mcp_post(limits_gw, good), "good token from another address")


MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


# ---------------------------------------------------------------- 11. the conformance suite


def test_conformance_authorization_server_scenarios(gw: OAuthGateway, workroot: Path) -> None:
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/callback"
    client = gw.create_client("conformance", kind="public", redirect_uris=[redirect])
    out = workroot / "conformance-auth"
    proc = Proc.start(
        "conformance-authorization",
        [
            str(NODE22),
            str(CONFORMANCE),
            "authorization",
            "--url",
            gw.issuer,
            "--client-id",
            client["client_id"],
            "--port",
            str(port),
            "--resource",
            gw.url("/mcp"),
            "--output-dir",
            str(out),
        ],
        workroot / "conformance-auth.log",
        cwd=INTEROP,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            found = re.search(r"^(http://\S+/oauth/authorize\?\S+)$", proc.log.read_text(errors="replace"), re.M)
            if found:
                url = found.group(1)
            elif not proc.alive():
                break
            else:
                time.sleep(0.1)
        assert url, f"the suite printed no authorization URL:\n{proc.tail()}"
        with Browser() as browser:
            final = browser.authorize(url, stop_prefix=redirect, login="alice")
            delivered = browser.get(final)  # the suite's callback server listens there
            assert delivered.status_code < 400, delivered.text
        proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    log = proc.log.read_text(errors="replace")
    checks = []
    for path in out.rglob("checks.json"):
        checks.extend(json.loads(path.read_text()))
    assert checks, f"no checks.json under {out}:\n{log[-3000:]}"
    scenarios = {path.parent.name for path in out.rglob("checks.json")}
    for scenario in ("authorization-server-metadata-endpoint", "authorization-code-grant"):
        assert any(f"-{scenario}-" in name for name in scenarios), (scenario, scenarios)
    ids = {check["id"] for check in checks}
    assert {"authorization-server-metadata", "authorization-server-metadata-cimd", "authorization-code-grant"} <= ids, (
        ids
    )
    bad = [(c["id"], c["status"], c.get("errorMessage")) for c in checks if c["status"] != "SUCCESS"]
    assert not bad, f"{bad}\n{log[-3000:]}"
    assert proc.popen.returncode == 0, log[-3000:]


# ---------------------------------------------------------------- 8. signing-key rotation


def test_signing_key_rotation(gw: OAuthGateway, svc: dict[str, Any]) -> None:
    old = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=gw.url("/mcp")))
    old_kid = jwt.get_unverified_header(old)["kid"]
    before = {k["kid"] for k in jwks(gw)["keys"]}
    assert old_kid in before
    gw.cli("identity", "rotate-key")
    after = {k["kid"] for k in jwks(gw)["keys"]}
    assert len(after) == len(before) + 1 and before < after, (before, after)
    listed = gw.cli_json("identity", "keys")
    assert len(listed if isinstance(listed, list) else listed.get("keys", [])) == len(after), listed

    new = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=gw.url("/mcp")))
    new_kid = jwt.get_unverified_header(new)["kid"]
    assert new_kid != old_kid and new_kid in after - before
    verify_with_jwks(gw, new, "RS256", gw.url("/mcp"))
    assert_accepted(mcp_post(gw, old), "a token of the retired key, within the grace period")
    assert_accepted(mcp_post(gw, new), "a token of the new key")


# ---------------------------------------------------------------- 7. tenant-wide revocation


def test_revoke_all_ends_tokens_and_sessions_but_not_api_keys(
    gw: OAuthGateway, app: dict[str, Any], svc: dict[str, Any]
) -> None:
    with Browser() as browser:
        tokens = code_tokens(gw, app, browser)
        service = access_token(client_credentials(gw, svc["client_id"], svc["client_secret"], resource=gw.url("/mcp")))
        assert_accepted(mcp_post(gw, tokens["access_token"]), "human token before revoke-all")
        assert_accepted(mcp_post(gw, service), "service token before revoke-all")

        gw.cli("identity", "revoke-all")

        assert_invalid_token(gw, mcp_post(gw, tokens["access_token"]), "/mcp", "human token after revoke-all")
        assert_invalid_token(gw, mcp_post(gw, service), "/mcp", "service token after revoke-all")
        oauth_error(refresh(gw, app["client_id"], tokens["refresh_token"]), 400, "invalid_grant")
        # The browser session is gone: the next authorization goes to the IdP, not to consent.
        url, _, _ = authorize_url(gw, app["client_id"], app["redirect_uri"])
        first_hop = browser.get(url)
        assert first_hop.status_code == 302, first_hop.text
        assert gw.op is not None and first_hop.headers["location"].startswith(gw.op.issuer + "/"), first_hop.headers
        # API keys stay.
        assert_accepted(mcp_post(gw, gw.key), "API key after revoke-all")
        assert (
            httpx2.get(gw.url("/api/v1/whoami"), headers={"Authorization": f"Bearer {gw.key}"}, timeout=10).status_code
            == 200
        )

        # New logins and tokens work again (the watermark is to the millisecond).
        fresh = code_tokens(gw, app, browser)
        assert_accepted(mcp_post(gw, fresh["access_token"]), "a token issued after revoke-all")
        # The same IdP subject is the same moat user.
        assert jwt_parts(fresh["access_token"])[1]["sub"] == jwt_parts(tokens["access_token"])[1]["sub"]


# ---------------------------------------------------------------- 5. (last) expiry


def test_expired_token_is_refused(ec_gw: OAuthGateway) -> None:
    """ec_gw issues 10-second tokens; the one it issued at start is checked here, after its
    `exp` plus moat's clock-skew leeway (30 s) has passed: most of that wait overlapped the tests
    above. A refresh-less client-credentials client simply asks again."""
    token = ec_gw.extra["expiring"]
    exp = jwt_parts(token)[1]["exp"]
    remaining = exp + LEEWAY_S + 1.5 - time.time()
    if remaining > 0:
        time.sleep(remaining)
    assert_invalid_token(ec_gw, mcp_post(ec_gw, token), "/mcp", "an expired token")
    client = ec_gw.extra["expiring_client"]
    assert_accepted(
        mcp_post(ec_gw, access_token(client_credentials(ec_gw, client["client_id"], client["client_secret"])))
    )
