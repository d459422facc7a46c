"""A deterministic value for a JSON Schema, for the mock provider's structured outputs and tool arguments."""

from __future__ import annotations

import importlib
import math
import re
import uuid
import zlib
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import orjson

MAX_DEPTH = 24
"""Nesting beyond this gives up (null): only a schema that demands infinite structure gets there."""
REF_REPEATS = 2
"""How often one `$ref` may nest inside itself before only what is required is generated."""
WORDS_PER_STRING = 3
FALLBACK_WORD = "mock"

_FORMATS: dict[str, str] = {
    "date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00Z", "duration": "P1D",
    "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "hostname": "example.com",
}
_OBJECT_WORDS = ("properties", "required", "additionalProperties", "minProperties", "maxProperties",
                 "patternProperties")
_ARRAY_WORDS = ("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains")
_STRING_WORDS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_WORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def value_for(schema: dict[str, Any] | bool, *, seed_text: str) -> Any:
    """A value valid against `schema`, the same every time for the same schema and `seed_text`.

    Covers `type` (one or a list: the first non-null type is used), `properties`/`required` (every property is
    filled; required names without a property schema use `additionalProperties`), `additionalProperties`,
    `min/maxProperties`, `items`/`prefixItems` (and the older list form of `items` with `additionalItems`),
    `min/maxItems`, `uniqueItems`, `contains` (its value comes first), `min/maxLength`, `minimum`/`maximum`/
    `exclusiveMinimum`/`exclusiveMaximum` (numbers, and draft 4's booleans), `multipleOf`, `enum` and `const`
    (the first value), `anyOf`/`oneOf` (the first branch, merged with the keywords beside it), `allOf` (merged),
    `$ref` to any `#/...` pointer such as `#/$defs/X` or `#/definitions/X` (a reference nested in itself more
    than twice yields only its required parts), `format` (date-time, date, time, email, uri, uuid, hostname, ipv4,
    ipv6) and `pattern`. Strings are words of `seed_text`, as many as the length limits allow.

    Best effort, and not satisfied: `pattern` is read with Python's `re` (not ECMA-262) and a string is built for
    it from literals, classes, repeats, groups and first alternatives; lookarounds and backreferences to groups
    that matched nothing are ignored, and if the built string does not match, the seed words are returned
    anyway. `not`, `if`/`then`/`else`, `dependent*`, `patternProperties`, `propertyNames` and `contentMedia*`
    are ignored. A `oneOf` value is the first branch's, which is wrong when it also matches a later branch.
    `multipleOf` with a decimal fraction (0.1) may be refused by a validator's float arithmetic; binary ones
    (0.5, 0.25) are exact. A contradictory schema gives a value that does not validate.
    """
    return _Generator(schema, seed_text).value(schema, variant=0, depth=0)


