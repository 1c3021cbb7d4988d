"""The OpenID Provider fixture and the scripted browser, without moat.

Authlib plays the relying party moat will be (authorization code + PKCE S256 + nonce + state,
client_secret_basic), the browser logs in at oidc-provider's pages, and the ID token is checked
against the provider's JWKS. Needs setup.sh only (Node 22 and oidc-provider), not MOAT_BIN.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from http.cookiejar import Cookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from browser import Browser, BrowserError
from oidc import OidcProvider, oidc_provider

pytestmark = pytest.mark.timeout(60)

CLIENT_ID = "moat-rp"
CLIENT_SECRET = "rp-secret-" + secrets.token_hex(8)
REDIRECT_URI = "http://127.0.0.1:9/oidc/callback"  # never requested: port 9 (discard), nobody listens
ACCOUNTS = {
    "alice": {"sub": "alice-sub-1", "email": "alice@example.com", "name": "Alice Liddell", "groups": ["admins", "dev"]},
    "bob": {"sub": "bob-sub-2", "email": "bob@example.com", "name": "Bob", "groups": []},
}


@pytest.fixture(scope="module")
def op() -> Iterator[OidcProvider]:
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]}]
    with oidc_provider(clients=clients, accounts=ACCOUNTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def discovery(op: OidcProvider) -> dict[str, Any]:
    response = httpx2.get(op.discovery_url, timeout=10)
    response.raise_for_status()
    meta = response.json()
    assert meta["issuer"] == op.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert {"openid", "email", "profile", "groups"} <= set(meta["scopes_supported"])
    return meta


def relying_party() -> OAuth2Session:
    return OAuth2Session(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        scope="openid email profile groups",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )


def start(discovery: dict[str, Any]) -> tuple[OAuth2Session, str, dict[str, str]]:
    """An authorization URL with PKCE S256, nonce and state; and what the RP keeps for the callback."""
    rp = relying_party()
    kept = {"code_verifier": generate_token(48), "nonce": generate_token(20), "state": generate_token(20)}
    url, _ = rp.create_authorization_url(
        discovery["authorization_endpoint"],
        state=kept["state"],
        code_verifier=kept["code_verifier"],
        nonce=kept["nonce"],
    )
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    return rp, url, kept


def verify_id_token(op: OidcProvider, discovery: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
    jwks = httpx2.get(discovery["jwks_uri"], timeout=10).json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": op.issuer},
        aud={"essential": True, "value": CLIENT_ID},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    ).validate(token.claims)
    return dict(token.claims)


def test_code_flow_with_pkce_and_nonce(op: OidcProvider, discovery: dict[str, Any]) -> None:
    rp, url, kept = start(discovery)
    with Browser() as browser:
        callback = browser.authorize(url, stop_prefix=REDIRECT_URI, login="alice", consent="allow")

        # The walk: /auth -> login page -> login POST -> /auth/<uid> -> consent page -> consent POST -> /auth/<uid>.
        paths = [(method, urlsplit(u).path.split("/")[1]) for method, u, _ in browser.hops]
        assert ("POST", "interaction") in paths and paths[0] == ("GET", "auth")
        assert not any(u.startswith(REDIRECT_URI) for _, u, _ in browser.hops), "the callback must not be requested"
        assert all(status in (200, 303) for _, _, status in browser.hops), browser.hops

        params = parse_qs(urlsplit(callback).query)
        assert params["state"] == [kept["state"]]
        assert params["iss"] == [op.issuer]  # RFC 9207
        tokens = rp.fetch_token(
            discovery["token_endpoint"],
            authorization_response=callback,
            state=kept["state"],
            code_verifier=kept["code_verifier"],
        )
        claims = verify_id_token(op, discovery, tokens["id_token"], kept["nonce"])
        assert claims["sub"] == "alice-sub-1"
        assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
        assert claims["name"] == "Alice Liddell" and claims["preferred_username"] == "alice"
        assert claims["groups"] == ["admins", "dev"]

        info = rp.get(discovery["userinfo_endpoint"]).json()
        assert info["sub"] == "alice-sub-1" and info["groups"] == ["admins", "dev"]

        # The IdP session cookie is kept: a second authorization needs neither login nor consent.
        rp2, url2, kept2 = start(discovery)
        browser.hops.clear()
        callback2 = browser.authorize(url2, stop_prefix=REDIRECT_URI, login=None)
        assert [m for m, _, _ in browser.hops] == ["GET"], browser.hops
        tokens2 = rp2.fetch_token(
            discovery["token_endpoint"],
            authorization_response=callback2,
            state=kept2["state"],
            code_verifier=kept2["code_verifier"],
        )
        assert verify_id_token(op, discovery, tokens2["id_token"], kept2["nonce"])["sub"] == "alice-sub-1"

        # The code is single-use (a replay also revokes the grant, so this comes last).
        again = relying_party().post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": kept["code_verifier"],
            },
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_wrong_code_verifier_is_refused(op: OidcProvider, discovery: dict[str, Any]) -> None:
    rp, url, kept = start(discovery)
    with Browser() as browser:
        callback = browser.authorize(url, stop_prefix=REDIRECT_URI, login="bob")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = rp.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": generate_token(48),
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_pkce_is_required(op: OidcProvider, discovery: dict[str, Any]) -> None:
    url, _ = OAuth2Session(client_id=CLIENT_ID, scope="openid", redirect_uri=REDIRECT_URI).create_authorization_url(
        discovery["authorization_endpoint"], state="s", nonce="n"
    )
    with Browser() as browser:
        callback = browser.authorize(url, stop_prefix=REDIRECT_URI)
    params = parse_qs(urlsplit(callback).query)
    assert params["error"] == ["invalid_request"] and "PKCE" in params["error_description"][0]


def test_unknown_login_is_refused(op: OidcProvider, discovery: dict[str, Any]) -> None:
    _, url, _ = start(discovery)
    with Browser() as browser:
        with pytest.raises(BrowserError) as refused:
            browser.authorize(url, stop_prefix=REDIRECT_URI, login="mallory")
        assert refused.value.why.startswith("login refused"), refused.value
        assert refused.value.status == 200 and "Unknown login" in refused.value.text
        assert not any(u.startswith(REDIRECT_URI) for _, u, _ in browser.hops)
        # Exactly one login POST: the refusal was detected, not looped on.
        assert sum(1 for m, u, _ in browser.hops if m == "POST" and u.endswith("/login")) == 1
        assert browser.cookies.get("op_session") is None  # no IdP session for mallory


def test_consent_denied(op: OidcProvider, discovery: dict[str, Any]) -> None:
    _, url, kept = start(discovery)
    with Browser() as browser:
        callback = browser.authorize(url, stop_prefix=REDIRECT_URI, login="alice", consent="deny")
    params = parse_qs(urlsplit(callback).query)
    assert params["error"] == ["access_denied"] and params["state"] == [kept["state"]]
    assert "code" not in params


def test_login_none_raises_when_a_login_form_appears(op: OidcProvider, discovery: dict[str, Any]) -> None:
    _, url, _ = start(discovery)
    with Browser() as browser, pytest.raises(BrowserError, match="login=None"):
        browser.authorize(url, stop_prefix=REDIRECT_URI, login=None)


def test_secure_cookies_go_to_loopback_only() -> None:
    with Browser() as browser:
        for domain in ("127.0.0.1", "localhost.local", "example.com"):
            browser.cookies.jar.set_cookie(
                Cookie(
                    0,
                    f"c_{domain.split('.')[0]}",
                    "v",
                    None,
                    False,
                    domain,
                    False,
                    False,
                    "/",
                    True,
                    True,
                    None,
                    False,
                    None,
                    None,
                    {},
                )
            )
        sent = {}
        for url in ("http://127.0.0.1:1234/x", "http://localhost:99/", "http://example.com/", "https://example.com/"):
            request = httpx2.Request("GET", url)
            browser.cookies.set_cookie_header(request)
            sent[url] = request.headers.get("cookie")
        assert sent == {
            "http://127.0.0.1:1234/x": "c_127=v",
            "http://localhost:99/": "c_localhost=v",
            "http://example.com/": None,
            "https://example.com/": "c_example=v",
        }


def test_form_post_response_mode(op: OidcProvider, discovery: dict[str, Any]) -> None:
    """The IdP answers with an auto-submitting form to the redirect URI: returned, fields as the query."""
    rp, url, kept = start(discovery)
    with Browser() as browser:
        callback = browser.authorize(url + "&response_mode=form_post", stop_prefix=REDIRECT_URI)
    params = parse_qs(urlsplit(callback).query)
    assert params["state"] == [kept["state"]] and params["code"][0]
    tokens = rp.fetch_token(
        discovery["token_endpoint"],
        authorization_response=callback,
        state=kept["state"],
        code_verifier=kept["code_verifier"],
    )
    assert verify_id_token(op, discovery, tokens["id_token"], kept["nonce"])["sub"] == "alice-sub-1"


MOAT_LIKE_PAGE = """<!DOCTYPE html><html><body>
<form method="post" action="pick?x=1">
  <input type="hidden" name="csrf" value="tok&amp;1">
  <select name="tenant"><option value="default" selected>Default</option><option>acme</option></select>
  <label><input type="radio" name="mode" value="ro" checked> read</label>
  <label><input type="radio" name="mode" value="rw"> write</label>
  <input type="checkbox" name="remember" value="yes" checked>
  <input type="text" name="note" value="keep me">
  <textarea name="why">because</textarea>
  <button type="submit" name="decision" value="deny">Deny</button>
  <button type="submit" name="decision" value="allow">Allow</button>
