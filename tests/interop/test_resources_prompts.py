"""Resources, resource templates and prompts through moat, in both protocol eras.

Aggregated on /mcp: resource URIs are `<server>+<original-uri>`, resource and prompt names
`<server>__<name>`; /mcp/<server> shows them unchanged.
"""

from __future__ import annotations

import pytest

from conftest import MODES, Gateway

pytestmark = pytest.mark.anyio


def contents_text(result: object) -> str:
    return "\n".join(getattr(item, "text", "") or "" for item in getattr(result, "contents", []))


@pytest.mark.parametrize("mode", MODES)
async def test_aggregated_resources_list_and_read(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        resources = []
        cursor = None
        for _ in range(20):
            page = await client.list_resources(cursor=cursor)
            resources.extend(page.resources)
            cursor = page.next_cursor
            if not cursor:
                break
        by_uri = {str(resource.uri): resource for resource in resources}

        for server in ("pyhttp", "pystdio"):
            uri = f"{server}+py://hello"
            assert uri in by_uri, f"{uri} not in the aggregated resources: {sorted(by_uri)}"
            assert by_uri[uri].name == f"{server}__hello"
            read = await client.read_resource(uri)
            assert contents_text(read) == "Hello from py_server"

        everything = [uri for uri in by_uri if uri.startswith("everything+")]
        assert everything, f"no server-everything resources on /mcp: {sorted(by_uri)}"
        read = await client.read_resource(everything[0])
        assert read.contents, f"reading {everything[0]} returned no contents"


@pytest.mark.parametrize("mode", MODES)
async def test_aggregated_resource_templates(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        templates = (await client.list_resource_templates()).resource_templates
        uris = {template.uri_template for template in templates}
        assert "pyhttp+py://item/{id}" in uris, sorted(uris)
        read = await client.read_resource("pyhttp+py://item/7")
        assert contents_text(read) == "item 7"


@pytest.mark.parametrize("mode", MODES)
async def test_single_server_resources_unprefixed(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp/pyhttp", mode) as client:
        uris = {str(resource.uri) for resource in (await client.list_resources()).resources}
        assert uris == {"py://hello"}, sorted(uris)
        assert contents_text(await client.read_resource("py://hello")) == "Hello from py_server"
        assert contents_text(await client.read_resource("py://item/9")) == "item 9"


@pytest.mark.parametrize("mode", MODES)
async def test_aggregated_prompts_list_and_get(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp", mode) as client:
        names = {prompt.name for prompt in (await client.list_prompts()).prompts}
        for expected in ("pyhttp__greeting", "pystdio__greeting", "everything__simple-prompt"):
            assert expected in names, f"{expected} not in {sorted(names)}"

        got = await client.get_prompt("pyhttp__greeting", {"name": "Ada"})
        assert got.messages[0].content.text == "Please greet Ada warmly."

        simple = await client.get_prompt("everything__simple-prompt")
        assert simple.messages, "server-everything's simple-prompt came back empty"


@pytest.mark.parametrize("mode", MODES)
async def test_single_server_prompts_unprefixed(gateway: Gateway, mode: str) -> None:
    async with gateway.client("/mcp/pystdio", mode) as client:
        names = {prompt.name for prompt in (await client.list_prompts()).prompts}
        assert names == {"greeting"}
        got = await client.get_prompt("greeting", {"name": "Grace"})
        assert got.messages[0].content.text == "Please greet Grace warmly."