class _Generator:
    """One walk over a schema: the root (for `$ref`), the seed words and the references being expanded."""

    def __init__(self, root: dict[str, Any] | bool, seed_text: str) -> None:
        self.root = root
        self.seed_text = seed_text
        self.words = seed_text.split() or [FALLBACK_WORD]
        self.cursor = 0
        self.seed_number = zlib.crc32(seed_text.encode()) % 100
        self.expanding: dict[str, int] = {}

    def value(self, schema: dict[str, Any] | bool, *, variant: int, depth: int) -> Any:
        if schema is True or schema == {}:
            return self.string({}, variant)
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return None
        if "$ref" in schema:
            return self.referenced(schema, variant=variant, depth=depth)
        schema = resolve_combinators(schema, self.root, minimal=self.minimal)
        if not isinstance(schema, dict):
            return self.value(schema, variant=variant, depth=depth + 1)
        if "$ref" in schema:
            return self.referenced(schema, variant=variant, depth=depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][variant % len(schema["enum"])]
        kind = schema_type(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind in ("number", "integer"):
            return number(schema, integer=kind == "integer", preferred=self.seed_number + variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return self.string(schema, variant)

    @property
    def minimal(self) -> bool:
        """Inside a reference nested in itself: generate only what is required."""
        return any(count > REF_REPEATS for count in self.expanding.values())

    def referenced(self, schema: dict[str, Any], *, variant: int, depth: int) -> Any:
        ref = str(schema["$ref"])
        target = resolve_pointer(self.root, ref)
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        merged = merge(target, siblings) if siblings and isinstance(target, dict) else target
        self.expanding[ref] = self.expanding.get(ref, 0) + 1
        try:
            return self.value(merged, variant=variant, depth=depth + 1)
        finally:
            self.expanding[ref] -= 1

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if isinstance(name, str)]
        extra = schema.get("additionalProperties", True)
        wanted = schema.get("minProperties", 0)
        names = list(dict.fromkeys([*required, *properties]))
        if self.minimal:
            names = names[:max(len(required), wanted if isinstance(wanted, int) else 0)]
        if extra is False:
            names = [name for name in names if name in properties]
        limit = schema.get("maxProperties")
        if isinstance(limit, int):
            names = names[:max(limit, len([name for name in required if name in names]))]
        result: dict[str, Any] = {}
        for name in names:
            result[name] = self.value(properties.get(name, extra if extra is not False else True),
                                      variant=0, depth=depth + 1)
        index = 0
        while isinstance(wanted, int) and len(result) < wanted and extra is not False:
            index += 1
            if f"extra_{index}" not in result:
                result[f"extra_{index}"] = self.value(extra, variant=index, depth=depth + 1)
        return result

    def array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix, items = array_parts(schema)
        low = max(int(schema.get("minItems", 0)), 0)
        high = schema.get("maxItems")
        count = max(low, 0 if self.minimal else len(prefix) or 1)
        if items is False:
            count = min(count, len(prefix))
        if isinstance(high, int):
            count = min(count, high)
        contains = schema.get("contains")
        result: list[Any] = []
        seen: set[bytes] = set()
        for index in range(count):
            item_schema = prefix[index] if index < len(prefix) else items
            if index == 0 and contains is not None and not prefix:
                item_schema = merge(items, contains) if isinstance(items, dict) else contains
            result.append(self.item(item_schema, index, depth, seen if schema.get("uniqueItems") else None))
        return result

    def item(self, schema: Any, index: int, depth: int, seen: set[bytes] | None) -> Any:
        """An array's `index`th item; with `seen` (uniqueItems), one unlike those before when it can be."""
        value = self.value(schema, variant=index, depth=depth + 1)
        if seen is None:
            return value
        for attempt in range(1, 16):
            key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            if key not in seen:
                seen.add(key)
                return value
            value = self.value(schema, variant=index + attempt * 7, depth=depth + 1)
        return value

    def string(self, schema: dict[str, Any], variant: int) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        fmt = schema.get("format")
        if isinstance(fmt, str) and (formatted := self.formatted(fmt, variant)) is not None:
            return formatted
        text = self.seed_words(variant, low, high if isinstance(high, int) else None)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            return string_for_pattern(pattern, text, low, high if isinstance(high, int) else None)
        return text

    def formatted(self, fmt: str, variant: int) -> str | None:
        word = re.sub(r"[^a-z0-9]", "", self.words[variant % len(self.words)].lower()) or FALLBACK_WORD
        if fmt == "email":
            return f"{word}@example.com"
        if fmt in ("uri", "url", "iri"):
            return f"https://example.com/{word}"
        if fmt == "uuid":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.seed_text}#{variant}"))
        return _FORMATS.get(fmt)

    def seed_words(self, variant: int, low: int, high: int | None) -> str:
        """The next few seed words (each string starts one word later), fitted to the length limits."""
        start = self.cursor + variant
        self.cursor += 1
        words = [self.words[(start + offset) % len(self.words)]
                 for offset in range(min(WORDS_PER_STRING, len(self.words)))]
        if round_trip := variant // len(self.words):  # past every rotation of the words: number them
            words.append(str(round_trip + 1))
        text = " ".join(words)
        offset = len(words)
        while len(text) < low:
            text += " " + self.words[(start + offset) % len(self.words)]
            offset += 1
        if high is not None and len(text) > high:
            cut = text[:high]
            text = cut.rstrip() if len(cut.rstrip()) >= low else cut
        return text


def schema_type(schema: dict[str, Any]) -> str:
    """The type to generate: the declared one (the first non-null of a list), else the one its keywords imply."""
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((kind for kind in declared if kind != "null"), declared[0] if declared else None)
    if isinstance(declared, str):
        return declared
    for kind, words in (("object", _OBJECT_WORDS), ("array", _ARRAY_WORDS), ("string", _STRING_WORDS),
                        ("number", _NUMBER_WORDS)):
        if any(word in schema for word in words):
            return kind
    return "string"


def resolve_pointer(root: Any, ref: str) -> Any:
    """The schema a local `$ref` (`#/$defs/Name`, `#/definitions/Name`, any `#/...` pointer) points at."""
    if not ref.startswith("#"):
        return True
    node = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return True
    return node


def resolve_combinators(schema: dict[str, Any], root: Any, *, minimal: bool = False) -> Any:
    """`schema` with its `allOf` merged in and its first `anyOf`/`oneOf` branch chosen and merged."""
    while isinstance(schema, dict):
        if isinstance(schema.get("allOf"), list):
            rest = {key: value for key, value in schema.items() if key != "allOf"}
            for branch in schema["allOf"]:
                rest = merge(rest, inline_ref(branch, root))
            schema = rest
            continue
        for word in ("anyOf", "oneOf"):
            if isinstance(schema.get(word), list) and schema[word]:
                rest = {key: value for key, value in schema.items() if key != word}
                schema = merge(rest, inline_ref(first_branch(schema[word], minimal=minimal), root))
                break
        else:
            return schema
    return schema


