"""The config file: validation, interpolation and the messages a bad file gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config import ConfigError, load_config, parse_config


def test_embedded_defaults_serve_the_mock_model() -> None:
    config = load_config(None)
    assert [m.name for m in config.models] == ["mock"]
    assert config.providers["mock"].type == "mock"


def test_env_references_are_interpolated_and_secret() -> None:
    config = parse_config(
        'providers:\n  o: {type: openai, base_url: "https://x/v1", api_key: "${KEY}"}\n', "f.yaml", env={"KEY": "s3"}
    )
    key = config.providers["o"].api_key  # type: ignore[union-attr]
    assert key is not None and key.get_secret_value() == "s3"
    assert "s3" not in repr(config)


def test_optional_env_reference_uses_default() -> None:
    config = parse_config('providers:\n  o: {type: openai, base_url: "${URL:-http://h/v1}"}\n', "f.yaml", env={})
    assert config.providers["o"].base_url == "http://h/v1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('providers:\n  o: {type: openai, base_url: "${NOPE}"}\n',
         "f.yaml: providers.o.base_url: environment variable NOPE is not set"),
        ("providers:\n  o: {type: openai, base_url: ftp://x}\n", "f.yaml: providers.o.base_url: String should match"),
        ("providers:\n  o: {type: nope}\n", "f.yaml: providers.o: Input tag 'nope'"),
        ("providers:\n  m: {type: mock}\nmodels:\n  - {name: a, provider: x, model: y}\n",
         "f.yaml: models[0].provider: unknown provider 'x'"),
        ("providers:\n  m: {type: mock}\nmodels:\n  - {name: a, provider: m, model: y}\n"
         "  - {name: b, provider: m, model: y, aliases: [a]}\n", "name 'a' is already used"),
        ("providers:\n  m: {type: mock, lateny_ms: 3}\n",
         "f.yaml: providers.m.lateny_ms: Extra inputs are not permitted"),
        ("- just a list\n", "f.yaml: the top level must be a mapping"),
        ("providers: {a: [}\n", "f.yaml: not valid YAML"),
    ],
)
def test_bad_config_names_file_key_path_and_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "f.yaml", env={})
    assert str(caught.value).startswith(expected) or expected in str(caught.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")


def test_example_config_is_valid() -> None:
    env = {name: "x" for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY",
                                   "OPENROUTER_API_KEY", "GEMINI_API_KEY", "VLLM_API_KEY")}
    text = (Path(__file__).parents[2] / "sluice.example.yaml").read_text()
    config = parse_config(text, "sluice.example.yaml", env=env)
    assert {"openai", "anthropic", "azure", "openrouter", "ollama", "vllm", "mock"} <= set(config.providers)
