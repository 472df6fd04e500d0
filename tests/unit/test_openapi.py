"""The OpenAPI document (telepty.api.openapi) describes exactly the routes the daemon
registers, and is a valid OpenAPI 3.1 document whose schemas are valid JSON Schema.

Route coverage goes through aiohttp's own router: each documented (method, path) is
resolved the way a request would be, so "described" means "reaches that handler".
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from schemathesis.core.result import Err

from telepty import __version__
from telepty.api.openapi import OPENAPI_PATH, build_document
from telepty.config import Config
from telepty.daemon import create_app

METHODS = ("get", "post", "put", "patch", "delete")


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in doc["paths"].items()
            for m, op in item.items() if m in METHODS]


def _concrete(path: str) -> str:
    """A request path for a template: every ``{param}`` becomes a plain id."""
    return re.sub(r"\{[^}]+\}", "s1", path)


async def _route_of(app: web.Application, method: str, path: str) -> web.AbstractRoute | None:
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    return match.route if match.http_exception is None else None


@pytest.fixture
def doc() -> dict[str, Any]:
    return build_document()


async def test_every_registered_route_is_documented_and_vice_versa(
    config: Config, doc: dict[str, Any]
) -> None:
    app = create_app(config)
    registered = {r for r in app.router.routes() if r.method != "HEAD"}  # HEAD comes with each GET
    reached: dict[web.AbstractRoute, set[str]] = {}
    for method, path, _op in _operations(doc):
        route = await _route_of(app, method, _concrete(path))
        assert route is not None, f"{method} {path} is documented but no route serves it"
        assert route in registered, f"{method} {path} resolves to an undocumentable route {route}"
        reached.setdefault(route, set()).add(_concrete(path))
    missing = sorted(f"{r.method} {r.resource.canonical if r.resource else '?'}"
                     for r in registered - set(reached))
    assert not missing, f"routes registered in create_app but missing from the OpenAPI document: {missing}"
    # A route whose parameter is a fixed choice ({action:claim|executing|complete}) is
    # documented once per choice.
    for route, concrete in reached.items():
        info = route.resource.get_info() if route.resource else {}
        if "pattern" not in info:
            continue
        for name, alts in re.findall(r"\(\?P<(\w+)>([\w|]+)\)", info["pattern"].pattern):
            if "|" not in alts:
                continue
            for alt in alts.split("|"):
                fields = {n: "s1" for n in re.findall(r"\{(\w+)\}", info["formatter"])} | {name: alt}
                assert info["formatter"].format(**fields) in concrete, f"{route.method} {alt} is undocumented"


async def test_documented_path_parameters_match_the_template(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert in_path == declared, f"{method} {path}: template has {in_path}, parameters {declared}"


def test_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == __version__
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # the OpenAPI 3.1 meta-schema
    results = list(schema.get_all_operations())
    problems = [str(r.err()) for r in results if isinstance(r, Err)]
    assert not problems, problems
    assert len(results) == len(_operations(doc))


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every JSON Schema in the document: components, parameters, bodies, responses."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_schemas(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_schemas(item))
    return found


def test_every_schema_is_valid_json_schema(doc: dict[str, Any]) -> None:
    schemas = list(doc["components"]["schemas"].values()) + _schemas(doc["paths"])
    assert len(schemas) > 50
    for s in schemas:
        jsonschema.Draft202012Validator.check_schema(s)


def test_operation_ids_unique_and_errors_are_json(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _m, _p, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    for method, path, op in _operations(doc):
        for status, resp in op["responses"].items():
            if status.startswith(("4", "5")):
                assert "application/json" in resp["content"], f"{method} {path} {status}"
        if op["security"]:  # authenticated: the auth refusals are documented
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
    assert doc["paths"]["/api/health"]["get"]["security"] == []


def test_websockets_and_spawn_are_marked(doc: dict[str, Any]) -> None:
    ws = sorted(p for _m, p, op in _operations(doc) if op.get("x-websocket"))
    assert ws == ["/api/bus", "/api/sessions/{id}/attach", "/api/wrap"]
    spawns = [p for _m, p, op in _operations(doc) if op.get("x-spawns-process")]
    assert spawns == ["/api/sessions/spawn"]


async def test_served_document(aiohttp_client: Any, config: Config) -> None:
    client = await aiohttp_client(create_app(config))
    resp = await client.get(OPENAPI_PATH)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == build_document()
    # Like every route but health, it is refused to a browser origin.
    refused = await client.get(OPENAPI_PATH, headers={"Origin": "https://evil.example"})
    assert refused.status == 403
