"""The tool catalog as AI models see it: model-facing tool names, and the tool list in four shapes.

Pure: plain dataclasses in, plain dicts out; no Django models, no database, no network.

Naming (`model_tool_names`)
---------------------------
Every `model_name` matches `^[a-zA-Z0-9_-]{1,64}$`, the strictest rule common to OpenAI function names
and Anthropic tool names, and is unique within the catalog. The exact algorithm:

1. `sanitize(s)`: NFKD-normalize, drop what is not ASCII (so `é` becomes `e`), replace every character
   outside `[a-zA-Z0-9_-]` with `_`, collapse each run of `_` into one `_`, strip `_` from both ends.
   The label part `L` is `sanitize(server_label)[:24]` with trailing `_` stripped (`server` if empty);
   a label as `mcp_servers.labels` makes them (no `__`, no trailing `_`) passes unchanged.
   The tool part `T` is `sanitize(name)` (`tool` if empty).
2. The base name is `L + "__" + T`, cut to 64 characters, trailing `_` stripped. `L` is at most 24
   characters, so at least 38 characters of `T` survive, and `T` never starts with `_`.
3. Each tool starts at level 0, whose candidate is its base name. At level k = 1, 2, 3 the candidate is
   `base[:63 - n].rstrip("_") + "_" + hex[:n]` with n = 8, 16, 32, where `hex` is the SHA-256 hex digest
   of `server_id + "\\0" + name` (UTF-8, lone surrogates passed through) for levels 1 and 2, and of
   `server_id + "\\0" + name + "\\0" + tool_id` for level 3, which only matters if one server lists
   one name twice.
4. Rounds, all clashes at once, until every candidate is unique: for each candidate held by two or more
   tools, if exactly one holder has the lowest level it keeps the candidate and the others move up one
   level; otherwise every holder moves up one level. So a tool gets a hash only when its name collides,
   both sides of a collision between equals get one, and a plain name beats a hash-suffixed one that
   happens to spell the same. A clash past level 3 (a SHA-256 collision) raises `RuntimeError`.
5. The result is sorted by `model_name`.

Every step depends only on the set of tools, so any input order gives the same names. Names of different
servers never collide when their labels differ after step 1 (the first `__` of a name ends its label part,
since `L` holds no `__` and does not end with `_`, and `T` does not start with `_`), so adding, removing or
renaming a tool changes no name on another server. Within one server, only the tools whose names collide
with it can change a tool's name. `tool_id`s must be unique (`ValueError` otherwise).

Input schemas (`normalize_input_schema`)
----------------------------------------
Every format gets the same normalized deep copy; the input dicts are never mutated or shared:

- Not a dict (e.g. `true`, `null`): becomes `{"type": "object", "properties": {}}`.
- `type` missing, or a list containing `"object"` (e.g. `["object", "null"]`): set to `"object"`.
  Exception: `type` missing, no `properties`, and a top-level `anyOf`/`oneOf`/`allOf` none of whose
  branches is an object schema (a dict whose `type` is `"object"` or that has `properties`): wrapped.
- Any other `type` (`"string"`, `"array"`, ...): wrapped, i.e. replaced by
  `{"type": "object", "properties": {"input": <the original schema>}, "required": ["input"]}`; arguments
  the model sends for such a tool carry the value under `input` (`WRAPPED_INPUT_PROPERTY`).
- Top-level `anyOf`/`oneOf`/`allOf` are removed (the Anthropic API rejects them at the top level). The
  `properties` of their object branches are merged into the root `properties`, the root's own and earlier
  branches winning; `required` gains every name required by an `allOf` branch, and every name required by
  all branches of an `anyOf`/`oneOf`. The remote server still validates arguments against its own schema.
- `properties` missing or not a dict: set to `{}` (OpenAI rejects an object schema without `properties`).
  `required` not a list of strings: removed. Everything else is kept as the server sent it.

Rendering (`render`)
--------------------
One dict per tool, in the order given (`model_tool_names` returns them sorted by `model_name`):

- `default`, our API's own shape: `name`, `description` (`None` stays `null`), `inputSchema`,
  `needsApproval`, `serverId`, `serverLabel`, `toolId`, `originalName`. Only this format and `mcp`'s
  `_meta` carry the approval requirement.
- `openai`, Chat Completions function tools: `{"type": "function", "function": {"name", "description",
  "parameters"}}`. OpenAI rejects unknown keys, so nothing else goes in, not `needs_approval`.
- `anthropic`, Messages API tools: `{"name", "description", "input_schema"}`.
- `mcp`, MCP `Tool` objects as in `tools/list`: `name` (the model name), `title`, `description`,
  `inputSchema`, `outputSchema` (when the server declared an object schema, as MCP requires),
  `annotations` (only the five `ToolAnnotations` keys with values of the right type),
  and `_meta: {"needsApproval", "serverId", "originalName"}`.

Descriptions: no format requires a string (OpenAI, Anthropic and MCP all make `description` optional), so
`None` never becomes `""`: `default` renders it as `null`, the other three leave the key out. The same goes
for `title` and empty `annotations` in `mcp`.
"""

