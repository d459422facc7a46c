"""Prompt templates: named, versioned chat templates a request can use instead of raw messages.

Templates come from `prompts:` in sluice.yaml, the YAML files of `prompts_dir`, and the admin API
(`/admin/prompts`, kept in the database by `prompts_store.py`). A chat request names one
with `"prompt": {"name": …, "version": …, "variables": {…}}`; its messages are rendered by plain `{{variable}}`
substitution (no expressions, no code) and put before any `messages` the request also gives. Every placeholder
must get a value (else 400 naming the variable); the newest version is used when none is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.errors import InvalidRequest, NotFound

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
NAME_PATTERN = r"^[a-z0-9]([_a-z0-9-]*[a-z0-9])?$"
"""Lower-case letters, digits, `-` and `_`: what Phoenix accepts as a prompt name."""


class PromptMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class PromptConfig(BaseModel):
    """One version of a named template, as written in sluice.yaml (`prompts:`) or a `prompts_dir` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(1, ge=1)
    messages: list[PromptMessage] = Field(min_length=1)
    description: str | None = None
    model: str | None = None
    """The model the template was written for; only sent to Phoenix (`sluice prompts push`)."""


class PromptFileError(ValueError):
    """A `prompts_dir` file cannot be used; the message names the file."""


@dataclass(frozen=True)
class Template:
    """A loaded template version: its messages, placeholders and the JSON text spans show as the template."""

    name: str
    version: int
    messages: tuple[tuple[str, str], ...]
    variables: frozenset[str]
    template_json: str
    description: str | None = None
    model: str | None = None

    @classmethod
    def of(cls, config: PromptConfig) -> Template:
        messages = tuple((message.role, message.content) for message in config.messages)
        names = frozenset(name for _, content in messages for name in PLACEHOLDER.findall(content))
        text = orjson.dumps([{"role": role, "content": content} for role, content in messages]).decode()
        return cls(config.name, config.version, messages, names, text, config.description, config.model)

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The messages with every `{{name}}` replaced; InvalidRequest names the first missing variable."""
        for name in sorted(self.variables):
            if name not in variables:
                raise InvalidRequest(
                    f"Missing variable '{name}' for prompt '{self.name}' version {self.version}.",
                    param=f"prompt.variables.{name}", code="missing_prompt_variable")
        return render_messages(self.messages, variables)

    def as_config(self) -> dict[str, Any]:
        """The template as a `prompts:` entry (what `sluice prompts pull` writes)."""
        entry: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            entry["description"] = self.description
        if self.model:
            entry["model"] = self.model
        entry["messages"] = [{"role": role, "content": content} for role, content in self.messages]
        return entry


def render_messages(messages: Iterable[tuple[str, str]], variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Substitute `{{name}}` in each message (strings as they are, other values as JSON); unknown names stay."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            return match.group(0)
        found = variables[name]
        return found if isinstance(found, str) else orjson.dumps(found).decode()

    return [{"role": role, "content": PLACEHOLDER.sub(value, content)} for role, content in messages]


def render_template_json(template_json: str, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Render a `Template.template_json` again (the span exporter does this to show the input messages)."""
    messages = orjson.loads(template_json)
    return render_messages(((m["role"], m["content"]) for m in messages), variables)


@dataclass(frozen=True)
class Rendered:
    template: Template
    messages: list[dict[str, Any]]
    variables: dict[str, Any]


class PromptRegistry:
    """Every template version by name; `render` turns a request's `prompt` object into messages."""

    def __init__(self, templates: Iterable[Template] = ()) -> None:
        self._by_name: dict[str, dict[int, Template]] = {}
        for template in templates:
            if not self.add(template):
                raise PromptFileError(f"prompt {template.name!r} version {template.version} is defined twice")
        self.configured = frozenset((template.name, template.version) for template in self)
        """The (name, version) pairs that come from the config; the rest were added through the admin API."""

    def add(self, template: Template) -> bool:
        """Add a version; False (and nothing changes) when that name and version exist: versions are immutable."""
        versions = self._by_name.setdefault(template.name, {})
        if template.version in versions:
            return False
        versions[template.version] = template
        return True

    def next_version(self, name: str) -> int:
        return max(self._by_name.get(name) or [0]) + 1

    @classmethod
    def load(cls, prompts: Iterable[PromptConfig], prompts_dir: str | Path | None = None) -> PromptRegistry:
        """The templates of the config and of every `*.yaml`/`*.yml` file in `prompts_dir`."""
        configs = list(prompts)
        if prompts_dir is not None:
            configs.extend(read_prompts_dir(Path(prompts_dir)))
        return cls(Template.of(config) for config in configs)

    def __iter__(self) -> Iterator[Template]:
        for name in sorted(self._by_name):
            versions = self._by_name[name]
            yield from (versions[number] for number in sorted(versions))

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._by_name.values())

    def get(self, name: str, version: int | str | None = None) -> Template:
        """The named template at `version` (None or "latest": the newest); NotFound (404) otherwise."""
        versions = self._by_name.get(name)
        if not versions:
            raise NotFound(f"The prompt '{name}' does not exist.", param="prompt.name", code="prompt_not_found")
        if version is None or version == "latest":
            return versions[max(versions)]
        number = int(version) if isinstance(version, int) or str(version).isdigit() else None
        if number is None or number not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise NotFound(f"The prompt '{name}' has no version {version} (versions: {known}).",
                           param="prompt.version", code="prompt_version_not_found")
        return versions[number]

    def render(self, reference: Mapping[str, Any]) -> Rendered:
        """Render a request's (schema-validated) `prompt` object."""
        template = self.get(str(reference["name"]), reference.get("version"))
        variables = dict(reference.get("variables") or {})
        return Rendered(template, template.render(variables), variables)


def read_prompts_dir(directory: Path) -> list[PromptConfig]:
    """The templates of every YAML file in `directory`: a `prompts:` list, a bare list, or one template."""
    if not directory.is_dir():
        raise PromptFileError(f"{directory}: prompts_dir is not a directory")
    found: list[PromptConfig] = []
    for file in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        found.extend(parse_prompts_text(file.read_text(encoding="utf-8"), str(file)))
    return found


def parse_prompts_text(text: str, source: str) -> list[PromptConfig]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptFileError(f"{source}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    if data is not None and not items and not isinstance(data, list):
        raise PromptFileError(f"{source}: expected a `prompts:` list, a list of templates or one template")
    found = []
    for index, item in enumerate(items):
        try:
            found.append(PromptConfig.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
            raise PromptFileError(f"{source}: prompts[{index}]{where}: {error['msg']}") from None
    return found


def dump_prompts(templates: Iterable[Template]) -> str:
    """YAML a `prompts_dir` file (or `prompts:` in sluice.yaml) can hold."""
    entries = [template.as_config() for template in templates]
    return yaml.safe_dump({"prompts": entries}, sort_keys=False, allow_unicode=True, width=1000)
