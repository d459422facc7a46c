"""The image's install steps outside a container (no Docker daemon here): deploy/docker/build-venv.sh, the script the
Dockerfile's builder stage runs, makes a fresh virtualenv from poetry.lock and Sluice's wheel; that virtualenv
then serves as an unprivileged user, configured the way the image configures it (settings from the environment,
`./sluice.yaml` in the working directory, a data dir of its own), passes the image's HEALTHCHECK command, answers
a chat request, and stops cleanly on SIGTERM. The source tree is not on its path: only the wheel is."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.test_deploy_dockerfile import runtime_stage
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
POETRY = ROOT / ".tools" / "poetry" / "bin" / "poetry"
CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: from-mounted-config, provider: mock, model: mock-1}
"""


def unprivileged() -> tuple[int, int] | None:
    """(uid, gid) to serve as: `nobody` when the tests run as root, else None (the current user already is)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def interpreter() -> str:
    """A Python 3.11+ the unprivileged user can run (as the image's /usr/local/bin/python is): this one, or, when it
    lives where `nobody` cannot reach (e.g. under /root/.pyenv), the system's."""
    user = unprivileged()
    if user is None:
        return sys.executable
    for candidate in (sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"):
        check = "import sys, venv, ensurepip; assert sys.version_info >= (3, 11)"
        try:
            if subprocess.run([candidate, "-c", check], user=user[0], group=user[1], extra_groups=[], cwd="/",
                              capture_output=True, timeout=30).returncode == 0:
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    pytest.fail("no Python 3.11+ with venv that user nobody can run (apt-get install python3-venv)")


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    poetry = str(POETRY) if POETRY.exists() else shutil.which("poetry")
    if poetry is None:
        pytest.fail("poetry is not installed (make install puts it in .tools/poetry)")
    place = Path(tempfile.mkdtemp(prefix="sluice-image-"))
    place.chmod(0o755)  # the unprivileged user must reach the virtualenv
    try:
        done = subprocess.run(
            ["sh", str(ROOT / "deploy/docker/build-venv.sh"), str(place / "venv"), str(place / "wheels")],
            cwd=ROOT, capture_output=True, text=True, timeout=240,
            env={**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, "POETRY": poetry,
                 "PYTHON": interpreter()})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield place / "venv"
    finally:
        shutil.rmtree(place, ignore_errors=True)


def test_the_venv_has_sluice_from_its_wheel_and_no_dev_tools(venv: Path) -> None:
    wheels = list((venv.parent / "wheels").glob("sluice-*.whl"))
    assert len(wheels) == 1
    where = subprocess.run([str(venv / "bin/python"), "-c", "import sluice; print(sluice.__file__)"],
                           capture_output=True, text=True, cwd="/", check=True).stdout
    assert where.startswith(str(venv)), where  # the installed wheel, not the checkout's src/
    assert not (venv / "bin/pytest").exists() and not (venv / "bin/mypy").exists()


def test_serves_as_an_unprivileged_user_like_the_image(venv: Path) -> None:
    home = venv.parent
    workdir, data = home / "etc-sluice", home / "data"
    workdir.mkdir()
    data.mkdir()
    (workdir / "sluice.yaml").write_text(CONFIG)
    user = unprivileged()
    if user:
        os.chown(data, *user)
    port = free_port()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(data), "LANG": "C.UTF-8",
           "SLUICE_HOST": "127.0.0.1", "SLUICE_PORT": str(port), "SLUICE_DATA_DIR": str(data),
           "SLUICE_API_KEYS": "sk-image", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    log = home / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(venv / "bin/sluice"), "serve"], cwd=workdir, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   **({"user": user[0], "group": user[1], "extra_groups": []} if user else {}))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(url + "/health/ready", timeout=5).status_code == 200
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-image"}, timeout=5).json()
        assert [m["id"] for m in models["data"]] == ["from-mounted-config"]  # ./sluice.yaml of the workdir
        reply = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-image"}, timeout=10,
                           json={"model": "from-mounted-config", "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        # The image's HEALTHCHECK command, as Docker would run it in the container.
        health = json.loads(re.search(r"CMD (\[.*\])", dict(runtime_stage())["HEALTHCHECK"]).group(1))  # type: ignore[union-attr]
        assert subprocess.run(health, env=env, timeout=10).returncode == 0
        if user:
            owners = {path.stat().st_uid for path in data.iterdir()}
            assert owners == {user[0]}, owners  # the SQLite log and the pepper file, written as that user
        process.send_signal(signal.SIGTERM)  # what tini passes on from `docker stop`
        assert process.wait(20) == 0, log.read_text()
        assert subprocess.run(health, env=env, timeout=10, capture_output=True).returncode != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
