"""The mock's JSON Schema value generator: its values validate (jsonschema-rs) for schemas built from its keywords."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from sluice.providers.mock_schema import value_for

JSON = dict[str, Any]
NAMES = st.sampled_from(["id", "name", "count", "tags", "when", "a-b", "x y", "émoji"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=8),
                    st.floats(-1e6, 1e6, allow_nan=False))
FORMATS = st.sampled_from(["date-time", "date", "email", "uri", "uuid"])
PATTERNS = st.sampled_from([r"^[a-z]+$", r"^\d{3}-\d{4}$", r"[A-Z]{2}", r"^(foo|bar)\d*$", r"^[^\s@]+@x\.org$",
                            r"^\w+$", r"^[A-Za-z0-9_-]{4,8}$", r"^(?:ab)+c?$", r"colou?r"])
SEEDS = st.one_of(st.just("hello there world"), st.text(max_size=40))


def validates(schema: JSON, value: Any) -> bool:
    return bool(jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value))


@st.composite
def strings(draw: st.DrawFn) -> JSON:
    shape = draw(st.sampled_from(["plain", "lengths", "format", "pattern"]))
    if shape == "format":
        return {"type": "string", "format": draw(FORMATS)}
    if shape == "pattern":
        return {"type": "string", "pattern": draw(PATTERNS)}
    if shape == "plain":
        return {"type": "string"}
    low = draw(st.integers(0, 30))
    schema: JSON = {"type": "string", "minLength": low}
    if draw(st.booleans()):
        schema["maxLength"] = low + draw(st.integers(0, 10))
    return schema


@st.composite
def numbers(draw: st.DrawFn) -> JSON:
    integer = draw(st.booleans())
    step = draw(st.sampled_from([None, 1, 2, 5, 10] if integer else [None, 0.5, 0.25, 2, 0.1]))
    width = draw(st.integers(0, 50)) + (2 * step + 2 if step else 2)
    low: float = draw(st.integers(-1000, 1000)) if integer else draw(st.floats(-1e6, 1e6))
    schema: JSON = {"type": "integer" if integer else "number"}
    if step:
        schema["multipleOf"] = step
    if draw(st.booleans()):
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if draw(st.booleans()):
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = low + width
    return schema


LEAVES = st.one_of(
    strings(), numbers(), st.just({"type": "boolean"}), st.just({"type": "null"}),
    st.lists(SCALARS, min_size=1, max_size=4, unique_by=repr).map(lambda values: {"enum": values}),
    SCALARS.map(lambda value: {"const": value}),
    st.sampled_from([["string", "null"], ["null", "integer"], ["integer", "string"]]).map(lambda t: {"type": t}),
    st.just({}),
)


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[JSON]) -> JSON:
    properties = draw(st.dictionaries(NAMES, children, max_size=4))
    extra = draw(st.sampled_from(["absent", "false", "true", "schema"]))
    required = draw(st.lists(st.sampled_from(sorted(properties)), unique=True)) if properties else []
    schema: JSON = {"type": "object", "properties": properties, "required": required}
    if extra == "false":
        schema["additionalProperties"] = False
    elif extra == "true":
        schema["additionalProperties"] = True
    elif extra == "schema":
        schema["additionalProperties"] = draw(children)
    if extra != "false" and draw(st.booleans()):
        schema["required"] = [*required, "unlisted"]
    if draw(st.booleans()):
        schema["minProperties"] = draw(st.integers(0, len(properties) + (0 if extra == "false" else 2)))
    if draw(st.booleans()):
        schema["maxProperties"] = max(len(schema["required"]), schema.get("minProperties", 0)) + draw(st.integers(0, 2))
    return schema


@st.composite
def arrays(draw: st.DrawFn, children: st.SearchStrategy[JSON]) -> JSON:
    schema: JSON = {"type": "array", "items": draw(children)}
    if draw(st.booleans()):
        schema["prefixItems"] = draw(st.lists(children, min_size=1, max_size=3))
    low = draw(st.integers(0, 3))
    if draw(st.booleans()):
        schema["minItems"] = low
    if draw(st.booleans()):
        schema["maxItems"] = low + draw(st.integers(0, 3))
    return schema


def unique_arrays() -> st.SearchStrategy[JSON]:
    items = st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "integer", "minimum": 0}])
    return st.builds(lambda item, low: {"type": "array", "items": item, "uniqueItems": True, "minItems": low},
                     items, st.integers(0, 5))


@st.composite
def one_ofs(draw: st.DrawFn) -> JSON:
    """Branches of distinct types, so that the first branch's value matches no other one."""
    kinds = draw(st.lists(st.sampled_from(["string", "integer", "boolean", "null", "object", "array"]),
                          min_size=1, max_size=4, unique=True))
    return {"oneOf": [{"type": kind} for kind in kinds]}


