"""Every target by name, with its version string and whether it can run here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import install
from targets import (
    PEERS,
    ROOT,
    Target,
    command_output,
    direct_request,
    litellm_launch,
    litellm_request,
    portkey_launch,
    portkey_request,
    proxy_launch,
    python_launch,
    relay_request,
    sluice_launch,
    sluice_request,
    upstream_launch,
)

ORDER = ("direct", "nginx", "floor", "floor_aiohttp", "sluice", "litellm", "portkey")
QUICK = ("direct", "floor", "sluice")


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def nginx_version() -> str:
    lua = command_output(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-http-lua"])
    return f"{command_output(['nginx', '-v']).replace('nginx version: ', '')}, lua module {lua}"


def sluice_version() -> str:
    sha = command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return f"sluice {_pkg('sluice')} @ {sha}{' + uncommitted changes' if dirty else ''}, granian {_pkg('granian')}"


def litellm_version() -> str:
    python = PEERS / "litellm/bin/python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return "litellm " + command_output([str(python), "-c", code])


def portkey_version() -> str:
    package = PEERS / "portkey/node_modules/@portkey-ai/gateway/package.json"
    try:
        pkg = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        pkg = "?"
    return f"@portkey-ai/gateway {pkg}, node {command_output(['node', '--version'])}"


def sluice_missing() -> str | None:
    sluice = ROOT / ".venv/bin/sluice"
    if not os.access(sluice, os.X_OK):
        return ".venv/bin/sluice not installed (run make install)"
    out = subprocess.run([str(sluice), "serve", "--help"], capture_output=True, text=True, check=False)
    return None if out.returncode == 0 else "`sluice serve --help` fails"


def python_floor_version() -> str:
    return (f"python {sys.version.split()[0]}, granian {_pkg('granian')}, aiohttp {_pkg('aiohttp')}, "
            f"uvloop {_pkg('uvloop')}")


def build(upstream_url: Callable[[], str], sluice_workers: int = 1, sluice_env: dict[str, str] | None = None,
          ) -> dict[str, Target]:
    """All targets; `upstream_url` is read when a request is built (Portkey names the upstream per request)."""
    suffix = f" ({sluice_workers} workers)" if sluice_workers > 1 else ""
    return {
        "direct": Target("direct", "upstream directly (nginx + Lua)", upstream_launch, direct_request,
                         version=nginx_version),
        "nginx": Target("nginx", "nginx reverse proxy (ceiling)", proxy_launch, relay_request, version=nginx_version),
        "floor": Target("floor", "floor: granian + raw ASGI + aiohttp", python_launch("floor_granian.py"),
                        relay_request, version=python_floor_version),
        "floor_aiohttp": Target("floor_aiohttp", "floor: aiohttp server + client", python_launch("floor_aiohttp.py"),
                                relay_request, version=python_floor_version),
        "sluice": Target("sluice", f"Sluice{suffix}", sluice_launch(sluice_workers, sluice_env), sluice_request,
                         version=sluice_version, unavailable=sluice_missing),
        "litellm": Target("litellm", "LiteLLM proxy (no DB, tuned)", litellm_launch, litellm_request,
                          ready_timeout=120, version=litellm_version, unavailable=install.litellm),
        "portkey": Target("portkey", "Portkey gateway (Node)", portkey_launch, portkey_request(upstream_url),
                          ready_timeout=60, version=portkey_version, unavailable=install.portkey),
    }


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem_kb = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "kernel": os.uname().release,
            "memory": f"{int(mem_kb) // 1024} MB", "load_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "wrk": command_output(["wrk", "-v"]).split(" Copyright")[0], "python": sys.version.split()[0]}
