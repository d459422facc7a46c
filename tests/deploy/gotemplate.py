"""A small subset of Go's text/template with Helm's functions, enough to render deploy/helm/sluice without helm.

Supported: text and `{{- -}}` trimming, comments, fields (`.Values.a.b`, `$.Release.Name`, `.`), `$name`
variables bound by `range $k, $v := …`, string/number/bool literals, parenthesised pipelines, `|` pipes,
`if`/`else if`/`else`, `with`, `range` over lists and maps (sorted keys, as Go does), `define` and `include`, and the
functions the chart uses. Anything else raises TemplateError, so a construct this renderer does not know fails the
test instead of rendering wrongly. Missing fields are None (Go's "no value"); printing None raises.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


class TemplateError(Exception):
    """A template this renderer cannot parse or evaluate."""


@dataclass
class Node:
    kind: str  # text, action, if, with, range, define
    value: str = ""
    body: list[Node] = field(default_factory=list)
    branches: list[tuple[str, list[Node]]] = field(default_factory=list)  # if / else if conditions
    otherwise: list[Node] = field(default_factory=list)


def _tokens(source: str) -> list[tuple[str, str]]:
    """(text, …) and (action, …) pairs with `{{-`/`-}}` trimming already applied."""
    out: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in ACTION.finditer(source):
        text = source[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2).strip()))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = source[position:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def parse(source: str) -> tuple[list[Node], dict[str, list[Node]]]:
    """The top-level nodes of `source` and the templates it defines."""
    defines: dict[str, list[Node]] = {}
    stack: list[tuple[Node, list[Node]]] = []
    root: list[Node] = []
    current = root
    for kind, value in _tokens(source):
        if kind == "text":
            if value:
                current.append(Node("text", value))
            continue
        if value.startswith("/*"):
            continue
        word, _, rest = value.partition(" ")
        if word in ("if", "with", "range", "define"):
            node = Node(word, rest.strip())
            if word == "if":
                node.branches.append((rest.strip(), node.body))
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif word == "else":
            node, _ = stack[-1]
            if rest.startswith("if "):
                branch: list[Node] = []
                node.branches.append((rest[3:].strip(), branch))
                current = branch
            else:
                current = node.otherwise
        elif word == "end":
            node, current = stack.pop()
            if node.kind == "define":
                current.remove(node)
                defines[shlex.split(node.value)[0]] = node.body
        else:
            current.append(Node("action", value))
    if stack:
        raise TemplateError(f"unclosed {stack[-1][0].kind}")
    return root, defines


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1_000_000).rstrip("\n")


def indent(width: int, text: str) -> str:
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def printf(pattern: str, *args: Any) -> str:
    values = iter(args)
    return re.sub(r"%[sdv]", lambda _: str(next(values)), pattern)


class Renderer:
    """Renders templates against a root context (Values, Release, Chart)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.defines: dict[str, list[Node]] = {}
        self.functions: dict[str, Callable[..., Any]] = {
            "include": lambda name, dot: self.render_nodes(self.defines[name], dot, {}),
            "toYaml": to_yaml,
            "nindent": lambda width, text: "\n" + indent(int(width), str(text)),
            "indent": lambda width, text: indent(int(width), str(text)),
            "quote": lambda value: '"' + ("" if value is None else str(value)).replace('"', '\\"') + '"',
            "default": lambda fallback, value=None: value if truthy(value) else fallback,
            "trunc": lambda length, text: str(text)[:int(length)],
            "trimSuffix": lambda suffix, text: str(text)[:-len(suffix)] if str(text).endswith(suffix) else str(text),
            "printf": printf,
            "print": lambda *args: "".join(str(a) for a in args),
            "sha256sum": lambda text: hashlib.sha256(str(text).encode()).hexdigest(),
            "and": lambda *args: next((a for a in args if not truthy(a)), args[-1]),
            "or": lambda *args: next((a for a in args if truthy(a)), args[-1]),
            "not": lambda value: not truthy(value),
            "eq": lambda a, b: a == b,
            "ne": lambda a, b: a != b,
        }

    def load(self, source: str) -> list[Node]:
        nodes, defines = parse(source)
        self.defines.update(defines)
        return nodes

    def render(self, nodes: list[Node]) -> str:
        return self.render_nodes(nodes, self.root, {})

    def render_nodes(self, nodes: list[Node], dot: Any, variables: dict[str, Any]) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.value)
            elif node.kind == "action":
                value = self.pipeline(node.value, dot, variables)
                if value is None:
                    raise TemplateError(f"{{{{ {node.value} }}}} has no value")
                out.append(value if isinstance(value, str) else _go_string(value))
            elif node.kind == "if":
                for condition, body in node.branches:
                    if truthy(self.pipeline(condition, dot, variables)):
                        out.append(self.render_nodes(body, dot, variables))
                        break
                else:
                    out.append(self.render_nodes(node.otherwise, dot, variables))
            elif node.kind == "with":
                value = self.pipeline(node.value, dot, variables)
                chosen = (node.body, value) if truthy(value) else (node.otherwise, dot)
                out.append(self.render_nodes(chosen[0], chosen[1], variables))
            elif node.kind == "range":
                out.append(self.range(node, dot, variables))
        return "".join(out)

    def range(self, node: Node, dot: Any, variables: dict[str, Any]) -> str:
        names: list[str] = []
        expression = node.value
        if ":=" in expression:
            left, expression = expression.split(":=", 1)
            names = [name.strip() for name in left.split(",")]
        collection = self.pipeline(expression.strip(), dot, variables)
        items = sorted(collection.items()) if isinstance(collection, dict) else list(enumerate(collection or []))
        if not items:
            return self.render_nodes(node.otherwise, dot, variables)
        out = []
        for key, value in items:
            scope = dict(variables)
            if len(names) == 2:
                scope[names[0]], scope[names[1]] = key, value
            elif len(names) == 1:
                scope[names[0]] = value
            out.append(self.render_nodes(node.body, value, scope))
        return "".join(out)

    def pipeline(self, text: str, dot: Any, variables: dict[str, Any]) -> Any:
        value: Any = _NOTHING
        for command in _split(text, "|"):
            words = _words(command)
            args = [self.operand(word, dot, variables) for word in words[1:]]
            if value is not _NOTHING:
                args.append(value)
            head = words[0]
            if head in self.functions:
                value = self.functions[head](*args)
            elif args:
                raise TemplateError(f"unknown function {head!r} in {text!r}")
            else:
                value = self.operand(head, dot, variables)
        return value

    def operand(self, word: str, dot: Any, variables: dict[str, Any]) -> Any:
        if word.startswith("(") and word.endswith(")"):
            return self.pipeline(word[1:-1], dot, variables)
        if word.startswith('"'):
            return word[1:-1].replace('\\"', '"')
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word == "nil":
            return None
        if word in self.functions:
            return self.functions[word]()
        if word == "$" or word.startswith("$."):
            return _field(self.root, word[2:])
        if word.startswith("$"):
            name, _, path = word.partition(".")
            if name not in variables:
                raise TemplateError(f"undefined variable {name}")
            return _field(variables[name], path)
        if word.startswith("."):
            return _field(dot, word[1:])
        raise TemplateError(f"cannot evaluate {word!r}")


_NOTHING = object()


def _go_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"printing a {type(value).__name__} ({value!r}): use toYaml")
    return str(value)


def _field(value: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TemplateError(f"field {part!r} of a {type(value).__name__}")
        value = value.get(part)
    return value


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside quotes and parentheses."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == '"' and text[index - 1:index] != "\\":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return parts


def _words(command: str) -> list[str]:
    """A command's words: quoted strings and parenthesised pipelines stay whole."""
    words: list[str] = []
    current = ""
    depth, quoted = 0, False
    for index, char in enumerate(command):
        if char == '"' and command[index - 1:index] != "\\":
            quoted = not quoted
        if not quoted and char == "(":
            depth += 1
        if not quoted and char == ")":
            depth -= 1
        if char.isspace() and not quoted and depth == 0:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    if not words:
        raise TemplateError(f"empty command in {command!r}")
    return words
