"""The Dockerfile and .dockerignore without a Docker daemon: hadolint (from PyPI) finds nothing in it, and what the
issue asks of the image is there (base image argument, non-root user, port, health check, volume, exec-form
entrypoint, settings that exist). The install steps themselves run in test_deploy_install.py."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

from tests.deploy.test_deploy_compose import dockerfile_env, settings_env_names
from tests.deploy.tools import deploy_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions()
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    return steps[starts[-1]:]


def test_hadolint_finds_nothing() -> None:
    hadolint = deploy_tool("hadolint")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """The same hadolint flags a bad file, so a clean result above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    done = subprocess.run([deploy_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3003" in done.stdout, done.stdout


def test_the_image_is_what_the_issue_asks() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]  # multi-stage, base as an argument
    runtime = dict(runtime_stage())
    user = runtime["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    assert runtime["EXPOSE"] == "8000"
    env = dockerfile_env()
    assert env["SLUICE_PORT"] == "8000" and env["SLUICE_HOST"] == "0.0.0.0"
    assert json.loads(runtime["VOLUME"]) == [env["SLUICE_DATA_DIR"]]
    assert runtime["WORKDIR"] == "/etc/sluice"  # ./sluice.yaml there is the mounted config
    assert set(v for v in env if v.startswith("SLUICE_")) <= settings_env_names()
    health = runtime["HEALTHCHECK"]
    assert "/health" in health and "CMD [" in health
    # Exec form: the server (after tini) is the process the container's SIGTERM reaches, not a shell.
    assert json.loads(runtime["ENTRYPOINT"]) == ["tini", "--", "sluice"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    # The builder installs from the lock file, through the script the install test runs.
    builder = "\n".join(rest for word, rest in instructions()[:len(steps) - len(runtime_stage())])
    assert "poetry.lock" in builder and "STEP=deps sh /usr/local/bin/build-venv.sh /opt/sluice" in builder
    assert "STEP=app sh /usr/local/bin/build-venv.sh /opt/sluice" in builder


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path (or one of its parents) decides."""
    verdict = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if fnmatch.fnmatch(candidate, pattern) or (pattern.startswith("**/") and
                                                       fnmatch.fnmatch(parts[depth - 1], pattern[3:])):
                verdict = not negated
                break
    return verdict


def test_dockerignore_sends_what_the_build_copies_and_nothing_else() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [part for word, rest in instructions() if word == "COPY" and not rest.startswith("--from")
               for part in rest.split()[:-1]]
    assert sources
    for source in sources:
        assert not ignored(source.rstrip("/"), patterns), f"{source} is copied but .dockerignore drops it"
    for path in ("src/sluice/app.py", "src/sluice/db/migrations/env.py", "poetry.lock"):
        assert not ignored(path, patterns), path
    for path in (".venv/bin/python", ".git/config", "tests/conftest.py", ".tools/poetry", "data/sluice.db",
                 "bench/run.py", "src/sluice/__pycache__/app.cpython-311.pyc", ".env"):
        assert ignored(path, patterns), f"{path} would be sent to the build"
