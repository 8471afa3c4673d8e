"""Validate response bodies against the create contract's own JSON Schemas (not hand-written field lists)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT = Path(__file__).resolve().parent.parent / "contract" / "create-mcp-server.openapi.yaml"
SHARED_CONTRACT = Path(__file__).resolve().parent.parent.parent / "shared" / "spec" / CONTRACT.name
CREATE_PATH = "/api/public/organizations/{orgId}/mcp-servers"
_URI = "urn:contract:create-mcp-server"


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(CONTRACT.read_text())


@cache
def _registry() -> Registry:
    return Registry().with_resource(_URI, Resource.from_contents(spec(), default_specification=DRAFT202012))


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


@cache
def response_validator(status: int, method: str = "post", path: str = CREATE_PATH) -> Draft202012Validator:
    pointer = _pointer("paths", path, method, "responses", str(status), "content", "application/json", "schema")
    return Draft202012Validator({"$ref": f"{_URI}#/{pointer}"}, registry=_registry(), format_checker=FormatChecker())


def assert_matches_contract(status: int, body: Any) -> None:
    """The body is valid against the contract's schema for the create operation's `status` response."""
    errors = sorted(response_validator(status).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
