"""Drives the real `moat` binary with real MCP peers.

Each test module gets its own gateway (`gateway` fixture): a temporary data dir, `moat init`,
a config with four upstreams, and `moat serve` on a free 127.0.0.1 port:

    everything  @modelcontextprotocol/server-everything over stdio (npm)
    pyhttp      fixtures/py_server.py over Streamable HTTP (started here, on a free port)
    pystdio     fixtures/py_server.py over stdio
    pyanon      fixtures/py_server.py over stdio, allow_anonymous = true

Every process started here runs in its own process group and is stopped at teardown,
together with anything it spawned (see harness.py). The binary is `$MOAT_BIN`, else
`$CARGO_TARGET_DIR/release/moat`, else `target/release/moat` in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from harness import (
    EVERYTHING,
    FIXTURES,
    NODE22,
    PYTHON,
    Proc,
    free_port,
    moat_bin,
    moat_init,
    moat_serve,
    toml_array,
    toml_string,
    wait_for_port,
)

MODES = ["legacy", "2026-07-28"]
"""Protocol eras the SDK client speaks to moat: the 2025-11-25 handshake and the stateless revision."""


# ---------------------------------------------------------------- the gateway


@dataclass
class Gateway:
    """A running `moat serve` with its upstreams."""

    base: str
    key: str
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def url(self, path: str = "/mcp") -> str:
        return f"{self.base}{path}"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    @asynccontextmanager
    async def client(
        self, path: str = "/mcp", mode: str = "legacy", key: str | None = None, **options: Any
    ) -> AsyncIterator[Client]:
        """An SDK `Client` over Streamable HTTP with the API key, in the given protocol era."""
        timeout = httpx2.Timeout(30.0, read=60.0)
        async with httpx2.AsyncClient(headers=self.auth(key), timeout=timeout) as http:
            transport = streamable_http_client(self.url(path), http_client=http)
            async with Client(transport, mode=mode, cache=None, read_timeout_seconds=60, **options) as client:
                yield client

    @asynccontextmanager
    async def sse_client(self, path: str = "/sse", **options: Any) -> AsyncIterator[Client]:
        """An SDK `Client` over the legacy HTTP+SSE transport (2024-11-05 style)."""
        transport = sse_client(self.url(path), headers=self.auth(), timeout=30.0, sse_read_timeout=60.0)
        async with Client(transport, mode="legacy", cache=None, read_timeout_seconds=60, **options) as client:
            yield client

    def logs(self) -> str:
        return "\n".join(f"--- {name} ({proc.log})\n{proc.tail()}" for name, proc in self.procs.items())


def start_gateway(workdir: Path) -> Gateway:
    binary = moat_bin()
    if not binary.is_file():
        pytest.fail(
            f"moat binary not found at {binary}: build it (cargo build --release -p moat) or set MOAT_BIN",
            pytrace=False,
        )
    for needed in (NODE22, EVERYTHING):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: run tests/interop/setup.sh", pytrace=False)

    data_dir = workdir / "data"
    try:
        key = moat_init(binary, data_dir)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)

    gateway = Gateway(base="", key=key, workdir=workdir)
    try:
        py_port = free_port()
        gateway.procs["pyhttp"] = Proc.start(
            "pyhttp", [str(PYTHON), str(FIXTURES / "py_server.py"), "http", str(py_port)], workdir / "pyhttp.log"
        )
        wait_for_port(gateway.procs["pyhttp"], py_port)

        stdio_py = toml_array([str(PYTHON), str(FIXTURES / "py_server.py"), "stdio"])
        config = workdir / "moat.toml"
        config.write_text(
            f"""
[[servers]]
name = "everything"
tenant = "default"
transport = "stdio"
command = {toml_array([str(NODE22), str(EVERYTHING), "stdio"])}

[[servers]]
name = "pyhttp"
tenant = "default"
transport = "streamable-http"
url = {toml_string(f"http://127.0.0.1:{py_port}/mcp")}

[[servers]]
name = "pystdio"
tenant = "default"
transport = "stdio"
command = {stdio_py}

[[servers]]
name = "pyanon"
tenant = "default"
transport = "stdio"
command = {stdio_py}
allow_anonymous = true

# The suite sends many bad keys from 127.0.0.1 on purpose (test_auth.py and others): a generous
# failure budget keeps those 401s from turning into 429s. test_oauth.py tests the limit itself
# with a gateway of its own.
[oauth]
failures_per_minute = 100000
"""
        )
        gateway.procs["moat"], gateway.base = moat_serve(binary, data_dir, config, workdir)
    except BaseException:
        stop_gateway(gateway)
        raise
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    # moat first, so that it shuts its stdio upstreams down itself; then what we started beside it.
    for name in ("moat", *[name for name in gateway.procs if name != "moat"]):
        if name in gateway.procs:
            gateway.procs[name].stop()


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    keep = os.environ.get("MOAT_INTEROP_KEEP") == "1"
    tmp = tempfile.mkdtemp(prefix=f"moat-interop-{request.module.__name__.rsplit('.', 1)[-1]}-")
    gateway = start_gateway(Path(tmp))
    try:
        yield gateway
    finally:
        stop_gateway(gateway)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, attach the tail of moat's log (and the upstreams') to the report."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for name, value in getattr(item, "funcargs", {}).items():
            # The shared `gateway`, and any other gateway a module starts itself (test_oauth.py's).
            if isinstance(value, Gateway) or (callable(getattr(value, "logs", None)) and hasattr(value, "procs")):
                report.sections.append((f"moat and upstream logs ({name})", value.logs()))
    return report


# ---------------------------------------------------------------- helpers for tests


def text_of(result: Any) -> str:
    """All text content of a tool result or prompt message list, joined."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
    return "\n".join(parts)


async def all_tools(client: Client, page_cap: int = 50) -> tuple[list[str], int]:
    """Every tool name, following nextCursor; and how many pages that took."""
    names: list[str] = []
    cursor: str | None = None
    for page_number in range(1, page_cap + 1):
        page = await client.list_tools(cursor=cursor)
        names.extend(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if not cursor:
            return names, page_number
    raise AssertionError(f"tools/list did not end within {page_cap} pages")


def parse_jsonrpc_body(response: httpx2.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages in a Streamable HTTP response: a JSON body or an SSE stream of them."""
    kind = response.headers.get("content-type", "")
    if "text/event-stream" in kind:
        messages = []
        for event in response.text.split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in event.splitlines() if line.startswith("data:"))
            if data.strip():
                messages.append(json.loads(data))
        return messages
    if not response.content:
        return []
    body = response.json()
    return body if isinstance(body, list) else [body]


def mcp_error_in(exc: BaseException) -> MCPError | None:
    """The MCPError in `exc`, also when the SDK's task groups wrapped it in an exception group."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = mcp_error_in(inner)
            if found is not None:
                return found
    return None


PY_TOOLS = {
    "add",
    "slow_progress",
    "wait_for_cancel",
    "cancelled_calls",
    "transport",
    *{f"page_filler_{n:02d}" for n in range(1, 13)},
}
"""What fixtures/py_server.py lists: 17 tools, 5 to a page."""
