"""mcp_servers.tool_catalog: model-facing tool names and the four renderings. Pure: no DB, no network."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mcp_servers.tool_catalog import (
    FORMATS,
    WRAPPED_INPUT_PROPERTY,
    CatalogTool,
    ModelTool,
    model_tool_names,
    normalize_input_schema,
    render,
    sanitize,
)

NAME_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
LABEL_RULE = r"[a-z][a-z0-9_]{0,23}"


def make_tool(
    name: str,
    *,
    server_id: str = "srv-1",
    label: str = "github",
    tool_id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    schema: Any = None,
    needs_approval: bool = False,
    annotations: dict[str, Any] | None = None,
) -> CatalogTool:
    return CatalogTool(
        server_id=server_id,
        server_label=label,
        tool_id=tool_id if tool_id is not None else f"{server_id}/{name}",
        name=name,
        title=title,
        description=description,
        input_schema=schema if schema is not None else {"type": "object", "properties": {}},
        needs_approval=needs_approval,
        annotations=annotations,
    )


def names_by_tool_id(tools: list[CatalogTool]) -> dict[str, str]:
    return {model_tool.tool.tool_id: model_tool.model_name for model_tool in model_tool_names(tools)}


def hashed(base: str, server_id: str, name: str, n: int = 8) -> str:
    digest = hashlib.sha256(f"{server_id}\0{name}".encode()).hexdigest()
    return base[: 63 - n].rstrip("_") + "_" + digest[:n]


def assert_valid_catalog(tools: list[CatalogTool], named: list[ModelTool]) -> None:
    names = [model_tool.model_name for model_tool in named]
    assert all(NAME_RULE.fullmatch(name) for name in names), names
    assert len(set(names)) == len(names) == len(tools)
    assert names == sorted(names)
    assert sorted(model_tool.tool.tool_id for model_tool in named) == sorted(tool.tool_id for tool in tools)


# Property-based: names


hostile_names = st.one_of(
    st.text(max_size=600),
    st.text(alphabet="ab.-_ é日\u200b", max_size=12),  # small alphabet: many sanitize collisions
    st.text(alphabet="x", min_size=30, max_size=80).map(lambda s: s + "!"),  # collide after truncation
)
any_labels = st.one_of(st.from_regex(LABEL_RULE, fullmatch=True), st.text(max_size=40))


@st.composite
def catalogs(draw: st.DrawFn, labels: st.SearchStrategy[str] = any_labels) -> list[CatalogTool]:
    server_count = draw(st.integers(min_value=1, max_value=4))
    tools = []
    for server in range(server_count):
        label = draw(labels)
        for index, name in enumerate(draw(st.lists(hostile_names, max_size=8, unique=True))):
            tools.append(make_tool(name, server_id=f"srv-{server}", label=label, tool_id=f"t-{server}-{index}"))
    return tools


@given(catalogs())
@settings(max_examples=300, database=None)
def test_names_are_valid_unique_and_sorted_for_any_input(tools: list[CatalogTool]) -> None:
    assert_valid_catalog(tools, model_tool_names(tools))


@given(catalogs().flatmap(lambda tools: st.tuples(st.just(tools), st.permutations(tools))))
@settings(max_examples=200, database=None)
def test_names_do_not_depend_on_input_order(pair: tuple[list[CatalogTool], list[CatalogTool]]) -> None:
    tools, shuffled = pair
    assert model_tool_names(tools) == model_tool_names(shuffled)


@st.composite
def catalog_plus_tool_on_another_server(draw: st.DrawFn) -> tuple[list[CatalogTool], CatalogTool]:
    labels = draw(st.lists(st.from_regex(LABEL_RULE, fullmatch=True), min_size=2, max_size=4))
    assume(len({sanitize(label) for label in labels}) == len(labels))
    tools = []
    for server, label in enumerate(labels[:-1]):
        for index, name in enumerate(draw(st.lists(hostile_names, max_size=6, unique=True))):
            tools.append(make_tool(name, server_id=f"srv-{server}", label=label, tool_id=f"t-{server}-{index}"))
    # The new tool goes to the last server, which may already have tools of its own.
    last = len(labels) - 1
    existing = draw(st.lists(hostile_names, max_size=4, unique=True))
    for index, name in enumerate(existing):
        tools.append(make_tool(name, server_id=f"srv-{last}", label=labels[-1], tool_id=f"t-{last}-{index}"))
    new_name = draw(hostile_names.filter(lambda name: name not in existing))
    return tools, make_tool(new_name, server_id=f"srv-{last}", label=labels[-1], tool_id="t-new")


@given(catalog_plus_tool_on_another_server())
@settings(max_examples=200, database=None)
def test_adding_a_tool_changes_no_name_on_another_server(case: tuple[list[CatalogTool], CatalogTool]) -> None:
    tools, new_tool = case
    before = names_by_tool_id(tools)
    after = names_by_tool_id([*tools, new_tool])
    for tool in tools:
        if tool.server_id != new_tool.server_id:
            assert after[tool.tool_id] == before[tool.tool_id]


# Names: worked examples


def test_plain_names_get_no_hash() -> None:
    tools = [
        make_tool("search.issues"),
        make_tool("Créer un ticket"),
        make_tool("a  .. b"),
        make_tool("__init__"),
        make_tool("list-repos"),
    ]
    assert [model_tool.model_name for model_tool in model_tool_names(tools)] == [
        "github__Creer_un_ticket",
        "github__a_b",
        "github__init",
        "github__list-repos",
        "github__search_issues",
    ]


def test_names_that_sanitize_to_nothing_become_tool() -> None:
    assert names_by_tool_id([make_tool("検索", tool_id="t1")]) == {"t1": "github__tool"}
    assert names_by_tool_id([make_tool("", tool_id="t1")]) == {"t1": "github__tool"}


def test_collision_after_sanitizing_hashes_both_sides_only() -> None:
    tools = [make_tool("a.b", tool_id="dot"), make_tool("a_b", tool_id="underscore"), make_tool("c", tool_id="c")]
    assert names_by_tool_id(tools) == {
        "dot": hashed("github__a_b", "srv-1", "a.b"),
        "underscore": hashed("github__a_b", "srv-1", "a_b"),
        "c": "github__c",
    }
    assert hashed("github__a_b", "srv-1", "a.b") == "github__a_b_650a34ff"


def test_collision_after_truncation() -> None:
    long_a = "x" * 100 + "a"
    long_b = "x" * 100 + "b"
    names = names_by_tool_id([make_tool(long_a, tool_id="a"), make_tool(long_b, tool_id="b")])
    base = ("github__" + "x" * 100)[:64]
    assert names == {"a": hashed(base, "srv-1", long_a), "b": hashed(base, "srv-1", long_b)}
    assert all(len(name) == 64 and NAME_RULE.fullmatch(name) for name in names.values())


def test_very_long_name_is_trimmed_to_64() -> None:
    (named,) = model_tool_names([make_tool("y" * 512, label="a" * 24)])
    assert named.model_name == "a" * 24 + "__" + "y" * 38


def test_same_tool_name_on_two_servers_needs_no_hash() -> None:
    tools = [
        make_tool("search", server_id="s1", label="github"),
        make_tool("search", server_id="s2", label="github_2"),
    ]
    assert sorted(names_by_tool_id(tools).values()) == ["github_2__search", "github__search"]


def test_labels_that_sanitize_alike_collide_across_servers_and_are_resolved() -> None:
    # Not producible by mcp_servers.labels, but the catalog must stay unique anyway.
    tools = [make_tool("x", server_id="s1", label="a.b"), make_tool("x", server_id="s2", label="a__b")]
    assert names_by_tool_id(tools) == {
        "s1/x": hashed("a_b__x", "s1", "x"),
        "s2/x": hashed("a_b__x", "s2", "x"),
    }


def test_plain_name_wins_over_a_hashed_name_that_spells_the_same() -> None:
    squatter = hashed("github__a_b", "srv-1", "a.b")[len("github__") :]  # "a_b_650a34ff"
    tools = [make_tool("a.b", tool_id="dot"), make_tool("a_b", tool_id="underscore"), make_tool(squatter, tool_id="sq")]
    names = names_by_tool_id(tools)
    assert names["sq"] == "github__" + squatter
    assert names["dot"] == hashed("github__a_b", "srv-1", "a.b", n=16)
    assert names["underscore"] == hashed("github__a_b", "srv-1", "a_b")
    assert_valid_catalog(tools, model_tool_names(tools))


def test_one_name_listed_twice_by_one_server_is_resolved_by_tool_id() -> None:
    tools = [make_tool("dup", tool_id="t1"), make_tool("dup", tool_id="t2")]
    named = model_tool_names(tools)
    assert_valid_catalog(tools, named)
    assert all(model_tool.model_name.startswith("github__dup_") for model_tool in named)


def test_lone_surrogates_and_control_characters_are_fine() -> None:
    tools = [make_tool("\ud800", tool_id="s"), make_tool("\x00\n", tool_id="c"), make_tool("\U0001f600", tool_id="e")]
    assert_valid_catalog(tools, model_tool_names(tools))


def test_duplicate_tool_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="tool_id"):
        model_tool_names([make_tool("a", tool_id="t"), make_tool("b", tool_id="t")])


def test_empty_catalog() -> None:
    assert model_tool_names([]) == []
    assert all(render([], fmt) == [] for fmt in ("default", "openai", "anthropic", "mcp"))


# Rendering: exact outputs


SAMPLE_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def sample() -> ModelTool:
    tool = make_tool(
        "search.issues",
        server_id="srv-1",
        label="github",
        tool_id="tool-1",
        title="Search issues",
        description="Find issues.",
        schema=copy.deepcopy(SAMPLE_SCHEMA),
        needs_approval=True,
        annotations={"readOnlyHint": True, "destructiveHint": "no", "vendorThing": 1},
    )
    (named,) = model_tool_names([tool])
    return named


def sample_without_description() -> ModelTool:
    (named,) = model_tool_names([make_tool("ping", tool_id="tool-2", schema={})])
    return named


def test_formats() -> None:
    assert FORMATS == ("default", "openai", "anthropic", "mcp")


def test_render_default() -> None:
    assert render([sample(), sample_without_description()], "default") == [
        {
            "name": "github__search_issues",
            "description": "Find issues.",
            "inputSchema": SAMPLE_SCHEMA,
            "needsApproval": True,
            "serverId": "srv-1",
            "serverLabel": "github",
            "toolId": "tool-1",
            "originalName": "search.issues",
        },
        {
            "name": "github__ping",
            "description": None,
            "inputSchema": {"type": "object", "properties": {}},
            "needsApproval": False,
            "serverId": "srv-1",
            "serverLabel": "github",
            "toolId": "tool-2",
            "originalName": "ping",
        },
    ]


def test_render_openai() -> None:
    assert render([sample(), sample_without_description()], "openai") == [
        {
            "type": "function",
            "function": {"name": "github__search_issues", "description": "Find issues.", "parameters": SAMPLE_SCHEMA},
        },
        {"type": "function", "function": {"name": "github__ping", "parameters": {"type": "object", "properties": {}}}},
    ]


def test_render_anthropic() -> None:
    assert render([sample(), sample_without_description()], "anthropic") == [
        {"name": "github__search_issues", "description": "Find issues.", "input_schema": SAMPLE_SCHEMA},
        {"name": "github__ping", "input_schema": {"type": "object", "properties": {}}},
    ]


def test_render_mcp() -> None:
    assert render([sample(), sample_without_description()], "mcp") == [
        {
            "name": "github__search_issues",
            "title": "Search issues",
            "description": "Find issues.",
            "inputSchema": SAMPLE_SCHEMA,
            "annotations": {"readOnlyHint": True},
            "_meta": {"needsApproval": True, "serverId": "srv-1", "originalName": "search.issues"},
        },
        {
            "name": "github__ping",
            "inputSchema": {"type": "object", "properties": {}},
            "_meta": {"needsApproval": False, "serverId": "srv-1", "originalName": "ping"},
        },
    ]


def test_mcp_rendering_validates_as_an_mcp_tool() -> None:
    wire = pytest.importorskip("mcp_types._v2025_11_25")  # the strict wire model: inputSchema.type == "object"
    for rendered in render([sample(), sample_without_description()], "mcp"):
        parsed = wire.Tool.model_validate(rendered)
        assert parsed.model_dump(by_alias=True, exclude_none=True) == rendered


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render([sample()], "gemini")  # type: ignore[arg-type]


def test_approval_is_nowhere_in_the_model_api_shapes() -> None:
    for fmt in ("openai", "anthropic"):
        assert "pproval" not in json.dumps(render([sample()], fmt))


# Input schemas


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, {"type": "object", "properties": {}}),
        ({"type": "object"}, {"type": "object", "properties": {}}),
        ({"properties": {"a": {"type": "integer"}}}, {"type": "object", "properties": {"a": {"type": "integer"}}}),
        ({"type": ["object", "null"], "properties": {}}, {"type": "object", "properties": {}}),
        (None, {"type": "object", "properties": {}}),
        (True, {"type": "object", "properties": {}}),
        (
            {"type": "string", "maxLength": 5},
            {
                "type": "object",
                "properties": {WRAPPED_INPUT_PROPERTY: {"type": "string", "maxLength": 5}},
                "required": [WRAPPED_INPUT_PROPERTY],
            },
        ),
        (
            {"oneOf": [{"type": "string"}, {"type": "number"}]},
            {
                "type": "object",
                "properties": {WRAPPED_INPUT_PROPERTY: {"oneOf": [{"type": "string"}, {"type": "number"}]}},
                "required": [WRAPPED_INPUT_PROPERTY],
            },
        ),
        (
            {
                "oneOf": [
                    {"type": "object", "properties": {"id": {"type": "string"}, "n": {}}, "required": ["id", "n"]},
                    {"type": "object", "properties": {"path": {"type": "string"}, "n": {}}, "required": ["path", "n"]},
                ],
                "$defs": {"x": {}},
            },
            {
                "type": "object",
                "properties": {"id": {"type": "string"}, "n": {}, "path": {"type": "string"}},
                "required": ["n"],
                "$defs": {"x": {}},
            },
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": ["a"],
                "allOf": [{"properties": {"b": {}, "a": {"type": "integer"}}, "required": ["b"]}, {"type": "string"}],
                "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
            },
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}, "required": ["a", "b"]},
        ),
        ({"type": "object", "properties": [], "required": "a"}, {"type": "object", "properties": {}}),
        ({"type": "object", "properties": {}, "required": []}, {"type": "object", "properties": {}, "required": []}),
    ],
)
def test_normalize_input_schema(schema: Any, expected: dict[str, Any]) -> None:
    original = copy.deepcopy(schema)
    assert normalize_input_schema(schema) == expected
    assert schema == original


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
schema_keys = st.sampled_from(["type", "properties", "required", "anyOf", "oneOf", "allOf", "items", "description"])
schemas = st.one_of(
    json_values,
    st.dictionaries(
        schema_keys,
        st.one_of(
            json_values,
            st.sampled_from(["object", "string", ["object", "null"], ["string"]]),
            st.lists(st.dictionaries(schema_keys, json_values, max_size=3), max_size=3),
        ),
        max_size=5,
    ),
)


@given(schemas)
@settings(max_examples=300, database=None)
def test_every_normalized_schema_is_an_object_schema_every_api_accepts(schema: Any) -> None:
    original = copy.deepcopy(schema)
    normalized = normalize_input_schema(schema)
    assert schema == original
    assert normalized["type"] == "object"
    assert isinstance(normalized["properties"], dict)
    assert not {"anyOf", "oneOf", "allOf"} & normalized.keys()
    assert "required" not in normalized or all(isinstance(name, str) for name in normalized["required"])


def test_rendering_never_mutates_or_shares_the_input_schema() -> None:
    schema = {"anyOf": [{"type": "object", "properties": {"a": {"enum": [1]}}}], "items": {"x": [1]}}
    original = copy.deepcopy(schema)
    tools = model_tool_names([make_tool("t", schema=schema)])
    for fmt in FORMATS:
        for rendered in render(tools, fmt):  # type: ignore[arg-type]
            text = json.dumps(rendered)
            assert "anyOf" not in text
            # Mutating every nested dict/list in the output must leave the input alone.
            stack: list[Any] = [rendered]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    stack.extend(node.values())
                    node["mutated"] = True
                elif isinstance(node, list):
                    stack.extend(node)
                    node.append("mutated")
    assert schema == original