from __future__ import annotations

import copy
import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcp_servers.labels import SERVER_LABEL_MAX_LENGTH

MODEL_NAME_MAX_LENGTH = 64
SEPARATOR = "__"
WRAPPED_INPUT_PROPERTY = "input"
FORMATS: tuple[str, ...] = ("default", "openai", "anthropic", "mcp")
Format = Literal["default", "openai", "anthropic", "mcp"]

_DISALLOWED = re.compile(r"[^a-zA-Z0-9_-]")
_UNDERSCORES = re.compile(r"_{2,}")
# Hex digits appended at levels 1, 2 and 3 (level 0 is the plain base name).
_HASH_LENGTHS = (8, 16, 32)
_MAX_LEVEL = len(_HASH_LENGTHS)
_COMBINATORS = ("allOf", "anyOf", "oneOf")
_ANNOTATION_TYPES: dict[str, type] = {
    "title": str,
    "readOnlyHint": bool,
    "destructiveHint": bool,
    "idempotentHint": bool,
    "openWorldHint": bool,
}


@dataclass(frozen=True)
class CatalogTool:
    server_id: str
    server_label: str
    tool_id: str
    name: str  # the remote tool name, as the server listed it
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    needs_approval: bool  # access mode NEEDS_APPROVAL (BLOCKED tools never get here)
    annotations: Mapping[str, Any] | None = None  # MCP ToolAnnotations, rendered only by the `mcp` format
    output_schema: Mapping[str, Any] | None = None  # rendered only by the `mcp` format


@dataclass(frozen=True)
class ModelTool:
    model_name: str  # `<server_label>__<tool>`, sanitized, unique in the catalog
    tool: CatalogTool


# Naming


def sanitize(text: str) -> str:
    """Step 1 of the naming algorithm: ASCII-fold, map to `[a-zA-Z0-9_-]`, collapse and strip `_`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _UNDERSCORES.sub("_", _DISALLOWED.sub("_", ascii_text)).strip("_")


def base_name(server_label: str, name: str) -> str:
    """Step 2: a tool's name before any collision is resolved (what it is called unless another tool clashes)."""
    label = sanitize(server_label)[:SERVER_LABEL_MAX_LENGTH].rstrip("_") or "server"
    part = sanitize(name) or "tool"
    return f"{label}{SEPARATOR}{part}"[:MODEL_NAME_MAX_LENGTH].rstrip("_")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _candidate(tool: CatalogTool, base: str, level: int) -> str:
    if level == 0:
        return base
    n = _HASH_LENGTHS[level - 1]
    if level < _MAX_LEVEL:
        digest = _digest(tool.server_id, tool.name)
    else:
        digest = _digest(tool.server_id, tool.name, tool.tool_id)
    return base[: MODEL_NAME_MAX_LENGTH - 1 - n].rstrip("_") + "_" + digest[:n]


def model_tool_names(tools: Sequence[CatalogTool]) -> list[ModelTool]:
    """Unique model-facing names for `tools`, sorted by name; the algorithm is in the module docstring."""
    ids = [tool.tool_id for tool in tools]
    if len(set(ids)) != len(ids):
        raise ValueError("tool_id values must be unique")
    bases = {tool.tool_id: base_name(tool.server_label, tool.name) for tool in tools}
    levels = dict.fromkeys(ids, 0)
    by_id = {tool.tool_id: tool for tool in tools}
    while True:
        holders: dict[str, list[str]] = defaultdict(list)
        for tool_id, level in levels.items():
            holders[_candidate(by_id[tool_id], bases[tool_id], level)].append(tool_id)
        bumped: list[str] = []
        for ids_holding in holders.values():
            if len(ids_holding) < 2:
                continue
            lowest = min(levels[tool_id] for tool_id in ids_holding)
            at_lowest = [tool_id for tool_id in ids_holding if levels[tool_id] == lowest]
            keeper = at_lowest[0] if len(at_lowest) == 1 else None
            bumped.extend(tool_id for tool_id in ids_holding if tool_id != keeper)
        if not bumped:
            break
        for tool_id in bumped:
            if levels[tool_id] == _MAX_LEVEL:
                raise RuntimeError(f"tool name collision past the last hash level: {tool_id}")
            levels[tool_id] += 1
    named = [
        ModelTool(model_name=_candidate(by_id[tool_id], bases[tool_id], level), tool=by_id[tool_id])
        for tool_id, level in levels.items()
    ]
    return sorted(named, key=lambda model_tool: model_tool.model_name)


