"""Prompt templates: loading, versions, strict `{{variable}}` rendering, and the spans' template attributes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.config import ConfigError, load_config, parse_config
from sluice.errors import InvalidRequest, NotFound
from sluice.prompts import PromptConfig, PromptFileError, PromptRegistry, Template, dump_prompts, read_prompts_dir
from sluice.telemetry import openinference as oi


def template(version: int = 1, content: str = "Answer {{question}} as {{ persona }}.") -> PromptConfig:
    return PromptConfig.model_validate({"name": "support", "version": version, "messages": [
        {"role": "system", "content": "You are {{persona}}."}, {"role": "user", "content": content}]})


def test_rendering_substitutes_every_placeholder_and_leaves_other_braces() -> None:
    registry = PromptRegistry.load([template()])
    rendered = registry.render({"name": "support", "variables": {"question": "why {x}?", "persona": "Ada"}})
    assert rendered.messages == [{"role": "system", "content": "You are Ada."},
                                 {"role": "user", "content": "Answer why {x}? as Ada."}]
    assert (rendered.template.name, rendered.template.version) == ("support", 1)


def test_values_are_inserted_verbatim_never_evaluated() -> None:
    registry = PromptRegistry.load([template(content="{{question}}")])
    rendered = registry.render({"name": "support", "variables": {"question": "{{persona}} {{__import__}}",
                                                                 "persona": 3}})
    assert rendered.messages[1]["content"] == "{{persona}} {{__import__}}"
    assert rendered.messages[0]["content"] == "You are 3."


def test_a_missing_variable_is_a_400_naming_it() -> None:
    registry = PromptRegistry.load([template()])
    with pytest.raises(InvalidRequest) as caught:
        registry.render({"name": "support", "variables": {"persona": "Ada"}})
    assert caught.value.param == "prompt.variables.question" and "'question'" in caught.value.message


def test_latest_version_by_default_and_unknown_names_and_versions_are_404() -> None:
    registry = PromptRegistry.load([template(1), template(3, "v3 {{question}}")])
    assert registry.get("support").version == 3
    assert registry.get("support", "latest").version == 3
    assert registry.get("support", 1).version == 1
    with pytest.raises(NotFound) as caught:
        registry.get("nope")
    assert (caught.value.status, caught.value.param) == (404, "prompt.name")
    with pytest.raises(NotFound) as caught:
        registry.get("support", 2)
    assert caught.value.param == "prompt.version" and "versions: 1, 3" in caught.value.message


def test_a_version_defined_twice_is_refused() -> None:
    with pytest.raises(PromptFileError, match="version 1 is defined twice"):
        PromptRegistry.load([template(1), template(1)])


def test_names_must_suit_phoenix() -> None:
    with pytest.raises(ValueError, match="pattern"):
        PromptConfig.model_validate({"name": "Bad Name", "messages": [{"role": "user", "content": "x"}]})


def test_prompts_dir_files_and_pull_output_round_trip(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(dump_prompts([Template.of(template(2))]))
    (tmp_path / "b.yml").write_text("name: other\nmessages: [{role: user, content: '{{q}}'}]\n")
    (tmp_path / "notes.txt").write_text("ignored")
    found = read_prompts_dir(tmp_path)
    assert [(item.name, item.version) for item in found] == [("support", 2), ("other", 1)]
    assert found[0] == template(2)
    (tmp_path / "c.yaml").write_text("prompts: [{name: x}]\n")
    with pytest.raises(PromptFileError, match=r"c\.yaml: prompts\[0\]\.messages: Field required"):
        read_prompts_dir(tmp_path)


def test_config_takes_prompts_and_a_dir_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "one.yaml").write_text("name: greet\nmessages: [{role: user, content: 'hi {{who}}'}]\n")
    (tmp_path / "sluice.yaml").write_text("""
providers: {mock: {type: mock}}
models: [{name: mock, provider: mock, model: mock-1}]
prompts:
  - {name: support, version: 1, messages: [{role: user, content: "{{q}}"}]}
prompts_dir: prompts
""")
    config = load_config(tmp_path / "sluice.yaml")
    assert config.prompts_dir == str(tmp_path / "prompts")
    registry = PromptRegistry.load(config.prompts, config.prompts_dir)
    assert [(item.name, item.version) for item in registry] == [("greet", 1), ("support", 1)]
    with pytest.raises(ConfigError, match=r"t\.yaml: prompts\[0\]\.messages"):
        parse_config("providers: {mock: {type: mock}}\nprompts: [{name: x, messages: []}]\n", "t.yaml")


def test_span_attributes_show_the_template_and_the_rendered_messages() -> None:
    rendered = Template.of(template())
    request = {"model": "m", "prompt": {"name": "support"}, "messages": [{"role": "user", "content": "more"}]}
    body = oi.with_prompt(request, rendered.template_json, {"persona": "Ada", "question": "why"})
    assert "prompt" not in body
    assert [message["content"] for message in body["messages"]] == ["You are Ada.", "Answer why as Ada.", "more"]
    attributes = oi.prompt_template_attributes(rendered.template_json, {"persona": "Ada"}, "support", 1, hide=False)
    assert json.loads(attributes["llm.prompt_template.template"])[0] == {"role": "system",
                                                                          "content": "You are {{persona}}."}
    assert json.loads(attributes["llm.prompt_template.variables"]) == {"persona": "Ada"}
    assert attributes["llm.prompt_template.version"] == "1"
    hidden = oi.prompt_template_attributes(rendered.template_json, {"persona": "Ada"}, "support", 1, hide=True)
    assert hidden["llm.prompt_template.variables"] == oi.REDACTED