@st.composite
def all_ofs(draw: st.DrawFn, children: st.SearchStrategy[JSON]) -> JSON:
    """An object's properties spread over allOf branches, or a number's bounds spread over two."""
    if draw(st.booleans()):
        first = draw(st.dictionaries(st.sampled_from(["a", "b"]), children, max_size=2))
        second = draw(st.dictionaries(st.sampled_from(["c", "d"]), children, max_size=2))
        return {"type": "object", "allOf": [{"properties": first, "required": sorted(first)},
                                            {"properties": second, "required": sorted(second)}]}
    low = draw(st.integers(-100, 100))
    return {"allOf": [{"type": "integer", "minimum": low}, {"maximum": low + draw(st.integers(0, 5))}]}


def extend(children: st.SearchStrategy[JSON]) -> st.SearchStrategy[JSON]:
    return st.one_of(
        objects(children), arrays(children), unique_arrays(), one_ofs(), all_ofs(children),
        st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
    )


SCHEMAS = st.recursive(LEAVES, extend, max_leaves=12)


@st.composite
def rooted(draw: st.DrawFn) -> JSON:
    """A schema as given, or reached through `$ref` to `#/$defs/...` or `#/definitions/...`, or recursive."""
    body = draw(SCHEMAS)
    shape = draw(st.sampled_from(["plain", "defs", "definitions", "recursive"]))
    if shape == "plain":
        return body
    if shape == "recursive":
        node = {"type": "object", "properties": {
            "value": body, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["value", "next", "kids"]}
        return {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    return {shape.replace("defs", "$defs") if shape == "defs" else shape: {"Thing": body},
            "type": "object", "properties": {"thing": {"$ref": f"#/{'$defs' if shape == 'defs' else shape}/Thing"}},
            "required": ["thing"]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=rooted(), seed=SEEDS)
def test_generated_values_validate(schema: JSON, seed: str) -> None:
    value = value_for(schema, seed_text=seed)
    assert validates(schema, value), (schema, value)
    assert value_for(schema, seed_text=seed) == value


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Node(BaseModel):
    name: str
    children: list[Node]
    parent: Node | None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    bark: str = Field(min_length=20, max_length=25)


class Everything(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}-\d{2,4}$")
    when: datetime.datetime
    day: datetime.date
    id: uuid.UUID
    color: Color
    score: float = Field(gt=0, lt=1)
    count: int = Field(multiple_of=5, ge=12)
    pet: Cat | Dog
    tree: Node
    tags: list[str] = Field(min_length=2, max_length=3)


@pytest.mark.parametrize("model", [Everything, Node])
@pytest.mark.parametrize("strict", [True, False])
def test_pydantic_models_parse_what_their_schemas_generate(model: type[BaseModel], strict: bool) -> None:
    schema = to_strict_json_schema(model) if strict else model.model_json_schema()
    value = value_for(schema, seed_text="hello there world")
    assert validates(schema, value)
    assert isinstance(model.model_validate(value), model)


def test_strings_are_seed_words_and_change_with_the_seed() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    value = value_for(schema, seed_text="alpha beta gamma delta")
    assert all(set(text.split()) <= {"alpha", "beta", "gamma", "delta"} for text in value.values())
    assert value["a"] != value["b"]
    assert value_for(schema, seed_text="other words here") != value


def test_older_drafts_keywords() -> None:
    draft4 = {"definitions": {"n": {"type": "integer", "minimum": 3, "exclusiveMinimum": True, "maximum": 4}},
              "type": "array", "items": [{"$ref": "#/definitions/n"}, {"type": "string"}], "additionalItems": False,
              "minItems": 2}
    value = value_for(draft4, seed_text="hi")
    assert value == [4, "hi 2"] and jsonschema_rs.Draft4Validator(draft4).is_valid(value)


def test_bounds_multiples_and_exclusive_edges() -> None:
    assert value_for({"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12}, seed_text="x") == 11
    assert value_for({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001}, seed_text="x") == 0.0005
    assert value_for({"type": "integer", "minimum": 13, "multipleOf": 2.5}, seed_text="x") % 5 == 0


def test_an_unsatisfiable_pattern_falls_back_to_the_seed_words() -> None:
    assert value_for({"type": "string", "pattern": "(?=x)y"}, seed_text="plain words") == "plain words"
