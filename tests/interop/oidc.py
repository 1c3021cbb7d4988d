"""A real OpenID Provider on loopback for tests: fixtures/oidc_provider.mjs (npm `oidc-provider`) on Node 22.

    with oidc_provider(
        clients=[{"client_id": "moat", "client_secret": "s3cret", "redirect_uris": [redirect_uri]}],
        accounts={"alice": {"sub": "alice-sub", "email": "alice@example.com", "name": "Alice",
                            "groups": ["admins"]}},
    ) as op:
        op.issuer   # http://127.0.0.1:PORT  (discovery at op.issuer + "/.well-known/openid-configuration")

Clients: `client_id`, `client_secret` (omit it, or token_endpoint_auth_method "none", for a public
client), `redirect_uris`, optional `token_endpoint_auth_method` and any other client metadata.
Accounts: login -> {sub, email, name, groups, [email_verified, preferred_username]}; the login form
takes the login (any password); claims are released for the scopes openid, email, profile, groups.
PKCE S256 is required for every client. See the fixture's header for the pages it serves.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import FIXTURES, NODE22, Proc, free_port

OIDC_PROVIDER = FIXTURES / "oidc_provider.mjs"


@dataclass
class OidcProvider:
    issuer: str
    port: int
    proc: Proc
    config: dict[str, Any]

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def logs(self) -> str:
        return self.proc.tail()


def _wait_ready(proc: Proc, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = proc.log.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith("READY "):
                return line.split(" ", 1)[1].strip()
        if not proc.alive():
            raise RuntimeError(f"oidc-provider exited with {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"oidc-provider did not print READY within {timeout}s:\n{proc.tail()}")


@contextmanager
def oidc_provider(
    clients: list[dict[str, Any]],
    accounts: dict[str, dict[str, Any]],
    port: int | None = None,
    auto_consent: bool = False,
    timeout: float = 30.0,
) -> Iterator[OidcProvider]:
    """Starts the provider on 127.0.0.1 (a free port unless given), yields it, stops it at exit."""
    if not NODE22.exists():
        raise RuntimeError(f"{NODE22} is missing: run tests/interop/setup.sh")
    port = port or free_port()
    config = {
        "port": port,
        "issuer": f"http://127.0.0.1:{port}",
        "clients": clients,
        "accounts": accounts,
        "auto_consent": auto_consent,
    }
    with tempfile.TemporaryDirectory(prefix="moat-oidc-") as tmp:
        config_path = Path(tmp) / "oidc.json"
        config_path.write_text(json.dumps(config))
        proc = Proc.start("oidc-provider", [str(NODE22), str(OIDC_PROVIDER), str(config_path)], Path(tmp) / "oidc.log")
        try:
            issuer = _wait_ready(proc, timeout)
            yield OidcProvider(issuer=issuer, port=port, proc=proc, config=config)
        finally:
            proc.stop(grace=5.0)