</form>
<form method="post" action="/logout"><button>Log out</button></form>
</body></html>"""


def test_browser_fills_forms_and_stops_before_the_redirect_uri() -> None:
    seen: list[httpx2.Request] = []

    def app(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path == "/oauth/authorize":
            return httpx2.Response(
                200,
                html=MOAT_LIKE_PAGE,
                headers={"set-cookie": "__Host-moat=s1; Path=/; Secure; HttpOnly; SameSite=Lax"},
            )
        if request.url.path == "/oauth/pick" and request.method == "POST":
            return httpx2.Response(302, headers={"location": f"{REDIRECT_URI}?code=abc&state=xyz"})
        return httpx2.Response(404, text="nope")

    with Browser(transport=httpx2.MockTransport(app)) as browser:
        got = browser.authorize(
            "http://127.0.0.1:7777/oauth/authorize?client_id=c",
            stop_prefix=REDIRECT_URI,
            choose={"tenant": "acme", "mode": "rw", "note": "hello"},
        )
        assert got == f"{REDIRECT_URI}?code=abc&state=xyz"
        assert browser.hops == [
            ("GET", "http://127.0.0.1:7777/oauth/authorize?client_id=c", 200),
            ("POST", "http://127.0.0.1:7777/oauth/pick?x=1", 302),
        ]
        post = seen[-1]
        assert parse_qs(post.content.decode(), keep_blank_values=True) == {
            "csrf": ["tok&1"],
            "tenant": ["acme"],
            "mode": ["rw"],
            "remember": ["yes"],
            "note": ["hello"],
            "why": ["because"],
            "decision": ["allow"],
        }
        assert post.headers["origin"] == "http://127.0.0.1:7777"
        assert post.headers["cookie"] == "__Host-moat=s1"  # Secure cookie, sent over http to loopback

        with pytest.raises(BrowserError, match="no submit button matches consent='maybe'"):
            browser.authorize("http://127.0.0.1:7777/oauth/authorize", stop_prefix=REDIRECT_URI, consent="maybe")
        with pytest.raises(BrowserError, match="HTTP 404") as stuck:
            browser.authorize("http://127.0.0.1:7777/elsewhere", stop_prefix=REDIRECT_URI)
        assert stuck.value.status == 404 and stuck.value.text == "nope"