# Input schemas


def _is_object_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "object" or "properties" in schema)


def _wrap(schema: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {WRAPPED_INPUT_PROPERTY: copy.deepcopy(schema)},
        "required": [WRAPPED_INPUT_PROPERTY],
    }


def _string_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def normalize_input_schema(schema: Any) -> dict[str, Any]:
    """A deep copy of `schema` that every format accepts as a tool's input schema; see the module docstring."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    schema_type = schema.get("type")
    if schema_type is None:
        branches = [branch for key in _COMBINATORS for branch in _branches(schema.get(key))]
        if branches and "properties" not in schema and not any(_is_object_schema(b) for b in branches):
            return _wrap(schema)
    elif schema_type != "object" and not (isinstance(schema_type, list) and "object" in schema_type):
        return _wrap(schema)

    result = copy.deepcopy(schema)
    result["type"] = "object"
    properties = result.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    required = _string_list(result.get("required"))
    required_names = list(required) if required is not None else []
    for key in _COMBINATORS:
        if key not in result:
            continue
        branches = [branch for branch in _branches(result.pop(key)) if _is_object_schema(branch)]
        for branch in branches:
            branch_properties = branch.get("properties")
            if isinstance(branch_properties, dict):
                for name, subschema in branch_properties.items():
                    properties.setdefault(name, subschema)
        branch_required = [_string_list(branch.get("required")) or [] for branch in branches]
        if key == "allOf":
            newly_required = [name for names in branch_required for name in names]
        elif branch_required:
            newly_required = [name for name in branch_required[0] if all(name in names for names in branch_required)]
        else:
            newly_required = []
        required_names.extend(name for name in newly_required if name not in required_names)
    result["properties"] = properties
    if required_names or required is not None:
        result["required"] = required_names
    else:
        result.pop("required", None)
    return result


def _branches(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# Rendering


def _annotations(tool: CatalogTool) -> dict[str, Any]:
    source = tool.annotations or {}
    return {
        key: source[key]
        for key, expected in _ANNOTATION_TYPES.items()
        if key in source and isinstance(source[key], expected)
    }


def _render_default(model_tool: ModelTool) -> dict[str, Any]:
    tool = model_tool.tool
    return {
        "name": model_tool.model_name,
        "description": tool.description,
        "inputSchema": normalize_input_schema(tool.input_schema),
        "needsApproval": tool.needs_approval,
        "serverId": tool.server_id,
        "serverLabel": tool.server_label,
        "toolId": tool.tool_id,
        "originalName": tool.name,
    }


def _render_openai(model_tool: ModelTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": model_tool.model_name}
    if model_tool.tool.description is not None:
        function["description"] = model_tool.tool.description
    function["parameters"] = normalize_input_schema(model_tool.tool.input_schema)
    return {"type": "function", "function": function}


def _render_anthropic(model_tool: ModelTool) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": model_tool.model_name}
    if model_tool.tool.description is not None:
        rendered["description"] = model_tool.tool.description
    rendered["input_schema"] = normalize_input_schema(model_tool.tool.input_schema)
    return rendered


def _render_mcp(model_tool: ModelTool) -> dict[str, Any]:
    tool = model_tool.tool
    rendered: dict[str, Any] = {"name": model_tool.model_name}
    if tool.title is not None:
        rendered["title"] = tool.title
    if tool.description is not None:
        rendered["description"] = tool.description
    rendered["inputSchema"] = normalize_input_schema(tool.input_schema)
    if isinstance(tool.output_schema, Mapping) and tool.output_schema.get("type") == "object":
        rendered["outputSchema"] = dict(tool.output_schema)
    annotations = _annotations(tool)
    if annotations:
        rendered["annotations"] = annotations
    rendered["_meta"] = {"needsApproval": tool.needs_approval, "serverId": tool.server_id, "originalName": tool.name}
    return rendered


_RENDERERS = {
    "default": _render_default,
    "openai": _render_openai,
    "anthropic": _render_anthropic,
    "mcp": _render_mcp,
}


def render(tools: Sequence[ModelTool], fmt: Format) -> list[dict[str, Any]]:
    """One dict per tool in `fmt`, in the order given; the shapes are in the module docstring."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return [renderer(model_tool) for model_tool in tools]
