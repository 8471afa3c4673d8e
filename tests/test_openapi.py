"""The OpenAPI document: committed in sync with the code, the create operation equal to the contract, every
route described, and served without auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from rest_framework.views import APIView

from mcp_servers.api import schema as api_schema
from mcp_servers.api import serializers as api_serializers
from mcp_servers.api import urls as api_urls
from tests.contract import CREATE_PATH
from tests.contract import spec as contract_spec

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "openapi" / "openapi.yaml"
REGENERATE = ".venv/bin/python manage.py spectacular --file openapi/openapi.yaml --validate --fail-on-warn"
CREATE_STATUSES = ("201", "400", "401", "404", "429", "500")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    target = tmp_path_factory.mktemp("openapi") / "openapi.yaml"
    call_command("spectacular", "--file", str(target), "--validate", "--fail-on-warn")
    return target.read_text()


@pytest.fixture(scope="module")
def document(generated: str) -> dict[str, Any]:
    return yaml.safe_load(generated)


# --- (a) the committed file is what the code generates ------------------------------------------------------


def test_committed_document_is_up_to_date(generated: str) -> None:
    committed = COMMITTED.read_text() if COMMITTED.exists() else ""
    assert committed == generated, (
        f"openapi/openapi.yaml is out of date with the code; regenerate it with:\n  {REGENERATE}"
    )


# --- (b) the create operation is the contract's, field for field --------------------------------------------

# Keywords that change what a schema accepts or promises; descriptions and titles do not.
_SCALAR_KEYWORDS = (
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "minItems",
    "maxItems",
    "const",
)


def resolve(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    """`node` with every local `$ref` replaced by (a resolved copy of) its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), f"unsupported $ref {ref}"
            assert ref not in seen, f"cyclic $ref {ref}"
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return resolve(document, {**target, **siblings}, (*seen, ref))
        return {key: resolve(document, value, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(document, item, seen) for item in node]
    return node


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    types = set(declared) if isinstance(declared, list) else {declared} if declared else set()
    if schema.get("nullable"):
        types.add("null")
    if None in schema.get("enum", ()):
        types.add("null")
    return types


def normalize(schema: Any) -> dict[str, Any]:
    """A canonical form: `type` and `enum` as sorted lists (null included), `required` as a sorted list, one
    `properties` mapping (allOf merged), and an `anyOf`/`oneOf` of plain enums or of `{"type": "null"}` folded
    into one type/enum. Descriptions, titles and examples are dropped."""
    if not isinstance(schema, dict):
        return {"schema": schema}
    schema = dict(schema)
    for combinator in ("anyOf", "oneOf"):
        branches = schema.get(combinator)
        if branches and all(isinstance(b, dict) and set(b) <= {"type", "enum", "description"} for b in branches):
            schema.pop(combinator)
            types: set[str] = set(_types(schema))
            values: list[Any] = list(schema.get("enum", []))
            for branch in branches:
                types |= _types(branch)
                if "enum" in branch:
                    values += branch["enum"]
                elif branch.get("type") == "null":
                    values.append(None)
                else:
                    values = []  # an open branch: no enum overall
                    break
            schema["type"] = sorted(types)
            if values and values != [None]:
                schema["enum"] = values
    for branch in schema.pop("allOf", []):
        branch = normalize(branch)
        for key, value in branch.items():
            if key == "properties":
                schema.setdefault("properties", {}).update(value)
            elif key == "required":
                schema["required"] = sorted({*schema.get("required", []), *value})
            else:
                schema.setdefault(key, value)
    result: dict[str, Any] = {}
    types = _types(schema)
    if types:
        result["type"] = sorted(types)
    if "enum" in schema:
        result["enum"] = sorted(schema["enum"], key=lambda v: (v is None, str(v)))
    if "properties" in schema:
        result["properties"] = {name: normalize(sub) for name, sub in schema["properties"].items()}
    if "required" in schema:
        result["required"] = sorted(schema["required"])
    if "items" in schema:
        result["items"] = normalize(schema["items"])
    if "default" in schema:
        result["default"] = schema["default"]
    if "additionalProperties" in schema and schema["additionalProperties"] not in (True, {}):
        result["additionalProperties"] = normalize(schema["additionalProperties"])
    for keyword in _SCALAR_KEYWORDS:
        if keyword in schema:
            result[keyword] = schema[keyword]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            result[combinator] = [normalize(branch) for branch in schema[combinator]]
    return result


def differences(expected: Any, actual: Any, path: str = "") -> Iterator[str]:
    """Every place where two normalized schemas differ, as `path: keyword: contract X, generated Y`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                yield f"{where}: in the contract ({json.dumps(expected[key])}), missing from the generated document"
            elif key not in expected:
                yield f"{where}: in the generated document ({json.dumps(actual[key])}), not in the contract"
            else:
                yield from differences(expected[key], actual[key], where)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        if all(isinstance(item, dict) for item in expected + actual):
            for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
                yield from differences(left, right, f"{path}[{index}]")
        elif expected != actual:
            yield f"{path}: contract {json.dumps(expected)}, generated {json.dumps(actual)}"
    elif expected != actual:
        yield f"{path}: contract {json.dumps(expected)}, generated {json.dumps(actual)}"


def _operation(document: dict[str, Any]) -> dict[str, Any]:
    return resolve(document, document["paths"][CREATE_PATH]["post"])


def _create_schemas(document: dict[str, Any]) -> dict[str, Any]:
    operation = _operation(document)
    schemas = {"request": normalize(operation["requestBody"]["content"]["application/json"]["schema"])}
    for status, response in operation["responses"].items():
        schemas[status] = normalize(response["content"]["application/json"]["schema"])
    return schemas


def test_normalize_and_differences_catch_what_matters() -> None:
    """The comparison can fail: a lost null, a changed enum, a dropped required name and a length are reported."""
    contract = {"type": "object", "properties": {"a": {"type": ["string", "null"], "enum": ["X", None]}}}
    assert not list(
        differences(
            normalize(contract),
            normalize(
                {
                    "type": "object",
                    "properties": {"a": {"anyOf": [{"type": "string", "enum": ["X"]}, {"type": "null"}]}},
                }
            ),
        )
    )
    changed = {
        "type": "object",
        "properties": {"a": {"type": "string", "enum": ["X", "Y"], "maxLength": 3}},
        "required": ["a"],
    }
    report = list(differences(normalize(contract), normalize(changed)))
    assert any("properties.a.type" in line and "null" in line for line in report), report
    assert any("properties.a.enum" in line for line in report), report
    assert any("properties.a.maxLength" in line for line in report), report
    assert any(line.startswith("required") for line in report), report


# Optional request fields this service reads beyond the contract. A client written for the contract never sends them,
# so they do not change what it sees; every other difference is a failure.
REQUEST_EXTENSIONS = {"clientCredentials"}


def test_create_operation_matches_the_contract(document: dict[str, Any]) -> None:
    contract = _create_schemas(contract_spec())
    generated = _create_schemas(document)
    request = generated["request"]
    assert set(request["properties"]) >= REQUEST_EXTENSIONS, "a listed extension is not documented"
    assert not REQUEST_EXTENSIONS & set(request.get("required", [])), "an extension must stay optional"
    assert not REQUEST_EXTENSIONS & set(contract["request"]["properties"]), "the contract has it now: drop it here"
    request["properties"] = {k: v for k, v in request["properties"].items() if k not in REQUEST_EXTENSIONS}
    assert set(generated) == set(contract), (
        f"response statuses: contract {sorted(contract)}, generated {sorted(generated)}"
    )
    report = [
        f"{part} {line}"
        for part in ("request", *CREATE_STATUSES)
        for line in differences(contract[part], generated[part])
    ]
    assert not report, "the create operation differs from the contract:\n" + "\n".join(report)


def test_create_operation_parameters_and_security_match_the_contract(document: dict[str, Any]) -> None:
    contract, generated = _operation(contract_spec()), _operation(document)

    def parameters(operation: dict[str, Any]) -> dict[tuple[str, str], Any]:
        return {
            (p["in"], p["name"]): (p.get("required", False), normalize(p["schema"]))
            for p in operation.get("parameters", [])
        }

    assert parameters(generated) == parameters(contract)
    assert generated["security"] == contract["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for name in ("ErrorResponse", "ApiError", "SyncStatus", "RateLimitErrorResponse", "RateLimitError"):
        expected = normalize(resolve(contract_spec(), contract_spec()["components"]["schemas"][name]))
        actual = normalize(resolve(document, document["components"]["schemas"][name]))
        assert not list(differences(expected, actual)), f"component {name}: {list(differences(expected, actual))}"


def test_documented_request_bodies_name_the_fields_the_api_reads() -> None:
    pairs = [
        (api_schema.McpServerCreateRequestSerializer, api_serializers.McpServerCreateInputSerializer),
        (api_schema.McpServerUpdateRequestSerializer, api_serializers.McpServerUpdateInputSerializer),
        (api_schema.McpToolUpdateRequestSerializer, api_serializers.ToolUpdateInputSerializer),
        (api_schema.McpServerAccessGrantRequestSerializer, api_serializers.AccessGrantInputSerializer),
        (api_schema.HeaderInputSerializer, api_serializers.HeaderInputSerializer),
    ]
    for documented, read in pairs:
        documented_fields = {name: field.required for name, field in documented().fields.items()}
        read_fields = {name: field.required for name, field in read().fields.items()}
        assert documented_fields == read_fields, f"{documented.__name__} vs {read.__name__}"


# --- (c) every route is described ---------------------------------------------------------------------------


def test_every_api_route_and_method_is_documented(document: dict[str, Any]) -> None:
    missing = []
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.view_class  # type: ignore[union-attr]
        assert issubclass(view, APIView)
        path = api_schema.openapi_path(str(pattern.pattern))
        for method in HTTP_METHODS:
            if hasattr(view, method) and method not in document["paths"].get(path, {}):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    assert CREATE_PATH in document["paths"]


def test_every_operation_documents_its_errors(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"401", "404", "429", "500"} <= set(responses), f"{method.upper()} {path}"
            assert responses["429"]["headers"]["Retry-After"]["required"], f"{method.upper()} {path}"
            assert operation["security"] == [{"bearerAuth": []}], f"{method.upper()} {path}"
            has_input = "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))
            if has_input:
                assert "400" in responses, f"{method.upper()} {path} takes input but documents no 400"
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert parameter["schema"]["type"] == "string", f"{parameter['name']} of {method.upper()} {path}"


# --- (d) served without auth --------------------------------------------------------------------------------


def test_served_document_needs_no_auth(generated: str) -> None:
    client = Client()
    response = client.get("/api/public/openapi")
    assert response.status_code == 200
    assert yaml.safe_load(response.content) == yaml.safe_load(generated)

    as_json = client.get("/api/public/openapi", HTTP_ACCEPT="application/json")
    assert as_json.status_code == 200
    assert as_json["Content-Type"].startswith("application/json")
    assert json.loads(as_json.content) == yaml.safe_load(generated)

    # A bad key does not matter either: the document is public.
    assert client.get("/api/public/openapi", HTTP_AUTHORIZATION="Bearer nope").status_code == 200


# --- inputs the fuzzing turned up: documented statuses, not 500s ---------------------------------------------


@pytest.mark.parametrize("limit", ["²", "١", "1.5", "0", "101"])
def test_limit_that_is_not_an_ascii_whole_number_is_a_400(admin: Any, limit: str) -> None:
    response = admin.client.get(admin.create_url(), {"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["title"] == "ValidationError"


@pytest.mark.parametrize(("user_id", "status"), [("²", 400), ("x1", 400), ("99999999999999999999", 404), ("1", 404)])
def test_revoking_access_of_an_impossible_user_id_is_a_4xx(admin: Any, user_id: str, status: int) -> None:
    from mcp_servers.models import McpServer

    server = McpServer.objects.create(
        organization=admin.organization, display_name="x", server_url="https://mcp.example.com/mcp", server_label="x"
    )
    response = admin.client.delete(f"{admin.create_url()}/{server.pk}/access/{user_id}")
    assert response.status_code == status
