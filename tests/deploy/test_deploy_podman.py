"""The image built and run for real, with Debian's podman and a base image made from Debian's packages
(deploy/docker/podman-smoke.sh: there is no Docker daemon or Docker Hub here). Opt-in, SLUICE_TEST_PODMAN=1: the
first run debootstraps the base and builds every layer (~2 min); later runs reuse podman's layer cache (~10-30 s).
It needs root and `apt-get install podman runc debootstrap`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
MISSING = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.skipif(os.environ.get("SLUICE_TEST_PODMAN") != "1",
                       reason="builds the image with podman: opt in with SLUICE_TEST_PODMAN=1 (make image-smoke)"),
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {MISSING} (apt-get install podman runc debootstrap)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="podman here runs as root (rootless needs subuid ranges)"),
]


def test_the_image_builds_runs_and_stops_cleanly() -> None:
    done = subprocess.run(["sh", str(ROOT / "deploy/docker/podman-smoke.sh")], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PORT": str(free_port())})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "smoke: image localhost/sluice:smoke built" in done.stdout