def first_branch(branches: list[Any], *, minimal: bool = False) -> Any:
    """The branch to follow: the first that allows more than null; when `minimal` (deep in a recursive
    reference), null or the first without a `$ref`, so that the recursion ends."""
    if minimal:
        plain = [branch for branch in branches if b"$ref" not in orjson.dumps(branch)]
        nulls = [branch for branch in plain if isinstance(branch, dict) and branch.get("type") == "null"]
        if nulls or plain:
            return (nulls or plain)[0]
    for branch in branches:
        if not (isinstance(branch, dict) and branch.get("type") == "null"):
            return branch
    return branches[0]


def inline_ref(schema: Any, root: Any) -> Any:
    """A branch with a top-level `$ref` replaced by its target, so that it can be merged."""
    if isinstance(schema, dict) and "$ref" in schema and len(schema) == 1:
        target = resolve_pointer(root, str(schema["$ref"]))
        if isinstance(target, dict) and not _refers_to_itself(target, str(schema["$ref"])):
            return target
    return schema


def _refers_to_itself(schema: dict[str, Any], ref: str) -> bool:
    return ref.encode() in orjson.dumps(schema)


def merge(first: Any, second: Any) -> Any:
    """Two schemas as one that asks for both (as `allOf` would), for the keywords the generator reads."""
    if not isinstance(first, dict):
        return second if first is True else first
    if not isinstance(second, dict):
        return first if second is True else second
    merged = dict(first)
    for key, value in second.items():
        if key not in merged:
            merged[key] = value
        elif key == "properties":
            merged[key] = {**merged[key]}
            for name, sub in value.items():
                merged[key][name] = merge(merged[key][name], sub) if name in merged[key] else sub
        elif key == "required":
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        elif key == "type":
            merged[key] = _common_type(merged[key], value)
        elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
            merged[key] = max(merged[key], value)
        elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
            merged[key] = min(merged[key], value)
        elif key in ("items", "additionalProperties"):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _common_type(first: Any, second: Any) -> Any:
    left = set(first if isinstance(first, list) else [first])
    right = set(second if isinstance(second, list) else [second])
    if "number" in left and "integer" in right or "number" in right and "integer" in left:
        left |= {"integer"}
        right |= {"integer"}
    common = [kind for kind in (first if isinstance(first, list) else [first]) if kind in right]
    if "integer" in left & right and "integer" not in common:
        common.append("integer")
    return common[0] if len(common) == 1 else common or first


def array_parts(schema: dict[str, Any]) -> tuple[list[Any], Any]:
    """The per-position schemas and the schema of the items after them (`True`: anything, `False`: none)."""
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True)
    return list(schema.get("prefixItems") or []), items


def number(schema: dict[str, Any], *, integer: bool, preferred: int) -> int | float:
    """A number within the schema's bounds and a multiple of its `multipleOf`, near `preferred`."""
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", lower=True)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", lower=False)
    step = _step(schema.get("multipleOf"), integer)
    if step is None and not integer:
        candidate = Fraction(preferred)
        if _within(candidate, low, low_open, high, high_open):
            return preferred
    unit = step or Fraction(1)
    first = _first_multiple(low, low_open, unit)
    last = _last_multiple(high, high_open, unit)
    if first is not None and last is not None and first > last:
        if step is None and not integer and low is not None and high is not None:
            return float((low + high) / 2)
        return _as_number(first * unit, integer)
    wanted = Fraction(preferred) / unit
    chosen = math.floor(wanted)
    if first is not None:
        chosen = max(chosen, first)
    if last is not None:
        chosen = min(chosen, last)
    return _as_number(chosen * unit, integer)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, *, lower: bool) -> tuple[Fraction | None, bool]:
    """The tighter of a schema's inclusive and exclusive bound on one side, and whether it is open."""
    bounds: list[tuple[Fraction, bool]] = []
    value: Any = schema.get(inclusive)
    open_flag: Any = schema.get(exclusive)
    if _is_number(value):
        bounds.append((_fraction(value), open_flag is True))
    if _is_number(open_flag):
        bounds.append((_fraction(open_flag), True))
    if not bounds:
        return None, False
    pick = max if lower else min
    edge = pick(bound for bound, _ in bounds)
    return edge, any(is_open for bound, is_open in bounds if bound == edge)


def _step(multiple: Any, integer: bool) -> Fraction | None:
    if not _is_number(multiple) or multiple <= 0:
        return Fraction(1) if integer else None
    step = _fraction(multiple)
    return Fraction(step.numerator) if integer else step


def _first_multiple(low: Fraction | None, is_open: bool, unit: Fraction) -> int | None:
    if low is None:
        return None
    index = math.ceil(low / unit)
    return index + 1 if is_open and index * unit == low else index


def _last_multiple(high: Fraction | None, is_open: bool, unit: Fraction) -> int | None:
    if high is None:
        return None
    index = math.floor(high / unit)
    return index - 1 if is_open and index * unit == high else index


def _within(value: Fraction, low: Fraction | None, low_open: bool, high: Fraction | None, high_open: bool) -> bool:
    above = low is None or value > low or (value == low and not low_open)
    below = high is None or value < high or (value == high and not high_open)
    return above and below


def _as_number(value: Fraction, integer: bool) -> int | float:
    if value.denominator == 1:
        return int(value)
    return math.floor(value) if integer else float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: int | float) -> Fraction:
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def string_for_pattern(pattern: str, text: str, low: int, high: int | None) -> str:
    """A string matching `pattern` (searched, as JSON Schema does) within the length limits: `text` itself when
    it already matches, else one built from the pattern, padded with `text` where anchors allow."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return text

    def fits(candidate: str) -> bool:
        return len(candidate) >= low and (high is None or len(candidate) <= high) and bool(compiled.search(candidate))

    if fits(text):
        return text
    for extra in (0, 1, 2, 4, 8, 16, 64):
        built = _build(pattern, extra)
        if built is None:
            break
        for candidate in (built, built + " " + text, text + " " + built, built + text[: max(low - len(built), 0)]):
            if fits(candidate):
                return candidate
    return text


def _build(pattern: str, extra: int) -> str | None:
    """A string for a Python regular expression: each repeat taken `extra` times more than its minimum."""
    parser: Any = importlib.import_module("re._parser")
    try:
        parsed = parser.parse(pattern)
    except (re.error, RecursionError):
        return None
    groups: dict[int, str] = {}
    return "".join(_emit(parsed, extra, groups, parser.MAXREPEAT))


def _emit(items: Any, extra: int, groups: dict[int, str], unbounded: int) -> Iterator[str]:
    for op, argument in items:
        name = op.name
        if name == "LITERAL":
            yield chr(argument)
        elif name == "NOT_LITERAL":
            yield "a" if argument != ord("a") else "b"
        elif name == "ANY":
            yield "a"
        elif name == "IN":
            yield _member(argument)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            least, most, sub = argument
            times = least + extra if most == unbounded else min(least + extra, most)
            yield "".join("".join(_emit(sub, extra, groups, unbounded)) for _ in range(times))
        elif name == "SUBPATTERN":
            group, _, _, sub = argument
            text = "".join(_emit(sub, extra, groups, unbounded))
            if group is not None:
                groups[group] = text
            yield text
        elif name == "ATOMIC_GROUP":
            yield "".join(_emit(argument, extra, groups, unbounded))
        elif name == "BRANCH":
            yield "".join(_emit(argument[1][0], extra, groups, unbounded))
        elif name == "GROUPREF":
            yield groups.get(argument, "")


_CATEGORY_CHARS = {"CATEGORY_DIGIT": "0", "CATEGORY_NOT_DIGIT": "a", "CATEGORY_SPACE": " ", "CATEGORY_NOT_SPACE": "a",
                   "CATEGORY_WORD": "a", "CATEGORY_NOT_WORD": "-"}
_CANDIDATES = "a0A_-. xz9Z"


def _member(items: list[Any]) -> str:
    """A character in a character class (`[...]`, `\\d`, `[^...]`)."""
    if items and items[0][0].name == "NEGATE":
        rest = items[1:]
        return next((char for char in _CANDIDATES if not _in_class(char, rest)), "~")
    for op, argument in items:
        if op.name == "LITERAL":
            return chr(argument)
        if op.name == "RANGE":
            return chr(argument[0])
        if op.name == "CATEGORY" and argument.name in _CATEGORY_CHARS:
            return _CATEGORY_CHARS[argument.name]
    return "a"


def _in_class(char: str, items: list[Any]) -> bool:
    code = ord(char)
    for op, argument in items:
        if op.name == "LITERAL" and argument == code:
            return True
        if op.name == "RANGE" and argument[0] <= code <= argument[1]:
            return True
        if op.name == "CATEGORY" and _in_category(char, argument.name):
            return True
    return False


def _in_category(char: str, category: str) -> bool:
    tests = {"CATEGORY_DIGIT": char.isdigit(), "CATEGORY_SPACE": char.isspace(),
             "CATEGORY_WORD": char.isalnum() or char == "_"}
    positive = category.replace("_NOT", "")
    return tests.get(positive, False) != ("_NOT_" in category)
